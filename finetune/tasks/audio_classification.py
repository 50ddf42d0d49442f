"""Task: classify audio clips (spoken commands, digits, speakers...) with a Whisper or Wav2Vec2-family
encoder under a classification head, with Trainer.

prepare (clip length bound by the encoder context) -> read train -> fit (labels from the training split's
label column, model, class weights) -> encode (class ids) -> freeze -> train -> save -> score (accuracy,
macro-F1, per-class figures, confusion matrix).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import torch

from finetune.config import ConfigError
from finetune.data.collators import AudioClassificationCollator
from finetune.data.report import DataReport
from finetune.data.speech import load_speech_split
from finetune.evaluation.metrics import classification_metrics
from finetune.evaluation.plots import plot_confusion_matrix
from finetune.models.audio_classifier import (
    CLASSIFIER_ARCHITECTURES,
    AudioClassifierArguments,
    balanced_class_weights,
    collator_padding,
    freeze_classifier,
    input_limits,
    load_audio_classifier,
    load_saved_classifier,
    max_clip_seconds,
)
from finetune.models.registry import resolve_model_path
from finetune.models.speech_encoder import EncoderContextArguments, FreezeArguments, SpecAugmentArguments
from finetune.outputs import CONFUSION_MATRIX, write_eval_outputs
from finetune.tasks.base import AUDIO_TRAINER_DEFAULTS, CardFacts, Scores, Task, TaskOptions, TaskRun
from finetune.tasks.cards import CLASSIFIER_METRICS, CLOSED_SET
from finetune.training.trainers import predict_in_order

logger = logging.getLogger(__name__)


class AudioClassification(Task):
    name = "audio_classification"
    architectures = frozenset(CLASSIFIER_ARCHITECTURES)
    option_classes = (AudioClassifierArguments, EncoderContextArguments, FreezeArguments, SpecAugmentArguments)
    defaults: ClassVar[dict[str, Any]] = {**AUDIO_TRAINER_DEFAULTS, "metric_for_best_model": "accuracy",
                                          "greater_is_better": True}
    headline_metrics = ("accuracy", "f1_macro")
    best_metric = "accuracy"
    card = CardFacts(
        pipeline_tag="audio-classification",
        pipeline_name="Audio Classification",
        what="an audio classifier (one label per clip)",
        intended_use="Labelling short {language}audio clips in {domain} with one of the classes it was trained on.",
        metrics=CLASSIFIER_METRICS,
        limitations=(CLOSED_SET,),
    )

    def check(self, options: TaskOptions) -> None:
        if options.data.streaming:
            raise ConfigError("audio_classification reads the label set from the whole training split: "
                              "streaming is not supported")

    # ------------------------------------------------------------------------------ training

    def prepare(self, run: TaskRun) -> None:
        """The sampling rate and longest clip of the model to be built, before any weights are loaded."""
        data = run.options.data
        rate, longest = input_limits(run.options.model, run.options[EncoderContextArguments].encoder_context_seconds)
        if longest is not None and data.max_duration_in_seconds > longest:
            logger.info("clips longer than the encoder context (%g s) are bad rows", longest)
            data.max_duration_in_seconds = longest
        run.state["sampling_rate"] = rate

    def read_split(self, run: TaskRun, split: str, source: str, max_samples: int | None, *,
                   training: bool) -> tuple[Any, DataReport | None]:
        """Decode + validate a split that has a label column (no transcript needed)."""
        rate = run.processor.sampling_rate if run.processor is not None else run.state["sampling_rate"]
        return load_speech_split(run.options.data, split, sampling_rate=rate, needs_text=False, needs_label=True,
                                 source=source, max_samples=max_samples, materialize=True)

    def fit(self, run: TaskRun, train_set: Any, report: DataReport | None) -> Any:
        """The label set (sorted training labels), the model under a head of that size, class weights."""
        options, data = run.options, run.options.data
        counts = Counter(train_set["label"])
        label2id = {label: i for i, label in enumerate(sorted(counts))}
        if len(label2id) < 2:
            raise ValueError(f"{data.dataset_name} [{data.train_split_name}]: the label column holds "
                             f"one class only ({next(iter(label2id))!r}); a classifier needs two or more")
        run.model, run.processor = load_audio_classifier(
            options.model, options[AudioClassifierArguments], label2id,
            encoder_context_seconds=options[EncoderContextArguments].encoder_context_seconds,
            spec_augment=options[SpecAugmentArguments])
        logger.info("%d classes: %s", len(label2id), {label: counts[label] for label in label2id})
        if options[AudioClassifierArguments].class_weighting == "balanced":
            weights = balanced_class_weights([label2id[label] for label in train_set["label"]], len(label2id))
            logger.info("class weights: %s", {label: round(float(weights[i]), 3) for label, i in label2id.items()})
            run.state["loss"] = weighted_cross_entropy(weights)
        return train_set

    def encode(self, run: TaskRun, dataset: Any, report: DataReport | None, *, training: bool) -> Any:
        where = f"{report.dataset} [{report.split}]" if report is not None else "the data"
        return with_label_ids(dataset, run.model.config.label2id, where)

    def trainer_kwargs(self, run: TaskRun) -> dict[str, Any]:
        extractor = run.processor
        return {"data_collator": AudioClassificationCollator(extractor, padding=collator_padding(extractor)),
                "processing_class": extractor, "compute_metrics": _compute_metrics,
                "compute_loss_func": run.state.get("loss")}

    def adapt_for_training(self, run: TaskRun, model: Any) -> Any:
        freeze = run.options[FreezeArguments]
        freeze_classifier(model, freeze_encoder=freeze.freeze_encoder,
                          freeze_feature_encoder=freeze.freeze_feature_encoder)
        return model

    def finish_training(self, run: TaskRun, trainer: Any) -> dict[str, Any]:
        return {"class_weighting": run.options[AudioClassifierArguments].class_weighting}

    # ------------------------------------------------------------------------------ scoring

    def score(self, run: TaskRun, trainer: Any, dataset: Any, prefix: str) -> Scores:
        """Accuracy, macro-F1 and per-class figures, and one row per clip (prediction, its softmax confidence)."""
        output, elapsed = predict_in_order(trainer, dataset, prefix)
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        probabilities = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
        id2label = {int(k): v for k, v in run.model.config.id2label.items()}
        predicted = [id2label[int(i)] for i in probabilities.argmax(axis=-1)]
        references = list(dataset["label"])
        scores = classification_metrics(predicted, references)
        metrics = {
            "num_samples": len(references),
            "num_classes": len(id2label),
            "accuracy": scores["accuracy"],
            "f1_macro": scores["f1_macro"],
            "per_class": scores["per_class"],
            "runtime_s": round(elapsed, 3),
            "seconds_per_sample": round(elapsed / max(len(references), 1), 5),
            "confusion_matrix": CONFUSION_MATRIX,
        }
        rows = [
            {"source_file": Path(src).name if src else "", "reference": ref, "prediction": hyp,
             "confidence": round(float(conf), 5)}
            for src, ref, hyp, conf in zip(dataset["source_file"], references, predicted, probabilities.max(axis=-1))
        ]
        return Scores(metrics, rows)

    def write_outputs(self, output_dir: str, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        write_eval_outputs(output_dir, payload, rows)
        plot_confusion_matrix([r["prediction"] for r in rows], [r["reference"] for r in rows],
                              Path(output_dir) / CONFUSION_MATRIX, title=f"{payload['dataset']} [{payload['split']}]")

    def load_saved(self, run: TaskRun, model_dir: str) -> None:
        run.model, run.processor = load_saved_classifier(resolve_model_path(model_dir))
        longest = max_clip_seconds(run.processor)
        if longest is not None:
            data = run.options.data
            data.max_duration_in_seconds = min(data.max_duration_in_seconds, longest)

    # ------------------------------------------------------------------------------ the card

    def usage_python(self, repo_id: str, config: dict[str, Any]) -> str:
        return (f'classifier = pipeline("audio-classification", model="{repo_id}")\n'
                'print(classifier("clip.wav"))  # decoding a file path needs ffmpeg; or pass '
                '{"raw": samples, "sampling_rate": 16000}')


def with_label_ids(dataset, label2id: dict[str, int], where: str):
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


def _compute_metrics(prediction) -> dict[str, float]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    predicted = logits.argmax(axis=-1)
    scores = classification_metrics([str(p) for p in predicted], [str(r) for r in prediction.label_ids])
    return {"accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"]}
