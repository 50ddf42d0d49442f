"""Recipe: intents from a sentence encoder with few or no labelled examples (zero-shot / k-shot).

setup (intents from the training split) -> prototypes -> save -> evaluate on the test split.

- ``num_shots: 0``: zero-shot. Each intent is known only by a short description (a file, or its name
  made readable); a query gets the intent whose description embedding is most similar.
- ``num_shots: k``: k examples per intent are drawn with ``seed``; ``method: centroid`` (default, no
  training) uses the mean embedding of each intent's examples as its prototype, ``method: setfit``
  first tunes the encoder contrastively on pairs of those examples (SetFit), then does the same.

A query whose best cosine similarity is below ``oos_threshold`` is answered ``oos_label``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
from transformers import TrainingArguments, set_seed

from finetune.config import DataArguments, ModelArguments, RunArguments
from finetune.data.few_shot import intent_descriptions, sample_per_intent
from finetune.data.report import DataReport, write_reports
from finetune.data.text_data import UNSEEN_POLICIES, check_known_labels, label_maps, load_text_split
from finetune.intent_report import intent_results, write_intent_outputs
from finetune.models.contrastive import ContrastiveSettings, contrastive_tune
from finetune.models.prototype_classifier import (
    ARCHITECTURE,
    PrototypeClassifier,
    embed_texts,
    load_encoder,
    prototypes_from,
)
from finetune.models.registry import resolve_model_path
from finetune.models.text_classifier import DEFAULT_OOS_LABEL

logger = logging.getLogger(__name__)

NAME = "intent_few_shot"
ARCHITECTURES = frozenset({ARCHITECTURE})
METHODS = ("centroid", "setfit")
# SetFit's own defaults for the contrastive step (body learning rate 2e-5, batch 16, one epoch)
DEFAULTS: dict[str, Any] = {"report_to": "none", "learning_rate": 2e-5, "per_device_train_batch_size": 16,
                            "num_train_epochs": 1}
SHOTS_FILE = "few_shot_examples.jsonl"


@dataclass
class FewShotArguments:
    """How intent prototypes are made and when a query is out of scope."""

    num_shots: int = field(default=0, metadata={"help": "Examples per intent, drawn with `seed` from the training "
                                                        "split; 0: zero-shot from intent descriptions."})
    method: str = field(default="centroid", metadata={"help": "centroid: mean embedding of each intent's examples "
                                                              "(no training); setfit: contrastive tuning of the "
                                                              "encoder on the examples first."})
    intent_descriptions_file: str | None = field(
        default=None, metadata={"help": "JSON/YAML mapping intent -> short description, for zero-shot (default: "
                                        "the intent name made readable, BookRestaurant -> 'book restaurant')."})
    descriptions_as_examples: bool = field(
        default=True, metadata={"help": "With num_shots >= 1, also count each intent's description (or readable "
                                        "name) as one example of it: better than the examples alone at every k "
                                        "measured, most at k=1 (see scripts/results/few_shot.json)."})
    oos_threshold: float | None = field(
        default=None, metadata={"help": "Cosine similarity below which a query is out of scope (null: never)."})
    oos_label: str = field(default=DEFAULT_OOS_LABEL, metadata={"help": "The answer for rejected queries."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer queries are truncated to this many tokens."})
    embedding_batch_size: int = field(default=64, metadata={"help": "Queries embedded together."})
    setfit_num_iterations: int = field(
        default=20, metadata={"help": "method=setfit: positive and negative pairs drawn per example."})
    unseen_eval_intents: str = field(
        default="error", metadata={"help": "An eval intent absent from training: 'error' or 'oos'."})

    def __post_init__(self) -> None:
        if self.num_shots < 0:
            raise ValueError(f"num_shots must be 0 (zero-shot) or more, got {self.num_shots}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method == "setfit" and self.num_shots == 0:
            raise ValueError("method=setfit tunes on labelled examples: set num_shots >= 1 (or method=centroid "
                             "for zero-shot)")
        if self.method == "setfit" and importlib.util.find_spec("setfit") is None:
            raise ValueError("method=setfit needs the setfit package: pip install 'finetune[few-shot]'")
        if self.oos_threshold is not None and not -1 <= self.oos_threshold <= 1:
            raise ValueError(f"oos_threshold is a cosine similarity in [-1, 1], got {self.oos_threshold}")
        if self.unseen_eval_intents not in UNSEEN_POLICIES:
            raise ValueError(f"unseen_eval_intents must be one of {UNSEEN_POLICIES}, got {self.unseen_eval_intents!r}")
        if self.max_seq_length < 8 or self.embedding_batch_size < 1 or self.setfit_num_iterations < 1:
            raise ValueError("max_seq_length must be >= 8, embedding_batch_size and setfit_num_iterations >= 1")


def argument_classes() -> tuple[type, ...]:
    return RunArguments, ModelArguments, DataArguments, FewShotArguments, TrainingArguments


def train(
    run: RunArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    few_args: FewShotArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """Build the prototypes (tuning the encoder first for setfit), save, evaluate on the test split."""
    set_seed(training_args.seed)
    started = time.perf_counter()
    full_train, train_report = load_text_split(data_args, data_args.train_split_name,
                                               max_samples=data_args.max_train_samples)
    intents = list(label_maps(list(full_train["label"]))[0].values())
    descriptions = intent_descriptions(intents, few_args.intent_descriptions_file)
    test_set, test_report, test_source = None, None, data_args.eval_dataset_name or data_args.dataset_name
    if data_args.eval_split_name:
        test_set, test_report = load_text_split(data_args, data_args.eval_split_name, source=test_source,
                                                max_samples=data_args.max_eval_samples)
        test_set = check_known_labels(test_set, {intent: i for i, intent in enumerate(intents)},
                                      policy=few_args.unseen_eval_intents, oos_label=few_args.oos_label,
                                      source=f"{test_source} [{data_args.eval_split_name}]")
    write_reports([r for r in (train_report, test_report) if r], training_args.output_dir)

    encoder, tokenizer = load_encoder(model_args.model_name_or_path, revision=model_args.revision,
                                      cache_dir=model_args.cache_dir, trust_remote_code=model_args.trust_remote_code)
    shots = None
    if few_args.num_shots:
        chosen = sample_per_intent(list(full_train["label"]), few_args.num_shots, training_args.seed,
                                   source=f"{data_args.dataset_name} [{data_args.train_split_name}]")
        shots = full_train.select(chosen)
        if few_args.method == "setfit":
            encoder = contrastive_tune(resolve_model_path(model_args.model_name_or_path), list(shots["text"]),
                                       list(shots["label"]), _contrastive_settings(few_args, training_args))
        texts, labels = list(shots["text"]), list(shots["label"])
        if few_args.descriptions_as_examples:
            texts, labels = texts + [descriptions[i] for i in intents], labels + list(intents)
    else:
        texts, labels = [descriptions[i] for i in intents], list(intents)
    if few_args.num_shots and few_args.intent_descriptions_file and not few_args.descriptions_as_examples:
        logger.warning("num_shots=%d: prototypes come from the examples; %s is not used", few_args.num_shots,
                       few_args.intent_descriptions_file)
    embeddings = embed_texts(encoder, tokenizer, texts, batch_size=few_args.embedding_batch_size,
                             max_length=few_args.max_seq_length)
    method = few_args.method if few_args.num_shots else "zero-shot"
    classifier = PrototypeClassifier(
        encoder=encoder, tokenizer=tokenizer, intents=intents, prototypes=prototypes_from(embeddings, labels, intents),
        max_length=few_args.max_seq_length, oos_threshold=few_args.oos_threshold, oos_label=few_args.oos_label,
        metadata={"method": method, "num_shots": few_args.num_shots, "seed": training_args.seed,
                  **({} if few_args.num_shots else {"descriptions": descriptions})},
    )
    build_seconds = time.perf_counter() - started
    classifier.save(training_args.output_dir)
    if shots is not None:  # which examples the prototypes came from, for reproducing or auditing a run
        _write_shots(Path(training_args.output_dir) / SHOTS_FILE, shots)
    results: dict[str, Any] = {"train": {"intents": len(intents), "examples": len(texts),
                                         "method": method, "runtime_s": round(build_seconds, 1)}}
    if test_set is not None:
        payload, rows = _score(classifier, test_set, model=model_args.model_name_or_path, dataset_name=test_source,
                               split=data_args.eval_split_name, report=test_report,
                               batch_size=few_args.embedding_batch_size)
        payload["train_runtime_s"] = round(build_seconds, 1)
        write_intent_outputs(training_args.output_dir, payload, rows)
        results["eval"] = payload
        logger.info("test: accuracy %.2f%%, macro-F1 %.2f%% on %d queries", 100 * payload["accuracy"],
                    100 * payload["f1_macro"], payload["num_samples"])
    return results


def evaluate(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 32,
             unseen_eval_intents: str = "error") -> dict[str, Any]:
    """Score a saved few-/zero-shot model on one split: eval_results.json, predictions.jsonl and the
    confusion matrix, as for the ``intent`` task; the model's own OOS threshold is applied."""
    classifier = PrototypeClassifier.load(model_dir)
    split = data_args.eval_split_name or "test"
    dataset, report = load_text_split(data_args, split, max_samples=data_args.max_eval_samples)
    dataset = check_known_labels(dataset, {intent: i for i, intent in enumerate(classifier.intents)},
                                 policy=unseen_eval_intents, oos_label=classifier.oos_label,
                                 source=f"{data_args.dataset_name} [{split}]")
    payload, rows = _score(classifier, dataset, model=model_dir, dataset_name=data_args.dataset_name, split=split,
                           report=report, batch_size=batch_size)
    write_intent_outputs(output_dir, payload, rows)
    return payload


