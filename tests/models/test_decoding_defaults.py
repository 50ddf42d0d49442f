"""Decoding defaults saved with a Whisper: checked when given, written under transformers' names, and
applied by finetune's transcriber unless a call overrides them."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
from transformers import GenerationConfig

from finetune.inference.transcribe import TranscribeOptions, Transcriber
from finetune.models.decoding_defaults import (
    DecodingArguments,
    save_decoding_defaults,
    saved_decoding,
)
from tests.helpers import tone
from tests.inference.test_transcribe import short_whisper  # noqa: F401  (a fixture)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"no_speech_threshold": 0.6}, "needs log_prob_threshold"),
    ({"log_prob_threshold": 0.5}, "log-probability"),
    ({"temperature_fallback": [0.0, -1.0]}, "temperature must be >= 0"),
    ({"temperature_fallback": []}, "non-empty"),
    ({"compression_ratio_threshold": -2.4}, "compression_ratio_threshold must be positive"),
])
def test_bad_defaults_are_refused_naming_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecodingArguments(**kwargs)


def saved_copy(source: Path, target: Path, args: DecodingArguments) -> Path:
    target.mkdir()
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    generation = GenerationConfig.from_pretrained(target)
    save_decoding_defaults(generation, args)
    generation.save_pretrained(target)
    return target


def test_saved_defaults_reach_generate_and_a_call_overrides_them(short_whisper: Path, tmp_path: Path) -> None:  # noqa: F811
    args = DecodingArguments(temperature_fallback=[0.0, 0.2, 0.4], compression_ratio_threshold=2.4,
                             log_prob_threshold=-1.0, no_speech_threshold=0.6, condition_on_previous_text=False)
    model_dir = saved_copy(short_whisper, tmp_path / "guarded", args)
    saved = saved_decoding(GenerationConfig.from_pretrained(model_dir))
    assert saved == {"temperature": (0.0, 0.2, 0.4), "compression_ratio_threshold": 2.4, "logprob_threshold": -1.0,
                     "no_speech_threshold": 0.6, "condition_on_prev_tokens": False}  # generate's own names
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(1.0), 16000)

    def temperatures(options: TranscribeOptions) -> list:
        transcriber = Transcriber(model_dir, options)
        calls: list = []
        original = transcriber.pipe.model.generate
        transcriber.pipe.model.generate = lambda *a, **k: calls.append(
            (k.get("temperature"), k.get("logprob_threshold"))) or original(*a, **k)
        [result] = transcriber([clip])
        assert result.error is None
        return calls

    assert temperatures(TranscribeOptions(progress=False, num_beams=1)) == [((0.0, 0.2, 0.4), -1.0)]
    asked = TranscribeOptions(progress=False, num_beams=1, temperature=0.0, log_prob_threshold=-2.0)
    assert temperatures(asked) == [(0.0, -2.0)]  # the call's own options win


def test_a_log_prob_threshold_alone_decodes(short_whisper: Path, tmp_path: Path) -> None:  # noqa: F811
    """transformers needs a temperature beside a log-probability threshold; the transcriber gives it 0."""
    clip = tmp_path / "clip.wav"
    sf.write(clip, tone(1.0), 16000)
    options = TranscribeOptions(progress=False, num_beams=1, log_prob_threshold=-1.0, no_speech_threshold=0.6)
    [result] = Transcriber(short_whisper, options)([clip])
    assert result.error is None and isinstance(result.transcript.text, str)
