"""Text classifiers for intents: any BERT-style encoder with a sequence-classification head.

The label maps travel in the model's ``config.json`` (``id2label``/``label2id``), and so does the
out-of-scope rule (``oos_threshold``, ``oos_label``): a saved model answers ``oos`` below the
threshold wherever it is loaded, through this module or through ``pipeline("text-classification")``
plus :func:`apply_oos`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PretrainedConfig, PreTrainedModel

from finetune.config import ModelArguments
from finetune.models.registry import resolve_model_path

logger = logging.getLogger(__name__)

OOS_THRESHOLD_KEY = "oos_threshold"
OOS_LABEL_KEY = "oos_label"
DEFAULT_OOS_LABEL = "oos"


def load_text_classifier(
    model_args: ModelArguments, id2label: dict[int, str], label2id: dict[str, int]
) -> tuple[PreTrainedModel, object]:
    """A pretrained encoder (local dir, Hub id or ``offline:all-MiniLM-L6-v2``) with a fresh head for
    these labels. A head trained for other labels is replaced, with a warning, never reused silently."""
    path = resolve_model_path(model_args.model_name_or_path)
    common = {
        "revision": model_args.revision,
        "cache_dir": model_args.cache_dir,
        "trust_remote_code": model_args.trust_remote_code,
    }
    source = PretrainedConfig.get_config_dict(path, **common)[0]
    old_labels = source.get("id2label") or {}
    if source.get("architectures", [""])[0].endswith("ForSequenceClassification") and (
        sorted(old_labels.values()) != sorted(id2label.values())
    ):
        logger.warning("%s was trained for other labels: its classification head is replaced", path)
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
        problem_type="single_label_classification",
        ignore_mismatched_sizes=True,
        use_safetensors=True,
        **common,
    )
    tokenizer = AutoTokenizer.from_pretrained(path, **common)
    return model, tokenizer


def load_saved_classifier(model_dir: str, *, trust_remote_code: bool = False) -> tuple[PreTrainedModel, object]:
    """A fine-tuned intent model as saved by the ``intent`` recipe (labels come from its config)."""
    path = resolve_model_path(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model, tokenizer


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=-1, keepdims=True)


def tune_oos_threshold(confidences: Sequence[float], target_recall: float) -> float:
    """The highest threshold that still accepts ``target_recall`` of these in-scope queries.

    ``confidences`` are the top softmax scores of in-scope validation queries; a query is rejected
    as out-of-scope when its score is below the threshold. With n queries at most
    ``floor((1 - target) * n)`` of them may be rejected, so the threshold is the next score up.
    """
    scores = np.sort(np.asarray(confidences, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("cannot tune an out-of-scope threshold on an empty validation set")
    if not 0 < target_recall <= 1:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    may_reject = int(np.floor((1.0 - target_recall) * scores.size + 1e-9))
    return float(scores[min(may_reject, scores.size - 1)])


def oos_settings(config: PretrainedConfig) -> tuple[float | None, str]:
    """(threshold or None, label) stored in a model config by :func:`store_oos_threshold`."""
    threshold = getattr(config, OOS_THRESHOLD_KEY, None)
    return (float(threshold) if threshold is not None else None), getattr(config, OOS_LABEL_KEY, DEFAULT_OOS_LABEL)


def store_oos_threshold(config: PretrainedConfig, threshold: float, label: str, target_recall: float) -> None:
    setattr(config, OOS_THRESHOLD_KEY, threshold)
    setattr(config, OOS_LABEL_KEY, label)
    config.oos_target_recall = target_recall


def apply_oos(labels: Sequence[str], confidences: Sequence[float], threshold: float | None,
              oos_label: str = DEFAULT_OOS_LABEL) -> list[str]:
    """Replace predictions whose confidence is below ``threshold`` by ``oos_label``."""
    if threshold is None:
        return list(labels)
    return [label if confidence >= threshold else oos_label for label, confidence in zip(labels, confidences)]
