"""Loading, decoding and validating audio splits from every kind of source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.config import DataArguments
from finetune.data.report import BadDataError, write_reports
from finetune.data.sources import DataSourceError, load_source
from finetune.data.speech import load_speech_split
from tests.helpers import tone, write_audiofolder


def _args(name: str, **kwargs) -> DataArguments:
    return DataArguments(dataset_name=str(name), **kwargs)


def test_shipped_sample_loads_at_16k() -> None:
    dataset, report = load_speech_split(_args("sample:fsdd", max_duration_in_seconds=2), "test", sampling_rate=16000)
    assert report.total == 60 and not report.bad
    row = dataset[0]
    assert row["text"] == "zero" and row["audio"].dtype.name == "float32"
    assert abs(len(row["audio"]) / 16000 - row["duration"]) < 1e-3
    assert Path(row["source_file"]).is_absolute()


def test_real_shared_sets_resample_and_downmix(shared_data: Path) -> None:
    dataset, report = load_speech_split(_args(shared_data / "jfk", max_duration_in_seconds=30), "test",
                                        sampling_rate=16000)
    assert len(dataset) == 1 and dataset[0]["audio"].shape == (176000,)  # 44.1 kHz stereo 24-bit -> 16 kHz mono
    assert "ask not what your country" in dataset[0]["text"]


def test_bad_rows_fail_with_names_or_are_skipped_and_reported(tmp_path: Path) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [
        ("good.wav", tone(0.5), "hello"),
        ("missing.wav", None, "gone"),
        ("empty_text.wav", tone(0.5), "   "),
        ("long.wav", tone(3.0), "too long"),
    ])
    (root / "train" / "corrupt.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    with (root / "train" / "metadata.csv").open("a") as handle:
        handle.write("corrupt.wav,broken\n")
    with pytest.raises(BadDataError) as error:
        load_speech_split(_args(root, max_duration_in_seconds=2), "train", sampling_rate=16000)
    message = str(error.value)
    for expected in ("missing.wav: file not found", "empty_text.wav: empty transcript", "long.wav: too long",
                     "corrupt.wav", "on_bad_rows=skip"):
        assert expected in message
    dataset, report = load_speech_split(_args(root, max_duration_in_seconds=2, on_bad_rows="skip"), "train",
                                        sampling_rate=16000)
    assert len(dataset) == 1 and dataset[0]["text"] == "hello"
    assert report.total == 5 and len(report.bad) == 4
    written = json.loads(write_reports([report], tmp_path / "out").read_text())
    assert written["splits"][0]["bad_count"] == 4
    assert {Path(r["source"]).name for r in written["splits"][0]["bad_rows"]} == {
        "missing.wav", "empty_text.wav", "long.wav", "corrupt.wav"}


def test_manifests_resolve_paths_relative_to_the_file(tmp_path: Path) -> None:
    write_audiofolder(tmp_path, "clips", [("a.wav", tone(0.4), "alpha"), ("b.wav", tone(0.6), "beta")])
    (tmp_path / "clips" / "metadata.csv").unlink()
    csv_manifest = tmp_path / "train.csv"
    csv_manifest.write_text("path,text\nclips/a.wav,alpha\nclips/b.wav,beta\n")
    jsonl_manifest = tmp_path / "train.jsonl"
    jsonl_manifest.write_text('{"audio": "clips/a.wav", "sentence": "alpha"}\n')
    dataset, _ = load_speech_split(_args(csv_manifest), "train", sampling_rate=16000)
    assert [row["text"] for row in dataset] == ["alpha", "beta"]
    dataset, _ = load_speech_split(_args(jsonl_manifest), "train", sampling_rate=8000)
    assert len(dataset[0]["audio"]) == int(0.4 * 8000)


def test_decoded_audio_is_cached_between_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_audiofolder(tmp_path / "set", "train", [("a.wav", tone(0.5), "one"), ("b.wav", tone(0.5), "two")])
    first, _ = load_speech_split(_args(root), "train", sampling_rate=16000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a second run must not decode again")

    monkeypatch.setattr("finetune.data.speech.load_audio", no_decoding)  # (the files are unchanged)
    second, report = load_speech_split(_args(root), "train", sampling_rate=16000)
    assert not report.bad and (second[0]["audio"] == first[0]["audio"]).all()


def test_source_errors_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no split 'dev'"):
        load_source(str(write_audiofolder(tmp_path / "s", "train", [("a.wav", tone(0.1), "x")])), "dev")
    with pytest.raises(DataSourceError, match="unknown sample"):
        load_source("sample:nope", "train")
    with pytest.raises(DataSourceError, match="not found"):
        load_source(str(tmp_path / "missing.csv"), "train")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataSourceError, match="empty"):
        load_source(str(empty), "train")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("file_name,speaker\na.wav,x\n")
    with pytest.raises(DataSourceError, match="no transcript column found .*columns are: file_name, speaker"):
        load_speech_split(_args(nocol), "train", sampling_rate=16000)
