"""Spoken commands: audio -> transcript -> intent, as a cascade of two transformers pipelines.

    from finetune.inference.slu import SpokenCommandPipeline
    slu = SpokenCommandPipeline.from_pretrained("outputs/whisper-spoken-snips", "outputs/intent-snips")
    slu(["turn_on.wav", "play_jazz.flac"])
    # [{"audio": "turn_on.wav", "transcript": "...", "intent": "PlayMusic", "confidence": 0.98, ...}, ...]

The two stages are ordinary ``pipeline("automatic-speech-recognition")`` and
``pipeline("text-classification")`` objects, so a user can build them as they like (device, dtype,
generation settings) and compose them with ``SpokenCommandPipeline(asr, classifier)``. Audio is
decoded here, by :mod:`finetune.data.audio` (any format, any rate, the same decoder as training),
and checked against the recognizer's input length before anything runs. The intent model's
out-of-scope threshold (``oos_threshold`` in its config.json) is applied to every answer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from finetune.data.audio import load_audio
from finetune.inference.pauses import join_texts, split_at_pauses
from finetune.inference.transcribe import TranscribeOptions, decoding_kwargs
from finetune.models.consistency import check_pipeline_tokenizer
from finetune.models.registry import resolve_model_path
from finetune.models.text_classifier import oos_settings
from finetune.models.whisper_generate import keep_token_ids_integer

AudioInput = str | os.PathLike | np.ndarray | dict


class SpokenCommandPipeline:
    """Transcribe audio with ``asr``, then classify each transcript with ``classifier``.

    ``oos_threshold`` overrides the threshold stored with the intent model (``None``: use the stored
    one, if any); answers below it become ``oos_label``. ``top_k`` alternatives are kept per query.
    ``num_beams`` defaults to greedy decoding, as the Trainer's evaluation decodes: transformers' ASR
    pipeline otherwise uses 5 beams for Whisper, which on CPU with a 30 s context is several times
    slower for commands (the cross-attention cache of every beam is reordered at each token).
    ``None`` keeps whatever the ``asr`` pipeline was built with. ``decoding``: the Whisper decoding controls
    of :class:`~finetune.inference.transcribe.TranscribeOptions` (language, prompt, temperature fallback,
    thresholds), on top of the decoding the recognizer was saved with.
    """

    def __init__(self, asr, classifier, *, batch_size: int = 8, oos_threshold: float | None = None,
                 top_k: int = 3, num_beams: int | None = 1, context: str = "auto",
                 decoding: TranscribeOptions | None = None) -> None:
        self.asr = asr
        self.classifier = classifier
        self.batch_size = batch_size
        generate = decoding_kwargs(asr, decoding or TranscribeOptions(), getattr(asr.model, "name_or_path", "asr"))
        generate.pop("condition_on_prev_tokens", None)  # commands fit one window: nothing previous to condition on
        self.generate_kwargs = {**({"num_beams": num_beams} if num_beams is not None else {}), **generate}
        stored_threshold, self.oos_label = oos_settings(classifier.model.config)
        self.oos_threshold = oos_threshold if oos_threshold is not None else stored_threshold
        self.top_k = max(1, min(top_k, int(classifier.model.config.num_labels)))
        self.sampling_rate = int(asr.feature_extractor.sampling_rate)
        chunk = getattr(asr.feature_extractor, "chunk_length", None)  # Whisper's window; CTC takes any length
        self.max_seconds = float(chunk) if chunk else None
        self.dynamic_step = _serve_context(asr.model, context) if self.max_seconds else None
        if self.max_seconds is not None:  # a model trained on shorter recordings hears pieces of that length
            from finetune.models.dynamic_context import serving_window_seconds

            self.max_seconds = serving_window_seconds(asr.model.config, self.max_seconds)

    @classmethod
    def from_pretrained(cls, asr_model: str, intent_model: str, *, device: int | str | None = None,
                        batch_size: int = 8, oos_threshold: float | None = None, num_beams: int | None = 1,
                        context: str = "auto", decoding: TranscribeOptions | None = None) -> SpokenCommandPipeline:
        """Build both pipelines from model directories (or ``offline:`` aliases), safetensors only."""
        from transformers import pipeline

        safetensors = {"use_safetensors": True}
        asr = pipeline("automatic-speech-recognition", model=resolve_model_path(asr_model), device=device,
                       model_kwargs=safetensors)
        classifier = pipeline("text-classification", model=resolve_model_path(intent_model), device=device,
                              model_kwargs=safetensors)
        for stage, name in ((asr, asr_model), (classifier, intent_model)):
            check_pipeline_tokenizer(stage, resolve_model_path(name))
        if asr.type == "seq2seq_whisper":
            keep_token_ids_integer(asr.model)
        return cls(asr, classifier, batch_size=batch_size, oos_threshold=oos_threshold, num_beams=num_beams,
                   context=context, decoding=decoding)

    @property
    def language(self) -> str | None:
        """The language the recognizer transcribes, where its model says (None: unknown)."""
        if getattr(self.asr.model.config, "model_type", "") == "whisper":
            from finetune.models.whisper import model_language

            return model_language(self.asr.model)
        return None

    def __call__(self, audio: AudioInput | Sequence[AudioInput]) -> list[dict[str, Any]]:
        """One result per input: transcript, intent (after the OOS rule), confidence, alternatives."""
        items = [audio] if isinstance(audio, (str, os.PathLike, np.ndarray, dict)) else list(audio)
        transcripts = self.transcribe(items)
        intents = self.classify(transcripts)
        return [{"audio": _describe(item), "transcript": text, **intent}
                for item, text, intent in zip(items, transcripts, intents)]

    def transcribe(self, audio: Sequence[AudioInput]) -> list[str]:
        """Transcripts of ``audio`` (paths, 1-D arrays at the recognizer's rate, or Audio dicts).

        A recording longer than the recognizer's window is cut at pauses into pieces that fit
        (:mod:`finetune.inference.pauses`) and their texts joined; one with no pause to cut at is refused.
        """
        owners, inputs = [], []
        for number, item in enumerate(audio):
            samples = self._load(item)
            for piece in self._pieces(samples, item):
                owners.append(number)
                inputs.append({"raw": piece, "sampling_rate": self.sampling_rate})
        texts: list[list[str]] = [[] for _ in audio]
        if inputs:
            outputs = self.asr(inputs, batch_size=self.batch_size, generate_kwargs=dict(self.generate_kwargs))
            for number, out in zip(owners, outputs):
                texts[number].append(out["text"])
        return [join_texts(parts) for parts in texts]

    def _pieces(self, samples: np.ndarray, item: AudioInput) -> list[np.ndarray]:
        if self.max_seconds is None or len(samples) <= self.max_seconds * self.sampling_rate:
            return [samples]
        pieces = split_at_pauses(samples, self.sampling_rate, self.max_seconds, source=_describe(item))
        return [piece.cut(samples) for piece in pieces]

    def classify(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Intent of every text: ``intent`` (``oos_label`` below the threshold), ``confidence``,
        ``top_intent`` (the best guess even when rejected) and ``alternatives``."""
        if not texts:
            return []
        outputs = self.classifier(list(texts), top_k=self.top_k, truncation=True, batch_size=self.batch_size)
        results = []
        for ranked in outputs:
            ranked = ranked if isinstance(ranked, list) else [ranked]
            best = ranked[0]
            rejected = self.oos_threshold is not None and best["score"] < self.oos_threshold
            results.append({
                "intent": self.oos_label if rejected else best["label"],
                "confidence": round(float(best["score"]), 5),
                "top_intent": best["label"],
                "alternatives": [{"intent": r["label"], "confidence": round(float(r["score"]), 5)} for r in ranked],
            })
        return results

    def _load(self, item: AudioInput) -> np.ndarray:
        if isinstance(item, np.ndarray):
            samples = np.asarray(item, dtype=np.float32)
            if samples.ndim != 1:
                raise ValueError(f"audio arrays must be 1-D mono at {self.sampling_rate} Hz, got shape {item.shape}")
        elif isinstance(item, dict) and ("array" in item or "raw" in item):  # datasets / pipeline style
            array = item["array"] if "array" in item else item["raw"]
            samples = _resample(np.asarray(array, dtype=np.float32), int(item["sampling_rate"]), self.sampling_rate)
        else:
            samples = load_audio(item, self.sampling_rate)
        return samples


def run_slu(asr_model: str, intent_model: str, audio: Iterable[str], *, batch_size: int = 8,
            device: int | str | None = None, oos_threshold: float | None = None,
            num_beams: int | None = 1, context: str = "auto",
            decoding: TranscribeOptions | None = None) -> list[dict[str, Any]]:
    """What ``finetune slu`` does: build the cascade and answer every audio file."""
    slu = SpokenCommandPipeline.from_pretrained(asr_model, intent_model, device=device, batch_size=batch_size,
                                                oos_threshold=oos_threshold, num_beams=num_beams, context=context,
                                                decoding=decoding)
    return slu(list(audio))


def _serve_context(model: Any, context: str) -> float | None:
    """Run a Whisper ``model`` at dynamic context when asked (``auto``: when it was trained for it)."""
    from finetune.models import dynamic_context

    if context not in ("auto", "dynamic", "full"):
        raise ValueError(f"context must be auto, dynamic or full, got {context!r}")
    if getattr(model.config, "model_type", "") != "whisper" or context == "full":
        return None
    step = dynamic_context.trained_step_seconds(model.config)
    if context == "dynamic":
        step = step or dynamic_context.DEFAULT_STEP_SECONDS
    if step is not None:
        dynamic_context.enable_dynamic_context(model, step)
    return step


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return samples
    import soxr

    return soxr.resample(samples, rate, target).astype(np.float32)


def _describe(item: AudioInput) -> str:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, dict):
        return str(item.get("path") or "<array>")
    return "<array>"
