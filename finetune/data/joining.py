"""Training recordings made by joining clips, so a recognizer learns to go on after the first word.

A model fine-tuned only on one-word clips (spoken digits, commands) learns that every recording holds one
word: given a recording of ten digits it says the first and stops. Joining a few random training clips
with short pauses between them, their transcripts joined by spaces, adds recordings that hold several,
at no cost in labelling. The joined rows are added to the decoded training split (seeded, so a run and
its resume see the same rows) and bounded by the model's window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import datasets
import numpy as np

from finetune.config import check_choices

logger = logging.getLogger(__name__)

PAUSE_SECONDS = (0.1, 0.5)  # silence between joined clips: a short pause between words


@dataclass
class ClipJoiningArguments:
    """Recordings of several training clips in a row, added to the training split."""

    join_clips: int = field(
        default=1,
        metadata={"help": "Training only: also train on recordings of 2..N random training clips joined with short "
                          "pauses (transcripts joined by spaces), so a model trained on one-word clips still "
                          "transcribes several words in a row. 1: off."},
    )
    join_clips_share: float = field(
        default=0.5, metadata={"help": "With join_clips > 1: joined recordings added per training clip."}
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if self.join_clips < 1:
            raise ValueError(f"join_clips must be at least 1 (1: off), got {self.join_clips}")
        if not 0 < self.join_clips_share <= 10:
            raise ValueError(f"join_clips_share must be in (0, 10], got {self.join_clips_share}")


def add_joined_clips(dataset: datasets.Dataset, args: ClipJoiningArguments, *, sampling_rate: int,
                     max_seconds: float, seed: int) -> datasets.Dataset:
    """``dataset`` (decoded: audio, duration, text, ...) plus ``join_clips_share * len`` joined rows.

    Each joined row takes 2..``join_clips`` distinct random clips, as many as fit ``max_seconds`` with
    their pauses; a draw that fits fewer than two is skipped (and counted in the log).
    """
    if args.join_clips < 2 or len(dataset) < 2:
        return dataset
    rng = np.random.default_rng(seed)
    durations = np.asarray(dataset["duration"], dtype=np.float64)
    wanted = max(1, round(len(dataset) * args.join_clips_share))
    rows: dict[str, list] = {name: [] for name in dataset.features}
    by_language = _rows_by_language(dataset)
    skipped = 0
    for _ in range(wanted):
        count = int(rng.integers(2, args.join_clips + 1))
        chosen, total = [], 0.0
        for index in _draw(rng, len(dataset), count, by_language):
            pause = float(rng.uniform(*PAUSE_SECONDS)) if chosen else 0.0
            if total + pause + durations[index] > max_seconds:
                break
            chosen.append((index, pause))
            total += pause + durations[index]
        if len(chosen) < 2:
            skipped += 1
            continue
        picked = dataset.select([index for index, _ in chosen])
        parts = []
        for (_, pause), audio in zip(chosen, picked["audio"]):
            if pause:
                parts.append(np.zeros(int(pause * sampling_rate), dtype=np.float32))
            parts.append(np.asarray(audio, dtype=np.float32))
        audio = np.concatenate(parts)
        for name in rows:
            rows[name].append({"audio": audio, "duration": len(audio) / sampling_rate,
                               "text": " ".join(t.strip() for t in picked["text"] if t.strip()),
                               "language": picked["language"][0] if by_language else "",
                               "source_file": "+".join(picked["source_file"])}.get(name, ""))
    logger.info("join_clips: %d joined recordings of 2-%d training clips added to the %d clips%s", len(rows["audio"]),
                args.join_clips, len(dataset), f" ({skipped} draws did not fit {max_seconds:g} s)" if skipped else "")
    if not rows["audio"]:
        return dataset
    joined = datasets.Dataset.from_dict(rows, features=dataset.features)
    return datasets.concatenate_datasets([dataset.with_format(None), joined]).with_format(
        "numpy", columns=["audio"], output_all_columns=True)


def _rows_by_language(dataset: datasets.Dataset) -> dict[str, np.ndarray] | None:
    """Row indices per language, when the split holds more than one (a joined recording speaks one)."""
    if "language" not in dataset.column_names:
        return None
    languages = np.asarray(dataset["language"], dtype=object)
    if len(set(languages.tolist())) < 2:
        return None
    return {language: np.flatnonzero(languages == language) for language in set(languages.tolist())}


def _draw(rng: np.random.Generator, size: int, count: int, by_language: dict[str, np.ndarray] | None) -> list[int]:
    """``count`` distinct random rows; with several languages, all of the first drawn row's language."""
    if by_language is None:
        return rng.choice(size, size=min(count, size), replace=False).tolist()
    first = int(rng.integers(size))
    pool = next(rows for rows in by_language.values() if first in rows)
    others = rng.permutation(pool[pool != first])[:count - 1].tolist()
    return [first, *others]
