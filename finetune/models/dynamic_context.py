"""Dynamic encoder context: run Whisper's encoder on each batch's own length, not always on 30 s.

Whisper pads every input to 30 s and its encoder refuses anything else, so a 3-second clip pays for
30 seconds of self-attention. Here the encoder is taught (by a forward hook, no code of its own) to take
features of any length up to its window: each call trims the batch's trailing padding, rounds the
longest clip up to a step (``step_seconds``), and uses that many of the sinusoidal positions. The
weights are untouched and all 1,500 positions stay, so the saved model is a stock Whisper that
``pipeline()``, CTranslate2 and faster-whisper run at 30 s as ever.

Padding is recognised exactly: the feature extractor pads with zero samples, whose log-mel frames all
equal the clip's floor (its maximum less 8, normalised), so a trailing run of frames equal to the
row's minimum in every mel bin is padding (or digital silence, which carries no speech either);
``generate`` pads features shorter than the window with zero frames, recognised the same way.
Features computed with dither have no such frames and run untrimmed: slower, never wrong.

A model only transcribes well at a shortened context once it has learnt to (fine-tuned with
``dynamic_encoder_context``, or context-tuned from audio alone: :mod:`finetune.tasks.asr_context_tuning`);
such a model says so in its ``config.json`` (:data:`CONFIG_KEY`), and ``finetune transcribe``, ``slu`` and
``evaluate`` then serve it at dynamic context.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch

from finetune.data.collators import padded_samples  # noqa: F401  (re-exported: the batch length)

CONFIG_KEY = "finetune_dynamic_context"  # in config.json: {"step_seconds": 1.0}
FRAMES_PER_SECOND = 100  # Whisper's log-mel frames: 16 kHz, hop 160
DEFAULT_STEP_SECONDS = 1.0
_HOOKS_ATTR = "_finetune_dynamic_context"


def step_frames(step_seconds: float) -> int:
    """Frames per step, even (the encoder's second convolution has stride 2)."""
    frames = max(2, int(round(step_seconds * FRAMES_PER_SECOND)))
    return frames + frames % 2


def content_frames(features: torch.Tensor) -> torch.Tensor:
    """Per row of ``(batch, mels, frames)`` features: frames up to the last one that is not padding.

    Padding is the extractor's (frames at the row's floor) or generate's, which pads short features
    to the window with zeros (a log-mel frame of exactly 0 in every bin is no sound anyone recorded).
    """
    floor = features.amin(dim=(1, 2), keepdim=True)
    is_audio = ((features != floor) & (features != 0)).any(dim=1)  # (batch, frames)
    positions = torch.arange(1, features.shape[-1] + 1, device=features.device)
    return (is_audio * positions).amax(dim=1)


def trimmed_length(features: torch.Tensor, step: int) -> int:
    """Frames the batch needs: its longest content rounded up to ``step``, within what it was given."""
    longest = int(content_frames(features).max()) if features.numel() else 0
    return min(features.shape[-1], max(step, math.ceil(longest / step) * step))


class _PositionWindow(torch.nn.Module):
    """The first ``num_embeddings`` rows of the encoder's position table (a view: no copy, same weights)."""

    def __init__(self, table: torch.nn.Embedding, num_embeddings: int) -> None:
        super().__init__()
        self.table = table
        self.num_embeddings = num_embeddings

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)


