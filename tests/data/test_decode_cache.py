"""The decoded-audio cache is keyed on the audio files too, not on the metadata file alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.config import DataArguments
from finetune.data.report import BadDataError
from finetune.data.speech import load_speech_split
from tests.helpers import tone, write_audiofolder


def _load(root: Path, **kwargs):
    return load_speech_split(DataArguments(dataset_name=str(root), **kwargs), "train", sampling_rate=16000)


def _rewrite(path: Path, samples: np.ndarray) -> None:
    """Write ``path`` again in place; a file system whose clock did not tick between the writes gets the
    modification time a later write would have had."""
    before = path.stat().st_mtime_ns
    sf.write(path, samples, 16000)
    if path.stat().st_mtime_ns == before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def test_a_clip_re_recorded_under_the_same_name_is_read_again(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.5, freq=440.0), "one"),
                                                        ("b.wav", tone(0.5), "two")])
    first, _ = _load(root)
    new_take = tone(0.5, freq=880.0)  # same length, so the same file size: only the mtime tells
    _rewrite(root / "train" / "a.wav", new_take)
    assert (root / "train" / "a.wav").stat().st_size == (root / "train" / "b.wav").stat().st_size
    second, report = _load(root)
    assert not report.bad
    assert not np.allclose(second[0]["audio"], first[0]["audio"])
    np.testing.assert_allclose(second[0]["audio"], new_take, atol=1e-4)  # 16-bit PCM round trip
    np.testing.assert_array_equal(second[1]["audio"], first[1]["audio"])


def test_a_broken_clip_fixed_in_place_passes_on_the_rerun(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.5), "one"), ("b.wav", tone(0.5), "two")])
    (root / "train" / "b.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    with pytest.raises(BadDataError, match="b.wav: not a readable audio file"):
        _load(root)
    sf.write(root / "train" / "b.wav", tone(0.7), 16000)
    dataset, report = _load(root)
    assert not report.bad and len(dataset) == 2 and len(dataset[1]["audio"]) == int(0.7 * 16000)


def test_a_clip_deleted_after_caching_is_reported_not_served_from_the_cache(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.5), "one"), ("b.wav", tone(0.5), "two")])
    _load(root)
    (root / "train" / "b.wav").unlink()
    with pytest.raises(BadDataError, match="b.wav: file not found"):
        _load(root)
    dataset, report = _load(root, on_bad_rows="skip")
    assert len(dataset) == 1 and [Path(b.source).name for b in report.bad] == ["b.wav"]


def test_a_new_decoding_version_does_not_reuse_old_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``datasets`` hashes the mapped function by name, so a change to the checks must change the key."""
    import finetune.data.speech as speech

    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.5), "one")])
    _load(root)
    calls = []
    real = speech.load_audio
    monkeypatch.setattr(speech, "load_audio", lambda *args: calls.append(args) or real(*args))
    _load(root)
    assert not calls  # the cache served it
    monkeypatch.setattr(speech, "DECODE_VERSION", speech.DECODE_VERSION + 1)
    _load(root)
    assert len(calls) == 1