def _score(classifier: PrototypeClassifier, dataset: datasets.Dataset, *, model: str, dataset_name: str, split: str,
           report: DataReport | None, batch_size: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    started = time.perf_counter()
    labels, similarities = classifier.classify(classifier.embed(list(dataset["text"]), batch_size))
    header = {"task": NAME, "model": str(model), "dataset": dataset_name, "split": split,
              "num_intents": len(classifier.intents), "method": classifier.metadata.get("method"),
              "num_shots": classifier.metadata.get("num_shots")}
    return intent_results(header, dataset, labels, similarities.tolist(), elapsed=time.perf_counter() - started,
                          threshold=classifier.oos_threshold, oos_label=classifier.oos_label, report=report)


def _contrastive_settings(few_args: FewShotArguments, training_args: TrainingArguments) -> ContrastiveSettings:
    return ContrastiveSettings(learning_rate=training_args.learning_rate,
                               batch_size=training_args.per_device_train_batch_size,
                               num_epochs=int(training_args.num_train_epochs),
                               num_iterations=few_args.setfit_num_iterations,
                               max_steps=training_args.max_steps, max_length=few_args.max_seq_length,
                               seed=training_args.seed)


def _write_shots(path: Path, shots: datasets.Dataset) -> None:
    path.write_text("".join(json.dumps({"row": int(r), "text": t, "intent": lab}, ensure_ascii=False) + "\n"
                            for r, t, lab in zip(shots["row"], shots["text"], shots["label"])), encoding="utf-8")
