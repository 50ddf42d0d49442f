"""The bad-input suite: every broken input gives a clean result or an error that names it, and with
``on_bad_rows=skip`` training goes on with the bad rows counted in data_report.json."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

import finetune
from finetune.cli import main
from finetune.config import DataArguments
from finetune.data.report import BadDataError
from finetune.data.sources import DataSourceError
from finetune.data.speech import load_speech_split
from tests.helpers import tone


def _folder(root: Path) -> Path:
    """One clip of each awkward kind, plus rows that must be rejected."""
    clips = root / "train"
    clips.mkdir(parents=True)
    six = np.stack([tone(0.5, 96000)] * 6, axis=1)
    sf.write(clips / "surround_96k.wav", six, 96000)
    sf.write(clips / "u8.wav", tone(0.5, 8000), 8000, subtype="PCM_U8")
    sf.write(clips / "s24.flac", tone(0.5, 44100), 44100, subtype="PCM_24")
    sf.write(clips / "float.wav", tone(0.5, 22050), 22050, subtype="FLOAT")
    sf.write(clips / "clip.mp3", tone(0.5, 16000), 16000, format="MP3")
    sf.write(clips / "clip.ogg", tone(0.5, 16000), 16000, format="OGG", subtype="VORBIS")
    sf.write(clips / "silence.wav", np.zeros(8000, dtype=np.float32), 16000)
    nan = tone(0.5)
    nan[100] = np.nan
    sf.write(clips / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(clips / "long.wav", tone(40.0, 8000), 8000)
    (clips / "empty.wav").write_bytes(b"")
    good = clips / "truncated.wav"
    sf.write(good, tone(0.5), 16000)
    good.write_bytes(good.read_bytes()[:30])
    rows = [
        ("surround_96k.wav", "six channels"), ("u8.wav", "eight bit"), ("s24.flac", "twenty four"),
        ("float.wav", "float"), ("clip.mp3", "mp three"), ("clip.ogg", "vorbis"), ("silence.wav", "quiet"),
        ("nan.wav", "not a number"), ("long.wav", "very long"), ("empty.wav", "zero bytes"),
        ("truncated.wav", "cut short"), ("missing.wav", "no file"), ("u8.wav", ""),
    ]
    lines = ["file_name,transcript"] + [f"{name},{text}" for name, text in rows]
    (clips / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


EXPECTED_BAD = {
    "nan.wav": "NaN/Inf",
    "long.wav": "too long",
    "empty.wav": "empty",
    "truncated.wav": "not a readable audio file",
    "missing.wav": "file not found",
}


def test_odd_formats_are_converted_and_bad_rows_named(tmp_path: Path) -> None:
    root = _folder(tmp_path / "set")
    with pytest.raises(BadDataError) as error:
        load_speech_split(DataArguments(dataset_name=str(root)), "train", sampling_rate=16000)
    message = str(error.value)
    for name, reason in EXPECTED_BAD.items():
        assert name in message and reason in message, (name, reason)
    assert "empty transcript" in message

    dataset, report = load_speech_split(DataArguments(dataset_name=str(root), on_bad_rows="skip"), "train",
                                        sampling_rate=16000)
    assert report.total == 13 and len(report.bad) == 6
    kept = {Path(row["source_file"]).name: row for row in dataset}
    assert set(kept) == {"surround_96k.wav", "u8.wav", "s24.flac", "float.wav", "clip.mp3", "clip.ogg",
                         "silence.wav"}
    for row in kept.values():  # every format at every rate became 16 kHz mono float32
        assert row["audio"].dtype == np.float32 and row["audio"].ndim == 1
        assert abs(len(row["audio"]) - 8000) <= 1200  # mp3/ogg add codec padding
    assert not kept["silence.wav"]["audio"].any()


def test_metadata_problems_name_the_file(tmp_path: Path) -> None:
    clips = tmp_path / "latin" / "train"
    clips.mkdir(parents=True)
    sf.write(clips / "a.wav", tone(0.3), 16000)
    (clips / "metadata.csv").write_bytes("file_name,transcript\na.wav,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataSourceError, match=r"metadata.csv"):
        load_speech_split(DataArguments(dataset_name=str(tmp_path / "latin")), "train", sampling_rate=16000)

    header_only = tmp_path / "empty" / "train"
    header_only.mkdir(parents=True)
    (header_only / "metadata.csv").write_text("file_name,transcript\n")
    with pytest.raises(DataSourceError, match="metadata.csv: the dataset is empty"):
        load_speech_split(DataArguments(dataset_name=str(tmp_path / "empty")), "train", sampling_rate=16000)

    (clips / "metadata.csv").write_text("file_name,transcript\na.wav,cafe\n", encoding="utf-8")
    with pytest.raises(DataSourceError, match="missing column\\(s\\) words"):
        load_speech_split(DataArguments(dataset_name=str(tmp_path / "latin"), text_column_name="words"), "train",
                          sampling_rate=16000)


@pytest.mark.slow
def test_training_goes_on_past_skipped_rows(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    root = _folder(tmp_path / "set")
    values = {"task": "asr_seq2seq", "model_name_or_path": str(tiny_whisper_dir), "dataset_name": str(root),
              "eval_split_name": None, "on_bad_rows": "skip", "encoder_context_seconds": 2,
              "max_duration_in_seconds": 2, "output_dir": str(tmp_path / "run"), "max_steps": 2,
              "per_device_train_batch_size": 4, "save_strategy": "no", "use_cpu": True}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(values))
    finetune.train(config)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())["splits"][0]
    assert report["total"] == 13 and report["kept"] == 7 and report["bad_count"] == 6
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_full_disk_is_a_clear_message(tmp_path: Path, monkeypatch, capsys) -> None:
    from finetune.tasks.asr_seq2seq import WhisperFineTuning

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "model.safetensors"))

    monkeypatch.setattr(WhisperFineTuning, "train", full_disk)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"task": "asr_seq2seq", "model_name_or_path": "m", "dataset_name": "d",
                                      "output_dir": str(tmp_path / "run")}))
    assert main(["train", str(config)]) == 3
    err = capsys.readouterr().err
    assert "disk is full" in err and "model.safetensors" in err and "resume=true" in err
