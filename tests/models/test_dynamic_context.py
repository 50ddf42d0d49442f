"""Dynamic encoder context: exact trimming, stock models on disk, training at each batch's length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

from finetune.data.audio import load_audio
from finetune.data.collators import SpeechSeq2SeqCollator
from finetune.models import dynamic_context
from finetune.models.whisper import set_encoder_context

SAMPLE = Path(__file__).resolve().parents[2] / "finetune" / "samples" / "fsdd" / "test"


def _clips(count: int = 3) -> list[np.ndarray]:
    return [load_audio(str(p), 16000) for p in sorted(SAMPLE.glob("*.flac"))[:count]]


def _model(path: Path) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    return WhisperForConditionalGeneration.from_pretrained(path).eval(), WhisperProcessor.from_pretrained(path)


def test_padding_is_found_exactly_and_rounded_up_to_the_step(tiny_whisper_dir: Path) -> None:
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    audio = _clips(1)[0]
    features = extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    content = int(dynamic_context.content_frames(features)[0])
    assert len(audio) // 160 <= content <= len(audio) // 160 + 3  # the STFT window reaches a frame or two past
    assert dynamic_context.trimmed_length(features, 100) == -(-content // 100) * 100
    silent = extractor(np.zeros(16000, np.float32), sampling_rate=16000, return_tensors="pt").input_features
    assert dynamic_context.trimmed_length(silent, 100) == 100  # nothing to hear: one step, never zero frames


def test_trimmed_encoder_equals_a_model_cut_to_that_window(tiny_whisper_dir: Path) -> None:
    """The hook is exact: the same numbers as a model whose positions were cut to the batch's length."""
    model, processor = _model(tiny_whisper_dir)
    audio = _clips(1)[0]
    full = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    dynamic_context.enable_dynamic_context(model, 1.0)
    with torch.no_grad():
        trimmed = model.model.encoder(full).last_hidden_state
    frames = dynamic_context.last_encoder_frames(model)
    assert frames is not None and frames % 100 == 0 and trimmed.shape[1] == frames // 2
    cut, cut_processor = _model(tiny_whisper_dir)
    set_encoder_context(cut, cut_processor, frames // 100)
    with torch.no_grad():
        reference = cut.model.encoder(full[..., :frames]).last_hidden_state
    torch.testing.assert_close(trimmed, reference)
    # afterwards the encoder is its saved self again: full window, all positions
    assert model.model.encoder.embed_positions.num_embeddings == model.config.max_source_positions == 1500


def test_generate_gives_the_same_tokens_from_30s_or_trimmed_features(tiny_whisper_dir: Path) -> None:
    model, processor = _model(tiny_whisper_dir)
    dynamic_context.enable_dynamic_context(model, 1.0)
    clips = _clips(3)
    extractor = processor.feature_extractor
    padded = extractor(clips, sampling_rate=16000, return_tensors="pt").input_features
    short = extractor(clips, sampling_rate=16000, return_tensors="pt",
                      max_length=dynamic_context.padded_samples(max(map(len, clips)), 1.0, 16000, 480000)).input_features
    assert short.shape[-1] < padded.shape[-1]
    with torch.no_grad():
        a = model.generate(padded, max_length=12, num_beams=1)
        b = model.generate(short, max_length=12, num_beams=1)
    assert torch.equal(a, b)


def test_state_is_restored_when_the_forward_raises(tiny_whisper_dir: Path) -> None:
    model, _ = _model(tiny_whisper_dir)
    dynamic_context.enable_dynamic_context(model, 1.0)
    encoder = model.model.encoder
    with pytest.raises(RuntimeError):
        encoder(torch.zeros(1, 7, 200))  # wrong mel count: the first convolution fails
    assert encoder.embed_positions.num_embeddings == 1500 and model.config.max_source_positions == 1500
    with pytest.raises(ValueError, match="exceed the encoder's window"):
        encoder(torch.zeros(1, 80, 3200))
    with torch.no_grad():
        assert encoder(torch.zeros(1, 80, 200)).last_hidden_state.shape[1] == 50  # and it still works


def test_collator_pads_each_batch_to_its_longest_clip_rounded_up(tiny_whisper_dir: Path) -> None:
    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    rows = [{"audio": a, "labels": [1, 2, 3]} for a in _clips(4)]
    longest = max(len(r["audio"]) for r in rows) / 16000
    dynamic = SpeechSeq2SeqCollator(processor, 50257, dynamic_step_seconds=0.5)(rows)
    assert dynamic["input_features"].shape[-1] == int(np.ceil(longest / 0.5) * 50)
    assert SpeechSeq2SeqCollator(processor, 50257)(rows)["input_features"].shape[-1] == 3000


def test_full_window_features_match_the_extractor_padding(tiny_whisper_dir: Path) -> None:
    """What a full-context teacher is given: exactly the features the extractor pads to 30 s."""
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_whisper_dir)
    clips = _clips(2)
    full = extractor(clips, sampling_rate=16000, return_tensors="pt").input_features
    short = extractor(clips, sampling_rate=16000, return_tensors="pt", max_length=32000).input_features
    rebuilt = dynamic_context.full_window_features(short, 3000)
    torch.testing.assert_close(rebuilt[..., 210:], full[..., 210:])  # the padding, bit for bit
    torch.testing.assert_close(rebuilt[..., :190], full[..., :190])  # the audio (away from the edge frames)


