"""Task: fine-tune a BERT-style encoder to classify text queries into intents, with Trainer.

fit (labels from the training data, a stratified validation carve-out, model, tokenizer) -> train ->
tune the out-of-scope threshold on validation (optional) -> save -> score the test split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import datasets
import numpy as np
from transformers import DataCollatorWithPadding
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from finetune.config import ConfigError
from finetune.data.report import DataReport
from finetune.data.text_data import carve_validation, label_maps
from finetune.evaluation.classification import score_intents
from finetune.evaluation.metrics import classification_metrics
from finetune.models.text_classifier import (
    load_saved_classifier,
    load_text_classifier,
    oos_settings,
    softmax,
    store_oos_threshold,
    tune_oos_threshold,
)
from finetune.tasks.base import TRAINER_DEFAULTS, Scores, TaskOptions, TaskRun
from finetune.tasks.intent_common import (
    INTENT_METRICS,
    LABEL2ID,
    IntentArguments,
    IntentEvalArguments,
    IntentTask,
    know_intents,
)
from finetune.training.trainers import predict_in_order

logger = logging.getLogger(__name__)

MAX_LENGTH = "max_length"  # TaskRun.state: tokens a query is truncated to


@dataclass
class ValidationArguments:
    """The validation split held out of training, and the out-of-scope threshold tuned on it."""

    validation_split_percentage: float = field(
        default=10.0,
        metadata={"help": "Share of every training intent held out (seeded) for validation and OOS tuning; 0: none."},
    )
    oos_target_recall: float | None = field(
        default=None,
        metadata={
            "help": "Tune an out-of-scope threshold on the validation split: the highest softmax confidence that "
            "still accepts this share of in-scope queries (e.g. 0.95). Saved in config.json as oos_threshold."
        },
    )

    def __post_init__(self) -> None:
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(f"validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}")
        if self.oos_target_recall is not None and not 0 < self.oos_target_recall <= 1:
            raise ValueError(f"oos_target_recall must be in (0, 1], got {self.oos_target_recall}")
        if self.oos_target_recall is not None and self.validation_split_percentage == 0:
            raise ValueError("oos_target_recall needs a validation split: set validation_split_percentage > 0")


class IntentClassification(IntentTask):
    name = "intent"
    # every text model transformers can put a sequence-classification head on
    architectures = frozenset(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values())
    option_classes = (IntentArguments, ValidationArguments, IntentEvalArguments)
    defaults: ClassVar[dict[str, Any]] = {**TRAINER_DEFAULTS, "metric_for_best_model": "accuracy",
                                          "greater_is_better": True}

    # ------------------------------------------------------------------------------ training

    def check(self, options: TaskOptions) -> None:
        """The test split is held out: evaluating during training needs the validation carve-out."""
        strategy = options.training.eval_strategy
        if strategy != "no" and not options[ValidationArguments].validation_split_percentage:
            raise ConfigError(f"eval_strategy={getattr(strategy, 'value', strategy)} evaluates during training on the "
                              "validation split, never on the test split: set validation_split_percentage > 0 "
                              "or eval_strategy=no")

    def fit(self, run: TaskRun, train_set: Any, report: DataReport | None) -> Any:
        """Label maps from the training intents, the validation carve-out, then the model for those labels."""
        options = run.options
        intent_args, split = options[IntentArguments], options[ValidationArguments]
        id2label, label2id = label_maps(list(train_set["label"]))
        know_intents(run, list(id2label.values()), intent_args.oos_label)
        run.state[MAX_LENGTH] = intent_args.max_seq_length
        validation = None
        if split.validation_split_percentage:
            train_set, validation = carve_validation(train_set, split.validation_split_percentage / 100,
                                                     options.training.seed)
        run.model, run.processor = load_text_classifier(options.model, id2label, label2id)
        run.processor.model_max_length = intent_args.max_seq_length  # saved: pipeline() truncates the same way
        if validation is not None:
            run.validation = self.encode(run, validation, None, training=True)
        logger.info("%d intents; %d training rows, %d validation rows", len(id2label), len(train_set),
                    len(validation) if validation is not None else 0)
        return train_set

    def encode(self, run: TaskRun, dataset: Any, report: DataReport | None, *, training: bool) -> Any:
        """Token ids (and ``labels`` for training); an evaluation split keeps its text, label and row for
        scoring (the collator passes only model inputs on)."""
        tokenizer, max_length, label2id = run.processor, run.state[MAX_LENGTH], run.state[LABEL2ID]

        def tokenize(batch: dict[str, list]) -> dict[str, list]:
            encoded = dict(tokenizer(batch["text"], truncation=True, max_length=max_length))
            if training:
                encoded["labels"] = [label2id[label] for label in batch["label"]]
            return encoded

        return dataset.map(tokenize, batched=True, remove_columns=dataset.column_names if training else None,
                           desc="tokenizing")

    def trainer_kwargs(self, run: TaskRun) -> dict[str, Any]:
        return {"data_collator": ModelInputsCollator(run.processor), "processing_class": run.processor,
                "compute_metrics": _compute_metrics}

    def finish_training(self, run: TaskRun, trainer: Any) -> dict[str, Any]:
        """Validation figures; with ``oos_target_recall``, the threshold tuned on validation goes into the
        model's config, so the saved model applies it wherever it is loaded."""
        if run.validation is None:
            return {}
        config = trainer.model.config
        labels, confidences, _ = _predict(trainer, run.validation, "validation")
        id2label = {int(i): label for i, label in config.id2label.items()}
        references = [id2label[int(i)] for i in run.validation["labels"]]
        figures = classification_metrics(labels, references)
        target = run.options[ValidationArguments].oos_target_recall
        if target is not None:
            threshold = tune_oos_threshold(confidences, target)
            store_oos_threshold(config, threshold, run.options[IntentArguments].oos_label, target)
            logger.info("out-of-scope threshold %.4f keeps %.0f%% of in-scope validation queries", threshold,
                        100 * target)
        return {"validation": {key: figures[key] for key in INTENT_METRICS}}

    # ------------------------------------------------------------------------------ scoring

    def score(self, run: TaskRun, trainer: Any, dataset: Any, prefix: str) -> Scores:
        """Top intent and its softmax confidence per query; with an OOS threshold, scored both ways."""
        config = trainer.model.config
        labels, confidences, elapsed = _predict(trainer, dataset, prefix)
        threshold, oos_label = oos_settings(config)
        metrics, rows = score_intents(dataset, labels, confidences, elapsed=elapsed, threshold=threshold,
                                      oos_label=oos_label, target_recall=getattr(config, "oos_target_recall", None),
                                      leading={"num_intents": len(config.id2label)})
        return Scores(metrics, rows)

    def load_saved(self, run: TaskRun, model_dir: str) -> None:
        """The model and tokenizer as training saved them, with its labels and out-of-scope rule."""
        run.model, run.processor = load_saved_classifier(model_dir)
        config = run.model.config
        intents = [label for _, label in sorted((int(i), label) for i, label in config.id2label.items())]
        know_intents(run, intents, oos_settings(config)[1])
        run.state[MAX_LENGTH] = min(int(run.processor.model_max_length or 512), 512)  # training saved it there

    def usage_python(self, repo_id: str, config: dict[str, Any]) -> str:
        return (f'classifier = pipeline("text-classification", model="{repo_id}")\n'
                'print(classifier("what is the weather like tomorrow"))')


