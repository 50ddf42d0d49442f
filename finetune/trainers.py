"""Trainer behaviour shared by every recipe, added as a mixin so each task keeps its own Trainer class."""

from __future__ import annotations

import logging

import datasets
from torch.utils.data import DataLoader

from finetune.data.batching import DurationBatchSampler

logger = logging.getLogger(__name__)


class DurationBatchingMixin:
    """With ``max_batch_seconds`` set, training batches are bounded by padded audio seconds
    (see :class:`~finetune.data.batching.DurationBatchSampler`) instead of a fixed count."""

    max_batch_seconds: float | None = None

    def get_train_dataloader(self) -> DataLoader:
        dataset = self.train_dataset
        if not self.max_batch_seconds or not isinstance(dataset, datasets.Dataset) or "duration" not in dataset.column_names:
            return super().get_train_dataloader()
        sampler = DurationBatchSampler(
            dataset["duration"], self.max_batch_seconds, max_batch_size=self.args.per_device_train_batch_size,
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


def finetune_trainer(base: type, *, max_batch_seconds: float | None = None, **kwargs):
    """Build ``base`` (Trainer, Seq2SeqTrainer, ...) with the shared behaviour mixed in."""
    cls = type(f"Finetune{base.__name__}", (DurationBatchingMixin, base), {})
    trainer = cls(**kwargs)
    trainer.max_batch_seconds = max_batch_seconds
    return trainer
