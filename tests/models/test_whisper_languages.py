"""The ``language`` key against a multilingual checkpoint's own languages: a name or code it knows becomes
its code in the generation config and the tokenizer's prefix; one it lacks is refused, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from finetune.models.whisper import configure_generation


def loaded(model_dir: Path):
    return WhisperForConditionalGeneration.from_pretrained(model_dir), WhisperProcessor.from_pretrained(model_dir)


def test_a_known_language_is_set_once_as_its_code(tiny_multilingual_dir: Path) -> None:
    model, processor = loaded(tiny_multilingual_dir)
    configure_generation(model, processor, language="French", task="transcribe")
    assert model.generation_config.language == "fr" and model.generation_config.task == "transcribe"
    tokenizer = processor.tokenizer
    assert tokenizer.prefix_tokens[:3] == [tokenizer.convert_tokens_to_ids(t)
                                           for t in ("<|startoftranscript|>", "<|fr|>", "<|transcribe|>")]


def test_an_unknown_language_is_refused_with_the_known_ones(tiny_multilingual_dir: Path) -> None:
    model, processor = loaded(tiny_multilingual_dir)
    with pytest.raises(ValueError, match=r"language='klingon'.*its languages are af, am, ar.*\(99 in all\)"):
        configure_generation(model, processor, language="klingon", task="transcribe")
    with pytest.raises(ValueError, match="language='yue'"):  # large-v3's 100th language: not in a 99-language model
        configure_generation(model, processor, language="yue", task="transcribe")


def test_transcribe_checks_language_against_the_checkpoint(tiny_multilingual_dir: Path) -> None:
    """``transcribe --language``: a language Whisper has elsewhere (large-v3's yue) but this checkpoint lacks is
    refused before any audio is read, not decoded under a token that does not exist."""
    from finetune.inference.transcribe import TranscribeOptions, Transcriber

    with pytest.raises(ValueError, match=r"language='yue'.*\(99 in all\)"):
        Transcriber(tiny_multilingual_dir, TranscribeOptions(progress=False, language="yue"))
    french = Transcriber(tiny_multilingual_dir, TranscribeOptions(progress=False, language="French"))
    assert french.decoding["language"] == "fr"
