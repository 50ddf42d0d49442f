"""Serving short-window and dynamic-context Whispers: every sample heard, each batch at its own length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.inference.transcribe import TranscribeOptions, Transcriber
from finetune.models import dynamic_context
from tests.helpers import build_tiny_whisper, script_module, whisper_stopping_early

DIGITS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_digit_recordings.py"
SAMPLE = Path(__file__).resolve().parents[2] / "finetune" / "samples" / "fsdd" / "test"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    with script_module(DIGITS_SCRIPT) as digits:
        return digits.build_digit_recordings(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def short_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Whisper whose window was cut to 2 s, as encoder_context_seconds: 2 saves one."""
    root = tmp_path_factory.mktemp("short")
    return whisper_stopping_early(build_tiny_whisper(root / "model", context_seconds=2), root / "stopping", 6)


@pytest.fixture(scope="module")
def dynamic_whisper(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Whisper saved as dynamic-context training saves one: full window, marked."""
    target = whisper_stopping_early(tiny_whisper_dir, tmp_path_factory.mktemp("dynamic"), 6)
    config = json.loads((target / "config.json").read_text())
    config[dynamic_context.CONFIG_KEY] = {"step_seconds": 1.0}
    (target / "config.json").write_text(json.dumps(config))
    return target


def _heard(transcriber: Transcriber, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(samples given, feature frames computed) of every input the pipeline decodes."""
    seen: list[tuple[int, int]] = []
    preprocess = transcriber.pipe.preprocess
    original = preprocess.original

    def spy(inputs, **kwargs):
        samples = len(inputs["raw"])  # read before the pipeline pops it
        for item in original(inputs, **kwargs):
            seen.append((samples, int(item["input_features"].shape[-1])))
            yield item

    def padded(inputs, audio):
        item = type(preprocess)._padded(preprocess, inputs, audio)
        seen.append((len(audio), int(item["input_features"].shape[-1])))
        return item

    monkeypatch.setattr(preprocess, "original", spy)
    monkeypatch.setattr(preprocess, "_padded", padded)
    return seen


def test_long_form_follows_how_the_model_was_trained(tiny_whisper_dir: Path, short_whisper: Path,
                                                     dynamic_whisper: Path) -> None:
    options = TranscribeOptions(progress=False)
    assert Transcriber(tiny_whisper_dir, options).long_form == "sequential"  # stock: walked by timestamps
    assert Transcriber(short_whisper, options).long_form == "pauses"
    dynamic = Transcriber(dynamic_whisper, options)
    assert dynamic.long_form == "pauses" and dynamic.dynamic_step == 1.0
    assert Transcriber(dynamic_whisper, TranscribeOptions(context="full", progress=False)).dynamic_step is None
    with pytest.raises(ValueError, match="cut to 2 s for good"):
        Transcriber(short_whisper, TranscribeOptions(context="dynamic"))


def test_a_short_window_model_hears_a_long_recording_in_pieces_cut_at_pauses(
        short_whisper: Path, recordings: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    transcriber = Transcriber(short_whisper, TranscribeOptions(timestamps="segment", num_beams=1, progress=False))
    heard = _heard(transcriber, monkeypatch)
    [result] = list(transcriber([recordings["ten_digits"]]))
    length = sf.info(str(recordings["ten_digits"])).frames
    assert result.error is None and len(heard) >= 3
    assert max(samples for samples, _ in heard) <= 2 * 16000 and sum(s for s, _ in heard) == length
    assert all(frames == 200 for _, frames in heard)  # the 2 s window, as the model was trained
    segments = result.transcript.segments
    assert all(b.start == pytest.approx(a.end) for a, b in zip(segments, segments[1:]))  # pieces tile the file


def test_speech_without_a_pause_is_reported_and_the_rest_go_on(short_whisper: Path, recordings: dict[str, Path],
                                                               tmp_path: Path) -> None:
    with script_module(DIGITS_SCRIPT) as digits:
        continuous = digits.ten_digits(speaker="nicolas", pause_s=0.0).audio
    talk = tmp_path / "talk.wav"
    sf.write(talk, continuous, 16000)
    short = SAMPLE / "7_george_0.flac"
    results = list(Transcriber(short_whisper, TranscribeOptions(num_beams=1, progress=False))([talk, short]))
    assert [r.source.name for r in results] == ["talk.wav", "7_george_0.flac"]
    assert "talk.wav" in results[0].error and "no pause to cut at" in results[0].error and "2 s" in results[0].error
    assert results[0].transcript is None and results[1].transcript is not None


def test_a_dynamic_model_runs_each_batch_at_its_own_length(dynamic_whisper: Path, recordings: dict[str, Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    clips = sorted(SAMPLE.glob("*.flac"))[:3]
    transcriber = Transcriber(dynamic_whisper, TranscribeOptions(batch_size=8, num_beams=1, progress=False))
    heard = _heard(transcriber, monkeypatch)
    results = list(transcriber([*clips, recordings["ten_digits"]]))
    assert all(r.transcript is not None for r in results)
    longest = max(sf.info(str(p)).frames for p in [*clips, recordings["ten_digits"]])
    # one batch, padded to its longest (the 5.4 s recording) rounded up to 1 s: features and encoder alike
    assert {f for _, f in heard} == {int(np.ceil(longest / 16000)) * 100} == {600}
    assert dynamic_context.last_encoder_frames(transcriber.pipe.model) == 600


def test_full_context_switch_runs_the_whole_window(dynamic_whisper: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transcriber = Transcriber(dynamic_whisper, TranscribeOptions(context="full", num_beams=1, progress=False))
    heard = _heard(transcriber, monkeypatch)
    list(transcriber(sorted(SAMPLE.glob("*.flac"))[:2]))
    assert heard and all(frames == 3000 for _, frames in heard)
    assert dynamic_context.enabled_step_seconds(transcriber.pipe.model) is None