@pytest.mark.slow
def test_dynamic_training_saves_a_stock_whisper_marked_for_dynamic_serving(
        tmp_path: Path, tiny_whisper_dir: Path, one_torch_thread) -> None:
    import finetune

    seen: list[int] = []
    original = dynamic_context._DynamicContextHooks.before

    def spy(self, encoder, args, kwargs):
        out = original(self, encoder, args, kwargs)
        seen.append(self.last_frames)
        return out

    config = {
        "task": "asr_seq2seq", "model_name_or_path": str(tiny_whisper_dir), "dynamic_encoder_context": True,
        "dataset_name": "sample:fsdd", "max_train_samples": 16, "max_eval_samples": 4, "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "max_steps": 2, "learning_rate": 1e-3,
        "generation_max_length": 6, "use_cpu": True, "save_strategy": "no", "eval_strategy": "no",
    }
    monkey = pytest.MonkeyPatch()
    monkey.setattr(dynamic_context._DynamicContextHooks, "before", spy)
    try:
        finetune.train(config)
    finally:
        monkey.undo()
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    marker = saved[dynamic_context.CONFIG_KEY]
    assert saved["max_source_positions"] == 1500 and marker["step_seconds"] == 1.0
    from finetune.config import DataArguments
    from finetune.data.speech import load_speech_split

    train, _ = load_speech_split(DataArguments(dataset_name="sample:fsdd"), "train", sampling_rate=16000,
                                 max_samples=16)
    assert marker["trained_seconds"] == np.ceil(max(train["duration"]))  # the longest clip, rounded up to 1 s
    assert WhisperProcessor.from_pretrained(run).feature_extractor.chunk_length == 30
    assert seen and max(seen) <= 300 and all(f % 100 == 0 for f in seen)  # FSDD clips: at most 3 s a batch
    args = json.loads((run / "training_args.json").read_text())
    assert args["train_sampling_strategy"] == "group_by_length" and args["length_column_name"] == "duration"
    # a stock transformers model: the plain class loads it and runs it at 30 s
    stock = WhisperForConditionalGeneration.from_pretrained(run)
    assert stock.model.encoder.embed_positions.num_embeddings == 1500
    # finetune evaluate serves it at dynamic context
    seen.clear()
    monkey.setattr(dynamic_context._DynamicContextHooks, "before", spy)
    try:
        scores = finetune.evaluate(str(run), "sample:fsdd", split="test", max_eval_samples=4,
                                   output_dir=str(tmp_path / "eval"))
    finally:
        monkey.undo()
    assert scores["num_samples"] == 4 and seen and max(seen) <= 300
    assert yaml.safe_load((run / "finetune_config.yaml").read_text())["dynamic_encoder_context"] is True
