"""SpecAugment for Whisper: a mask given in the config turns masking on (Whisper checkpoints ship with it off),
it masks only while training, and is saved with the model."""

from __future__ import annotations

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from finetune.models.speech_encoder import SpecAugmentArguments
from tests.helpers import build_tiny_whisper


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> WhisperForConditionalGeneration:
    path = build_tiny_whisper(tmp_path_factory.mktemp("spec") / "whisper")
    return WhisperForConditionalGeneration.from_pretrained(path)


def encoded(model: WhisperForConditionalGeneration, features: torch.Tensor, *, training: bool) -> torch.Tensor:
    model.train(training)
    torch.manual_seed(0)
    with torch.no_grad():
        # a copy: transformers masks the batch in place
        return model.model(input_features=features.clone(), decoder_input_ids=torch.tensor([[1]])).encoder_last_hidden_state


def test_a_mask_turns_masking_on_and_only_training_masks(model: WhisperForConditionalGeneration) -> None:
    assert SpecAugmentArguments().overrides() == {}  # nothing given: the checkpoint's own settings
    assert SpecAugmentArguments(mask_time_prob=0.3).overrides() == {"mask_time_prob": 0.3, "apply_spec_augment": True}
    assert SpecAugmentArguments(apply_spec_augment=False, mask_time_prob=0.3).overrides()["apply_spec_augment"] is False
    frames = 2 * model.config.max_source_positions
    features = torch.randn(1, model.config.num_mel_bins, frames)
    assert model.config.apply_spec_augment is False
    assert torch.equal(encoded(model, features, training=True), encoded(model, features, training=False))
    model.config.update(SpecAugmentArguments(mask_time_prob=0.5, mask_time_length=4).overrides())
    try:
        assert not torch.equal(encoded(model, features, training=True), encoded(model, features, training=False))
        first, second = encoded(model, features, training=False), encoded(model, features, training=False)
        assert torch.equal(first, second)  # evaluation and serving never mask
    finally:
        model.config.update({"apply_spec_augment": False})


def test_bad_mask_values_name_the_key() -> None:
    with pytest.raises(ValueError, match="mask_time_prob must be in"):
        SpecAugmentArguments(mask_time_prob=1.5)
