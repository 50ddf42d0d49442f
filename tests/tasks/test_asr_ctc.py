"""CTC recipe end to end on tiny random models: from scratch and from a pretrained encoder, saved
processor, pipeline(), `finetune evaluate` task detection, infeasible rows, learning signal."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import finetune
from finetune.cli import main
from tests.helpers import build_tiny_wav2vec2

SCRATCH = {
    "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 96,
    "conv_dim": [16, 32, 48], "conv_kernel": [10, 8, 8], "conv_stride": [5, 8, 4],
    "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "feat_extract_norm": "layer",
    "do_stable_layer_norm": True, "hidden_dropout": 0.0, "attention_dropout": 0.0, "final_dropout": 0.0,
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine (CI beside other
    work) two spinning threads make these tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp_path: Path, **overrides) -> Path:
    model_config = tmp_path / "model.json"
    model_config.write_text(json.dumps(SCRATCH))
    values = {
        "task": "asr_ctc",
        "model_config": str(model_config),
        "mask_time_prob": 0.0,
        "dataset_name": "sample:fsdd",
        "max_train_samples": 16,
        "max_eval_samples": 8,
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "learning_rate": 3e-3,
        "max_steps": 3,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 3,
        "use_cpu": True,
        **overrides,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_scratch_training_saves_a_pipeline_ready_model(tmp_path: Path) -> None:
    assert main(["train", str(_config(tmp_path, group_by_length=True))]) == 0
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and not list(run.glob("*.bin"))
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab["[PAD]"] == 0 and vocab["|"] == 2 and set("zero") <= set(vocab)
    config = json.loads((run / "config.json").read_text())
    assert config["architectures"] == ["Wav2Vec2ForCTC"] and config["vocab_size"] == len(vocab)
    results = json.loads((run / "eval_results.json").read_text())
    assert results["task"] == "asr_ctc" and results["num_samples"] == 8 and results["decoding"] == "greedy"
    assert {"wer", "cer", "wer_raw", "cer_raw", "runtime_s", "train_runtime_s"} <= set(results)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows[:2]] == ["zero", "zero"] and rows[0]["source_file"].endswith(".flac")
    assert (run / "training_curve.png").is_file() and (run / "training_args.json").is_file()

    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(run))
    out = asr({"raw": np.zeros(8000, dtype=np.float32), "sampling_rate": 16000})
    assert isinstance(out["text"], str) and set(out["text"]) <= set(vocab) | {" "}

    out_dir = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run), "--data", "sample:fsdd", "--max-samples", "8",
                 "--output-dir", str(out_dir)]) == 0
    again = json.loads((out_dir / "eval_results.json").read_text())
    assert again["task"] == "asr_ctc" and again["wer"] == pytest.approx(results["wer"])  # same greedy decoding


@pytest.mark.slow
def test_training_learns_on_real_speech(tmp_path: Path) -> None:
    """Loss and character errors fall well below the untrained model's on 60 real clips."""
    config = _config(tmp_path, max_train_samples=60, max_eval_samples=60, eval_split_name="train",
                     per_device_train_batch_size=12, per_device_eval_batch_size=30, learning_rate=5e-3,
                     warmup_steps=10, max_steps=100, logging_steps=25, evaluate_before_training=True, seed=0)
    finetune.train(config)
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["loss"] < results["zero_shot"]["loss"] / 5
    assert results["cer_raw"] < 1.0  # it emits right characters, not only blanks


@pytest.mark.slow
def test_pretrained_encoder_with_fresh_head(tmp_path: Path) -> None:
    encoder = build_tiny_wav2vec2(tmp_path / "encoder")
    config = _config(tmp_path, model_name_or_path=str(encoder), model_config=None, max_steps=2,
                     eval_split_name=None)
    finetune.train(config)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())
    assert saved["vocab_size"] == len(vocab) and saved["ctc_loss_reduction"] == "mean"
    assert not (tmp_path / "run" / "eval_results.json").exists()


def test_model_source_must_be_exactly_one(tmp_path: Path, capsys) -> None:
    assert main(["train", str(_config(tmp_path, model_name_or_path="x"))]) == 2
    assert "exactly one of them" in capsys.readouterr().err
    assert main(["train", str(_config(tmp_path, model_config=None))]) == 2
    assert "exactly one of them" in capsys.readouterr().err


def test_lm_keys_need_beam_search(tmp_path: Path, capsys) -> None:
    assert main(["train", str(_config(tmp_path, lm_order=2))]) == 2
    assert "decoding: beam" in capsys.readouterr().err


@pytest.mark.slow
def test_clips_too_short_for_their_transcript_are_bad_rows(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    folder = data / "train"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcript"])
        for i in range(6):
            sf.write(folder / f"ok{i}.wav", 0.1 * rng.standard_normal(8000).astype(np.float32), 16000)
            writer.writerow([f"ok{i}.wav", "yes"])
        # 0.05 s gives 3 CTC frames at this model's 160-sample stride; the transcript needs 20
        sf.write(folder / "short.wav", 0.1 * rng.standard_normal(800).astype(np.float32), 16000)
        writer.writerow(["short.wav", "a much longer answer"])
    config = _config(tmp_path, dataset_name=str(data), eval_split_name=None, max_train_samples=None, max_steps=1)
    assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "short.wav" in err and "audio too short for its transcript" in err
    finetune.train(config, on_bad_rows="skip")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    bad = report["splits"][0]["bad_rows"]
    assert len(bad) == 1 and "CTC frames" in bad[0]["reason"]


@pytest.mark.slow
def test_beam_search_with_an_ngram_lm_built_from_the_transcripts(tmp_path: Path) -> None:
    pytest.importorskip("pyctcdecode")
    pytest.importorskip("kenlm")
    config = _config(tmp_path, decoding="beam", lm_order=2, beam_width=8)
    finetune.train(config)
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["decoding"] == "beam+lm" and "greedy" in results
    assert "1-grams" in (tmp_path / "run" / "language_model.arpa").read_text()


@pytest.mark.slow
def test_resume_continues_with_the_same_vocabulary(tmp_path: Path) -> None:
    config = _config(tmp_path, eval_split_name=None, max_steps=2, save_strategy="steps", save_steps=2)
    finetune.train(config)
    assert (tmp_path / "run" / "checkpoint-2" / "finetune_complete.json").is_file()
    assert main(["train", str(config), "max_steps=3"]) == 2  # never trains over checkpoints silently
    finetune.train(config, max_steps=3, resume=True)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
