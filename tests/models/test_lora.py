"""LoRA: adapters train only a small part of the model and merge back into a plain transformers model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import WhisperForConditionalGeneration

import finetune
from finetune.models.lora import LoraArguments, apply_lora, merge_lora


def test_off_by_default_and_validated(tiny_whisper_dir: Path) -> None:
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    assert apply_lora(model, LoraArguments()) is model
    with pytest.raises(ValueError, match="lora_r"):
        LoraArguments(lora_r=-1)
    with pytest.raises(ValueError, match=r"\['qkv'\] not found.*q_proj"):
        apply_lora(model, LoraArguments(lora_r=4, lora_target_modules="qkv"))


def test_only_adapters_train_and_merging_keeps_the_outputs(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir)
    total = sum(p.numel() for p in model.parameters())
    wrapped = apply_lora(model, LoraArguments(lora_r=4, lora_dropout=0.0))
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert sum(p.numel() for n, p in wrapped.named_parameters() if p.requires_grad) < 0.2 * total
    for name, parameter in wrapped.named_parameters():  # make the adapters do something
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    wrapped.eval()
    features = torch.randn(1, model.config.num_mel_bins, 2 * model.config.max_source_positions)
    decoder_ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        adapted = wrapped(input_features=features, decoder_input_ids=decoder_ids).logits

    merged = merge_lora(wrapped, tmp_path / "adapter")
    assert type(merged) is WhisperForConditionalGeneration
    with torch.no_grad():
        assert torch.allclose(merged(input_features=features, decoder_input_ids=decoder_ids).logits, adapted,
                              atol=1e-4)
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)


@pytest.mark.slow
def test_training_with_lora_saves_a_plain_merged_model(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "task": "asr_seq2seq", "model_name_or_path": str(tiny_whisper_dir), "encoder_context_seconds": 2,
        "dataset_name": "sample:fsdd", "max_train_samples": 8, "max_eval_samples": 4,
        "max_duration_in_seconds": 2, "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 4,
        "learning_rate": 1e-2, "max_steps": 2, "generation_max_length": 8, "use_cpu": True, "lora_r": 4,
        "save_strategy": "no",
    }))
    finetune.train(config)
    run = tmp_path / "run"
    saved = load_file(run / "model.safetensors")
    assert not any("lora_" in key or "base_model" in key for key in saved)  # a plain Whisper checkpoint
    base = load_file(tiny_whisper_dir / "model.safetensors")
    key = "model.decoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(saved[key], base[key])  # the adapters' update is folded into the weights
    key = "model.decoder.layers.0.fc1.weight"
    assert torch.equal(saved[key], base[key])  # layers without adapters stay as they were
    assert (run / "lora_adapter" / "adapter_model.safetensors").is_file()
    assert WhisperForConditionalGeneration.from_pretrained(run) is not None
    assert json.loads((run / "eval_results.json").read_text())["num_samples"] == 4
