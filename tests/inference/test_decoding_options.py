"""Whisper decoding controls (language, task, prompt, hotwords, temperature fallback, thresholds): checked,
passed through to generate, refused where they cannot work; real tiny.en with a prompt on JFK."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.cli import build_parser
from finetune.inference.transcribe import TranscribeOptions, Transcriber
from tests.helpers import tone
from tests.inference.test_slu import asr_dir, intent_dir  # noqa: F401  (fixtures)
from tests.inference.test_transcribe import short_whisper, tiny_ctc  # noqa: F401  (fixtures)

PROMPT = "Quetzalcoatl xylophone"


@pytest.fixture
def audio(tmp_path: Path) -> dict[str, Path]:
    sf.write(tmp_path / "a.wav", tone(1.5), 16000)
    sf.write(tmp_path / "b.wav", tone(2.0, freq=300), 16000)
    sf.write(tmp_path / "long.wav", np.concatenate([tone(10.0, freq=200 + 50 * i) for i in range(4)]), 16000)
    return {"a": tmp_path / "a.wav", "b": tmp_path / "b.wav", "long": tmp_path / "long.wav"}


def spy(transcriber: Transcriber) -> list[dict]:
    """Record every generate call's keyword arguments (and still decode)."""
    calls: list[dict] = []
    original = transcriber.pipe.model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    transcriber.pipe.model.generate = generate
    return calls


def test_defaults_add_nothing_to_generate(short_whisper: Path) -> None:  # noqa: F811
    transcriber = Transcriber(short_whisper, TranscribeOptions(progress=False, num_beams=1))
    assert transcriber.decoding == {}
    assert transcriber._call_kwargs(one_window_s=1.5)["generate_kwargs"].keys() == {"num_beams", "max_length"}


def test_every_option_reaches_generate(short_whisper: Path, audio: dict) -> None:  # noqa: F811
    options = TranscribeOptions(progress=False, num_beams=1, language="English", initial_prompt=PROMPT,
                                hotwords="Aztec", condition_on_previous_text=True, temperature=[0.0, 0.2],
                                compression_ratio_threshold=2.4, log_prob_threshold=-1.0, no_speech_threshold=0.6)
    transcriber = Transcriber(short_whisper, options)
    calls = spy(transcriber)
    [short] = list(transcriber([audio["a"]]))
    [long] = list(transcriber([audio["long"]]))
    assert short.transcript is not None and long.transcript is not None
    expected = transcriber.pipe.tokenizer.get_prompt_ids(f"Aztec {PROMPT}", return_tensors="pt")
    for kwargs in calls:
        assert kwargs["prompt_ids"].tolist() == expected.tolist()
        assert kwargs["temperature"] == (0.0, 0.2)
        assert kwargs["compression_ratio_threshold"] == 2.4
        assert kwargs["logprob_threshold"] == -1.0
        assert kwargs["no_speech_threshold"] == 0.6
        assert "language" not in kwargs and "task" not in kwargs  # English-only model: nothing to set
    assert "condition_on_prev_tokens" not in calls[0]  # one window: transformers would ignore it
    assert calls[-1]["condition_on_prev_tokens"] is True  # sequential long-form


def test_prompt_is_not_in_the_output_with_batches_and_beams(short_whisper: Path, audio: dict) -> None:  # noqa: F811
    options = TranscribeOptions(progress=False, batch_size=2, num_beams=2, initial_prompt=PROMPT)
    results = list(Transcriber(short_whisper, options)([audio["a"], audio["b"]]))
    assert len(results) == 2
    for result in results:
        assert "quetzalcoatl" not in result.transcript.text.lower()
        assert "xylophone" not in result.transcript.text.lower()


def test_multilingual_model_gets_language_and_task(short_whisper: Path, tmp_path: Path) -> None:  # noqa: F811
    from transformers import GenerationConfig, WhisperTokenizer

    target = tmp_path / "multi"
    target.mkdir()
    for path in short_whisper.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    tokenizer = WhisperTokenizer.from_pretrained(target)
    generation = GenerationConfig.from_pretrained(target)
    generation.is_multilingual = True
    generation.lang_to_id = {f"<|{c}|>": tokenizer.convert_tokens_to_ids(f"<|{c}|>") for c in ("en", "fr")}
    generation.task_to_id = {t: tokenizer.convert_tokens_to_ids(f"<|{t}|>") for t in ("transcribe", "translate")}
    generation.save_pretrained(target)
    transcriber = Transcriber(target, TranscribeOptions(progress=False, language="french", task="translate"))
    generate = transcriber._call_kwargs(one_window_s=2.0)["generate_kwargs"]
    assert generate["language"] == "fr" and generate["task"] == "translate"


