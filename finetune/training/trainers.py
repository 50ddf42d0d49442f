"""The one way a Trainer is built, and what every run does with it afterwards.

:func:`build_trainer` is the only place in the package that constructs a Trainer, so behaviour every
run needs cannot be left out by a task: checkpoints marked complete once fully written (resume trusts
only those), training stopped with :class:`NonFiniteLossError` the step its loss or gradient norm
stops being finite (before any weights are touched, so no checkpoint or final model holds NaN) and,
with ``max_batch_seconds``, training batches bounded by padded audio seconds.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import TrainerCallback

from finetune.config import ConfigError
from finetune.data.batching import DurationBatchSampler
from finetune.outputs import TRAINER_STATE, TRAINING_CURVE, replace_pickled_training_args
from finetune.training.checkpoints import MarkCompleteCallback

logger = logging.getLogger(__name__)

DURATION_COLUMN = "duration"


class DurationBatchingMixin:
    """With ``max_batch_seconds`` set, training batches are bounded by padded audio seconds
    (see :class:`~finetune.data.batching.DurationBatchSampler`) instead of a fixed count."""

    max_batch_seconds: float | None = None

    def get_train_dataloader(self) -> DataLoader:
        if not self.max_batch_seconds:
            return super().get_train_dataloader()
        dataset = self.train_dataset
        sampler = DurationBatchSampler(
            dataset[DURATION_COLUMN], self.max_batch_seconds, max_batch_size=self.args.per_device_train_batch_size,
            seed=self.args.seed,
        )
        logger.info("duration-bounded batches: %d batches of at most %.1f padded seconds", len(sampler),
                    self.max_batch_seconds)
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0,
        )
        return self.accelerator.prepare(loader)


class NonFiniteLossError(ValueError):
    """Training diverged: a loss or gradient norm that is NaN or infinite. Raised before the optimizer
    applies that step, so the weights, the checkpoints already written and the output folder stay as
    they were (the last complete checkpoint is the one to resume from, with other settings)."""

    def __init__(self, step: int, what: str, value: Any, args: Any = None) -> None:
        self.step, self.what, self.value = step, what, value
        super().__init__(f"training diverged at step {step}: the {what} is {_number(value)}. Nothing of this step "
                         f"was applied or saved; the last complete checkpoint, if any, is untouched. Try: "
                         f"{'; '.join(_advice(args))}")


class NonFiniteWeightsError(ValueError):
    """A model with NaN or infinite parameters, refused instead of being saved."""


def _number(value: Any) -> str:
    return str(float(value)) if isinstance(value, (int, float, torch.Tensor)) else str(value)


def _advice(args: Any) -> list[str]:
    tips = []
    if args is not None and getattr(args, "learning_rate", None) is not None:
        tips.append(f"a lower learning_rate (now {args.learning_rate:g}) or more warmup_steps")
    else:
        tips.append("a lower learning_rate or more warmup_steps")
    if args is not None and not getattr(args, "max_grad_norm", 0):
        tips.append("max_grad_norm: 1.0 (gradient clipping is off)")
    tips.append("check the audio amplitude (float WAV/FLAC files may hold samples far outside [-1, 1])")
    if args is not None and getattr(args, "fp16", False):
        tips.append("bf16: true instead of fp16 (fp16 overflows above 65504), or fp32")
    tips.append("for an infinite CTC loss: ctc_zero_infinity: true")
    return tips


def non_finite_parameters(model: torch.nn.Module, limit: int = 3) -> list[str]:
    """Names of (up to ``limit``) parameters holding NaN or infinite values."""
    bad = []
    for name, parameter in model.named_parameters():
        if parameter.numel() and not bool(torch.isfinite(parameter.detach()).all()):
            bad.append(name)
            if len(bad) == limit:
                break
    return bad


def check_finite_weights(model: torch.nn.Module, where: str) -> None:
    """Raise :class:`NonFiniteWeightsError` before ``model`` is saved to ``where`` with NaN/Inf weights."""
    bad = non_finite_parameters(model)
    if bad:
        raise NonFiniteWeightsError(f"refusing to save a model with non-finite weights to {where} ({', '.join(bad)} "
                                    "hold NaN or Inf): training diverged; lower learning_rate, check the audio "
                                    "amplitude, or use bf16 instead of fp16")


class FiniteTrainingMixin:
    """Stop the step the loss or gradient norm is not finite, before the optimizer applies it.

    transformers' ``logging_nan_inf_filter`` (on by default) replaces a NaN/Inf step loss by the running
    mean in the logged figure, which is why a diverged run logs ``loss 0.0`` and exits 0 with NaN
    weights; each step's own loss is checked here instead (one ``isfinite`` a step: the filter
    synchronises on it anyway). The gradient norm is checked before ``optimizer.step`` except under fp16,
    whose loss scaler (native AMP or DeepSpeed) skips overflowing steps by design and lowers its scale.
    A checkpoint save refuses non-finite weights as the last guard.
    """

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(*args, **kwargs)
        if not bool(torch.isfinite(loss).all()):
            raise NonFiniteLossError(self.state.global_step + 1, "training loss", loss.float().mean().item(),
                                     self.args)
        return loss

    def _get_grad_norm(self, *args: Any, **kwargs: Any) -> Any:
        grad_norm = super()._get_grad_norm(*args, **kwargs)
        if grad_norm is not None and not _loss_scaled(self):
            value = _as_float(grad_norm)
            if value is not None and not math.isfinite(value):
                raise NonFiniteLossError(self.state.global_step + 1, "gradient norm", value, self.args)
        return grad_norm

    def _save_checkpoint(self, model: Any, *args: Any, **kwargs: Any) -> None:
        check_finite_weights(self.model, f"a checkpoint of {self.args.output_dir} (step {self.state.global_step})")
        return super()._save_checkpoint(model, *args, **kwargs)


def _loss_scaled(trainer: Any) -> bool:
    """fp16 training (native AMP or DeepSpeed): its loss scaler skips overflowing steps by design."""
    return bool(getattr(trainer.args, "fp16", False)) or getattr(trainer.accelerator, "scaler", None) is not None


def _as_float(value: Any) -> float | None:
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):  # a sharded norm that does not reduce to a number here
        return None


class NonFiniteGuard(TrainerCallback):
    """Stop at a logged loss or gradient norm that is NaN or infinite (with ``logging_nan_inf_filter:
    false``, or from a Trainer whose steps bypass :class:`FiniteTrainingMixin`); logging comes before
    the step's checkpoint is saved, so that save never happens. Under fp16 an infinite gradient norm is
    the loss scaler's routine skipped step, not a divergence."""

    KEYS = ("loss", "grad_norm", "train_loss")

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in self.KEYS:
            if key == "grad_norm" and getattr(args, "fp16", False):
                continue
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                raise NonFiniteLossError(state.global_step, "logged " + key.replace("_", " "), value, args)
        return control


