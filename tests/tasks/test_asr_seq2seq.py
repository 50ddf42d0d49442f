"""Whisper recipe end to end on a tiny random model: train, save, evaluate, reload, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import finetune
from finetune.cli import main

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, model_dir: Path, **overrides) -> Path:
    values = {
        "task": "asr_seq2seq",
        "model_name_or_path": str(model_dir),
        "encoder_context_seconds": 2,
        "dataset_name": "sample:fsdd",
        "max_train_samples": 16,
        "max_eval_samples": 8,
        "max_duration_in_seconds": 2,
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "max_steps": 4,
        "save_steps": 2,
        "logging_steps": 1,
        "generation_max_length": 8,
        "seed": 7,
        "use_cpu": True,
        **overrides,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_train_saves_a_pipeline_ready_model_with_results(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    config = _config(tmp_path, tiny_whisper_dir, evaluate_before_training=True,
                     temperature_fallback=[0.0, 0.4], log_prob_threshold=-1.0, no_speech_threshold=0.6,
                     mask_time_prob=0.05)
    assert main(["train", str(config)]) == 0
    run = tmp_path / "run"
    generation = json.loads((run / "generation_config.json").read_text())  # the intended decoding, saved
    intended = {"temperature": [0.0, 0.4], "logprob_threshold": -1.0, "no_speech_threshold": 0.6}
    assert generation["finetune_decoding"] == intended
    card = (run / "README.md").read_text()
    snippet = "generate_kwargs={'temperature': (0.0, 0.4), 'logprob_threshold': -1.0, 'no_speech_threshold': 0.6}"
    assert snippet in card
    assert (run / "model.safetensors").is_file() and not list(run.glob("*.bin"))
    results = json.loads((run / "eval_results.json").read_text())
    assert results["num_samples"] == 8 and 0 <= results["wer"] and "zero_shot" in results
    assert {"wer", "cer", "wer_raw", "cer_raw", "runtime_s"} <= set(results)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["reference"] == "zero"
    assert json.loads((run / "data_report.json").read_text())["splits"][0]["kept"] == 16
    assert yaml.safe_load((run / "finetune_config.yaml").read_text())["max_steps"] == 4

    config_json = json.loads((run / "config.json").read_text())
    assert config_json["max_source_positions"] == 100  # the 2-second context is saved with the model
    assert config_json["apply_spec_augment"] is True and config_json["mask_time_prob"] == 0.05
    from transformers import WhisperProcessor, pipeline

    assert WhisperProcessor.from_pretrained(run).feature_extractor.chunk_length == 2

    asr = pipeline("automatic-speech-recognition", model=str(run))
    out = asr({"raw": np.zeros(16000, dtype=np.float32), "sampling_rate": 16000})
    assert isinstance(out["text"], str)
    guarded = asr({"raw": np.zeros(16000, dtype=np.float32), "sampling_rate": 16000},  # the card's call
                  generate_kwargs={"temperature": (0.0, 0.4), "logprob_threshold": -1.0, "no_speech_threshold": 0.6})
    assert isinstance(guarded["text"], str)


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    config = _config(tmp_path, tiny_whisper_dir, eval_split_name=None, max_steps=2)
    finetune.train(config)
    assert (tmp_path / "run" / "checkpoint-2" / "trainer_state.json").is_file()
    # without resume=true, existing checkpoints are never trained over
    assert main(["train", str(config), "max_steps=4"]) == 2
    finetune.train(config, max_steps=4, resume=True)
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry][0] == 1  # history kept


@pytest.mark.slow
def test_evaluate_cli_scores_any_saved_model(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(tiny_whisper_dir), "--data", "sample:fsdd", "--split", "test",
                 "--max-samples", "4", "--output-dir", str(out), "--batch-size", "4"])
    assert code == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["task"] == "asr_seq2seq" and results["num_samples"] == 4 and results["split"] == "test"
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4


def test_config_errors_exit_cleanly(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("task: asr_seq2seq\nmodel_name_or_path: x\ndataset_name: y\nlearning_rat: 1\n")
    assert main(["train", str(config)]) == 2
    assert "did you mean 'learning_rate'" in capsys.readouterr().err
    config.write_text("task: asr_sequence\n")
    assert main(["train", str(config)]) == 2
    assert "unknown task 'asr_sequence'" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_ddp_through_accelerate(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    """`accelerate launch --multi_gpu --num_processes 2` on CPU really runs two ranks (gloo)."""
    config = _config(tmp_path, tiny_whisper_dir, max_steps=2, save_strategy="no", save_steps=None, max_eval_samples=4)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "finetune", "train", str(config)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # two ranks of batch 4 -> 8 samples a step
    assert state["train_batch_size"] == 4
    assert "world size 2" in done.stderr
    assert json.loads((tmp_path / "run" / "eval_results.json").read_text())["num_samples"] == 4


@pytest.mark.slow
def test_streaming_source_trains_with_max_steps(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    """A streamed manifest trains lazily; its eval split is read from the stream and scored as usual."""
    sample = REPO / "finetune" / "samples" / "fsdd" / "train"
    manifest = tmp_path / "stream.jsonl"
    lines = [json.dumps({"audio": str(sample / name), "text": word})
             for name, word in (("0_george_5.flac", "zero"), ("1_george_5.flac", "one"), ("2_george_5.flac", "two"))]
    manifest.write_text("\n".join(lines + [json.dumps({"audio": str(tmp_path / "missing.wav"), "text": "x"})]) + "\n")
    eval_manifest = tmp_path / "stream-test.jsonl"  # one manifest file is one split: evaluation gets its own
    eval_manifest.write_text(manifest.read_text())
    config = _config(tmp_path, tiny_whisper_dir, dataset_name=str(manifest), streaming=True, max_steps=2,
                     save_strategy="no", save_steps=None, eval_dataset_name=str(eval_manifest),
                     eval_split_name="test", max_eval_samples=3,
                     gradient_checkpointing=True)
    finetune.train(config)
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["num_samples"] == 3