class _DynamicContextHooks:
    """Pre/post forward hooks on a Whisper encoder that trim its input and its positions per call.

    The encoder reads its length from ``config.max_source_positions`` and ``embed_positions``; both are
    swapped for the call and restored after it (also when the call raises), under a lock so two threads
    sharing one model never see each other's length.
    """

    def __init__(self, encoder: torch.nn.Module, step_seconds: float) -> None:
        self.encoder = encoder
        self.step = step_frames(step_seconds)
        self.step_seconds = step_seconds
        self.full_positions = int(encoder.embed_positions.num_embeddings)
        self.lock = threading.RLock()
        self.saved: tuple[Any, int] | None = None
        self.last_frames: int | None = None  # frames of the latest call, for tests and benchmarks
        self.handles = [
            encoder.register_forward_pre_hook(self.before, with_kwargs=True),
            encoder.register_forward_hook(self.after, with_kwargs=True, always_call=True),
        ]

    def before(self, encoder: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        features = kwargs["input_features"] if "input_features" in kwargs else args[0]
        full_frames = 2 * self.full_positions
        if features.shape[-1] > full_frames:
            raise ValueError(f"input features of {features.shape[-1]} frames exceed the encoder's window of "
                             f"{full_frames} frames ({full_frames / FRAMES_PER_SECOND:g} s)")
        frames = trimmed_length(features, self.step)
        features = features[..., :frames]
        self.lock.acquire()
        self.saved = (encoder.embed_positions, encoder.config.max_source_positions)
        encoder.embed_positions = _PositionWindow(self.saved[0], frames // 2)
        encoder.config.max_source_positions = frames // 2
        self.last_frames = frames
        if "input_features" in kwargs:
            return args, {**kwargs, "input_features": features}
        return (features, *args[1:]), kwargs

    def after(self, encoder: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self.saved is None:
            return  # the pre-hook raised before taking the lock
        encoder.embed_positions, encoder.config.max_source_positions = self.saved
        self.saved = None
        self.lock.release()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _encoder(model: torch.nn.Module) -> torch.nn.Module:
    """The Whisper encoder inside ``model`` (a Whisper model, or one wrapped by peft)."""
    get = getattr(model, "get_encoder", None)
    encoder = get() if get is not None else None
    if encoder is None or not hasattr(encoder, "embed_positions"):
        raise TypeError(f"{type(model).__name__} has no Whisper encoder: dynamic context is for Whisper models")
    return encoder


def enable_dynamic_context(model: torch.nn.Module, step_seconds: float = DEFAULT_STEP_SECONDS) -> None:
    """Make ``model``'s encoder accept features of any length up to its window (idempotent)."""
    if step_seconds <= 0:
        raise ValueError(f"step_seconds must be positive, got {step_seconds}")
    encoder = _encoder(model)
    existing = getattr(encoder, _HOOKS_ATTR, None)
    if existing is not None:
        if existing.step_seconds == step_seconds:
            return
        existing.remove()
    setattr(encoder, _HOOKS_ATTR, _DynamicContextHooks(encoder, step_seconds))


def disable_dynamic_context(model: torch.nn.Module) -> None:
    encoder = _encoder(model)
    hooks = getattr(encoder, _HOOKS_ATTR, None)
    if hooks is not None:
        hooks.remove()
        delattr(encoder, _HOOKS_ATTR)


def enabled_step_seconds(model: torch.nn.Module) -> float | None:
    """The step ``model`` runs at dynamic context with, or None (it runs at its full window)."""
    try:
        hooks = getattr(_encoder(model), _HOOKS_ATTR, None)
    except TypeError:
        return None
    return hooks.step_seconds if hooks is not None else None


def last_encoder_frames(model: torch.nn.Module) -> int | None:
    """Frames the encoder ran on in its latest call (None: dynamic context is off)."""
    hooks = getattr(_encoder(model), _HOOKS_ATTR, None)
    return hooks.last_frames if hooks is not None else None


def mark_trained(config: Any, step_seconds: float, longest_seconds: float | None = None) -> None:
    """Record in the model's config that it was trained (or tuned) to run at dynamic context, and on
    recordings up to how long (``longest_seconds``, rounded up to the step): served longer audio, it is
    given pieces of at most that length (:func:`serving_window_seconds`)."""
    marker: dict[str, float] = {"step_seconds": float(step_seconds)}
    if longest_seconds is not None:
        marker["trained_seconds"] = float(math.ceil(longest_seconds / step_seconds - 1e-9) * step_seconds)
    setattr(config, CONFIG_KEY, marker)


def serving_window_seconds(config: Any, window_seconds: float) -> float:
    """The longest piece of a recording to give a model at once: its window, or, for a model trained at
    dynamic context on shorter recordings, the longest it was trained on (a model that only ever heard
    ten words stops after about ten, whatever its window). ``config``: the model's config, or its
    ``config.json`` as a dict."""
    value = config.get(CONFIG_KEY) if isinstance(config, dict) else getattr(config, CONFIG_KEY, None)
    trained = value.get("trained_seconds") if isinstance(value, dict) else None
    if isinstance(trained, (int, float)) and trained > 0:
        return min(float(window_seconds), float(trained))
    return float(window_seconds)


def unmark(config: Any) -> None:
    if hasattr(config, CONFIG_KEY):
        delattr(config, CONFIG_KEY)


def full_window_features(features: torch.Tensor, frames: int) -> torch.Tensor:
    """Features trimmed to a batch's length, extended to ``frames`` as the extractor pads: with each
    row's floor (its maximum less 2 in the normalised log-mel, where zero samples land)."""
    missing = frames - features.shape[-1]
    if missing <= 0:
        return features
    floor = features.amax(dim=(1, 2), keepdim=True) - 2.0
    return torch.cat([features, floor.expand(-1, features.shape[1], missing)], dim=-1)


def serve_as_trained(model: torch.nn.Module) -> float | None:
    """Enable dynamic context on a loaded model whose config says it was trained for it; its step, or None."""
    step = trained_step_seconds(model.config)
    if step is not None:
        enable_dynamic_context(model, step)
    return step


def trained_step_seconds(config: Any) -> float | None:
    """The step a saved model was trained for at dynamic context, or None (a fixed-context model)."""
    value = getattr(config, CONFIG_KEY, None)
    if isinstance(value, dict) and isinstance(value.get("step_seconds"), (int, float)) and value["step_seconds"] > 0:
        return float(value["step_seconds"])
    return None
