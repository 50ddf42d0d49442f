"""Task: intents from a sentence encoder with few or no labelled examples (zero-shot / k-shot).

fit (intents and their descriptions from the training split, k examples drawn per intent) -> prototypes
(tuning the encoder first for setfit) -> save -> score the test split. No Trainer: ``train`` is its own.

- ``num_shots: 0``: zero-shot. Each intent is known only by a short description (a file, or its name
  made readable); a query gets the intent whose description embedding is most similar.
- ``num_shots: k``: k examples per intent are drawn with ``seed``; ``method: centroid`` (default, no
  training) uses the mean embedding of each intent's examples as its prototype, ``method: setfit``
  first tunes the encoder contrastively on pairs of those examples (SetFit), then does the same.

A query whose best cosine similarity is below ``oos_threshold`` is answered ``oos_label``.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import datasets
from transformers import TrainingArguments, set_seed

from finetune.config import ConfigError, check_choices
from finetune.data.few_shot import intent_descriptions, sample_per_intent
from finetune.data.report import DataReport, write_reports
from finetune.data.text_data import label_maps
from finetune.evaluation.classification import score_intents
from finetune.models.contrastive import ContrastiveSettings, contrastive_tune
from finetune.models.prototype_classifier import (
    ARCHITECTURE,
    PrototypeClassifier,
    embed_texts,
    load_encoder,
    prototypes_from,
)
from finetune.models.registry import resolve_model_path
from finetune.outputs import FEW_SHOT_EXAMPLES, follow_umask, write_jsonl
from finetune.tasks.base import TRAINER_DEFAULTS, Scores, TaskOptions, TaskRun, results_payload
from finetune.tasks.intent_common import IntentArguments, IntentEvalArguments, IntentTask, know_intents

logger = logging.getLogger(__name__)

BATCH_SIZE = "batch_size"  # TaskRun.state: queries embedded together when scoring


@dataclass
class FewShotArguments:
    """How intent prototypes are made and when a query is out of scope."""

    num_shots: int = field(default=0, metadata={"help": "Examples per intent, drawn with `seed` from the training "
                                                        "split; 0: zero-shot from intent descriptions."})
    method: Literal["centroid", "setfit"] = field(
        default="centroid", metadata={"help": "centroid: mean embedding of each intent's examples (no training); "
                                              "setfit: contrastive tuning of the encoder on the examples first."})
    intent_descriptions_file: str | None = field(
        default=None, metadata={"help": "JSON/YAML mapping intent -> short description, for zero-shot (default: "
                                        "the intent name made readable, BookRestaurant -> 'book restaurant')."})
    descriptions_as_examples: bool = field(
        default=True, metadata={"help": "With num_shots >= 1, also count each intent's description (or readable "
                                        "name) as one example of it: better than the examples alone at every k "
                                        "measured, most at k=1 (see scripts/results/few_shot.json)."})
    oos_threshold: float | None = field(
        default=None, metadata={"help": "Cosine similarity below which a query is out of scope (null: never)."})
    embedding_batch_size: int = field(default=64, metadata={"help": "Queries embedded together."})
    setfit_num_iterations: int = field(
        default=20, metadata={"help": "method=setfit: positive and negative pairs drawn per example."})

    def __post_init__(self) -> None:
        check_choices(self)
        if self.num_shots < 0:
            raise ValueError(f"num_shots must be 0 (zero-shot) or more, got {self.num_shots}")
        if self.method == "setfit" and self.num_shots == 0:
            raise ValueError("method=setfit tunes on labelled examples: set num_shots >= 1 (or method=centroid "
                             "for zero-shot)")
        if self.method == "setfit" and importlib.util.find_spec("setfit") is None:
            raise ValueError("method=setfit needs the setfit package: pip install 'finetune[few-shot]'")
        if self.oos_threshold is not None and not -1 <= self.oos_threshold <= 1:
            raise ValueError(f"oos_threshold is a cosine similarity in [-1, 1], got {self.oos_threshold}")
        if self.embedding_batch_size < 1 or self.setfit_num_iterations < 1:
            raise ValueError("embedding_batch_size and setfit_num_iterations must be >= 1")


class FewShotIntents(IntentTask):
    name = "intent_few_shot"
    architectures = frozenset({ARCHITECTURE})
    option_classes = (IntentArguments, FewShotArguments, IntentEvalArguments)
    uses_trainer = False
    # SetFit's own defaults for the contrastive step (body learning rate 2e-5, batch 16, one epoch)
    defaults: ClassVar[dict[str, Any]] = {**TRAINER_DEFAULTS, "learning_rate": 2e-5,
                                          "per_device_train_batch_size": 16, "num_train_epochs": 1}

    def check(self, options: TaskOptions) -> None:
        if options.data.max_batch_seconds:
            raise ConfigError(f"max_batch_seconds bounds batches by audio seconds; task {self.name} reads text")
        few = options[FewShotArguments]
        if few.num_shots and few.intent_descriptions_file and not few.descriptions_as_examples:
            logger.warning("num_shots=%d: prototypes come from the examples; %s is not used", few.num_shots,
                           few.intent_descriptions_file)

    # ------------------------------------------------------------------------------ training

    def train(self, options: TaskOptions) -> dict[str, Any]:
        """Build the prototypes (tuning the encoder first for setfit), save, score the test split."""
        args, data = options.training, options.data
        self.check(options)
        set_seed(args.seed)
        run = TaskRun(options, language=data.language)
        started = time.perf_counter()
        train_set, train_report = self.read_split(run, data.train_split_name, data.dataset_name,
                                                  data.max_train_samples, training=True)
        shots = self.fit(run, train_set, train_report)
        eval_source = data.eval_dataset_name or data.dataset_name
        eval_set = eval_report = None
        if data.eval_split_name:
            eval_set, eval_report = self.read_split(run, data.eval_split_name, eval_source, data.max_eval_samples,
                                                    training=False)
        if args.should_save:
            write_reports([r for r in (train_report, eval_report) if r], args.output_dir)

        examples = self._build_classifier(run, shots)
        build_seconds = time.perf_counter() - started
        if args.should_save:
            run.model.save(args.output_dir)
            follow_umask([args.output_dir])  # safetensors writes 0600
            if shots is not None:  # which examples the prototypes came from, for reproducing or auditing a run
                write_jsonl(Path(args.output_dir) / FEW_SHOT_EXAMPLES,
                            ({"row": int(r), "text": t, "intent": lab}
                             for r, t, lab in zip(shots["row"], shots["text"], shots["label"])))
        results: dict[str, Any] = {"train": {"intents": len(run.model.intents), "examples": examples,
                                             "method": run.model.metadata["method"],
                                             "runtime_s": round(build_seconds, 1)}}
        if eval_set is None:
            return results
        scores = self.score(run, None, eval_set, "eval")
        payload = results_payload(self, self.base_model_name(options), eval_source, data.eval_split_name, scores,
                           eval_report)
        payload["train_runtime_s"] = round(build_seconds, 1)
        results["eval"] = payload
        if args.should_save:
            self.write_outputs(args.output_dir, payload, scores.rows)
        logger.info("test: %s", self.headline(payload))
        return results

    def fit(self, run: TaskRun, train_set: Any, report: DataReport | None) -> Any:
        """The intents, their descriptions and, with ``num_shots``, the examples drawn (else None)."""
        options = run.options
        few, data = options[FewShotArguments], options.data
        intents = list(label_maps(list(train_set["label"]))[0].values())
        know_intents(run, intents, options[IntentArguments].oos_label)
        run.state["intents"] = intents
        run.state["descriptions"] = intent_descriptions(intents, few.intent_descriptions_file)
        run.state[BATCH_SIZE] = few.embedding_batch_size
        if not few.num_shots:
            return None
        chosen = sample_per_intent(list(train_set["label"]), few.num_shots, options.training.seed,
                                   source=f"{data.dataset_name} [{data.train_split_name}]")
        return train_set.select(chosen)

    def _build_classifier(self, run: TaskRun, shots: datasets.Dataset | None) -> int:
        """``run.model``: the prototype classifier from the shots (and descriptions); returns how many
        examples its prototypes were made from."""
        options = run.options
        few, model_args, length = options[FewShotArguments], options.model, options[IntentArguments].max_seq_length
        intents, descriptions = run.state["intents"], run.state["descriptions"]
        encoder, tokenizer = load_encoder(model_args.model_name_or_path, revision=model_args.revision,
                                          cache_dir=model_args.cache_dir,
                                          trust_remote_code=model_args.trust_remote_code)
        if shots is not None:
            texts, labels = list(shots["text"]), list(shots["label"])
            if few.method == "setfit":
                encoder = contrastive_tune(resolve_model_path(model_args.model_name_or_path), texts, labels,
                                           _contrastive_settings(few, length, options.training))
            if few.descriptions_as_examples:
                texts, labels = texts + [descriptions[i] for i in intents], labels + list(intents)
        else:
            texts, labels = [descriptions[i] for i in intents], list(intents)
        embeddings = embed_texts(encoder, tokenizer, texts, batch_size=few.embedding_batch_size, max_length=length)
        method = few.method if few.num_shots else "zero-shot"
        run.model = PrototypeClassifier(
            encoder=encoder, tokenizer=tokenizer, intents=intents,
            prototypes=prototypes_from(embeddings, labels, intents), max_length=length,
            oos_threshold=few.oos_threshold, oos_label=options[IntentArguments].oos_label,
            metadata={"method": method, "num_shots": few.num_shots, "seed": options.training.seed,
                      **({} if few.num_shots else {"descriptions": descriptions})},
        )
        return len(texts)

    # ------------------------------------------------------------------------------ scoring

    def score(self, run: TaskRun, trainer: Any, dataset: Any, prefix: str) -> Scores:
        """Nearest prototype and its cosine similarity per query (no Trainer: ``trainer`` is None)."""
        classifier: PrototypeClassifier = run.model
        started = time.perf_counter()
        labels, similarities = classifier.classify(classifier.embed(list(dataset["text"]), run.state[BATCH_SIZE]))
        metrics, rows = score_intents(
            dataset, labels, similarities.tolist(), elapsed=time.perf_counter() - started,
            threshold=classifier.oos_threshold, oos_label=classifier.oos_label,
            leading={"num_intents": len(classifier.intents), "method": classifier.metadata.get("method"),
                     "num_shots": classifier.metadata.get("num_shots")},
        )
        return Scores(metrics, rows)

    def load_saved(self, run: TaskRun, model_dir: str) -> None:
        """The saved classifier with its own OOS rule; queries are embedded ``batch_size`` at a time."""
        run.model = PrototypeClassifier.load(model_dir)
        know_intents(run, run.model.intents, run.model.oos_label)
        run.state[BATCH_SIZE] = run.options.training.per_device_eval_batch_size

    def usage_python(self, repo_id: str, config: dict[str, Any]) -> str:
        # nearest intent prototype by embedding similarity: no transformers pipeline scores that
        return ("from finetune.models.prototype_classifier import PrototypeClassifier\n"
                f'classifier = PrototypeClassifier.load("{repo_id}")  # a local download of the repo\n'
                'print(classifier.predict(["what is the weather like tomorrow"]))')


def _contrastive_settings(few: FewShotArguments, max_length: int, training: TrainingArguments) -> ContrastiveSettings:
    return ContrastiveSettings(learning_rate=training.learning_rate, batch_size=training.per_device_train_batch_size,
                               num_epochs=int(training.num_train_epochs), num_iterations=few.setfit_num_iterations,
                               max_steps=training.max_steps, max_length=max_length, seed=training.seed)
