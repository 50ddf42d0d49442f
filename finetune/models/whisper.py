"""Whisper builders: load, shorten the encoder context, and set language/task in one place.

Language and task live only in the generation config (and the tokenizer's prefix tokens, which
must agree for the labels), never in ``forced_decoder_ids``: two places that can disagree is how
Trainer evaluation and ``pipeline()`` inference drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import PretrainedConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

from finetune.config import ModelArguments, check_choices
from finetune.data.text import language_code
from finetune.models.consistency import check_tokenizer
from finetune.models.registry import check_model_family, resolve_model_path

logger = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # 16 kHz audio, hop 160
ENCODER_DOWNSAMPLING = 2  # conv2 has stride 2


@dataclass
class WhisperArguments:
    """Whisper-only switches (the spoken language is the shared ``language`` key)."""

    whisper_task: Literal["transcribe", "translate"] = field(
        default="transcribe", metadata={"help": "transcribe, or translate (into English)."})
    max_label_length: int | None = field(
        default=None, metadata={"help": "Longest transcript in tokens (default: the decoder's positions, 448)."}
    )
    timestamp_probability: float = field(
        default=0.0,
        metadata={"help": "Share of training transcripts written with timestamp tokens (<|0.00|> text <|end|>, the "
                          "clip's own bounds), so the fine-tuned model still gives segment timestamps; "
                          "distil-whisper uses 0.2. 0: none."},
    )
    prompt_probability: float = field(
        default=0.2,
        metadata={"help": "With prompt_column_name: share of training rows whose prompt (previous text, context) "
                          "is put in front of the labels as generate(prompt_ids=...) puts it, kept out of the loss; "
                          "distil-whisper's condition_on_prev_probability."},
    )

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("timestamp_probability", "prompt_probability"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, got {value!r}")


# what a speech recognition checkpoint of Whisper names in config.json (a base model or a fine-tuned one)
ASR_ARCHITECTURES = ("WhisperForConditionalGeneration", "WhisperModel")
WHISPER_TASKS = "asr_seq2seq/asr_distill"


def load_whisper(model_args: ModelArguments, *, task: str = WHISPER_TASKS, needs_tokenizer: bool = True,
                 ) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """Load model + processor from a local dir, a Hub id or an ``offline:`` alias (safetensors only).

    A model of another family (a BERT folder, a Whisper audio classifier) is refused naming ``task``;
    the tokenizer is checked against the model (:func:`~finetune.models.consistency.check_tokenizer`)
    unless ``needs_tokenizer`` is False (a caller that keeps only the encoder).
    """
    path = resolve_model_path(model_args.model_name_or_path)
    common = {
        "revision": model_args.revision,
        "cache_dir": model_args.cache_dir,
        "trust_remote_code": model_args.trust_remote_code,
    }
    config = PretrainedConfig.get_config_dict(path, **common)[0]
    check_model_family(model_args.model_name_or_path, config, task=task, accepted={"whisper"},
                       needs="a Whisper speech recognition model (e.g. offline:whisper-tiny.en, openai/whisper-small)",
                       architectures=ASR_ARCHITECTURES)
    model = WhisperForConditionalGeneration.from_pretrained(path, use_safetensors=True, **common)
    processor = WhisperProcessor.from_pretrained(path, **common)
    if needs_tokenizer:
        check_tokenizer(processor.tokenizer, model.config, path)
    return model, processor


def context_seconds(processor: WhisperProcessor) -> int:
    return int(processor.feature_extractor.chunk_length)


def set_encoder_context(model: WhisperForConditionalGeneration, processor: WhisperProcessor, seconds: int) -> None:
    """Keep the first ``seconds`` of the encoder's positions and make the feature extractor match.

    The result stays a consistent transformers model: ``max_source_positions`` and the feature
    extractor's ``chunk_length`` are saved with it, so ``pipeline()`` pads inputs to the new length.
    """
    current = context_seconds(processor)
    if seconds == current:
        return
    positions = seconds * FRAMES_PER_SECOND // ENCODER_DOWNSAMPLING
    encoder = model.model.encoder
    if positions > encoder.embed_positions.num_embeddings:
        raise ValueError(f"cannot lengthen the encoder context from {current} s to {seconds} s")
    old = encoder.embed_positions
    new = torch.nn.Embedding(positions, old.embedding_dim, dtype=old.weight.dtype, device=old.weight.device)
    new.weight.data.copy_(old.weight.data[:positions])
    encoder.embed_positions = new
    encoder.max_source_positions = positions
    model.config.max_source_positions = positions
    extractor = processor.feature_extractor
    processor.feature_extractor = WhisperFeatureExtractor(
        feature_size=extractor.feature_size,
        sampling_rate=extractor.sampling_rate,
        hop_length=extractor.hop_length,
        chunk_length=seconds,
        n_fft=extractor.n_fft,
        padding_value=extractor.padding_value,
    )
    logger.info("encoder context set to %d s (%d positions)", seconds, positions)


def freeze_for_finetuning(model: WhisperForConditionalGeneration, *, freeze_encoder: bool,
                          freeze_feature_encoder: bool = False) -> None:
    """Freeze the sinusoidal encoder positions (fixed in Whisper; ``from_pretrained`` leaves them
    trainable in transformers 5) and, on request, the convolutional front end or the whole encoder."""
    encoder = model.model.encoder
    encoder.embed_positions.weight.requires_grad_(False)
    if freeze_feature_encoder:
        encoder.conv1.requires_grad_(False)
        encoder.conv2.requires_grad_(False)
    if freeze_encoder:
        encoder.requires_grad_(False)


def model_language(model: WhisperForConditionalGeneration) -> str | None:
    """The language a Whisper checkpoint transcribes, where it says: English for English-only ones."""
    generation = model.generation_config
    if not getattr(generation, "is_multilingual", False):
        return "en"
    return getattr(generation, "language", None)


def checked_language(generation, language: str | None) -> str | None:
    """``language`` as a code this multilingual checkpoint has a token for (None stays None: detected),
    or a ValueError naming the ``language`` key and the languages it knows."""
    code = language_code(language)
    if code is None:
        return None
    known = [token.strip("<|>") for token in (getattr(generation, "lang_to_id", None) or {})]
    if code not in known:
        shown = ", ".join(known[:12]) + (f" ... ({len(known)} in all)" if len(known) > 12 else "")
        raise ValueError(f"language={language!r}: this Whisper checkpoint has no language token for it; "
                         f"its languages are {shown}")
    return code


TIMESTAMP_SECONDS = 0.02  # the step of Whisper's timestamp tokens <|0.00|> .. <|30.00|>
MAX_PROMPT_TOKENS = 223  # Whisper's decoder context halved, less the <|startofprev|> token (as at inference)


def row_labels(tokenizer: Any, texts: list[str], languages: list[str], *,
               end_seconds: list[float | None] | None = None,
               prompts: list[str | None] | None = None) -> list[list[int]]:
    """Label ids of ``texts``, each after the prefix of its row's language (``languages``, "" = the
    tokenizer's own prefix): a model trained on several languages learns each with its own token.
    Whisper was pretrained on text that starts with a space after the prefix tokens; an empty text (a
    no-speech clip) is the prefix and the end token alone.

    ``end_seconds``: a row with a time is written with timestamps, ``<|0.00|> text <|end|>`` without
    ``<|notimestamps|>``, so a fine-tuned model keeps predicting segment times. ``prompts``: a row with a
    prompt starts with ``tokenizer.get_prompt_ids(prompt)`` (``<|startofprev|>`` and the text, as
    ``generate(prompt_ids=...)`` puts it in front at inference); the collator keeps it out of the loss."""
    labels = _prefixed_labels(tokenizer, texts, languages)
    for row, end in enumerate(end_seconds or []):
        if end is not None and texts[row].strip():
            labels[row] = _timed(tokenizer, labels[row], end)
    for row, prompt in enumerate(prompts or []):
        if prompt and prompt.strip():
            prompt_ids = [int(i) for i in tokenizer.get_prompt_ids(" ".join(prompt.split()))]
            labels[row] = prompt_ids[:1] + prompt_ids[1:][-MAX_PROMPT_TOKENS:] + labels[row]
    return labels


def _prefixed_labels(tokenizer: Any, texts: list[str], languages: list[str]) -> list[list[int]]:
    spaced = [" " + text.lstrip() if text.strip() else "" for text in texts]  # "": a no-speech clip
    if not any(languages):
        return tokenizer(spaced).input_ids
    labels: list[list[int]] = [[] for _ in texts]
    previous = tokenizer.language
    try:
        for language in dict.fromkeys(languages):
            rows = [i for i, row_language in enumerate(languages) if row_language == language]
            _set_prefix_language(tokenizer, language or previous)
            for row, ids in zip(rows, tokenizer([spaced[i] for i in rows]).input_ids):
                labels[row] = ids
    finally:
        _set_prefix_language(tokenizer, previous)
    return labels


def _timed(tokenizer: Any, ids: list[int], end: float) -> list[int]:
    """``prefix <|notimestamps|> text <eot>`` -> ``prefix <|0.00|> text <|end|> <eot>``."""
    no_timestamps = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    first = no_timestamps + 1  # <|0.00|>: the timestamp tokens follow <|notimestamps|> in every vocabulary
    cut = ids.index(no_timestamps)
    steps = min(int(round(end / TIMESTAMP_SECONDS)), 1500)
    return [*ids[:cut], first, *ids[cut + 1:-1], first + steps, ids[-1]]


def _set_prefix_language(tokenizer: Any, language: str | None) -> None:
    """The prefix's language, None included (``set_prefix_tokens`` keeps the old one when given None)."""
    tokenizer.language = language
    tokenizer.set_prefix_tokens()


