"""SetFit's contrastive step: tune a sentence encoder on pairs of few-shot examples.

Pairs of the same intent are pulled together and pairs of different intents pushed apart (SetFit's
CosineSimilarityLoss over ``num_iterations`` positive and negative pairs per example), which makes
intent prototypes far more separable than the raw encoder's. The ``setfit`` library does the pairing
and the training; only the tuned transformer body is kept, and the light head on top is the
nearest-prototype rule of :mod:`finetune.models.prototype_classifier`, not SetFit's logistic regression.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedModel

logger = logging.getLogger(__name__)


@dataclass
class ContrastiveSettings:
    """What one contrastive tuning run uses (mapped onto ``setfit.TrainingArguments``)."""

    learning_rate: float = 2e-5
    batch_size: int = 16
    num_epochs: int = 1
    num_iterations: int = 20  # positive + negative pairs drawn per example
    max_steps: int = -1
    max_length: int = 128
    seed: int = 42


def contrastive_tune(encoder_path: str, texts: Sequence[str], labels: Sequence[str],
                     settings: ContrastiveSettings) -> PreTrainedModel:
    """The encoder at ``encoder_path`` after SetFit's contrastive step on these labelled examples."""
    try:
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError:
        raise ImportError("method=setfit needs the setfit package: pip install 'finetune[few-shot]'") from None
    if len(set(labels)) < 2:
        raise ValueError("contrastive tuning needs examples of at least two intents")
    model = SetFitModel.from_pretrained(encoder_path)  # a bare encoder gets sentence-transformers' mean pooling
    with tempfile.TemporaryDirectory(prefix="setfit-") as scratch:  # nothing is saved; the dir is a formality
        args = TrainingArguments(
            output_dir=scratch, batch_size=settings.batch_size, num_epochs=settings.num_epochs,
            body_learning_rate=settings.learning_rate, num_iterations=settings.num_iterations,
            max_steps=settings.max_steps, max_length=settings.max_length, seed=settings.seed,
            report_to="none", save_strategy="no", logging_strategy="no", show_progress_bar=False,
        )
        Trainer(model=model, args=args).train_embeddings(list(texts), list(labels), args=args)
    logger.info("contrastive tuning done: %d examples, %d pairs each", len(texts), 2 * settings.num_iterations)
    encoder = model.model_body[0].auto_model
    encoder.eval()
    return encoder
