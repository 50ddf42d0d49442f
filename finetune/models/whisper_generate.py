"""A workaround for one transformers Whisper ``generate`` bug that serving paths meet.

With ``no_speech_threshold`` set, a clip generate judges silent gets an empty *float* tensor as its token
sequence, and stacking it with the others turns the whole batch's token ids into floats, which the
pipeline's decoding then rejects (``TypeError: 'float' object cannot be interpreted as an integer``): one
silent clip takes its batch down. Token ids are integers, so the wrapper casts them back.
"""

from __future__ import annotations

from typing import Any

import torch


class IntegerTokenIds:
    """``model.generate`` whose token ids always come back as integers (see the module docstring)."""

    def __init__(self, generate: Any) -> None:
        self.generate = generate

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.generate(*args, **kwargs)
        if isinstance(output, torch.Tensor):
            return output.long() if output.is_floating_point() else output
        sequences = output.get("sequences") if hasattr(output, "get") else None
        if isinstance(sequences, torch.Tensor) and sequences.is_floating_point():
            output["sequences"] = sequences.long()
        return output


def keep_token_ids_integer(model: Any) -> None:
    """Install :class:`IntegerTokenIds` on ``model`` once (an instance attribute; the class is untouched)."""
    if not isinstance(getattr(model, "generate", None), IntegerTokenIds):
        model.generate = IntegerTokenIds(model.generate)
