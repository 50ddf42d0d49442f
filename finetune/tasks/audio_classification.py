"""Recipe: classify audio clips (spoken commands, digits, speakers...) with a Whisper or Wav2Vec2-family
encoder under a classification head, with Trainer.

setup (labels from the training split's label column, model, data) -> train -> save -> evaluate
(accuracy, macro-F1, per-class figures, confusion matrix).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainingArguments, set_seed

from finetune.config import ConfigError, DataArguments, ModelArguments, RunArguments
from finetune.data.collators import AudioClassificationCollator
from finetune.data.report import DataReport, write_reports
from finetune.data.speech import load_speech_split
from finetune.metrics import classification_metrics
from finetune.models.audio_classifier import (
    CLASSIFIER_ARCHITECTURES,
    AudioClassifierArguments,
    balanced_class_weights,
    collator_padding,
    input_limits,
    load_audio_classifier,
    load_saved_classifier,
    max_clip_seconds,
)
from finetune.models.registry import resolve_model_path
from finetune.plots import plot_confusion_matrix
from finetune.recipe import (
    AUDIO_TRAINER_DEFAULTS,
    checkpoint_to_resume,
    predict_in_order,
    save_trained,
    trainer_callbacks,
    write_eval_outputs,
)

logger = logging.getLogger(__name__)

NAME = "audio_classification"
ARCHITECTURES = CLASSIFIER_ARCHITECTURES
DEFAULTS: dict[str, Any] = {**AUDIO_TRAINER_DEFAULTS, "metric_for_best_model": "accuracy", "greater_is_better": True}
CONFUSION_MATRIX = "confusion_matrix.png"


def argument_classes() -> tuple[type, ...]:
    return (RunArguments, ModelArguments, DataArguments, AudioClassifierArguments, TrainingArguments)


def train(
    run: RunArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    classifier_args: AudioClassifierArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """Fine-tune and evaluate; returns the training and test metrics."""
    if data_args.streaming:
        raise ConfigError("audio_classification reads the label set from the whole training split: "
                          "streaming is not supported")
    set_seed(training_args.seed)
    resume_from = checkpoint_to_resume(training_args.output_dir, run.resume)
    rate, longest = input_limits(model_args, classifier_args)
    if longest is not None and data_args.max_duration_in_seconds > longest:
        logger.info("clips longer than the encoder context (%g s) are bad rows", longest)
        data_args.max_duration_in_seconds = longest
    with training_args.main_process_first(desc="preparing data"):
        train_raw, train_report = _load(data_args, data_args.train_split_name, data_args.dataset_name,
                                        data_args.max_train_samples, rate)
        label2id = {label: i for i, label in enumerate(sorted(set(train_raw["label"])))}
        if len(label2id) < 2:
            raise ValueError(f"{data_args.dataset_name} [{data_args.train_split_name}]: the label column holds "
                             f"one class only ({next(iter(label2id))!r}); a classifier needs two or more")
        train_set = _with_label_ids(train_raw, label2id, f"{data_args.dataset_name} [{data_args.train_split_name}]")
        eval_set, eval_report, eval_source = None, None, data_args.eval_dataset_name or data_args.dataset_name
        if data_args.eval_split_name:
            eval_raw, eval_report = _load(data_args, data_args.eval_split_name, eval_source,
                                          data_args.max_eval_samples, rate)
            eval_set = _with_label_ids(eval_raw, label2id, f"{eval_source} [{data_args.eval_split_name}]")
    model, extractor = load_audio_classifier(model_args, classifier_args, label2id)
    if training_args.should_save:
        write_reports([r for r in (train_report, eval_report) if r], training_args.output_dir)
    logger.info("%d classes: %s", len(label2id), _counts(train_set["labels"], label2id))

    loss = None
    if classifier_args.class_weighting == "balanced":
        weights = balanced_class_weights(train_set["labels"], len(label2id))
        logger.info("class weights: %s", {label: round(float(weights[i]), 3) for label, i in label2id.items()})
        loss = weighted_cross_entropy(weights)
    trainer = _trainer(model, extractor, training_args, train_set, eval_set, loss)
    results: dict[str, Any] = {}
    if run.evaluate_before_training and eval_set is not None and resume_from is None:
        before, _ = _score(trainer, eval_set, model.config.id2label, model=model_args.model_name_or_path,
                           dataset_name=eval_source, split=data_args.eval_split_name, report=None)
        results["zero_shot"] = {k: before[k] for k in ("accuracy", "f1_macro")}
        logger.info("before training (untrained head): accuracy %.2f%%", 100 * before["accuracy"])
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    save_trained(trainer, training_args, metric="accuracy" if eval_set is not None else None)
    results["train"] = train_output.metrics

    if eval_set is not None:
        payload, rows = _score(trainer, eval_set, model.config.id2label, model=model_args.model_name_or_path,
                               dataset_name=eval_source, split=data_args.eval_split_name, report=eval_report)
        payload["train_runtime_s"] = round(train_output.metrics.get("train_runtime", 0.0), 1)
        payload["class_weighting"] = classifier_args.class_weighting
        if "zero_shot" in results:
            payload["zero_shot"] = results["zero_shot"]
        results["eval"] = payload
        if trainer.is_world_process_zero():
            _write(training_args.output_dir, payload, rows)
        logger.info("test: accuracy %.2f%%, macro-F1 %.2f%% on %d clips", 100 * payload["accuracy"],
                    100 * payload["f1_macro"], payload["num_samples"])
    return results


def evaluate(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 8) -> dict[str, Any]:
    """Score a saved classifier on one split: eval_results.json, predictions.jsonl, confusion_matrix.png."""
    model, extractor = load_saved_classifier(resolve_model_path(model_dir))
    longest = max_clip_seconds(extractor)
    if longest is not None:
        data_args.max_duration_in_seconds = min(data_args.max_duration_in_seconds, longest)
    split = data_args.eval_split_name or "test"
    dataset, report = _load(data_args, split, data_args.dataset_name, data_args.max_eval_samples,
                            extractor.sampling_rate)
    dataset = _with_label_ids(dataset, model.config.label2id, f"{data_args.dataset_name} [{split}]")
    args = TrainingArguments(output_dir=output_dir, per_device_eval_batch_size=batch_size,
                             **{k: v for k, v in DEFAULTS.items() if k != "save_total_limit"})
    trainer = _trainer(model, extractor, args, None, dataset, None)
    payload, rows = _score(trainer, dataset, model.config.id2label, model=model_dir,
                           dataset_name=data_args.dataset_name, split=split, report=report)
    _write(output_dir, payload, rows)
    if report:
        write_reports([report], output_dir)
    return payload


def _load(data_args: DataArguments, split: str, source: str, max_samples: int | None, sampling_rate: int):
    """Decode + validate a split that has a label column (no transcript needed)."""
    return load_speech_split(data_args, split, sampling_rate=sampling_rate, needs_text=False, needs_label=True,
                             source=source, max_samples=max_samples, materialize=True)


def _with_label_ids(dataset, label2id: dict[str, int], where: str):
    """Add ``labels`` (class ids); a label the model does not know is an error that names it."""
    labels = dataset["label"]
    unknown = sorted(set(labels) - set(label2id))
    if unknown:
        rows = [i for i, label in enumerate(labels) if label == unknown[0]][:5]
        raise ValueError(f"{where}: label(s) {', '.join(map(repr, unknown))} not among the {len(label2id)} "
                         f"classes learnt from training ({', '.join(map(repr, sorted(label2id)))}); first "
                         f"rows with {unknown[0]!r}: {rows}")
    return dataset.add_column("labels", [label2id[label] for label in labels])


def weighted_cross_entropy(weights: torch.Tensor):
    """A Trainer ``compute_loss_func``: cross-entropy with one weight per class."""

    def loss(outputs, labels, num_items_in_batch=None) -> torch.Tensor:
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return torch.nn.functional.cross_entropy(logits, labels, weight=weights.to(logits.device))

    return loss


def _trainer(model, extractor, args: TrainingArguments, train_set, eval_set, loss) -> Trainer:
    return Trainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=AudioClassificationCollator(extractor, padding=collator_padding(extractor)),
        processing_class=extractor,
        compute_metrics=_compute_metrics,
        compute_loss_func=loss,
        callbacks=trainer_callbacks(),
    )


def _compute_metrics(prediction) -> dict[str, float]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    predicted = logits.argmax(axis=-1)
    scores = classification_metrics([str(p) for p in predicted], [str(r) for r in prediction.label_ids])
    return {"accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"]}


def _score(trainer: Trainer, dataset, id2label: dict, *, model: str, dataset_name: str, split: str,
           report: DataReport | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics payload and one row per clip (prediction, its softmax confidence)."""
    output, elapsed = predict_in_order(trainer, dataset, "eval")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
    id2label = {int(k): v for k, v in id2label.items()}
    predicted = [id2label[int(i)] for i in probabilities.argmax(axis=-1)]
    references = list(dataset["label"])
    scores = classification_metrics(predicted, references)
    payload: dict[str, Any] = {
        "task": NAME,
        "model": str(model),
        "dataset": dataset_name,
        "split": split,
        "num_samples": len(references),
        "num_classes": len(id2label),
        "accuracy": scores["accuracy"],
        "f1_macro": scores["f1_macro"],
        "per_class": scores["per_class"],
        "runtime_s": round(elapsed, 3),
        "seconds_per_sample": round(elapsed / max(len(references), 1), 5),
        "confusion_matrix": CONFUSION_MATRIX,
    }
    if report is not None:
        payload["skipped_rows"] = len(report.bad)
    rows = [
        {"source_file": Path(src).name if src else "", "reference": ref, "prediction": hyp,
         "confidence": round(float(conf), 5)}
        for src, ref, hyp, conf in zip(dataset["source_file"], references, predicted, probabilities.max(axis=-1))
    ]
    return payload, rows


def _write(output_dir: str, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    write_eval_outputs(output_dir, payload, rows)
    plot_confusion_matrix([r["prediction"] for r in rows], [r["reference"] for r in rows],
                          Path(output_dir) / CONFUSION_MATRIX, title=f"{payload['dataset']} [{payload['split']}]")


def _counts(label_ids: list[int], label2id: dict[str, int]) -> dict[str, int]:
    counts = np.bincount(np.asarray(label_ids, dtype=np.int64), minlength=len(label2id))
    return {label: int(counts[i]) for label, i in label2id.items()}
