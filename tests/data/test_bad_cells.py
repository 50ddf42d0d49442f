"""Cells and files that used to pass validation with a wrong value: each is now a bad row, or read right."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
import soundfile as sf

from finetune.config import DataArguments
from finetune.data.report import BadDataError, write_reports
from finetune.data.sources import as_text, has_visible_text
from finetune.data.speech import load_speech_split
from finetune.data.text_data import load_text_split
from tests.helpers import tone


def _jsonl(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _speech(root: Path, **kwargs):
    args = DataArguments(dataset_name=str(root), on_bad_rows="skip", eval_split_name=None, **kwargs)
    return load_speech_split(args, "train", sampling_rate=16000, needs_label="label_column_name" in kwargs)


def test_missing_list_and_invisible_transcripts_are_bad_rows(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _jsonl(root / "train.jsonl", [
        '{"audio": "a.wav", "text": "kept"}',
        '{"audio": "a.wav", "text": null}',
        '{"audio": "a.wav", "text": NaN}',
        '{"audio": "a.wav", "text": ["two", "words"]}',
        '{"audio": "a.wav", "text": "\\u200b"}',
        '{"audio": "a.wav", "text": " \\ufeff\\t"}',
        '{"audio": "a.wav"}',
    ])
    sf.write(root / "a.wav", tone(0.3), 16000)
    with pytest.raises(BadDataError, match=r"row 3: .*a.wav: transcript is not a string \(column 'text' holds a list"):
        load_speech_split(DataArguments(dataset_name=str(root), eval_split_name=None), "train", sampling_rate=16000)
    dataset, report = _speech(root)
    assert list(dataset["text"]) == ["kept"]
    assert [b.row for b in report.bad] == [1, 2, 3, 4, 5, 6]
    assert report.reasons() == {"empty transcript in column 'text'": 5, "transcript is not a string": 1}


def test_empty_transcripts_are_no_speech_clips_when_allowed(tmp_path: Path) -> None:
    """``allow_empty_transcripts``: an empty or invisible transcript is kept as "" (a no-speech example);
    a cell that is not text at all (a list) is still a bad row."""
    root = tmp_path / "set"
    _jsonl(root / "train.jsonl", ['{"audio": "a.wav", "text": "kept"}', '{"audio": "a.wav", "text": ""}',
                                  '{"audio": "a.wav", "text": " \\ufeff\\t"}',
                                  '{"audio": "a.wav", "text": ["two", "words"]}'])
    sf.write(root / "a.wav", tone(0.3), 16000)
    dataset, report = _speech(root, allow_empty_transcripts=True)
    assert list(dataset["text"]) == ["kept", "", ""]
    assert report.reasons() == {"transcript is not a string": 1}


def test_json_numbers_as_labels_keep_one_spelling(tmp_path: Path) -> None:
    """pyarrow reads a JSON column of 1 and 2.5 as floats; the label 1 must not become '1.0'."""
    numbers, mixed = tmp_path / "numbers", tmp_path / "mixed"
    _jsonl(numbers / "train.jsonl", ['{"audio": "a.wav", "text": "x", "label": 1}',
                                     '{"audio": "a.wav", "text": "x", "label": 2.5}'])
    _jsonl(mixed / "train.jsonl", ['{"audio": "a.wav", "text": "x", "label": "one"}',
                                   '{"audio": "a.wav", "text": "x", "label": {"id": 1}}'])
    for root in (numbers, mixed):
        sf.write(root / "a.wav", tone(0.3), 16000)
    dataset, report = _speech(numbers, label_column_name="label")
    assert list(dataset["label"]) == ["1", "2.5"] and not report.bad
    dataset, report = _speech(mixed, label_column_name="label")
    assert list(dataset["label"]) == ["one"]
    assert [b.reason for b in report.bad] == ["label is not one value (column 'label' holds a dict)"]
    assert as_text(3.0) == "3" and as_text(float("nan")) == "" and as_text(None) == ""


def test_text_splits_treat_list_and_invisible_cells_as_bad_rows(tmp_path: Path) -> None:
    _jsonl(tmp_path / "train.jsonl", ['{"text": "play jazz", "intent": "PlayMusic"}',
                                      '{"text": ["play", "jazz"], "intent": "PlayMusic"}',
                                      '{"text": "\\u200b", "intent": "PlayMusic"}',
                                      '{"text": "rain", "intent": 1.0}'])
    dataset, report = load_text_split(DataArguments(dataset_name=str(tmp_path), on_bad_rows="skip"), "train")
    assert list(dataset["text"]) == ["play jazz", "rain"] and list(dataset["label"]) == ["PlayMusic", "1"]
    assert report.reasons() == {"text is not a string": 1, "empty text": 1}
    assert report.bad[0].reason == "text is not a string (column 'text' holds a list)"


def test_awkward_files_are_named_bad_rows(tmp_path: Path) -> None:
    clips = tmp_path / "set" / "train"
    clips.mkdir(parents=True)
    sf.write(clips / "good.wav", tone(0.3), 16000)
    (clips / "a_folder.wav").mkdir()
    (clips / "zero.wav").write_bytes(b"")
    (clips / "metadata.csv").write_text("file_name,transcript\ngood.wav,ok\na_folder.wav,dir\nzero.wav,empty\n"
                                        "good.wav,again\n", encoding="utf-8")
    dataset, report = _speech(tmp_path / "set")
    assert {Path(b.source).name: b.reason for b in report.bad} == {"a_folder.wav": "not a regular file",
                                                                    "zero.wav": "file is empty (0 bytes)"}
    assert list(dataset["text"]) == ["ok", "again"]
    # a clip named twice is kept, and counted in the report
    assert report.duplicates == 1
    written = json.loads(write_reports([report], tmp_path / "out").read_text())
    assert written["splits"][0]["duplicate_audio_rows"] == 1


def test_a_unicode_file_name_is_found_in_either_normalization(tmp_path: Path) -> None:
    """A file named on macOS (NFD) and a metadata file typed elsewhere (NFC) name the same clip."""
    clips = tmp_path / "set" / "train"
    clips.mkdir(parents=True)
    nfd = unicodedata.normalize("NFD", "café über.wav")
    sf.write(clips / nfd, tone(0.3), 16000)
    sf.write(clips / "日本語.wav", tone(0.3), 16000)
    nfc = unicodedata.normalize("NFC", "café über.wav")
    assert nfc != nfd
    (clips / "metadata.csv").write_text(f"file_name,transcript\n{nfc},coffee\n日本語.wav,japanese\n",
                                        encoding="utf-8")
    dataset, report = _speech(tmp_path / "set")
    assert not report.bad and list(dataset["text"]) == ["coffee", "japanese"]


def test_a_path_with_a_nul_byte_is_a_missing_file_not_a_crash(tmp_path: Path) -> None:
    clips = tmp_path / "set" / "train"
    clips.mkdir(parents=True)
    sf.write(clips / "a.wav", tone(0.3), 16000)
    (clips / "metadata.csv").write_text("file_name,transcript\na.wav,ok\nb\x00.wav,nul\n", encoding="utf-8")
    dataset, report = _speech(tmp_path / "set")
    assert list(dataset["text"]) == ["ok"] and [b.reason for b in report.bad] == ["file not found"]


def test_visible_text() -> None:
    assert has_visible_text("a") and has_visible_text("日本") and has_visible_text(".")
    assert not has_visible_text("") and not has_visible_text(" \t\u200b\ufeff\u00a0\u2028")
