"""Batch transcription through CTranslate2's own Whisper API, at the batch's trimmed length when allowed.

Why: CTranslate2's decoder is much faster than transformers' ``generate`` on CPU, and its
``Whisper.generate`` accepts log-mel features shorter than 30 s. faster-whisper's ``transcribe`` does not
(it pads every window to 3000 frames), so a model trained or tuned for dynamic encoder context
(:mod:`finetune.models.dynamic_context`) and exported by :func:`finetune.convert.ct2_export.export_ct2`
is served here on each batch's own length: the longest clip rounded up to the model's step, which is what
transformers with :func:`~finetune.models.dynamic_context.enable_dynamic_context` runs on.

Trimmed length is the default (``context="auto"``) only for a folder whose ``config.json`` carries the
dynamic-context marker: a stock Whisper decoded on shortened features tends to fall into repetition loops.

Decoding mirrors :func:`finetune.convert.ct2_export.check_round_trip`: the prompt transformers' generate
uses (``<|startoftranscript|>`` [language task] ``<|notimestamps|>``), the folder's suppressed tokens plus
every timestamp token, and text tokens only in the result.

Example::

    transcriber = CT2Transcriber("outputs/whisper-fsdd-ct2", compute_type="int8")
    texts = transcriber.transcribe_batch([load_audio(path, 16000) for path in paths])
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from finetune.convert.ct2_export import ct2_max_length, exported_step_seconds, require_optional
from finetune.models.dynamic_context import DEFAULT_STEP_SECONDS, padded_samples

logger = logging.getLogger(__name__)

CONTEXT_MODES = ("auto", "dynamic", "full")
TASKS = ("transcribe", "translate")
MAX_TARGET_POSITIONS = 448  # every Whisper decoder's length; CTranslate2 refuses positions beyond it
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json")


class CT2Transcriber:
    """An exported CTranslate2 Whisper folder, decoding batches of short clips (each at most one window).

    ``context``: ``auto`` decodes at trimmed length if the folder is marked as trained for it, else at the
    full window; ``dynamic`` always at trimmed length (``step_seconds``: the marker's step, else
    :data:`~finetune.models.dynamic_context.DEFAULT_STEP_SECONDS`); ``full`` always at the full window.
    ``max_length`` counts the prompt, as transformers and CTranslate2 do. ``language`` (multilingual models
    only) None detects each clip's language.
    """

    def __init__(self, model_dir: str | Path, *, context: str = "auto", step_seconds: float | None = None,
                 beam_size: int = 1, max_length: int = MAX_TARGET_POSITIONS, compute_type: str = "default",
                 device: str = "cpu", intra_threads: int = 0, language: str | None = None,
                 task: str = "transcribe") -> None:
        ctranslate2 = require_optional("ctranslate2", "decoding with CTranslate2")
        import tokenizers
        from transformers import WhisperFeatureExtractor

        model_dir = Path(model_dir)
        missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{model_dir}: {', '.join(missing)} missing; export the model with "
                                    "`finetune export-ct2` (finetune.convert.ct2_export.export_ct2)")
        if context not in CONTEXT_MODES:
            raise ValueError(f"context must be one of {', '.join(CONTEXT_MODES)}, got {context!r}")
        if step_seconds is not None and step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {beam_size}")
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")

        self.model_dir = model_dir
        self.trained_step_seconds = exported_step_seconds(model_dir)
        self.step_seconds = self._resolve_step(context, step_seconds)
        self.beam_size = beam_size
        self.extractor = WhisperFeatureExtractor.from_pretrained(model_dir)
        self.sampling_rate = int(self.extractor.sampling_rate)
        self.window_samples = int(self.extractor.n_samples)
        self.tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.model = ctranslate2.models.Whisper(str(model_dir), device=device, compute_type=compute_type,
                                                intra_threads=intra_threads)
        self._storage = ctranslate2.StorageView
        self.multilingual = bool(self.model.is_multilingual)
        self.language = self._check_language(language)
        self.task = task
        self._prefix = [self._token_id("<|startoftranscript|>")]
        self._suffix = [self._token_id("<|notimestamps|>")]
        self._last_text_id = self._token_id("<|endoftext|>")
        prompt_length = len(self._prompt("en" if self.multilingual else None))
        if not prompt_length < max_length <= MAX_TARGET_POSITIONS:
            raise ValueError(f"max_length counts the {prompt_length}-token prompt and must be in "
                             f"{prompt_length + 1}..{MAX_TARGET_POSITIONS}, got {max_length}")
        self.max_new_tokens = max_length - prompt_length
        # as in the export check: no timestamp tokens after <|notimestamps|>, plus the model's own list
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        timestamps = range(self._suffix[0] + 1, self.tokenizer.get_vocab_size(with_added_tokens=True))
        self._suppress = sorted({*config.get("suppress_ids", []), *timestamps})
        self.last_encoder_frames: int | None = None  # feature frames the encoder ran on in the latest batch

    def _resolve_step(self, context: str, step_seconds: float | None) -> float | None:
        """The step to trim batches to, or None for the full window."""
        if context == "full" or (context == "auto" and self.trained_step_seconds is None):
            return None
        if context == "dynamic" and self.trained_step_seconds is None:
            logger.warning("%s is not marked as trained for dynamic context; a stock Whisper decoded at trimmed "
                           "length tends to repeat itself (context='full' decodes at 30 s)", self.model_dir)
        return step_seconds or self.trained_step_seconds or DEFAULT_STEP_SECONDS

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.token_to_id(token)
        if token_id is None:
            raise ValueError(f"{self.model_dir}/tokenizer.json has no {token} token: not a Whisper tokenizer")
        return token_id

    def _check_language(self, language: str | None) -> str | None:
        if language is None:
            return None
        language = language.strip("<|>").lower()
        if not self.multilingual:
            if language != "en":
                raise ValueError(f"{self.model_dir} is an English-only model; it cannot transcribe {language!r}")
            return None
        if self.tokenizer.token_to_id(f"<|{language}|>") is None:
            raise ValueError(f"unknown language code {language!r} (use Whisper's codes: en, fr, de, ...)")
        return language

    def _prompt(self, language: str | None) -> list[int]:
        """The decoder prefix transformers' generate uses, as the export check builds it."""
        if not self.multilingual:
            return self._prefix + self._suffix
        return [*self._prefix, self._token_id(f"<|{language}|>"), self._token_id(f"<|{self.task}|>"), *self._suffix]

    def batch_samples(self, audios: Sequence[np.ndarray]) -> int:
        """Samples every clip of this batch is padded to: the window, or the longest clip rounded up a step."""
        for index, audio in enumerate(audios):
            if audio.ndim != 1:
                raise ValueError(f"clip {index} has shape {audio.shape}: expected mono samples (one dimension)")
            if len(audio) > self.window_samples:
                raise ValueError(f"clip {index} is {len(audio) / self.sampling_rate:.2f} s long; each clip must be "
                                 f"at most {self.window_samples / self.sampling_rate:g} s (cut longer recordings)")
        if self.step_seconds is None:
            return self.window_samples
        longest = max(len(audio) for audio in audios)
        return padded_samples(longest, self.step_seconds, self.sampling_rate, self.window_samples)

    def log_mel(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """``(batch, mels, frames)`` features, the batch padded to :meth:`batch_samples`."""
        audios = [np.asarray(audio, dtype=np.float32) for audio in audios]
        samples = self.batch_samples(audios)
        features = self.extractor(audios, sampling_rate=self.sampling_rate, padding="max_length",
                                  max_length=samples, return_tensors="np").input_features
        return np.ascontiguousarray(features, dtype=np.float32)

    def generate_ids(self, audios: Sequence[np.ndarray]) -> list[list[int]]:
        """Text token ids (no special or timestamp tokens) for each 16 kHz mono float32 clip."""
        if not audios:
            return []
        features = self._storage.from_array(self.log_mel(audios))
        encoded = self.model.encode(features)  # once: language detection and decoding share it
        self.last_encoder_frames = 2 * int(encoded.shape[1])
        if not self.multilingual or self.language is not None:
            languages = [self.language] * len(audios)
        else:
            languages = [ranked[0][0].strip("<|>") for ranked in self.model.detect_language(encoded)]
        results = self.model.generate(
            encoded, [self._prompt(language) for language in languages], beam_size=self.beam_size,
            max_length=ct2_max_length(self.max_new_tokens), suppress_blank=True, suppress_tokens=self._suppress,
        )
        return [[t for t in result.sequences_ids[0] if t < self._last_text_id][:self.max_new_tokens]
                for result in results]

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[str]:
        """One transcript per clip (16 kHz mono float32, at most one window each), decoded as one batch."""
        return [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in self.generate_ids(audios)]