def build_trainer(base: type, *, max_batch_seconds: float | None = None, callbacks: list | None = None,
                  **kwargs: Any) -> Any:
    """``base`` (Trainer, Seq2SeqTrainer, a task's subclass) with the shared behaviour mixed in.

    ``max_batch_seconds`` needs a training set with a ``duration`` column held in memory; anything else
    is refused here rather than silently trained with count-based batches.
    """
    train_set = kwargs.get("train_dataset")
    if max_batch_seconds and train_set is not None:
        if not isinstance(train_set, datasets.Dataset):
            raise ConfigError("max_batch_seconds groups a training set held in memory: not with streaming: true")
        if DURATION_COLUMN not in train_set.column_names:
            raise ConfigError("max_batch_seconds bounds batches by audio seconds, but this task's training rows "
                              "have no duration (it reads no audio): remove max_batch_seconds")
    if kwargs.get("args") is not None and not accelerator_available():
        kwargs["args"].dataloader_pin_memory = False  # pinned memory needs a GPU; torch warns on every loader
    align_special_tokens(kwargs.get("model"), kwargs.get("processing_class"))
    cls = type(f"Finetune{base.__name__}", (DurationBatchingMixin, FiniteTrainingMixin, base), {})
    trainer = cls(callbacks=[MarkCompleteCallback(), *(callbacks or []), NonFiniteGuard()], **kwargs)
    trainer.max_batch_seconds = max_batch_seconds
    return trainer


def accelerator_available() -> bool:
    """Whether torch sees a GPU (or another accelerator) to pin memory for."""
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return bool(accelerator.is_available())
    return torch.cuda.is_available()


def align_special_tokens(model: Any, processing_class: Any) -> None:
    """Give the model's config and generation config the tokenizer's BOS/EOS/PAD ids, as the Trainer would.

    The tokenizer wrote the labels, so its ids are the right ones; doing it here, before the Trainer is
    built, spares the user the Trainer's warning about it, which they cannot act on. An id list (several
    EOS ids) gains the tokenizer's id and keeps the rest.
    """
    tokenizer = getattr(processing_class, "tokenizer", processing_class)
    if model is None or tokenizer is None or not hasattr(model, "config"):
        return
    holders = [model.config.get_text_config(), getattr(model, "generation_config", None)]
    for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
        wanted = getattr(tokenizer, name, None)
        if wanted is None:
            continue
        for holder in holders:
            if holder is None:
                continue
            current = getattr(holder, name, None)
            if isinstance(current, list):
                if wanted not in current:
                    setattr(holder, name, [wanted, *current])
            elif current != wanted:
                logger.debug("%s: %s -> %s (the tokenizer's)", name, current, wanted)
                setattr(holder, name, wanted)


def predict_in_order(trainer: Any, dataset: Any, prefix: str) -> tuple[Any, float]:
    """``trainer.predict`` with the rows in dataset order, and the seconds it took.

    Under ``train_sampling_strategy: group_by_length`` the Trainer groups *evaluation* batches by
    length too, which reorders the predictions; per-row output files must line up with the dataset.
    """
    strategy = getattr(trainer.args, "train_sampling_strategy", None)
    if strategy == "group_by_length":
        trainer.args.train_sampling_strategy = "random"  # evaluation then uses a sequential sampler
    started = time.perf_counter()
    try:
        output = trainer.predict(dataset, metric_key_prefix=prefix)
    finally:
        if strategy == "group_by_length":
            trainer.args.train_sampling_strategy = strategy
    return output, time.perf_counter() - started


def save_trained(trainer: Any, training_args: Any, metric: str | None = None) -> None:
    """Model (+ processor), trainer state, the arguments as JSON, and training_curve.png (loss, and
    ``metric`` when it was evaluated during training). A model with NaN/Inf weights is refused
    (:class:`NonFiniteWeightsError`): nothing is written."""
    from finetune.evaluation.plots import plot_training_curve

    check_finite_weights(trainer.model, training_args.output_dir)
    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    if trainer.is_world_process_zero():
        replace_pickled_training_args(training_args.output_dir, training_args)
        output_dir = Path(training_args.output_dir)
        plot_training_curve(output_dir / TRAINER_STATE, output_dir / TRAINING_CURVE, metric=metric)


def strip_prefix(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``eval_wer`` -> ``wer``: the Trainer's metric names without their split prefix."""
    return {key[len(prefix) + 1:] if key.startswith(prefix + "_") else key: value for key, value in metrics.items()}
