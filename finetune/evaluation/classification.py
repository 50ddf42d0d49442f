"""What an intent evaluation scores and writes, whichever model made the predictions.

The fine-tuned classifier (``intent``) and the embedding-similarity one (``intent_few_shot``) score
alike: accuracy, macro-F1 and a per-intent report, the out-of-scope figures when the model has a
threshold, ``predictions.jsonl`` (one row per query) and a confusion matrix, so their results compare.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from finetune.evaluation.metrics import classification_metrics
from finetune.evaluation.plots import plot_confusion_matrix
from finetune.models.text_classifier import apply_oos
from finetune.outputs import CONFUSION_MATRIX, write_eval_outputs


def score_intents(dataset: datasets.Dataset, labels: Sequence[str], confidences: Sequence[float], *, elapsed: float,
                  threshold: float | None, oos_label: str, target_recall: float | None = None,
                  leading: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Figures and per-query rows for predictions on ``dataset`` (columns text, label, row).

    ``confidences`` are the scores the OOS rule compares with ``threshold`` (softmax probability or
    cosine similarity); with a threshold, accuracy is reported both without and with the rule.
    ``leading`` figures (the number of intents, how the model was made) come first.
    """
    references = list(dataset["label"])
    scores = classification_metrics(labels, references)
    metrics: dict[str, Any] = {
        **(leading or {}),
        "num_samples": len(references),
        "accuracy": scores["accuracy"],
        "f1_macro": scores["f1_macro"],
        "per_class": scores["per_class"],
        "runtime_s": round(elapsed, 3),
        "seconds_per_sample": round(elapsed / max(len(references), 1), 5),
    }
    with_oos = apply_oos(labels, confidences, threshold, oos_label)
    if threshold is not None:
        accepted = [hyp == ref for hyp, ref in zip(with_oos, references) if hyp != oos_label]
        metrics["oos"] = {
            "threshold": threshold,
            "label": oos_label,
            "target_recall": target_recall,
            "rejected_share": float(np.mean([p == oos_label for p in with_oos])),
            # a rejected in-scope query counts as wrong; a rejected out-of-scope one as right
            "accuracy": float(np.mean([hyp == ref for hyp, ref in zip(with_oos, references)])),
            "accepted_accuracy": float(np.mean(accepted)) if accepted else None,
        }
    rows = [
        {"row": int(row), "text": text, "reference": ref, "prediction": hyp, "confidence": round(float(conf), 5),
         **({"prediction_with_oos": final} if threshold is not None else {})}
        for row, text, ref, hyp, conf, final in zip(dataset["row"], dataset["text"], references, labels, confidences,
                                                    with_oos)
    ]
    return metrics, rows


def write_intent_outputs(output_dir: str | Path, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """eval_results.json, predictions.jsonl and confusion_matrix.png in ``output_dir``."""
    write_eval_outputs(output_dir, payload, rows)
    plot_confusion_matrix([r["prediction"] for r in rows], [r["reference"] for r in rows],
                          Path(output_dir) / CONFUSION_MATRIX, title=f"Intents [{payload['split']}]")
