"""Duration-bounded batches: memory cap respected, every row once, replayable."""

import numpy as np
import pytest

from finetune.data.batching import DurationBatchSampler


def test_batches_respect_the_padded_seconds_cap_and_cover_every_row_once() -> None:
    durations = np.random.default_rng(0).uniform(0.2, 2.0, 500)
    sampler = DurationBatchSampler(durations, 10.0, max_batch_size=16, seed=1)
    batches = list(sampler)
    assert all(len(b) * durations[b].max() <= 10.0 and len(b) <= 16 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert len(sampler) == len(batches)


def test_same_seed_and_epoch_replay_the_same_batches() -> None:
    durations = np.linspace(0.1, 1.0, 100)
    first = DurationBatchSampler(durations, 4.0, seed=5)
    second = DurationBatchSampler(durations, 4.0, seed=5)
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)


def test_a_clip_longer_than_the_cap_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"max_batch_seconds=1 is shorter than row 2 \(3.00 s\)"):
        DurationBatchSampler([0.5, 0.5, 3.0], 1.0)
