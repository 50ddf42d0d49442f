"""What both intent tasks share: their common keys, reading and checking text splits, the outputs and the card.

Used by fine-tuning a classifier (``intent``) and by nearest-prototype classification (``intent_few_shot``),
which differ in how the model is made and how it scores a query; tasks never import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finetune.config import check_choices
from finetune.data.report import DataReport
from finetune.data.text_data import UnseenPolicy, check_known_labels, load_text_split
from finetune.evaluation.classification import write_intent_outputs
from finetune.models.text_classifier import DEFAULT_OOS_LABEL
from finetune.tasks.base import CardFacts, Task, TaskRun
from finetune.tasks.cards import CLASSIFIER_METRICS, CLOSED_SET

INTENT_METRICS = ("accuracy", "f1_macro")
# keys of TaskRun.state the shared hooks read: set when training learns the intents or a saved model is loaded
LABEL2ID, OOS_LABEL = "label2id", "oos_label"

INTENT_CARD = CardFacts(
    pipeline_tag="text-classification",
    pipeline_name="Text Classification",
    what="a text classifier (one intent per query)",
    intended_use="Routing short {language}queries like those of `{domain}` to one of the intents it was trained on.",
    metrics=CLASSIFIER_METRICS,
    limitations=(CLOSED_SET,),
)


@dataclass
class IntentArguments:
    """How queries are read and what a rejected one is called (both intent tasks)."""

    max_seq_length: int = field(default=128, metadata={"help": "Longer queries are truncated to this many tokens."})
    oos_label: str = field(default=DEFAULT_OOS_LABEL, metadata={"help": "The answer for rejected queries."})

    def __post_init__(self) -> None:
        if self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be at least 8, got {self.max_seq_length}")


@dataclass
class IntentEvalArguments:
    """How an evaluation split is checked against the intents the model knows (training and `evaluate`)."""

    unseen_eval_intents: UnseenPolicy = field(
        default="error",
        metadata={"help": "An eval intent absent from training: 'error' (stop, naming it) or 'oos' (score it as "
                          "out-of-scope)."},
    )

    def __post_init__(self) -> None:
        check_choices(self)


class IntentTask(Task):
    """Reading and checking text splits, outputs and card facts shared by the intent tasks."""

    reads_audio = False
    evaluation_option_classes = (IntentEvalArguments,)
    headline_metrics = INTENT_METRICS
    best_metric = "accuracy"
    card = INTENT_CARD

    def read_split(self, run: TaskRun, split: str, source: str, max_samples: int | None, *,
                   training: bool) -> tuple[Any, DataReport | None]:
        """Text, label and row of each usable query; an evaluation split is checked against the known intents
        (``run.state``), its unseen intents stopping the run or scored as out-of-scope."""
        dataset, report = load_text_split(run.options.data, split, source=source, max_samples=max_samples)
        if not training:
            policy = (run.options.groups.get(IntentEvalArguments) or IntentEvalArguments()).unseen_eval_intents
            dataset = check_known_labels(dataset, run.state[LABEL2ID], policy=policy, oos_label=run.state[OOS_LABEL],
                                         source=f"{source} [{split}]")
        return dataset, report

    def write_outputs(self, output_dir: str, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        write_intent_outputs(output_dir, payload, rows)


def know_intents(run: TaskRun, intents: list[str], oos_label: str) -> None:
    """What the shared hooks check evaluation splits against: the model's intents and its out-of-scope label."""
    run.state[LABEL2ID] = {intent: i for i, intent in enumerate(intents)}
    run.state[OOS_LABEL] = oos_label
