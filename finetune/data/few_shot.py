"""What few-shot and zero-shot intent models are built from: k examples per intent, and intent descriptions.

``sample_per_intent`` draws exactly k rows of every intent with a seeded generator, so a k-shot run is
reproducible and several seeds give several independent draws. ``intent_descriptions`` gives each
intent the short text a zero-shot model embeds: from a user's file (JSON or YAML ``intent: description``)
or, by default, the intent's name made readable (``BookRestaurant`` -> ``book restaurant``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from finetune.data.report import BadDataError

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def readable_intent_name(name: str) -> str:
    """``BookRestaurant`` -> ``book restaurant``; ``card_arrival`` -> ``card arrival``; ``getATMCash`` ->
    ``get atm cash``. Sentence encoders know words, not identifiers."""
    spaced = _CAMEL_BOUNDARY.sub(" ", name)
    return " ".join(re.split(r"[\s_\-.:/]+", spaced)).strip().lower()


def sample_per_intent(labels: Sequence[str], k: int, seed: int, *, source: str = "training data") -> list[int]:
    """Indices of exactly ``k`` rows of every intent, drawn without replacement with ``seed``.

    Intents are visited in sorted order and each draws from its rows in data order, so the same data,
    k and seed always give the same rows. An intent with fewer than k rows is an error naming it.
    """
    if k < 1:
        raise ValueError(f"num_shots must be at least 1 to sample examples, got {k}")
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_label[label].append(index)
    short = {label: len(rows) for label, rows in by_label.items() if len(rows) < k}
    if short:
        listed = ", ".join(f"{label!r} ({count})" for label, count in sorted(short.items()))
        raise BadDataError(f"{source}: num_shots={k} but these intents have fewer examples: {listed}; "
                           "lower num_shots or add examples")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in sorted(by_label):
        chosen.extend(int(i) for i in rng.choice(by_label[label], size=k, replace=False))
    return chosen


def intent_descriptions(intents: Sequence[str], path: str | Path | None = None) -> dict[str, str]:
    """One description per intent: the file's where it gives one, the readable name otherwise.

    The file maps intent -> description (JSON or YAML). A key that is not one of ``intents`` is an
    error (usually a typo that would silently leave an intent with only its name).
    """
    described = {intent: readable_intent_name(intent) for intent in intents}
    if path is None:
        return described
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"intent_descriptions_file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except yaml.YAMLError as error:
        raise BadDataError(f"{path}: not valid JSON/YAML: {error}") from None
    if not isinstance(loaded, dict) or not loaded:
        raise BadDataError(f"{path}: expected a mapping of intent: description, got {type(loaded).__name__}")
    unknown = sorted(str(key) for key in loaded if str(key) not in described)
    if unknown:
        raise BadDataError(f"{path}: intent(s) not in the data: {', '.join(map(repr, unknown))}; "
                           f"known intents: {', '.join(sorted(described))}")
    for key, text in loaded.items():
        if not isinstance(text, str) or not text.strip():
            raise BadDataError(f"{path}: intent {key!r} needs a non-empty text description, got {text!r}")
        described[str(key)] = " ".join(text.split())
    return described
