"""Recipe: fine-tune a BERT-style encoder to classify text queries into intents, with Trainer.

setup (labels from the training data, a stratified validation carve-out, model, tokenizer) -> train ->
save -> tune the out-of-scope threshold on validation (optional) -> evaluate on the test split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from finetune.config import DataArguments, ModelArguments, RunArguments
from finetune.data.report import DataReport, write_reports
from finetune.data.text_data import (
    UNSEEN_POLICIES,
    carve_validation,
    check_known_labels,
    label_maps,
    load_text_split,
)
from finetune.intent_report import intent_results, write_intent_outputs
from finetune.metrics import classification_metrics
from finetune.models.text_classifier import (
    TextClassifierArguments,
    load_saved_classifier,
    load_text_classifier,
    oos_settings,
    softmax,
    store_oos_threshold,
    tune_oos_threshold,
)
from finetune.recipe import checkpoint_to_resume, predict_in_order, save_trained

logger = logging.getLogger(__name__)

NAME = "intent"
# every text model transformers can put a sequence-classification head on
ARCHITECTURES = frozenset(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values())
DEFAULTS: dict[str, Any] = {
    "metric_for_best_model": "accuracy",
    "greater_is_better": True,
    "report_to": "none",
    "save_total_limit": 2,
}


@dataclass
class IntentDataArguments:
    """How the intent data is split and scored (beside the shared DataArguments)."""

    validation_split_percentage: float = field(
        default=10.0,
        metadata={"help": "Share of every training intent held out (seeded) for validation and OOS tuning; 0: none."},
    )
    unseen_eval_intents: str = field(
        default="error",
        metadata={"help": "An eval intent absent from training: 'error' (stop, naming it) or 'oos' (score it as "
                          "out-of-scope)."},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.validation_split_percentage < 100:
            raise ValueError(f"validation_split_percentage must be in [0, 100), got {self.validation_split_percentage}")
        if self.unseen_eval_intents not in UNSEEN_POLICIES:
            raise ValueError(f"unseen_eval_intents must be one of {UNSEEN_POLICIES}, got {self.unseen_eval_intents!r}")


def argument_classes() -> tuple[type, ...]:
    return (RunArguments, ModelArguments, DataArguments, IntentDataArguments, TextClassifierArguments,
            TrainingArguments)


def train(
    run: RunArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    intent_args: IntentDataArguments,
    classifier_args: TextClassifierArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """Fine-tune, tune the OOS threshold if asked, evaluate; returns validation and test metrics."""
    set_seed(training_args.seed)
    resume_from = checkpoint_to_resume(training_args.output_dir, run.resume)
    if classifier_args.oos_target_recall is not None and intent_args.validation_split_percentage == 0:
        raise ValueError("oos_target_recall needs a validation split: set validation_split_percentage > 0")

    with training_args.main_process_first(desc="preparing data"):
        full_train, train_report = load_text_split(data_args, data_args.train_split_name,
                                                   max_samples=data_args.max_train_samples)
        id2label, label2id = label_maps(list(full_train["label"]))
        train_set, validation_set = full_train, None
        if intent_args.validation_split_percentage:
            train_set, validation_set = carve_validation(full_train, intent_args.validation_split_percentage / 100,
                                                         training_args.seed)
        test_set, test_report = None, None
        if data_args.eval_split_name:
            test_source = data_args.eval_dataset_name or data_args.dataset_name
            test_set, test_report = load_text_split(data_args, data_args.eval_split_name, source=test_source,
                                                    max_samples=data_args.max_eval_samples)
            test_set = check_known_labels(test_set, label2id, policy=intent_args.unseen_eval_intents,
                                          oos_label=classifier_args.oos_label, source=f"{test_source} "
                                          f"[{data_args.eval_split_name}]")
    if training_args.should_save:
        write_reports([r for r in (train_report, test_report) if r], training_args.output_dir)
    logger.info("%d intents; %d training rows, %d validation rows", len(id2label), len(train_set),
                len(validation_set) if validation_set is not None else 0)

    model, tokenizer = load_text_classifier(model_args, id2label, label2id)
    tokenizer.model_max_length = classifier_args.max_seq_length  # saved: pipeline() truncates the same way
    tokenize = _tokenizer_fn(tokenizer, classifier_args.max_seq_length, label2id)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=tokenize(train_set, with_labels=True),
        eval_dataset=tokenize(validation_set, with_labels=True) if validation_set is not None else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=_compute_metrics,
    )
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    save_trained(trainer, training_args, metric="accuracy")
    results: dict[str, Any] = {"train": train_output.metrics}

    if validation_set is not None:
        labels, confidences, _ = _predict(trainer, tokenize(validation_set, with_labels=False), id2label)
        results["validation"] = classification_metrics(labels, list(validation_set["label"]))
        if classifier_args.oos_target_recall is not None:
            threshold = tune_oos_threshold(confidences, classifier_args.oos_target_recall)
            store_oos_threshold(model.config, threshold, classifier_args.oos_label, classifier_args.oos_target_recall)
            logger.info("out-of-scope threshold %.4f keeps %.0f%% of in-scope validation queries", threshold,
                        100 * classifier_args.oos_target_recall)
    if trainer.is_world_process_zero() and classifier_args.oos_target_recall is not None:
        model.config.save_pretrained(training_args.output_dir)  # now with the OOS threshold

    if test_set is not None:
        payload, rows = _score(trainer, tokenize, test_set, model.config,
                               model=model_args.model_name_or_path, dataset_name=test_source,
                               split=data_args.eval_split_name, report=test_report)
        payload["train_runtime_s"] = round(train_output.metrics.get("train_runtime", 0.0), 1)
        if "validation" in results:
            payload["validation"] = {k: results["validation"][k] for k in ("accuracy", "f1_macro")}
        results["eval"] = payload
        if trainer.is_world_process_zero():
            _write(training_args.output_dir, payload, rows)
        logger.info("test: accuracy %.2f%%, macro-F1 %.2f%% on %d queries", 100 * payload["accuracy"],
                    100 * payload["f1_macro"], payload["num_samples"])
    return results


def evaluate(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 32,
             unseen_eval_intents: str = "error") -> dict[str, Any]:
    """Score a saved intent model on one split; writes eval_results.json, predictions.jsonl and the
    confusion matrix. The model's own OOS threshold (if it has one) is applied and reported."""
    model, tokenizer = load_saved_classifier(model_dir)
    split = data_args.eval_split_name or "test"
    dataset, report = load_text_split(data_args, split, max_samples=data_args.max_eval_samples)
    _, oos_label = oos_settings(model.config)
    dataset = check_known_labels(dataset, model.config.label2id, policy=unseen_eval_intents, oos_label=oos_label,
                                 source=f"{data_args.dataset_name} [{split}]")
    args = TrainingArguments(output_dir=output_dir, per_device_eval_batch_size=batch_size, report_to="none")
    trainer = Trainer(model=model, args=args, data_collator=DataCollatorWithPadding(tokenizer),
                      processing_class=tokenizer)
    max_length = min(int(tokenizer.model_max_length or 512), 512)  # the recipe saves its max_seq_length here
    tokenize = _tokenizer_fn(tokenizer, max_length, model.config.label2id)
    payload, rows = _score(trainer, tokenize, dataset, model.config, model=model_dir,
                           dataset_name=data_args.dataset_name, split=split, report=report)
    _write(output_dir, payload, rows)
    return payload


