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
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from finetune.config import ModelArguments
from finetune.models.consistency import check_tokenizer, missing_tokenizer_error
from finetune.models.registry import check_model_family, resolve_model_path

logger = logging.getLogger(__name__)

OOS_THRESHOLD_KEY = "oos_threshold"
OOS_LABEL_KEY = "oos_label"
DEFAULT_OOS_LABEL = "oos"
# model types transformers can put a sequence-classification head on: text models (no speech model is one)
TEXT_CLASSIFIER_TYPES = frozenset(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)
TEXT_ENCODER_NEEDS = ("a text encoder of a type transformers can classify text with (BERT-style, e.g. "
                      "offline:all-MiniLM-L6-v2 or bert-base-uncased)")


def load_checked_tokenizer(path: str, config: PretrainedConfig, **common) -> object:
    """``AutoTokenizer`` for the model at ``path``, checked against the model's ``config``."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **common)
    except (OSError, TypeError) as error:
        raise missing_tokenizer_error(path, error) from error
    check_tokenizer(tokenizer, config, path)
    return tokenizer


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
    check_model_family(model_args.model_name_or_path, source, task="intent", accepted=TEXT_CLASSIFIER_TYPES,
                       needs=TEXT_ENCODER_NEEDS)
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
    return model, load_checked_tokenizer(path, model.config, **common)


def load_saved_classifier(model_dir: str, *, trust_remote_code: bool = False) -> tuple[PreTrainedModel, object]:
    """A fine-tuned intent model as saved by the ``intent`` recipe (labels come from its config)."""
    path = resolve_model_path(model_dir)
    config = PretrainedConfig.get_config_dict(path, trust_remote_code=trust_remote_code)[0]
    check_model_family(model_dir, config, task="intent", accepted=TEXT_CLASSIFIER_TYPES,
                       needs="a text classifier saved by the intent task")
    model = AutoModelForSequenceClassification.from_pretrained(
        path, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    return model, load_checked_tokenizer(path, model.config, trust_remote_code=trust_remote_code)


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
