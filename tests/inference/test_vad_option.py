"""``vad=True``: what Silero VAD calls non-speech is never decoded, so silence gives no invented text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("faster_whisper.vad")

from finetune.inference.formats import to_srt
from finetune.inference.transcribe import TranscribeOptions, Transcriber
from tests.helpers import build_tiny_whisper
from tests.inference.test_transcribe import tiny_ctc  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("vad") / "whisper")


def test_silent_file_gives_an_empty_transcript_without_decoding(tiny_whisper: Path, tmp_path: Path) -> None:
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4 * 16000, np.float32), 16000)
    transcriber = Transcriber(tiny_whisper, TranscribeOptions(vad=True, timestamps="segment", progress=False))
    assert transcriber.long_form == "pauses"
    calls = []
    original = transcriber.pipe.model.generate
    transcriber.pipe.model.generate = lambda *a, **k: calls.append(1) or original(*a, **k)
    [result] = transcriber([silent])
    assert result.error is None and result.transcript.text == "" and result.transcript.segments == []
    assert calls == []  # nothing was decoded
    assert to_srt(result.transcript) == ""  # an empty subtitle file, not an error


def test_vad_is_refused_where_it_cannot_apply(tiny_whisper: Path, tiny_ctc: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="long_form=sequential cannot be used"):
        Transcriber(tiny_whisper, TranscribeOptions(vad=True, long_form="sequential"))
    with pytest.raises(ValueError, match="vad is for Whisper"):
        Transcriber(tiny_ctc, TranscribeOptions(vad=True))


@pytest.mark.slow
def test_real_tiny_en_says_nothing_for_silence_with_vad_and_keeps_jfk(shared_data: Path, tmp_path: Path) -> None:
    """Without the VAD, tiny.en turns 4 s of silence into text; with it, nothing, and JFK stays right."""
    from finetune.evaluation.metrics import utterance_wer
    from tests.inference.test_transcribe import JFK_TEXT

    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4 * 16000, np.float32), 16000)
    jfk = shared_data / "jfk" / "test" / "jfk.flac"
    transcriber = Transcriber("offline:whisper-tiny.en", TranscribeOptions(vad=True, progress=False))
    empty, speech = transcriber([silent, jfk])
    assert empty.transcript.text == ""
    assert utterance_wer(speech.transcript.text, JFK_TEXT) <= 0.1, speech.transcript.text


def test_short_clips_cut_tight_keep_their_speech() -> None:
    """Spoken digits recorded tight (speech from the first sample) are speech to the VAD: Silero, run cold,
    used to score some under the threshold and the transcript came out empty (3 of these 60 clips)."""
    from finetune.data.audio import load_audio
    from finetune.inference.pauses import Piece, keep_speech

    clips = sorted((Path(__file__).resolve().parents[2] / "finetune" / "samples" / "fsdd" / "test").glob("*.flac"))
    assert len(clips) == 60
    dropped = [clip.name for clip in clips
               if not keep_speech(audio := load_audio(clip, 16000), [Piece(0, len(audio))])]
    assert dropped == []