def _tokenizer_fn(tokenizer, max_length: int, label2id: dict[str, int]):
    """Tokenized copy of a text split; only model inputs (and ``labels``) are kept, so no string column
    reaches the collator."""

    def tokenize(dataset: datasets.Dataset, *, with_labels: bool) -> datasets.Dataset:
        def encode(batch: dict[str, list]) -> dict[str, list]:
            encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
            if with_labels:
                encoded["labels"] = [label2id[label] for label in batch["label"]]
            return dict(encoded)

        return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="tokenizing")

    return tokenize


def _compute_metrics(prediction) -> dict[str, float]:
    predicted = prediction.predictions.argmax(axis=-1).tolist()
    references = prediction.label_ids.tolist()
    scores = classification_metrics([str(p) for p in predicted], [str(r) for r in references])
    return {"accuracy": scores["accuracy"], "f1_macro": scores["f1_macro"]}


def _predict(trainer: Trainer, tokenized: datasets.Dataset, id2label: dict[int, str]
             ) -> tuple[list[str], np.ndarray, float]:
    """Top intent and its softmax confidence for every row, and the seconds it took."""
    output, elapsed = predict_in_order(trainer, tokenized, "predict")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    probabilities = softmax(logits)
    best = probabilities.argmax(axis=-1)
    return [id2label[int(i)] for i in best], probabilities.max(axis=-1), elapsed


def _score(trainer: Trainer, tokenize, dataset: datasets.Dataset, config, *, model: str, dataset_name: str,
           split: str, report: DataReport | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics payload and per-query rows for one split; with an OOS threshold, scored both ways."""
    id2label = {int(k): v for k, v in config.id2label.items()}
    labels, confidences, elapsed = _predict(trainer, tokenize(dataset, with_labels=False), id2label)
    threshold, oos_label = oos_settings(config)
    header = {"task": NAME, "model": str(model), "dataset": dataset_name, "split": split,
              "num_intents": len(id2label)}
    return intent_results(header, dataset, labels, confidences, elapsed=elapsed, threshold=threshold,
                          oos_label=oos_label, target_recall=getattr(config, "oos_target_recall", None),
                          report=report)


def _write(output_dir: str, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    write_intent_outputs(output_dir, payload, rows)
