"""Audio classification end to end on tiny random models: a Whisper ASR checkpoint turned classifier
(short context), a Wav2Vec2 encoder with class weights, label checks, `finetune evaluate`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml

import finetune
from finetune.cli import main
from finetune.models.audio_classifier import balanced_class_weights
from finetune.tasks.audio_classification import weighted_cross_entropy
from tests.helpers import build_tiny_wav2vec2, tone


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a busy 2-core machine (CI beside other
    work) two spinning threads make these tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(tmp_path: Path, model: Path | str, **overrides) -> Path:
    values = {
        "task": "audio_classification",
        "model_name_or_path": str(model),
        "dataset_name": "sample:fsdd",
        "label_column_name": "label",
        "max_eval_samples": 12,
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 12,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 5,
        "use_cpu": True,
        **overrides,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_whisper_asr_checkpoint_becomes_a_short_context_classifier(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    config = _config(tmp_path, tiny_whisper_dir, encoder_context_seconds=2, max_duration_in_seconds=2,
                     on_bad_rows="skip", evaluate_before_training=True)
    assert main(["train", str(config)]) == 0
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    assert saved["architectures"] == ["WhisperForAudioClassification"]
    assert saved["max_source_positions"] == 100  # the 2-second context travels with the model
    assert saved["id2label"] == {str(i): str(i) for i in range(10)} and saved["label2id"]["7"] == 7
    assert json.loads((run / "preprocessor_config.json").read_text())["chunk_length"] == 2

    results = json.loads((run / "eval_results.json").read_text())
    assert results["task"] == "audio_classification" and results["num_samples"] == 12
    assert 0.0 <= results["accuracy"] <= 1.0 and 0.0 <= results["f1_macro"] <= 1.0
    assert set(results["per_class"]) == {"0", "1"} | {r["prediction"] for r in _rows(run)}
    assert results["per_class"]["0"]["support"] == 6 and "zero_shot" in results
    assert (run / "confusion_matrix.png").stat().st_size > 1000 and (run / "training_curve.png").is_file()
    rows = _rows(run)
    assert len(rows) == 12 and rows[0]["reference"] == "0" and 0 < rows[0]["confidence"] <= 1

    from transformers import pipeline

    classify = pipeline("audio-classification", model=str(run))
    top = classify({"raw": tone(0.5), "sampling_rate": 16000}, top_k=3)
    assert len(top) == 3 and top[0]["label"] in saved["label2id"]

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run), "--data", "sample:fsdd", "--max-samples", "12",
                 "--output-dir", str(out)]) == 0
    again = json.loads((out / "eval_results.json").read_text())
    assert again["task"] == "audio_classification" and again["accuracy"] == pytest.approx(results["accuracy"])
    assert (out / "confusion_matrix.png").is_file()


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]


def _imbalanced_folder(root: Path, counts: dict[str, int], split: str) -> Path:
    """Tones whose pitch depends on the class, with a `label` column; ``counts`` rows a class."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    pitch = {label: 300.0 + 400.0 * i for i, label in enumerate(sorted(counts))}
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "label"])
        for label, count in counts.items():
            for i in range(count):
                name = f"{label}_{i}.wav"
                sf.write(folder / name, tone(0.3 + 0.01 * i, freq=pitch[label]), 16000)
                writer.writerow([name, label])
    return root


@pytest.mark.slow
def test_wav2vec2_encoder_with_balanced_class_weights(tmp_path: Path) -> None:
    encoder = build_tiny_wav2vec2(tmp_path / "encoder")
    data = _imbalanced_folder(tmp_path / "data", {"go": 12, "stop": 3, "left": 1}, "train")
    _imbalanced_folder(data, {"go": 2, "stop": 2}, "test")
    config = _config(tmp_path, encoder, dataset_name=str(data), class_weighting="balanced", max_eval_samples=None,
                     train_sampling_strategy="group_by_length")
    finetune.train(config)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["architectures"] == ["Wav2Vec2ForSequenceClassification"]
    assert saved["label2id"] == {"go": 0, "left": 1, "stop": 2}  # sorted training labels
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["class_weighting"] == "balanced" and results["per_class"]["go"]["support"] == 2


def test_predictions_keep_dataset_order_under_group_by_length(tmp_path: Path) -> None:
    """The Trainer groups eval batches by length too; per-clip rows must still match their clips."""
    import datasets
    from transformers import TrainingArguments

    from finetune.config import DataArguments, ModelArguments, RunArguments
    from finetune.models.audio_classifier import (
        AudioClassifierArguments,
        load_audio_classifier,
    )
    from finetune.tasks.audio_classification import AudioClassification
    from finetune.tasks.base import TaskOptions, TaskRun, make_trainer
    from finetune.training.trainers import predict_in_order

    encoder = build_tiny_wav2vec2(tmp_path / "encoder")
    model, extractor = load_audio_classifier(ModelArguments(str(encoder)), AudioClassifierArguments(),
                                             {str(i): i for i in range(8)})
    durations = [0.2, 0.9, 0.4, 0.7, 0.3, 0.8, 0.5, 0.6]
    dataset = datasets.Dataset.from_dict({
        "audio": [tone(d) for d in durations], "duration": durations, "labels": list(range(8)),
    })
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_eval_batch_size=4, report_to="none",
                             remove_unused_columns=False, length_column_name="duration", use_cpu=True,
                             train_sampling_strategy="group_by_length")
    task = AudioClassification()
    options = TaskOptions(run=RunArguments(task=task.name), data=DataArguments(dataset_name="unused"), training=args)
    trainer = make_trainer(task, TaskRun(options, model=model, processor=extractor), model, None, dataset)
    output, _ = predict_in_order(trainer, dataset, "eval")
    assert output.label_ids.tolist() == list(range(8))
    assert trainer.args.train_sampling_strategy == "group_by_length"  # restored
    assert trainer.predict(dataset).label_ids.tolist() != list(range(8))  # what the helper prevents


def test_balanced_weights_follow_class_counts() -> None:
    weights = balanced_class_weights([0] * 12 + [2] * 3 + [1], 4)
    assert weights.tolist() == pytest.approx([16 / 48, 16 / 4, 16 / 12, 0.0])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1])
    even = weighted_cross_entropy(torch.ones(3))({"logits": logits}, labels)
    assert even == pytest.approx(torch.nn.functional.cross_entropy(logits, labels))
    rare = weighted_cross_entropy(torch.tensor([1.0, 10.0, 1.0]))({"logits": logits}, labels)
    assert rare > even  # the misclassified rare class dominates


def test_eval_label_unseen_in_training_is_an_error_naming_it(tmp_path: Path, capsys) -> None:
    data = _imbalanced_folder(tmp_path / "data", {"go": 2, "stop": 2}, "train")
    _imbalanced_folder(data, {"go": 1, "jump": 1}, "test")
    encoder = build_tiny_wav2vec2(tmp_path / "encoder")
    assert main(["train", str(_config(tmp_path, encoder, dataset_name=str(data), max_eval_samples=None))]) == 2
    err = capsys.readouterr().err
    assert "'jump'" in err and "not among the 2 classes" in err


def test_class_weighting_value_is_checked(tmp_path: Path, capsys) -> None:
    assert main(["train", str(_config(tmp_path, "x", class_weighting="inverse"))]) == 2
    assert "'class_weighting' must be one of" in capsys.readouterr().err
