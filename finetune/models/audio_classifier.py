"""Audio classification builders: a class head on a Wav2Vec2-family encoder or on Whisper's encoder.

A Whisper speech-recognition checkpoint (e.g. ``offline:whisper-tiny.en``) becomes a
``WhisperForAudioClassification``: its encoder weights are copied over, the decoder is left
behind, and the encoder context may be shortened first (2 s instead of 30 s makes short commands
~10x cheaper). Whisper's encoder only accepts features of exactly ``2 * max_source_positions``
frames, so its inputs are padded to the (shortened) context; Wav2Vec2-family inputs are padded
to the longest clip of a batch.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    PreTrainedModel,
    WhisperFeatureExtractor,
    WhisperForAudioClassification,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES

from finetune.config import ModelArguments, check_choices
from finetune.models.ctc import FAMILY
from finetune.models.registry import check_model_family, resolve_model_path
from finetune.models.speech_encoder import SpecAugmentArguments
from finetune.models.whisper import load_whisper, set_encoder_context

logger = logging.getLogger(__name__)

WAV2VEC2_FAMILY = FAMILY
CLASSIFIER_ARCHITECTURES = {MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES[t]
                            for t in (*WAV2VEC2_FAMILY, "whisper") if t in MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES}


@dataclass
class AudioClassifierArguments:
    """Switches of the classification head (the encoder's are the shared groups of
    :mod:`finetune.models.speech_encoder`)."""

    use_weighted_layer_sum: bool = field(
        default=False, metadata={"help": "Classify a learnt mix of all encoder layers instead of the last one."}
    )
    classifier_proj_size: int = field(default=256, metadata={"help": "Width of the projection before pooling."})
    class_weighting: Literal["none", "balanced"] = field(
        default="none",
        metadata={"help": "none, or balanced: weight the loss of each class by n_samples / (n_classes * count), "
                          "so rare classes count as much as frequent ones."},
    )

    def __post_init__(self) -> None:
        check_choices(self)


def load_audio_classifier(
    model_args: ModelArguments,
    args: AudioClassifierArguments,
    label2id: dict[str, int],
    *,
    encoder_context_seconds: int | None = None,
    spec_augment: SpecAugmentArguments | None = None,
) -> tuple[PreTrainedModel, object]:
    """Model with a fresh head for ``label2id`` and its feature extractor, from a local dir, Hub id or
    ``offline:`` alias: a Whisper ASR checkpoint (its encoder context shortened to
    ``encoder_context_seconds`` first), or any Wav2Vec2-family / audio-classification one (its SpecAugment
    masking replaced where ``spec_augment`` gives a value). Nothing is frozen here: see
    :func:`freeze_classifier`."""
    path = resolve_model_path(model_args.model_name_or_path)
    common = {"revision": model_args.revision, "cache_dir": model_args.cache_dir,
              "trust_remote_code": model_args.trust_remote_code}
    config = AutoConfig.from_pretrained(path, **common)
    labels = {"num_labels": len(label2id), "label2id": dict(label2id),
              "id2label": {i: label for label, i in label2id.items()}}
    if config.model_type == "whisper" and "WhisperForAudioClassification" not in (config.architectures or []):
        model, extractor = _from_whisper_asr(model_args, args, labels, encoder_context_seconds)
    else:
        check_model_family(model_args.model_name_or_path, config.to_dict(), task="audio_classification",
                           accepted={*WAV2VEC2_FAMILY, "whisper"},
                           needs="a speech encoder: Whisper or a Wav2Vec2-family model")
        overrides = {"use_weighted_layer_sum": args.use_weighted_layer_sum,
                     "classifier_proj_size": args.classifier_proj_size,
                     **(spec_augment.overrides() if spec_augment else {})}
        model = AutoModelForAudioClassification.from_pretrained(
            path, ignore_mismatched_sizes=True, use_safetensors=True, **labels, **overrides, **common
        )
        extractor = AutoFeatureExtractor.from_pretrained(path, **common)
        fixed = config.model_type == "whisper" and encoder_context_seconds not in (None, extractor.chunk_length)
        if fixed:
            raise ValueError(f"this Whisper classifier's context is already set ({extractor.chunk_length} s); "
                             "encoder_context_seconds cannot change it")
    if isinstance(model, WhisperForAudioClassification):
        model.encoder.embed_positions.weight.requires_grad_(False)  # sinusoids, fixed in Whisper
    return model, extractor


def freeze_classifier(model: PreTrainedModel, *, freeze_encoder: bool, freeze_feature_encoder: bool | None) -> None:
    """Fix parts of the pretrained encoder before training. ``freeze_feature_encoder``: the convolutional
    front end (None: yes for a Wav2Vec2-family encoder, no for Whisper's); ``freeze_encoder``: the whole
    encoder, so that only the classification head learns."""
    whisper = isinstance(model, WhisperForAudioClassification)
    if whisper and freeze_feature_encoder:
        model.encoder.conv1.requires_grad_(False)
        model.encoder.conv2.requires_grad_(False)
    elif not whisper and freeze_feature_encoder is not False and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    if freeze_encoder:
        (model.encoder if whisper else model.base_model).requires_grad_(False)


def _from_whisper_asr(model_args: ModelArguments, args: AudioClassifierArguments, labels: dict,
                      encoder_context_seconds: int | None
                      ) -> tuple[WhisperForAudioClassification, WhisperFeatureExtractor]:
    """Whisper ASR checkpoint -> WhisperForAudioClassification with the same encoder weights."""
    asr, processor = load_whisper(model_args, task="audio_classification", needs_tokenizer=False)  # encoder only
    if encoder_context_seconds is not None:
        set_encoder_context(asr, processor, encoder_context_seconds)
    config = asr.config
    config.update({**labels, "use_weighted_layer_sum": args.use_weighted_layer_sum,
                   "classifier_proj_size": args.classifier_proj_size,
                   "architectures": ["WhisperForAudioClassification"]})
    model = WhisperForAudioClassification(config)
    model.encoder.load_state_dict(asr.model.encoder.state_dict())
    logger.info("Whisper encoder (%d layers, %d s context) under a %d-class head", config.encoder_layers,
                processor.feature_extractor.chunk_length, len(labels["label2id"]))
    return model, processor.feature_extractor


def load_saved_classifier(model_dir: str) -> tuple[PreTrainedModel, object]:
    """A classifier saved by this task (or any audio-classification checkpoint) for evaluation."""
    config = AutoConfig.from_pretrained(resolve_model_path(model_dir))
    check_model_family(model_dir, config.to_dict(), task="audio_classification", accepted={*WAV2VEC2_FAMILY, "whisper"},
                       needs="an audio classifier saved by the audio_classification task",
                       architectures=tuple(sorted(CLASSIFIER_ARCHITECTURES)))
    model = AutoModelForAudioClassification.from_pretrained(model_dir, use_safetensors=True)
    return model, AutoFeatureExtractor.from_pretrained(model_dir)


def input_limits(model_args: ModelArguments, encoder_context_seconds: int | None = None) -> tuple[int, float | None]:
    """Sampling rate and longest clip (Whisper's context, or ``encoder_context_seconds``; None: unbounded)
    of the model to be built, read from its feature extractor before any weights are loaded, so the data
    is decoded once."""
    path = resolve_model_path(model_args.model_name_or_path)
    extractor = AutoFeatureExtractor.from_pretrained(path, revision=model_args.revision,
                                                     cache_dir=model_args.cache_dir)
    if isinstance(extractor, WhisperFeatureExtractor):
        return extractor.sampling_rate, float(encoder_context_seconds or extractor.chunk_length)
    return extractor.sampling_rate, None


def collator_padding(feature_extractor: object) -> bool | str:
    """Whisper's encoder takes only full-context features; the others pad to the longest clip."""
    return "max_length" if isinstance(feature_extractor, WhisperFeatureExtractor) else True


def max_clip_seconds(feature_extractor: object) -> float | None:
    """Longest clip the encoder can see whole (Whisper's context), or None when unbounded."""
    if isinstance(feature_extractor, WhisperFeatureExtractor):
        return float(feature_extractor.chunk_length)
    return None


def balanced_class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """``n_samples / (n_classes * count_c)`` per class (scikit-learn's 'balanced'); a class without
    training rows gets weight 0, it cannot be learnt anyway."""
    counts = Counter(labels)
    total = len(labels)
    return torch.tensor([total / (num_classes * counts[c]) if counts[c] else 0.0 for c in range(num_classes)],
                        dtype=torch.float32)
