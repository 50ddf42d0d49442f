"""LoRA through peft: train small low-rank adapters on the attention projections instead of every weight.

Adapters cut optimizer state and gradient memory to a few percent of full fine-tuning. After training
they are merged back into the base weights, so what a run saves is a plain transformers model that
``pipeline()``, ``finetune evaluate`` and CTranslate2 export read like any other (the adapter alone is
kept beside it in ``lora_adapter/`` for users who want to ship or swap adapters).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


@dataclass
class LoraArguments:
    """Parameter-efficient fine-tuning (off unless ``lora_r`` > 0)."""

    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains every weight (full fine-tuning)."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the adapter input."})
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,out_proj",
        metadata={"help": "Comma-separated module names that get adapters (default: attention projections)."},
    )

    def __post_init__(self) -> None:
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be 0 (off) or a positive rank, got {self.lora_r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_r and not self.target_modules:
            raise ValueError("lora_target_modules is empty: name the modules that get adapters, e.g. q_proj,v_proj")

    @property
    def target_modules(self) -> list[str]:
        return [name.strip() for name in self.lora_target_modules.split(",") if name.strip()]


def apply_lora(model: torch.nn.Module, args: LoraArguments) -> torch.nn.Module:
    """Wrap ``model`` with LoRA adapters when ``lora_r`` > 0; otherwise return it unchanged."""
    if not args.lora_r:
        return model
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [name for name in args.target_modules if name not in present]
    if missing:
        raise ValueError(f"lora_target_modules: {missing} not found in {type(model).__name__}; "
                         f"linear layers it has include {sorted(_linear_names(model))}")
    config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                        target_modules=args.target_modules, bias="none")
    wrapped = get_peft_model(model, config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    logger.info("LoRA r=%d on %s: %d trainable parameters of %d (%.2f%%)", args.lora_r,
                ",".join(args.target_modules), trainable, total, 100 * trainable / total)
    return wrapped


def merge_lora(model: torch.nn.Module, adapter_dir: str | Path | None = None) -> torch.nn.Module:
    """Fold adapters into the base weights and return the plain model (a no-op without adapters).

    With ``adapter_dir``, the adapter weights are saved there first (safetensors).
    """
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model
    if adapter_dir is not None:
        model.save_pretrained(str(adapter_dir), safe_serialization=True)
    return model.merge_and_unload()


def _linear_names(model: torch.nn.Module) -> set[str]:
    return {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
