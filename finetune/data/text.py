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


def scoring_normalizer(language: str | None = "en") -> Normalizer:
    """Normalizer for the 'normalized' WER/CER: Whisper's English rules, or basic for other languages."""
    if language in (None, "en", "english"):
        return EnglishTextNormalizer({})
    return BasicTextNormalizer()
