"""A Whisper's intended decoding, saved with it: the guards against hallucination a fine-tuned model was meant
to be served with, so ``finetune transcribe``, ``finetune slu`` and the card's ``pipeline()`` snippet all
decode it that way.

Saved in ``generation_config.json`` as one entry, ``finetune_decoding``: the ``generate`` keyword arguments
(transformers' names: ``temperature``, ``compression_ratio_threshold``, ``logprob_threshold``,
``no_speech_threshold``, ``condition_on_prev_tokens``). Not under transformers' own attribute names: its
Whisper ``generate`` reads thresholds saved there without asking for the scores they need and fails on every
call (transformers 5), and it takes a temperature fallback list only per call. So finetune's Transcriber
applies the entry (a call's own options win), and the model card shows them passed as ``generate_kwargs``.

Config keys (faster-whisper's names; ``temperature_fallback`` because ``temperature`` is distillation's)::

    temperature_fallback: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    compression_ratio_threshold: 2.4
    log_prob_threshold: -1.0
    no_speech_threshold: 0.6
    condition_on_previous_text: false
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SAVED_ATTRIBUTE = "finetune_decoding"
# config key -> generate keyword argument
GENERATE_NAMES = {"temperature_fallback": "temperature", "compression_ratio_threshold": "compression_ratio_threshold",
                  "log_prob_threshold": "logprob_threshold", "no_speech_threshold": "no_speech_threshold",
                  "condition_on_previous_text": "condition_on_prev_tokens"}


@dataclass
class DecodingArguments:
    """Decoding defaults saved with a fine-tuned Whisper (null: transformers' own)."""

    temperature_fallback: list[float] | None = field(default=None, metadata={
        "help": "Temperatures to retry a failed window with, e.g. [0.0, 0.2, 0.4, 0.6, 0.8, 1.0] (null: greedy/beam "
                "only). A window fails on the thresholds below."})
    compression_ratio_threshold: float | None = field(default=None, metadata={
        "help": "A window whose text compresses better than this (gzip ratio) is a repetition loop: retried (2.4)."})
    log_prob_threshold: float | None = field(default=None, metadata={
        "help": "A window whose average token log-probability is below this is retried (-1.0)."})
    no_speech_threshold: float | None = field(default=None, metadata={
        "help": "A window with a no-speech probability above this and a log-probability below log_prob_threshold "
                "is silence: no text (0.6)."})
    condition_on_previous_text: bool | None = field(default=None, metadata={
        "help": "Long recordings: each window sees the previous window's text (openai-whisper's default: true)."})

    def __post_init__(self) -> None:
        check_decoding_values(self.temperature_fallback, self.compression_ratio_threshold, self.log_prob_threshold,
                              self.no_speech_threshold)


def check_decoding_values(temperature: Any, compression_ratio_threshold: float | None,
                          log_prob_threshold: float | None, no_speech_threshold: float | None) -> None:
    """The rules openai-whisper's options follow, with errors naming the option."""
    if temperature is not None:
        values = temperature if isinstance(temperature, (list, tuple)) else (temperature,)
        try:
            numbers = [float(t) for t in values]
        except (TypeError, ValueError):
            raise ValueError(f"temperature must be a number or a list of numbers, got {temperature!r}") from None
        if not numbers:
            raise ValueError("temperature must be a number or a non-empty list of numbers")
        if any(not math.isfinite(t) or t < 0 for t in numbers):
            raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if compression_ratio_threshold is not None and compression_ratio_threshold <= 0:
        raise ValueError(f"compression_ratio_threshold must be positive, got {compression_ratio_threshold}")
    if no_speech_threshold is not None:
        if not 0 <= no_speech_threshold <= 1:
            raise ValueError(f"no_speech_threshold is a probability in [0, 1], got {no_speech_threshold}")
        if log_prob_threshold is None:
            raise ValueError("no_speech_threshold needs log_prob_threshold too: a window counts as silence "
                             "only when its no-speech probability is high and its average log-probability low")
    if log_prob_threshold is not None and log_prob_threshold > 0:
        raise ValueError(f"log_prob_threshold is a log-probability (<= 0), got {log_prob_threshold}")


def save_decoding_defaults(generation: Any, args: DecodingArguments) -> None:
    """Record the set values in ``generation`` (a GenerationConfig) as ``generate`` keyword arguments."""
    saved = {GENERATE_NAMES[name]: value for name, value in vars(args).items() if value is not None}
    if "temperature" in saved:
        saved["temperature"] = [float(t) for t in saved["temperature"]]
    if saved:
        setattr(generation, SAVED_ATTRIBUTE, saved)


def saved_decoding(generation: Any) -> dict[str, Any]:
    """The ``generate`` keyword arguments a model was saved with (a temperature list as a tuple, as generate
    wants it); ``generation``: a GenerationConfig or the ``generation_config.json`` dict."""
    value = generation.get(SAVED_ATTRIBUTE) if isinstance(generation, dict) else getattr(
        generation, SAVED_ATTRIBUTE, None)
    if not isinstance(value, dict):
        return {}
    saved = {key: value[key] for key in GENERATE_NAMES.values() if value.get(key) is not None}
    if isinstance(saved.get("temperature"), (list, tuple)):
        saved["temperature"] = tuple(float(t) for t in saved["temperature"])
    return with_scored_temperature(saved)


def with_scored_temperature(generate: dict[str, Any]) -> dict[str, Any]:
    """``generate`` kwargs that transformers can run: it scores a window against ``logprob_threshold`` by
    comparing the temperature with 0, so a threshold without a temperature fails there (transformers 5);
    it gets 0, greedy or beam search as before. A plain temperature of 0 is dropped otherwise (the default)."""
    if "logprob_threshold" in generate:
        generate.setdefault("temperature", 0.0)
    elif generate.get("temperature") == 0.0:
        del generate["temperature"]
    return generate
