"""Batches bounded by audio seconds instead of a fixed count, so one batch of long clips cannot
run the machine out of memory while short clips still fill big batches.

The cost of a batch is what the model sees after padding: ``count x longest clip``. Batches are
formed from clips sorted by length inside shuffled windows (little padding, still random), and the
batch order is shuffled again, with a seed and the epoch, so that a resumed run replays it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class DurationBatchSampler(Sampler[list[int]]):
    """Yield lists of row indices whose padded duration stays within ``max_batch_seconds``.

    Args:
        durations: seconds of each row.
        max_batch_seconds: cap on ``len(batch) * max(durations in batch)``.
        max_batch_size: cap on the count as well (e.g. ``per_device_train_batch_size``); None: no cap.
        window: rows sorted together before cutting batches (bigger: less padding, less randomness).
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        *,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        window: int = 1000,
    ) -> None:
        self.durations = np.asarray(durations, dtype=np.float64)
        too_long = np.flatnonzero(self.durations > max_batch_seconds)
        if len(too_long):
            raise ValueError(
                f"max_batch_seconds={max_batch_seconds:g} is shorter than row {int(too_long[0])} "
                f"({self.durations[too_long[0]]:.2f} s): raise it or lower max_duration_in_seconds"
            )
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.window = window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.durations)) if self.shuffle else np.arange(len(self.durations))
        batches: list[list[int]] = []
        for start in range(0, len(order), self.window):
            chunk = order[start : start + self.window]
            chunk = chunk[np.argsort(-self.durations[chunk], kind="stable")]
            batch: list[int] = []
            longest = 0.0
            for index in chunk.tolist():
                candidate_longest = max(longest, self.durations[index])
                full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
                if batch and (full or (len(batch) + 1) * candidate_longest > self.max_batch_seconds):
                    batches.append(batch)
                    batch, candidate_longest = [], self.durations[index]
                batch.append(index)
                longest = candidate_longest
            if batch:
                batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()

    def __len__(self) -> int:
        return len(self._batches())


def estimated_batches(durations: Sequence[float], max_batch_seconds: float) -> int:
    """A lower bound on the batch count, for logging."""
    return max(1, math.ceil(float(np.sum(durations)) / max_batch_seconds))
