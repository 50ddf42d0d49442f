"""Distillation recipe end to end on tiny random models: train -> save -> evaluate, pseudo-labels, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from finetune.cli import main


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-decoder-layer tiny Whisper saved with a 2-second context, as a fine-tuned teacher would be."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from finetune.models.whisper import set_encoder_context
    from tests.helpers import build_tiny_whisper

    built = build_tiny_whisper(tmp_path_factory.mktemp("built"), decoder_layers=4)
    model = WhisperForConditionalGeneration.from_pretrained(built)
    processor = WhisperProcessor.from_pretrained(built)
    set_encoder_context(model, processor, 2)
    model.generation_config.max_length = 8  # a random model babbles: keep every decode short
    target = tmp_path_factory.mktemp("teacher")
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def _config(tmp_path: Path, teacher: Path, **overrides) -> Path:
    values = {
        "task": "asr_distill",
        "teacher_model_name_or_path": str(teacher),
        "student_decoder_layers": 2,
        "dataset_name": "sample:fsdd",
        "max_train_samples": 8,
        "max_eval_samples": 4,
        "max_duration_in_seconds": 2,
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "save_strategy": "no",
        "logging_steps": 1,
        "generation_max_length": 6,
        "seed": 7,
        "use_cpu": True,
        **overrides,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_train_save_evaluate_round_trip(tmp_path: Path, teacher_dir: Path) -> None:
    config = _config(tmp_path, teacher_dir, evaluate_before_training=True)
    assert main(["train", str(config)]) == 0
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and not list(run.glob("*.bin"))
    saved = json.loads((run / "config.json").read_text())
    assert saved["decoder_layers"] == 2 and saved["architectures"] == ["WhisperForConditionalGeneration"]
    assert saved["max_source_positions"] == 100  # the teacher's 2-second context
    results = json.loads((run / "eval_results.json").read_text())
    assert results["task"] == "asr_distill" and results["num_samples"] == 4
    assert results["student"]["teacher_layers"] == [0, 3]
    assert results["student"]["parameters"] < results["student"]["teacher_parameters"]
    assert results["teacher"]["num_samples"] == 4 and "wer" in results["teacher"]
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 4
    assert (run / "README.md").is_file() and "automatic-speech-recognition" in (run / "README.md").read_text()

    # the student is an ordinary Whisper model: `finetune evaluate` and pipeline() read it
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run), "--data", "sample:fsdd", "--split", "test", "--max-samples", "4",
                 "--output-dir", str(out), "--batch-size", "4"]) == 0
    scored = json.loads((out / "eval_results.json").read_text())
    assert scored["task"] == "asr_seq2seq" and scored["num_samples"] == 4
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(run))
    assert isinstance(asr({"raw": np.zeros(16000, dtype=np.float32), "sampling_rate": 16000})["text"], str)


def test_pseudo_labels_replace_the_labels(tmp_path: Path, teacher_dir: Path) -> None:
    import torch
    from transformers import Seq2SeqTrainingArguments

    from finetune.config import DataArguments, RunArguments
    from finetune.data.collators import SpeechSeq2SeqCollator
    from finetune.data.text import scoring_normalizer
    from finetune.tasks import asr_distill
    from finetune.tasks.base import TaskOptions, TaskRun, make_trainer
    from finetune.tasks.whisper_common import WhisperTask

    teacher, processor = asr_distill.load_teacher(str(teacher_dir))
    data_args = DataArguments(dataset_name="sample:fsdd", max_duration_in_seconds=2)
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                                    predict_with_generate=True, generation_max_length=6, per_device_eval_batch_size=4,
                                    remove_unused_columns=False)
    task = WhisperTask()  # reading and the labeller's Trainer as every Whisper task has them
    run = TaskRun(TaskOptions(run=RunArguments(task="asr_distill"), data=data_args, training=args),
                  model=teacher, processor=processor)
    train_set, _ = task.read_split(run, "train", "sample:fsdd", 4, training=True)
    labelled = asr_distill.pseudo_label(make_trainer(task, run, teacher, None, None), processor, train_set,
                                        scoring_normalizer("en"))

    batch = SpeechSeq2SeqCollator(processor, teacher.config.decoder_start_token_id)([train_set[i] for i in range(4)])
    with torch.no_grad():
        generated = teacher.generate(batch["input_features"], max_length=6)
    said = [t.strip() for t in processor.tokenizer.batch_decode(generated, skip_special_tokens=True)]
    new_labels = [list(row) for row in labelled["labels"]]
    assert list(labelled["pseudo_text"]) == said
    assert new_labels == processor.tokenizer([" " + t for t in said]).input_ids
    assert new_labels != [list(row) for row in train_set["labels"]]  # a random teacher does not say the digits
    assert list(labelled["text"]) == list(train_set["text"])  # the given transcripts are kept beside


def test_config_errors_name_the_problem(tmp_path: Path, teacher_dir: Path, capsys) -> None:
    assert main(["train", str(_config(tmp_path, teacher_dir, student_decoder_layers=5))]) == 2
    assert "the teacher has 4" in capsys.readouterr().err
    assert main(["train", str(_config(tmp_path, teacher_dir, student_layer_ids=[1, 7]))]) == 2
    assert "student_layer_ids [7] do not exist" in capsys.readouterr().err
    assert main(["train", str(_config(tmp_path, tmp_path / "no-such-teacher"))]) == 2
    err = capsys.readouterr().err
    assert "teacher_model_name_or_path" in err and "no-such-teacher" in err
    assert main(["train", str(_config(tmp_path, teacher_dir, kl_weight=-1))]) == 2
    assert "kl_weight" in capsys.readouterr().err
