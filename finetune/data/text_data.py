"""Text classification splits (``text`` -> ``intent``): load, validate, label maps, validation carve-out.

Rows come from any :func:`~finetune.data.sources.load_source` source (a folder of ``<split>.jsonl``,
a CSV/JSONL manifest, a Hub dataset). A row with an empty text or label is a bad row: it stops the
run under ``on_bad_rows: fail`` and is dropped and counted under ``skip``, exactly as for audio.
Labels are strings throughout; the integer ids exist only inside the model (``id2label``).
"""

from __future__ import annotations

import logging
import typing
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import datasets
import numpy as np

from finetune.config import DataArguments
from finetune.data.report import BadDataError, BadRow, DataReport
from finetune.data.sources import (
    TEXT_COLUMN_CANDIDATES,
    DataSourceError,
    as_text,
    find_column,
    has_visible_text,
    is_text_cell,
    load_source,
    require_columns,
    splits_read_beside,
)

logger = logging.getLogger(__name__)

LABEL_COLUMN_CANDIDATES = ("intent", "label", "labels", "class", "category")
# what to do with an evaluation intent the model was never trained on: stop, or score it as out-of-scope
UnseenPolicy = Literal["error", "oos"]
UNSEEN_POLICIES: tuple[str, ...] = typing.get_args(UnseenPolicy)

TEXT_FEATURES = datasets.Features(
    {
        "text": datasets.Value("string"),
        "label": datasets.Value("string"),
        "row": datasets.Value("int64"),
        "error": datasets.Value("string"),
    }
)


class UnseenLabelError(ValueError):
    """An evaluation intent the model was never trained on; the message names it and its rows."""


def load_text_split(
    args: DataArguments, split: str, *, source: str | None = None, max_samples: int | None = None
) -> tuple[datasets.Dataset, DataReport]:
    """Load ``split`` as columns ``text``, ``label`` (strings) and ``row`` (index in the source).

    Bad rows (empty text or label) raise :class:`BadDataError` under ``on_bad_rows: fail``, listing
    every one of them; under ``skip`` they are dropped and kept in the returned report.
    """
    name = source or args.dataset_name
    if args.streaming:
        raise DataSourceError(f"{name}: streaming is not supported for text classification (the label set "
                              "must be known before training); set streaming=false")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, or None for all rows; got {max_samples!r}")
    raw = load_source(name, split, config_name=args.dataset_config_name, cache_dir=args.data_cache_dir,
                      other_splits=splits_read_beside(args, name, split))
    if max_samples is not None:
        raw = raw.select(range(min(max_samples, len(raw))))
    columns = raw.column_names or []
    text_column = args.text_column_name or find_column(columns, TEXT_COLUMN_CANDIDATES, what="text")
    label_column = args.label_column_name or find_column(columns, LABEL_COLUMN_CANDIDATES, what="intent/label")
    require_columns(raw, [text_column, label_column], source=name)
    label_feature = (raw.features or {}).get(label_column)
    # Hub datasets store intents as ClassLabel ids: read them back as their names
    names = label_feature.names if isinstance(label_feature, datasets.ClassLabel) else None

    def check(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        out: dict[str, list] = {key: [] for key in TEXT_FEATURES}
        for i, text_cell, label_cell in zip(indices, batch[text_column], batch[label_column]):
            text = " ".join(as_text(text_cell).split()) if is_text_cell(text_cell) else ""
            label = _label_name(label_cell, names) if is_text_cell(label_cell) else ""
            error = ""
            if not is_text_cell(text_cell):
                error = f"text is not a string (column {text_column!r} holds a {type(text_cell).__name__})"
            elif not has_visible_text(text):
                error = f"empty text (column {text_column!r})"
            elif not is_text_cell(label_cell):
                error = f"label is not one value (column {label_column!r} holds a {type(label_cell).__name__})"
            elif not has_visible_text(label):
                error = f"empty label (column {label_column!r})"
            out["text"].append(text)
            out["label"].append(label)
            out["row"].append(i)
            out["error"].append(error)
        return out

    checked = raw.map(check, batched=True, with_indices=True, remove_columns=columns, features=TEXT_FEATURES,
                      desc=f"checking {name} [{split}]")
    errors = checked["error"]
    report = DataReport(dataset=name, split=split, total=len(errors),
                        bad=[BadRow(row=i, source=f"{name} [{split}]", reason=e) for i, e in enumerate(errors) if e])
    logger.info(report.summary())
    report.enforce(args.on_bad_rows)
    if report.bad:
        checked = checked.filter(lambda e: not e, input_columns=["error"], desc="dropping bad rows")
    if len(checked) == 0:
        raise BadDataError(f"{report.summary()}: no usable rows left in {name} [{split}]")
    return checked.remove_columns("error"), report


def label_maps(labels: Sequence[str]) -> tuple[dict[int, str], dict[str, int]]:
    """``id2label``/``label2id`` over the sorted distinct labels: the same data gives the same ids."""
    names = sorted(set(labels))
    if len(names) < 2:
        raise BadDataError(f"need at least two distinct intents to train a classifier, found {names}")
    return dict(enumerate(names)), {name: i for i, name in enumerate(names)}


def check_known_labels(dataset: datasets.Dataset, label2id: dict[str, int], *, policy: UnseenPolicy, oos_label: str,
                       source: str) -> datasets.Dataset:
    """Make sure every evaluation intent was seen in training.

    ``policy='error'`` raises, naming each unseen intent with its first rows; ``'oos'`` relabels those
    rows ``oos_label``, so they count as out-of-scope queries the model should reject.
    """
    if policy not in UNSEEN_POLICIES:
        raise ValueError(f"unseen_eval_intents must be one of {UNSEEN_POLICIES}, got {policy!r}")
    rows_by_label: dict[str, list[int]] = defaultdict(list)
    for label, row in zip(dataset["label"], dataset["row"]):
        if label not in label2id:
            rows_by_label[label].append(row)
    if not rows_by_label:
        return dataset
    if policy == "error":
        described = "; ".join(f"{label!r} (rows {', '.join(map(str, rows[:5]))}{', ...' if len(rows) > 5 else ''})"
                              for label, rows in sorted(rows_by_label.items()))
        raise UnseenLabelError(
            f"{source}: intent(s) not in the training data: {described}. Train on them, or set "
            f"unseen_eval_intents=oos to score them as out-of-scope ('{oos_label}')"
        )
    count = sum(len(rows) for rows in rows_by_label.values())
    logger.warning("%s: %d rows of unseen intents %s scored as %r", source, count, sorted(rows_by_label), oos_label)
    return dataset.map(lambda label: {"label": label if label in label2id else oos_label}, input_columns=["label"],
                       desc="mapping unseen intents to out-of-scope")


def carve_validation(dataset: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset,
                                                                                      datasets.Dataset]:
    """Split off ``fraction`` of every intent (stratified, seeded) as a validation set.

    Each intent keeps at least one training row; intents with a single row give none to validation.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation_split_percentage must be in (0, 100), got {fraction * 100:g}")
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(dataset["label"]):
        by_label[label].append(i)
    held_out: list[int] = []
    for label in sorted(by_label):
        indices = np.array(by_label[label])
        take = min(round(fraction * len(indices)), len(indices) - 1)
        held_out.extend(rng.permutation(indices)[:take].tolist())
    held = set(held_out)
    train_rows = [i for i in range(len(dataset)) if i not in held]
    return dataset.select(train_rows), dataset.select(sorted(held))


def _label_name(value: object, names: list[str] | None) -> str:
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    return as_text(value).strip()
