"""Builders of tiny random models for tests: real tokenizers and processors, random small weights."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile as sf
import torch


def build_tiny_whisper(target: Path, *, context_seconds: int = 30, decoder_layers: int = 1) -> Path:
    """A 1-encoder-layer, 32-wide Whisper (``decoder_layers`` decoder layers) with tiny.en's tokenizer,
    processor and generation config."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperForConditionalGeneration,
        WhisperProcessor,
    )

    from finetune.models.registry import resolve_model_path

    real = resolve_model_path("offline:whisper-tiny.en")
    real_config = WhisperConfig.from_pretrained(real)
    config = WhisperConfig(
        vocab_size=real_config.vocab_size,
        num_mel_bins=real_config.num_mel_bins,
        d_model=32,
        encoder_layers=1,
        decoder_layers=decoder_layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=context_seconds * 50,
        max_target_positions=real_config.max_target_positions,
        decoder_start_token_id=real_config.decoder_start_token_id,
        pad_token_id=real_config.pad_token_id,
        bos_token_id=real_config.bos_token_id,
        eos_token_id=real_config.eos_token_id,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig.from_pretrained(real)
    model.generation_config.alignment_heads = [[0, 0]]
    processor = WhisperProcessor.from_pretrained(real)
    if context_seconds != 30:  # the feature extractor pads to the window the encoder was cut to
        processor.feature_extractor = type(processor.feature_extractor)(
            **{**processor.feature_extractor.to_dict(), "chunk_length": context_seconds})
    model.save_pretrained(target)
    processor.save_pretrained(target)
    return target


def write_audiofolder(root: Path, split: str, rows: list[tuple[str, np.ndarray | None, str]], rate: int = 16000) -> Path:
    """Write ``<root>/<split>/metadata.csv`` and wav files; ``None`` audio writes no file (a missing file)."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcript"])
        for name, samples, text in rows:
            if samples is not None:
                sf.write(folder / name, samples, rate)
            writer.writerow([name, text])
    return root


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def build_tiny_wav2vec2(target: Path, *, feat_extract_norm: str = "layer") -> Path:
    """A randomly initialised 1-layer, 32-wide Wav2Vec2 encoder (no head) with its feature extractor:
    stands in for a pretrained encoder such as facebook/wav2vec2-base."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 4, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_norm=feat_extract_norm, do_stable_layer_norm=feat_extract_norm == "layer",
        mask_time_length=2,
    )
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(target)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=feat_extract_norm == "layer").save_pretrained(target)
    return target


def whisper_stopping_early(source: Path, target: Path, max_length: int) -> Path:
    """A copy of a saved Whisper that stops after ``max_length`` tokens: random weights rarely say
    end-of-text, and generating 448 tokens a clip would make a test slow."""
    from transformers import GenerationConfig

    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    generation = GenerationConfig.from_pretrained(target)
    generation.max_length = max_length
    generation.save_pretrained(target)
    return target


@contextmanager
def script_module(path: Path) -> Iterator[ModuleType]:
    """Import a file under scripts/ (not a package) as a module for the length of a test module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def build_tiny_multilingual_whisper(target: Path, *, tiktoken_path: Path | None = None) -> Path:
    """A 1-layer, 32-wide random Whisper with OpenAI's multilingual vocabulary (built from openai-whisper's
    multilingual.tiktoken, no Hub), a WhisperFeatureExtractor and a multilingual generation config:
    stands in for openai/whisper-tiny the way :func:`build_tiny_whisper` stands in for tiny.en."""
    from finetune.models.whisper_vocabulary import save_random_multilingual_whisper

    return save_random_multilingual_whisper(target, tiktoken_path=tiktoken_path)