def test_english_only_model_refuses_translate_and_french(short_whisper: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="English-only.*translate") as error:
        Transcriber(short_whisper, TranscribeOptions(task="translate"))
    assert str(short_whisper) in str(error.value)
    with pytest.raises(ValueError, match="English-only.*language='fr'") as error:
        Transcriber(short_whisper, TranscribeOptions(language="fr"))
    assert str(short_whisper) in str(error.value)
    with pytest.raises(ValueError, match="language='klingon'"):
        Transcriber(short_whisper, TranscribeOptions(language="klingon"))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"no_speech_threshold": 0.6}, "no_speech_threshold needs log_prob_threshold"),
    ({"task": "summarize"}, "task must be one of"),
    ({"temperature": -0.5}, "temperature must be >= 0"),
    ({"temperature": ()}, "temperature must be"),
    ({"log_prob_threshold": 1.0}, "log_prob_threshold"),
    ({"compression_ratio_threshold": 0.0}, "compression_ratio_threshold"),
    ({"no_speech_threshold": 1.5, "log_prob_threshold": -1.0}, "no_speech_threshold"),
])
def test_bad_values_name_the_option(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TranscribeOptions(**kwargs)


def test_ctc_model_refuses_whisper_options(tiny_ctc: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="initial_prompt, temperature are Whisper decoding options"):
        Transcriber(tiny_ctc, TranscribeOptions(initial_prompt="hi", temperature=(0.0, 0.2)))
    Transcriber(tiny_ctc, TranscribeOptions(language=None, task="transcribe"))  # defaults are fine


def test_cli_parses_decoding_arguments() -> None:
    parser = build_parser()
    args = parser.parse_args(["transcribe", "--model", "m", "x.wav", "--temperature", "0,0.2",
                              "--initial-prompt", "Kennedy", "--hotwords", "Berlin", "--language", "en",
                              "--task", "transcribe", "--condition-on-previous-text",
                              "--compression-ratio-threshold", "2.4", "--log-prob-threshold", "-1",
                              "--no-speech-threshold", "0.6"])
    assert args.temperature == (0.0, 0.2)
    assert (args.initial_prompt, args.hotwords, args.language, args.condition_on_previous_text) == (
        "Kennedy", "Berlin", "en", True)
    assert (args.compression_ratio_threshold, args.log_prob_threshold, args.no_speech_threshold) == (2.4, -1.0, 0.6)
    assert parser.parse_args(["transcribe", "--model", "m", "x.wav", "--temperature", "0.4"]).temperature == 0.4
    slu = parser.parse_args(["slu", "--asr", "a", "--intent", "i", "x.wav", "--temperature", "0,0.2,0.4",
                             "--initial-prompt", "turn on"])
    assert slu.temperature == (0.0, 0.2, 0.4) and slu.initial_prompt == "turn on"
    with pytest.raises(SystemExit):
        parser.parse_args(["transcribe", "--model", "m", "x.wav", "--temperature", "hot"])


def test_slu_cli_passes_decoding_options(asr_dir: Path, intent_dir: Path, audio: dict,  # noqa: F811
                                         monkeypatch, tmp_path: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    from finetune.cli import main

    calls: list[dict] = []
    original = WhisperForConditionalGeneration.generate

    def generate(self, *args, **kwargs):
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WhisperForConditionalGeneration, "generate", generate)
    out = tmp_path / "answers.json"
    assert main(["slu", "--asr", str(asr_dir), "--intent", str(intent_dir), str(audio["a"]), "--output", str(out),
                 "--initial-prompt", PROMPT, "--temperature", "0,0.2", "--log-prob-threshold", "-1",
                 "--condition-on-previous-text"]) == 0
    assert calls and calls[0]["temperature"] == (0.0, 0.2) and calls[0]["logprob_threshold"] == -1.0
    assert calls[0]["prompt_ids"] is not None and calls[0]["num_beams"] == 1
    assert "condition_on_prev_tokens" not in calls[0]
    assert main(["slu", "--asr", str(asr_dir), "--intent", str(intent_dir), str(audio["a"]),
                 "--task", "translate"]) == 2  # English-only recognizer


@pytest.mark.slow
def test_real_tiny_en_with_a_prompt_keeps_jfk_and_leaks_no_prompt(shared_data: Path) -> None:
    jfk = shared_data / "jfk" / "test" / "jfk.flac"
    if not jfk.is_file():
        pytest.skip(f"{jfk} is not present")
    options = TranscribeOptions(progress=False, device="cpu", initial_prompt="Kennedy")
    [result] = list(Transcriber("offline:whisper-tiny.en", options)([jfk]))
    text = " ".join(re.sub(r"[^a-z' ]", " ", result.transcript.text.lower()).split())
    assert "ask not what your country can do for you" in text, text
    assert "kennedy" not in text, text
