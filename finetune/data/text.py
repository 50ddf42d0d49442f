"""Text normalization for training targets and for scoring.

Training targets keep what the user wrote unless asked otherwise (Whisper was pretrained on cased,
punctuated text). Scoring always reports both the raw and the normalized error rates, so casing and
punctuation differences are never mixed up with real recognition errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

Normalizer = Callable[[str], str]

_SPACES = re.compile(r"\s+")


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _lower(text: str) -> str:
    return _collapse(text.lower())


def get_normalizer(name: str) -> Normalizer:
    """``none`` (only trims spaces), ``lower``, ``basic`` (any language) or ``english`` (Whisper's)."""
    if name == "none":
        return _collapse
    if name == "lower":
        return _lower
    if name == "basic":
        return BasicTextNormalizer()
    if name == "english":
        return EnglishTextNormalizer({})
    raise ValueError(f"unknown text_normalization {name!r}: use none, lower, basic or english")


def language_code(language: str | None) -> str | None:
    """``English``, ``EN``, ``<|en|>`` and ``english`` -> ``en``: one spelling of a language, as Whisper's
    tokenizer names them (an unknown name is kept, lowercased)."""
    if not language:
        return None
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    name = str(language).strip().removeprefix("<|").removesuffix("|>").lower()
    return TO_LANGUAGE_CODE.get(name, name)


def scoring_normalizer(language: str | None = "en") -> Normalizer:
    """Normalizer for the 'normalized' WER/CER: Whisper's English rules for English (and when the language
    is not known), the basic normalizer for every other language."""
    if language_code(language) in (None, "en"):
        return EnglishTextNormalizer({})
    return BasicTextNormalizer()