def check_row_languages(generation, languages: set[str], column: str) -> None:
    """The languages of a split's ``column`` against the checkpoint: each must have a language token
    (a multilingual Whisper), or a ValueError names the column and the language."""
    if not getattr(generation, "is_multilingual", False):
        raise ValueError(f"language_column_name={column!r}: per-row languages need a multilingual Whisper "
                         "checkpoint; this one is English-only")
    for language in sorted(languages):
        try:
            checked_language(generation, language)
        except ValueError as error:
            raise ValueError(f"column {column!r}: {error}") from None


def detected_languages(model: Any, batches: Any) -> list[str]:
    """The language ``model`` detects in each clip of ``batches`` (collated model inputs), as codes:
    what ``generate`` decodes under when no language is set (its output leaves the language token out)."""
    by_id = {int(token_id): token.strip("<|>") for token, token_id in model.generation_config.lang_to_id.items()}
    found: list[str] = []
    with torch.no_grad():
        for batch in batches:
            features = batch["input_features"].to(model.device, model.dtype)
            found += [by_id.get(int(t), "") for t in model.detect_language(input_features=features).flatten()]
    return found


def allow_empty_output(generation) -> None:
    """Let decoding end at once: Whisper checkpoints suppress end-of-text as the first token
    (``begin_suppress_tokens``), so a model trained on no-speech clips could never say nothing."""
    eos = {int(t) for t in ([generation.eos_token_id] if isinstance(generation.eos_token_id, int)
                            else generation.eos_token_id or [])}
    kept = [t for t in (generation.begin_suppress_tokens or []) if int(t) not in eos]
    generation.begin_suppress_tokens = kept or None


def configure_generation(
    model: WhisperForConditionalGeneration, processor: WhisperProcessor, *, language: str | None, task: str
) -> None:
    """Set language/task once, in the generation config, and the same prefix on the tokenizer."""
    generation = model.generation_config
    multilingual = bool(getattr(generation, "is_multilingual", False))
    if not multilingual:
        if language_code(language) not in (None, "en") or task != "transcribe":
            raise ValueError("this Whisper checkpoint is English-only: leave language unset (or en) and "
                             "whisper_task=transcribe")
        language = None
    generation.forced_decoder_ids = None
    model.config.forced_decoder_ids = None
    if multilingual:
        language = checked_language(generation, language)
        generation.language = language
        generation.task = task
        processor.tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    else:
        processor.tokenizer.set_prefix_tokens(predict_timestamps=False)
