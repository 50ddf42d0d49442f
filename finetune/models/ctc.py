"""CTC builders: a character vocabulary from the transcripts, and a Wav2Vec2-family encoder whose
CTC head is sized to it (pretrained encoder, or a small config trained from scratch).

The vocabulary is plain characters; the space becomes the word delimiter ``|``; ``[PAD]`` (id 0)
doubles as the CTC blank, ``[UNK]`` covers characters the training transcripts never showed.
Model, tokenizer and feature extractor are saved together as a ``Wav2Vec2Processor`` so that
``pipeline("automatic-speech-recognition", model=DIR)`` decodes exactly as evaluation does.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2CTCTokenizer,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Processor,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES

from finetune.config import ModelArguments, check_choices
from finetune.models.consistency import check_tokenizer, missing_tokenizer_error
from finetune.models.registry import check_model_family, resolve_model_path
from finetune.models.speech_encoder import FreezeArguments, SpecAugmentArguments

logger = logging.getLogger(__name__)

PAD, UNK, DELIMITER = "[PAD]", "[UNK]", "|"
SAMPLING_RATE = 16000
# Encoders that read the raw waveform through a convolutional feature encoder (the Wav2Vec2 family).
FAMILY = ("wav2vec2", "wav2vec2-conformer", "hubert", "wavlm", "data2vec-audio", "unispeech", "unispeech-sat",
          "sew", "sew-d")
CTC_ARCHITECTURES = {MODEL_FOR_CTC_MAPPING_NAMES[t] for t in FAMILY if t in MODEL_FOR_CTC_MAPPING_NAMES}
# Config fields a user may override on a pretrained encoder; None keeps the checkpoint's value.
_OVERRIDABLE = ("hidden_dropout", "activation_dropout", "attention_dropout", "feat_proj_dropout", "final_dropout")


@dataclass
class CTCArguments:
    """CTC fine-tuning switches (names as in transformers' run_speech_recognition_ctc example)."""

    model_config: str | None = field(
        default=None,
        metadata={"help": "Train from scratch instead of loading weights: a JSON/YAML file of config fields "
                          "(with model_type, default wav2vec2), a folder holding config.json, or a model type."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Reuse this CTC tokenizer (e.g. an already fine-tuned model's) instead of building a "
                          "character vocabulary from the training transcripts."},
    )
    layerdrop: float = field(default=0.0, metadata={"help": "Probability of skipping a transformer layer."})
    hidden_dropout: float | None = field(default=None, metadata={"help": "Override the checkpoint's dropout."})
    activation_dropout: float | None = field(default=None, metadata={"help": "Override the checkpoint's dropout."})
    attention_dropout: float | None = field(default=None, metadata={"help": "Override the checkpoint's dropout."})
    feat_proj_dropout: float | None = field(default=None, metadata={"help": "Override the checkpoint's dropout."})
    final_dropout: float | None = field(default=None, metadata={"help": "Dropout before the CTC head."})
    ctc_loss_reduction: Literal["mean", "sum"] = field(
        default="mean", metadata={"help": "mean (per target length) or sum."}
    )
    ctc_zero_infinity: bool = field(
        default=False,
        metadata={"help": "Zero infinite losses. Rows too short for their transcript are already bad rows."},
    )
    group_by_length: bool = field(
        default=False,
        metadata={"help": "Batch clips of similar duration (the transformers 4 name of "
                          "train_sampling_strategy=group_by_length)."},
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0.0 <= self.layerdrop < 1.0:
            raise ValueError(f"layerdrop must be in [0, 1), got {self.layerdrop}")


def build_vocab(transcripts: Iterable[str]) -> dict[str, int]:
    """Characters of ``transcripts`` -> ids: ``[PAD]`` (the CTC blank) 0, ``[UNK]`` 1, then ``|`` for the
    space and every other character in sorted order (so the same data always gives the same ids)."""
    counts = Counter()
    for text in transcripts:
        counts.update(text)
    chars = sorted(c for c in counts if not c.isspace())
    if not chars:
        raise ValueError("the training transcripts hold no characters to build a CTC vocabulary from")
    for reserved in (PAD, UNK, DELIMITER):
        if reserved in chars:
            raise ValueError(f"the transcripts contain {reserved!r}, which the CTC vocabulary reserves")
    return {PAD: 0, UNK: 1, DELIMITER: 2, **{c: i + 3 for i, c in enumerate(chars)}}


def build_tokenizer(vocab: dict[str, int]) -> Wav2Vec2CTCTokenizer:
    """A character CTC tokenizer over ``vocab`` (no BOS/EOS: CTC emits neither)."""
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file = Path(tmp) / "vocab.json"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        return Wav2Vec2CTCTokenizer(str(vocab_file), unk_token=UNK, pad_token=PAD, word_delimiter_token=DELIMITER,
                                    bos_token=None, eos_token=None)


def load_tokenizer(name_or_path: str, model_args: ModelArguments) -> Wav2Vec2CTCTokenizer:
    """A CTC tokenizer saved elsewhere (a fine-tuned model's folder, or a tokenizer alone), checked on
    its own: it must hold characters that encode and decode (:mod:`finetune.models.consistency`)."""
    path = resolve_model_path(name_or_path, model=False)
    try:
        tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(path, revision=model_args.revision,
                                                         cache_dir=model_args.cache_dir)
    except (OSError, TypeError, ValueError) as error:  # no vocab.json: a TypeError deep in the tokenizer
        raise missing_tokenizer_error(path, error) from error
    check_tokenizer(tokenizer, None, path)
    return tokenizer


def load_saved_ctc(model_dir: str) -> tuple[PreTrainedModel, Wav2Vec2Processor]:
    """A fine-tuned CTC model and its processor, as training saved them, checked to agree."""
    path = resolve_model_path(model_dir)
    config = PretrainedConfig.get_config_dict(path)[0]
    check_model_family(model_dir, config, task="asr_ctc", accepted=FAMILY, needs="a CTC speech recognizer "
                       "(Wav2Vec2-family encoder with a CTC head)", architectures=tuple(sorted(CTC_ARCHITECTURES)))
    try:
        processor = Wav2Vec2Processor.from_pretrained(path)
    except (OSError, TypeError) as error:
        raise missing_tokenizer_error(path, error) from error
    model = AutoModelForCTC.from_pretrained(path, use_safetensors=True)
    check_tokenizer(processor.tokenizer, model.config, path)
    return model, processor


def scratch_config(source: str) -> PretrainedConfig:
    """A config to train from scratch: a JSON/YAML file, a folder with config.json, or a model type."""
    path = Path(source)
    if path.is_dir():
        return AutoConfig.from_pretrained(path)
    if path.is_file():
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
        except yaml.YAMLError as error:
            raise ValueError(f"model_config {path}: not JSON/YAML: {error}") from None
        if not isinstance(values, dict):
            raise ValueError(f"model_config {path}: expected a mapping of config fields")
        values = dict(values)
        model_type = values.pop("model_type", "wav2vec2")
        values.pop("architectures", None)
        return _for_model(model_type, values, where=str(path))
    if source in FAMILY:
        return _for_model(source, {}, where="model_config")
    raise ValueError(f"model_config {source!r} is not a file, a folder or one of the model types {', '.join(FAMILY)}")


def _for_model(model_type: str, values: dict[str, Any], where: str) -> PretrainedConfig:
    if model_type not in FAMILY:
        raise ValueError(f"{where}: model_type {model_type!r} is not a CTC encoder type ({', '.join(FAMILY)})")
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    defaults = AutoConfig.for_model(model_type)  # a config keeps unknown keys silently: check first
    unknown = [key for key in values if not hasattr(defaults, key)]
    if unknown:
        raise ValueError(f"{where}: unknown {model_type} config field(s): {', '.join(unknown)}")
    return AutoConfig.for_model(model_type, **values)


def load_feature_extractor(model_args: ModelArguments, ctc_args: CTCArguments) -> Wav2Vec2FeatureExtractor:
    """The pretrained encoder's feature extractor; from scratch, 16 kHz waveforms normalised per clip
    (with an attention mask when the feature encoder uses layer norm, as the scratch configs should)."""
    if ctc_args.model_config:
        config = scratch_config(ctc_args.model_config)
        return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLING_RATE, padding_value=0.0,
                                        do_normalize=True, return_attention_mask=config.feat_extract_norm == "layer")
    return AutoFeatureExtractor.from_pretrained(resolve_model_path(model_args.model_name_or_path),
                                                revision=model_args.revision, cache_dir=model_args.cache_dir)


def load_ctc_model(
    model_args: ModelArguments,
    ctc_args: CTCArguments,
    tokenizer: Wav2Vec2CTCTokenizer,
    *,
    freeze: FreezeArguments | None = None,
    spec_augment: SpecAugmentArguments | None = None,
    fresh_head: bool = True,
) -> PreTrainedModel:
    """A pretrained encoder (local dir, Hub id) under a CTC head of ``len(tokenizer)`` outputs, or, with
    ``model_config``, a randomly initialised model. ``fresh_head``: re-initialise a checkpoint's CTC
    head even when its size matches, since its outputs meant other characters. ``spec_augment``
    replaces the masking of the checkpoint (or scratch config) where given; ``freeze`` fixes the
    convolutional feature encoder (by default: for a pretrained encoder only) or everything but the
    CTC head (``freeze_encoder``)."""
    freeze = freeze or FreezeArguments()
    head = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "ctc_loss_reduction": ctc_args.ctc_loss_reduction,
        "ctc_zero_infinity": ctc_args.ctc_zero_infinity,
        "layerdrop": ctc_args.layerdrop,
        **(spec_augment.overrides() if spec_augment else {}),
        **{name: getattr(ctc_args, name) for name in _OVERRIDABLE if getattr(ctc_args, name) is not None},
    }
    if ctc_args.model_config:
        config = scratch_config(ctc_args.model_config)
        config.update(head)
        model = AutoModelForCTC.from_config(config)
        logger.info("training %s from scratch: %.2fM parameters", config.model_type, model.num_parameters() / 1e6)
        if freeze.freeze_feature_encoder:
            model.freeze_feature_encoder()
    else:
        model = _pretrained_ctc_model(model_args, head, fresh_head=fresh_head)
        if freeze.freeze_feature_encoder is not False:
            model.freeze_feature_encoder()
    if freeze.freeze_encoder:  # train the CTC head (lm_head) only
        model.base_model.requires_grad_(False)
    check_tokenizer(tokenizer, model.config, model_args.model_name_or_path or ctc_args.model_config)
    return model


def _pretrained_ctc_model(model_args: ModelArguments, head: dict[str, Any], *, fresh_head: bool) -> PreTrainedModel:
    path = resolve_model_path(model_args.model_name_or_path)
    common = {"revision": model_args.revision, "cache_dir": model_args.cache_dir,
              "trust_remote_code": model_args.trust_remote_code}
    config = AutoConfig.from_pretrained(path, **common)
    check_model_family(model_args.model_name_or_path, config.to_dict(), task="asr_ctc", accepted=FAMILY,
                       needs="a Wav2Vec2-family speech encoder (e.g. facebook/wav2vec2-base)")
    had_head = bool(set(config.architectures or []) & CTC_ARCHITECTURES)
    config.update(head)
    model = AutoModelForCTC.from_pretrained(path, config=config, ignore_mismatched_sizes=True, use_safetensors=True,
                                            **common)
    if had_head and fresh_head:
        torch.nn.init.normal_(model.lm_head.weight, std=config.initializer_range)
        torch.nn.init.zeros_(model.lm_head.bias)
    return model


def output_frames(model: PreTrainedModel, num_samples: list[int]) -> list[int]:
    """How many CTC frames the encoder emits for clips of ``num_samples`` samples."""
    lengths = model._get_feat_extract_output_lengths(torch.as_tensor(num_samples, dtype=torch.long))
    return [int(n) for n in lengths]


def ctc_frames_needed(label_ids: list[int]) -> int:
    """The fewest frames CTC can align ``label_ids`` to: one per label, plus a blank between repeats."""
    repeats = sum(1 for a, b in pairwise(label_ids) if a == b)
    return len(label_ids) + repeats
