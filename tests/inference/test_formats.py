"""Transcript writers: exact SRT/VTT/JSON/text output, and refusing subtitles without times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.inference.formats import (
    Segment,
    Transcript,
    parse_formats,
    timestamp,
    to_json,
    to_srt,
    to_text,
    to_vtt,
    write_transcript,
)


def _transcript() -> Transcript:
    return Transcript(
        source="talk.flac",
        text="And so, my fellow Americans. Ask not.",
        duration=3725.9,
        segments=[Segment(0.0, 2.5, " And so,  my fellow Americans. "), Segment(2.5, 2.5, ""),
                  Segment(3724.25, 3725.9004, "Ask --> not.")],
        words=[Segment(0.0, 0.4, "And"), Segment(0.4, 0.8, "so,")],
    )


@pytest.mark.parametrize(("seconds", "srt", "vtt"), [
    (0.0, "00:00:00,000", "00:00:00.000"),
    (1.0004, "00:00:01,000", "00:00:01.000"),
    (59.9996, "00:01:00,000", "00:01:00.000"),
    (3725.5, "01:02:05,500", "01:02:05.500"),
    (-0.2, "00:00:00,000", "00:00:00.000"),
])
def test_timestamps_round_to_milliseconds(seconds: float, srt: str, vtt: str) -> None:
    assert timestamp(seconds) == srt
    assert timestamp(seconds, separator=".") == vtt


def test_srt_is_numbered_cues_without_empty_segments() -> None:
    assert to_srt(_transcript()) == (
        "1\n00:00:00,000 --> 00:00:02,500\nAnd so, my fellow Americans.\n\n"
        "2\n01:02:04,250 --> 01:02:05,900\nAsk -> not.\n"
    )


def test_vtt_has_header_and_dot_milliseconds() -> None:
    assert to_vtt(_transcript()) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nAnd so, my fellow Americans.\n\n"
        "01:02:04.250 --> 01:02:05.900\nAsk -> not.\n"
    )


def test_json_and_text() -> None:
    data = json.loads(to_json(_transcript()))
    assert data["text"] == "And so, my fellow Americans. Ask not."
    assert data["segments"][2] == {"start": 3724.25, "end": 3725.9, "text": "Ask --> not."}
    assert data["words"][1] == {"start": 0.4, "end": 0.8, "text": "so,"}
    assert to_text(_transcript()) == "And so, my fellow Americans. Ask not.\n"
    assert "words" not in json.loads(to_json(Transcript("a.wav", "hi", 1.0)))


def test_subtitles_need_timestamps() -> None:
    with pytest.raises(ValueError, match="a.wav: subtitles need timestamps"):
        to_srt(Transcript("a.wav", "hi", 1.0))


def test_parse_formats() -> None:
    assert parse_formats("all") == ["txt", "json", "srt", "vtt"]
    assert parse_formats("SRT, .vtt,srt") == ["srt", "vtt"]
    assert parse_formats(["json"]) == ["json"]
    with pytest.raises(ValueError, match="unknown output format"):
        parse_formats("txt,docx")
    with pytest.raises(ValueError):
        parse_formats("")


def test_write_transcript_writes_each_format(tmp_path: Path) -> None:
    written = write_transcript(_transcript(), tmp_path / "out" / "talk", ["txt", "srt"])
    assert [p.name for p in written] == ["talk.txt", "talk.srt"]
    assert (tmp_path / "out" / "talk.srt").read_text(encoding="utf-8").startswith("1\n00:00:00,000")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["talk.srt", "talk.txt"]  # no temp files left
