"""int8 weights for CPU inference: dynamic quantization of the Linear layers.

On CPU, Whisper's decoding time is dominated by Linear layers (the decoder runs once per token); with
int8 weights and activations quantized on the fly they run several times faster at a small accuracy
cost that the benchmark (scripts/bench_infer.py) reports beside the speed. This uses PyTorch's own
dynamic quantization (``torch.ao.quantization.quantize_dynamic``, x86/fbgemm or ARM/qnnpack kernels).
"""

from __future__ import annotations

import logging
import warnings

import torch

logger = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "int8")


def quantize_for_cpu(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Return ``model`` with int8 dynamically quantized Linear layers (``mode='int8'``), or unchanged."""
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    if mode == "none":
        return model
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("quantize=int8 is for CPU inference; run on --device cpu (GPUs are fast in fp16/bf16)")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # PyTorch marks these APIs for a future move to torchao
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        quantized = quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
    logger.info("int8 dynamic quantization applied to the Linear layers")
    return quantized
