"""Dynamic encoder context through CTranslate2: the marker survives export, and CT2Transcriber decodes the
same tokens as transformers (with dynamic context enabled, or at 30 s) on the same audio."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from finetune.convert.ct2_export import MissingDependencyError, export_ct2, exported_step_seconds
from finetune.data.audio import load_audio
from finetune.models.dynamic_context import CONFIG_KEY, enable_dynamic_context, last_encoder_frames, mark_trained

pytest.importorskip("ctranslate2")

FSDD = Path(__file__).resolve().parents[2] / "finetune" / "samples" / "fsdd" / "test"
CLIPS = [FSDD / "3_theo_0.flac", FSDD / "7_lucas_0.flac"]
RATE = 16000
MAX_LENGTH = 14  # counts the 2-token prompt of an English-only model


@pytest.fixture(scope="module")
def dynamic_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Whisper marked as trained for dynamic context, as context tuning saves it."""
    from transformers import WhisperConfig

    from tests.helpers import build_tiny_whisper

    target = build_tiny_whisper(tmp_path_factory.mktemp("dynamic-whisper"))
    config = WhisperConfig.from_pretrained(target)
    mark_trained(config, 1.0)
    config.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def dynamic_ct2(dynamic_whisper: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_ct2(dynamic_whisper, tmp_path_factory.mktemp("dynamic-ct2") / "ct2", quantization="float32")


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """A short clip and a longer one (about 1.5 s, not near a step boundary): the batch pads to 2 s."""
    short, other = (load_audio(path, RATE) for path in CLIPS)
    longer = np.concatenate([short, other, short, other])
    assert 1.1 * RATE < len(longer) < 1.9 * RATE
    return [short, longer]


def _transformers_ids(model_dir: Path, clips: list[np.ndarray], *, dynamic: bool) -> tuple[list[list[int]], int | None]:
    """Greedy text ids from transformers on 30 s features (trimmed by the encoder hook when ``dynamic``)."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(model_dir, use_safetensors=True).eval()
    processor = WhisperProcessor.from_pretrained(model_dir)
    if dynamic:
        enable_dynamic_context(model, 1.0)
    features = processor.feature_extractor(clips, sampling_rate=RATE, return_tensors="pt").input_features
    with torch.inference_mode():
        generated = model.generate(features, max_new_tokens=MAX_LENGTH - 2, return_timestamps=False)
    end = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    frames = last_encoder_frames(model) if dynamic else None
    return [[t for t in row if t < end] for row in generated.tolist()], frames


def test_marker_survives_export_and_picks_the_context(dynamic_ct2: Path, tiny_whisper_dir: Path,
                                                      tmp_path: Path) -> None:
    from finetune.inference.ct2_decode import CT2Transcriber

    config = json.loads((dynamic_ct2 / "config.json").read_text())
    assert config[CONFIG_KEY] == {"step_seconds": 1.0} and "suppress_ids" in config  # CTranslate2's keys kept
    assert exported_step_seconds(dynamic_ct2) == 1.0
    assert CT2Transcriber(dynamic_ct2).step_seconds == 1.0  # auto: trimmed, as marked
    assert CT2Transcriber(dynamic_ct2, context="full").step_seconds is None

    stock = export_ct2(tiny_whisper_dir, tmp_path / "stock")
    assert CONFIG_KEY not in json.loads((stock / "config.json").read_text())
    assert exported_step_seconds(stock) is None
    assert CT2Transcriber(stock).step_seconds is None  # auto: a stock model stays at 30 s
    assert CT2Transcriber(stock, context="dynamic", step_seconds=2.0).step_seconds == 2.0
    with pytest.raises(ValueError, match="context must be one of"):
        CT2Transcriber(stock, context="short")


def test_dynamic_context_matches_transformers_on_the_trimmed_length(dynamic_whisper: Path, dynamic_ct2: Path,
                                                                     clips: list[np.ndarray]) -> None:
    from finetune.inference.ct2_decode import CT2Transcriber

    transcriber = CT2Transcriber(dynamic_ct2, context="dynamic", compute_type="float32", intra_threads=1,
                                 max_length=MAX_LENGTH)
    ids = transcriber.generate_ids(clips)
    assert transcriber.last_encoder_frames == 200  # the 1.5 s clip rounded up to 2 s, not 3000 frames
    assert transcriber.log_mel(clips).shape == (2, 80, 200)
    expected, hf_frames = _transformers_ids(dynamic_whisper, clips, dynamic=True)
    assert hf_frames == 200
    assert ids == expected and all(ids)
    texts = transcriber.transcribe_batch(clips)
    assert texts == [transcriber.tokenizer.decode(row).strip() for row in ids]


def test_full_context_matches_transformers_at_30_seconds(dynamic_whisper: Path, dynamic_ct2: Path,
                                                         clips: list[np.ndarray]) -> None:
    from finetune.inference.ct2_decode import CT2Transcriber

    transcriber = CT2Transcriber(dynamic_ct2, context="full", compute_type="float32", intra_threads=1,
                                 max_length=MAX_LENGTH)
    ids = transcriber.generate_ids(clips)
    assert transcriber.last_encoder_frames == 3000
    assert ids == _transformers_ids(dynamic_whisper, clips, dynamic=False)[0]


def test_clip_over_the_window_and_bad_settings_raise(dynamic_ct2: Path, monkeypatch) -> None:
    from finetune.inference.ct2_decode import CT2Transcriber

    transcriber = CT2Transcriber(dynamic_ct2, compute_type="float32", intra_threads=1)
    with pytest.raises(ValueError, match=r"clip 1 is 31\.00 s long.*at most 30 s"):
        transcriber.transcribe_batch([np.zeros(RATE, np.float32), np.zeros(31 * RATE, np.float32)])
    assert transcriber.transcribe_batch([]) == []
    with pytest.raises(ValueError, match="max_length"):
        CT2Transcriber(dynamic_ct2, max_length=449)
    with pytest.raises(ValueError, match="English-only"):
        CT2Transcriber(dynamic_ct2, language="fr")
    with pytest.raises(FileNotFoundError, match="model.bin"):
        CT2Transcriber(dynamic_ct2.parent)
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match="pip install ctranslate2"):
        CT2Transcriber(dynamic_ct2)


def test_round_trip_check_compares_the_trimmed_length_too(dynamic_whisper: Path, dynamic_ct2: Path) -> None:
    pytest.importorskip("faster_whisper")
    from finetune.convert.ct2_export import check_round_trip

    report = check_round_trip(dynamic_whisper, dynamic_ct2, CLIPS[:1], max_new_tokens=12)
    assert report.identical, report.describe()
    item = report.items[0]
    assert item.dynamic_tokens_match is True and item.dynamic_ct2_text == item.dynamic_transformers_text
    assert isinstance(item.faster_whisper_text, str)  # all 1,500 positions kept: faster-whisper serves it at 30 s
    assert "at dynamic context (same tokens)" in report.describe()
