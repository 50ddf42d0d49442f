"""The one way a Trainer is built, and what every run does with it afterwards.

:func:`build_trainer` is the only place in the package that constructs a Trainer, so behaviour every
run needs cannot be left out by a task: checkpoints marked complete once fully written (resume trusts
only those) and, with ``max_batch_seconds``, training batches bounded by padded audio seconds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import datasets
from torch.utils.data import DataLoader

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
    cls = type(f"Finetune{base.__name__}", (DurationBatchingMixin, base), {})
    trainer = cls(callbacks=[MarkCompleteCallback(), *(callbacks or [])], **kwargs)
    trainer.max_batch_seconds = max_batch_seconds
    return trainer


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
    ``metric`` when it was evaluated during training)."""
    from finetune.evaluation.plots import plot_training_curve

    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    if trainer.is_world_process_zero():
        replace_pickled_training_args(training_args.output_dir, training_args)
        output_dir = Path(training_args.output_dir)
        plot_training_curve(output_dir / TRAINER_STATE, output_dir / TRAINING_CURVE, metric=metric)


def strip_prefix(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``eval_wer`` -> ``wer``: the Trainer's metric names without their split prefix."""
    return {key[len(prefix) + 1:] if key.startswith(prefix + "_") else key: value for key, value in metrics.items()}