class ModelInputsCollator:
    """Pads the tokenizer's outputs and ``labels``; the columns an evaluation split keeps for scoring
    (text, label, row) never reach the model, whatever ``remove_unused_columns`` says."""

    def __init__(self, tokenizer: Any) -> None:
        self.pad = DataCollatorWithPadding(tokenizer)
        self.keys = {*tokenizer.model_input_names, "labels"}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return self.pad([{key: value for key, value in f.items() if key in self.keys} for f in features])


def _compute_metrics(prediction) -> dict[str, float]:
    predicted = prediction.predictions.argmax(axis=-1).tolist()
    references = prediction.label_ids.tolist()
    scores = classification_metrics([str(p) for p in predicted], [str(r) for r in references])
    return {key: scores[key] for key in INTENT_METRICS}


def _predict(trainer: Any, dataset: datasets.Dataset, prefix: str) -> tuple[list[str], np.ndarray, float]:
    """Top intent and its softmax confidence for every row, and the seconds it took."""
    output, elapsed = predict_in_order(trainer, dataset, prefix)
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    probabilities = softmax(logits)
    id2label = {int(i): label for i, label in trainer.model.config.id2label.items()}
    return [id2label[int(i)] for i in probabilities.argmax(axis=-1)], probabilities.max(axis=-1), elapsed
