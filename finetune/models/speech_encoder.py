"""Options of a speech encoder that several tasks share, each declared once.

Whisper recognizers, CTC recognizers, distilled students and audio classifiers all start from a
pretrained speech encoder; a key such as ``freeze_encoder`` means the same thing in each of them, so
it is one field here, with one type and one default. A task whose own default differs says so in its
``defaults`` (``finetune train CONFIG --list-keys`` shows the value in effect).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finetune.config import check_choices

MAX_CONTEXT_SECONDS = 30  # Whisper's window


@dataclass
class FreezeArguments:
    """Which parts of the pretrained encoder stay fixed during training."""

    freeze_encoder: bool = field(
        default=False, metadata={"help": "Keep the whole encoder fixed: train only the decoder or the head."}
    )
    freeze_feature_encoder: bool | None = field(
        default=None,
        metadata={"help": "Keep the convolutional front end fixed (default: yes for a pretrained Wav2Vec2-family "
                          "encoder, no when training from scratch and for Whisper)."},
    )

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class EncoderContextArguments:
    """How much audio a Whisper encoder sees at a time."""

    encoder_context_seconds: int | None = field(
        default=None,
        metadata={"help": "Whisper: seconds of audio the encoder sees (1-30; default: the checkpoint's own, 30 for "
                          "a stock Whisper). Every window is cut to this length and saved so; longer clips are bad rows, and "
                          "finetune transcribe reads longer recordings in pieces cut at pauses. "
                          "dynamic_encoder_context is as fast on short clips and keeps the model a stock Whisper."},
    )

    dynamic_encoder_context: bool = field(
        default=False,
        metadata={"help": "Whisper: run the encoder on each batch's longest clip (rounded up to "
                          "encoder_context_step_seconds) instead of 30 s, with batches grouped by duration. The "
                          "saved model keeps all 30 s of positions (stock pipeline(), CTranslate2 and faster-whisper "
                          "run it at 30 s) and finetune transcribe/slu/evaluate serve it at dynamic context."},
    )
    encoder_context_step_seconds: float = field(
        default=1.0, metadata={"help": "With dynamic_encoder_context: the step a batch's length is rounded up to."}
    )

    def __post_init__(self) -> None:
        seconds = self.encoder_context_seconds
        if seconds is not None and not 1 <= seconds <= MAX_CONTEXT_SECONDS:
            raise ValueError(f"encoder_context_seconds must be 1..{MAX_CONTEXT_SECONDS}, got {seconds}")
        if not 0 < self.encoder_context_step_seconds <= MAX_CONTEXT_SECONDS:
            raise ValueError(f"encoder_context_step_seconds must be in (0, {MAX_CONTEXT_SECONDS}], got "
                             f"{self.encoder_context_step_seconds}")
        if self.dynamic_encoder_context and seconds is not None:
            raise ValueError("dynamic_encoder_context and encoder_context_seconds exclude each other: a dynamic "
                             "context follows each batch's length, a fixed one cuts every clip's window to "
                             f"{seconds} s; set one")

    @property
    def dynamic_step_seconds(self) -> float | None:
        """The rounding step when the context is dynamic, else None."""
        return self.encoder_context_step_seconds if self.dynamic_encoder_context else None


@dataclass
class SpecAugmentArguments:
    """SpecAugment masking of the input during training, for Wav2Vec2-family and Whisper encoders (null keeps
    the checkpoint's value). Whisper checkpoints ship with masking off (``apply_spec_augment: false``), so a
    mask given for one turns it on: otherwise the mask would be saved in its config and never applied."""

    apply_spec_augment: bool | None = field(default=None, metadata={
        "help": "Mask during training (Whisper: off in its checkpoints, on when a mask below is given; its own "
                "default is mask_time_prob 0.05 of 10 frames). Wav2Vec2 family: on in its checkpoints."})
    mask_time_prob: float | None = field(default=None, metadata={"help": "Share of frames masked in time."})
    mask_time_length: int | None = field(default=None, metadata={"help": "Frames per time mask."})
    mask_feature_prob: float | None = field(default=None, metadata={"help": "Share of channels masked."})
    mask_feature_length: int | None = field(default=None, metadata={"help": "Channels per feature mask."})

    def __post_init__(self) -> None:
        for name in ("mask_time_prob", "mask_feature_prob"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        for name in ("mask_time_length", "mask_feature_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    def overrides(self) -> dict[str, float | int | bool]:
        """The model config fields to set: only those given (a mask given turns masking on)."""
        given = {k: v for k, v in vars(self).items() if v is not None}
        if given and self.apply_spec_augment is None:
            given["apply_spec_augment"] = True
        return given
