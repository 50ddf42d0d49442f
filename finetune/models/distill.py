"""Teacher -> student distillation for Whisper, in the way distil-whisper does it.

The student is the teacher with fewer decoder layers: the encoder, embeddings and final layer norm
are copied as they are, and each student decoder layer starts as a copy of one teacher layer
(maximally spaced by default, always keeping the teacher's last layer). Training minimises

    loss = ce_weight * CE(student, labels) + kl_weight * T^2 * KL(teacher_T || student_T)

where ``_T`` are the distributions at temperature ``T`` and both terms are averaged over the
label tokens (padding, -100, is ignored). The student stays a plain ``WhisperForConditionalGeneration``,
so everything that reads a saved Whisper model (evaluate, transcribe, ``pipeline()``) reads it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Seq2SeqTrainer, WhisperForConditionalGeneration

from finetune.data.collators import IGNORE_INDEX
from finetune.models.dynamic_context import enabled_step_seconds, full_window_features

logger = logging.getLogger(__name__)


@dataclass
class DistillArguments:
    """Which teacher, what the student keeps of it, and how the two losses are weighed."""

    teacher_model_name_or_path: str = field(
        metadata={"help": "The fine-tuned Whisper teacher: a saved model dir, a Hub id or an offline: alias."}
    )
    student_decoder_layers: int = field(
        default=2, metadata={"help": "Decoder layers of the student, taken maximally spaced from the teacher's."}
    )
    student_layer_ids: list[int] | None = field(
        default=None,
        metadata={"help": "Exactly which teacher decoder layers to keep, e.g. [0, 3] (overrides "
                          "student_decoder_layers)."},
    )
    ce_weight: float = field(default=0.8, metadata={"help": "Weight of the cross-entropy on the labels."})
    kl_weight: float = field(default=1.0, metadata={"help": "Weight of KL(teacher || student)."})
    temperature: float = field(default=2.0, metadata={"help": "Softmax temperature of the KL term (> 0)."})
    pseudo_labels: bool = field(
        default=False,
        metadata={"help": "Train on the teacher's transcripts of the training audio instead of the given ones."},
    )

    def __post_init__(self) -> None:
        if self.student_layer_ids is not None:
            if not self.student_layer_ids:
                raise ValueError("student_layer_ids must name at least one teacher decoder layer")
            if sorted(set(self.student_layer_ids)) != list(self.student_layer_ids):
                raise ValueError(f"student_layer_ids must be distinct and increasing, got {self.student_layer_ids}")
            self.student_decoder_layers = len(self.student_layer_ids)
        if self.student_decoder_layers < 1:
            raise ValueError(f"student_decoder_layers must be >= 1, got {self.student_decoder_layers}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.ce_weight < 0 or self.kl_weight < 0 or self.ce_weight + self.kl_weight == 0:
            raise ValueError("ce_weight and kl_weight must be >= 0 and not both 0")


def maximally_spaced_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer ids for the student: spread evenly, the last one always the teacher's last.

    >>> maximally_spaced_layers(4, 2), maximally_spaced_layers(32, 3), maximally_spaced_layers(4, 1)
    ([0, 3], [0, 15, 31], [3])
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"the student needs 1..{teacher_layers} decoder layers (the teacher has "
                         f"{teacher_layers}), got {student_layers}")
    ids = np.linspace(0, teacher_layers - 1, student_layers, dtype=int).tolist()
    ids[-1] = teacher_layers - 1
    return ids


def student_layer_ids(teacher: WhisperForConditionalGeneration, args: DistillArguments) -> list[int]:
    """The teacher decoder layers the student keeps, checked against the teacher."""
    teacher_layers = teacher.config.decoder_layers
    if args.student_layer_ids is None:
        return maximally_spaced_layers(teacher_layers, args.student_decoder_layers)
    bad = [i for i in args.student_layer_ids if not 0 <= i < teacher_layers]
    if bad:
        raise ValueError(f"student_layer_ids {bad} do not exist: the teacher has decoder layers "
                         f"0..{teacher_layers - 1}")
    return list(args.student_layer_ids)


def build_student(teacher: WhisperForConditionalGeneration, layer_ids: list[int]) -> WhisperForConditionalGeneration:
    """A copy of ``teacher`` whose decoder holds only ``layer_ids`` (in that order).

    Every other weight (encoder, embeddings, positions, final norms, output projection) is copied;
    loading is strict, so a weight the student would leave random is an error, not a silent gap.
    """
    config = copy.deepcopy(teacher.config)
    config.decoder_layers = len(layer_ids)
    student = WhisperForConditionalGeneration(config).to(dtype=teacher.dtype)
    prefix = "model.decoder.layers."
    state = {}
    for key, value in teacher.state_dict().items():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            if int(index) not in layer_ids:
                continue
            key = f"{prefix}{layer_ids.index(int(index))}.{rest}"
        state[key] = value.clone()
    student.load_state_dict(state, strict=True)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    student.generation_config.alignment_heads = _student_alignment_heads(
        getattr(teacher.generation_config, "alignment_heads", None), layer_ids, config.decoder_attention_heads)
    logger.info("student: decoder layers %s of the teacher's %d; %.1f M of %.1f M parameters", layer_ids,
                teacher.config.decoder_layers, count_parameters(student) / 1e6, count_parameters(teacher) / 1e6)
    return student


def _student_alignment_heads(teacher_heads, layer_ids: list[int], heads: int) -> list[list[int]]:
    """Word timestamps read cross-attention heads by (layer, head): keep the teacher's heads in the kept
    layers, renumbered; if none survive, use every head of the last student layer."""
    kept = [[layer_ids.index(layer), head] for layer, head in (teacher_heads or []) if layer in layer_ids]
    return kept or [[len(layer_ids) - 1, head] for head in range(heads)]


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                      ce_weight: float, kl_weight: float, temperature: float) -> dict[str, torch.Tensor]:
    """``{"loss", "ce", "kl"}`` for logits of shape (batch, tokens, vocab) and labels (batch, tokens).

    KL is summed over the vocabulary, averaged over label tokens, and scaled by T^2 so its gradients
    keep their size as T changes (Hinton et al.).
    """
    mask = labels != IGNORE_INDEX
    ce = F.cross_entropy(student_logits[mask].float(), labels[mask])
    student_log_probs = F.log_softmax(student_logits[mask].float() / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits[mask].float() / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="sum") / mask.sum()
    kl = kl * temperature**2
    return {"loss": ce_weight * ce + kl_weight * kl, "ce": ce.detach(), "kl": kl.detach()}


def model_of(args: tuple, kwargs: dict) -> torch.nn.Module:
    """The ``model`` a Trainer was constructed with (first positional or keyword argument)."""
    return kwargs["model"] if "model" in kwargs else args[0]


class DistillationTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose training loss is :func:`distillation_loss` against a frozen teacher.

    Evaluation (``predict_with_generate``) is untouched: it scores the student alone.
    """

    def __init__(self, *args, teacher: WhisperForConditionalGeneration, distill: DistillArguments,
                 reuse_student_encoder: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.teacher = teacher.eval().requires_grad_(False).to(self.args.device)
        self.distill = distill
        # with the copied encoder frozen, teacher and student encoders are the same weights (and, if the
        # student runs at dynamic context, only if the teacher runs at the same)
        same_context = enabled_step_seconds(model_of(args, kwargs)) == enabled_step_seconds(self.teacher)
        self.reuse_student_encoder = reuse_student_encoder and same_context
        self.teacher_frames = 2 * self.teacher.config.max_source_positions
        # the loss below is a per-batch mean: let the Trainer divide it over accumulation steps
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(**inputs)
        with torch.no_grad():
            if self.reuse_student_encoder:
                teacher_out = self.teacher(encoder_outputs=(outputs.encoder_last_hidden_state,), labels=labels)
            else:
                features = inputs["input_features"]
                if enabled_step_seconds(self.teacher) is None:  # a full-context teacher sees the full window
                    features = full_window_features(features, self.teacher_frames)
                teacher_out = self.teacher(input_features=features, labels=labels)
        parts = distillation_loss(outputs.logits, teacher_out.logits, labels, ce_weight=self.distill.ce_weight,
                                  kl_weight=self.distill.kl_weight, temperature=self.distill.temperature)
        return (parts["loss"], outputs) if return_outputs else parts["loss"]
