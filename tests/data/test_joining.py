"""Joined training recordings: several real clips in a row, their transcripts in the same order."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.config import DataArguments
from finetune.data.joining import ClipJoiningArguments, add_joined_clips
from finetune.data.speech import load_speech_split


@pytest.fixture(scope="module")
def digits():
    args = DataArguments(dataset_name="sample:fsdd", text_column_name="transcript")
    dataset, _ = load_speech_split(args, "train", sampling_rate=16000, max_samples=40)
    return dataset


def test_joined_rows_hold_their_clips_in_order_with_pauses_between(digits) -> None:
    joined = add_joined_clips(digits, ClipJoiningArguments(join_clips=4, join_clips_share=0.5), sampling_rate=16000,
                              max_seconds=5.0, seed=3)
    assert len(joined) == len(digits) + 20
    by_source = {s: i for i, s in enumerate(digits["source_file"])}
    for row in joined.select(range(len(digits), len(joined))):
        sources = row["source_file"].split("+")
        assert 2 <= len(sources) <= 4 and row["duration"] <= 5.0
        parts = [digits[by_source[s]] for s in sources]
        assert row["text"] == " ".join(p["text"] for p in parts)
        audio = np.asarray(row["audio"])
        assert len(audio) == pytest.approx(row["duration"] * 16000, abs=1)
        position = 0
        for index, part in enumerate(parts):  # each clip's own samples, after a silent pause of 0.1-0.5 s
            clip = np.asarray(part["audio"])
            if index:
                pause = next((p for p in range(int(0.1 * 16000), int(0.5 * 16000) + 1)
                              if np.array_equal(audio[position + p:position + p + len(clip)], clip)), None)
                assert pause is not None and not audio[position:position + pause].any()
                position += pause
            assert np.array_equal(audio[position:position + len(clip)], clip)
            position += len(clip)
        assert position == len(audio)


def test_joining_is_seeded_bounded_and_off_by_default(digits) -> None:
    args = ClipJoiningArguments(join_clips=10, join_clips_share=1.0)
    a = add_joined_clips(digits, args, sampling_rate=16000, max_seconds=3.0, seed=1)
    b = add_joined_clips(digits, args, sampling_rate=16000, max_seconds=3.0, seed=1)
    assert a["source_file"] == b["source_file"] and max(a["duration"]) <= 3.0
    assert add_joined_clips(digits, ClipJoiningArguments(), sampling_rate=16000, max_seconds=30, seed=1) is digits
    with pytest.raises(ValueError, match="join_clips must be at least 1"):
        ClipJoiningArguments(join_clips=0)
