"""What an intent evaluation writes, whichever model made the predictions.

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

from finetune.data.report import DataReport
from finetune.metrics import classification_metrics
from finetune.models.text_classifier import apply_oos
from finetune.plots import plot_confusion_matrix
from finetune.recipe import write_eval_outputs

CONFUSION_MATRIX = "confusion_matrix.png"


def intent_results(header: dict[str, Any], dataset: datasets.Dataset, labels: Sequence[str],
                   confidences: Sequence[float], *, elapsed: float, threshold: float | None, oos_label: str,
                   target_recall: float | None = None, report: DataReport | None = None
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics payload and per-query rows for predictions on ``dataset`` (columns text, label, row).

    ``confidences`` are the scores the OOS rule compares with ``threshold`` (softmax probability or
    cosine similarity); with a threshold, accuracy is reported both without and with the rule.
    """
    references = list(dataset["label"])
    scores = classification_metrics(labels, references)
    payload: dict[str, Any] = {
        **header,
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
        payload["oos"] = {
            "threshold": threshold,
            "label": oos_label,
            "target_recall": target_recall,
            "rejected_share": float(np.mean([p == oos_label for p in with_oos])),
            # a rejected in-scope query counts as wrong; a rejected out-of-scope one as right
            "accuracy": float(np.mean([hyp == ref for hyp, ref in zip(with_oos, references)])),
            "accepted_accuracy": float(np.mean(accepted)) if accepted else None,
        }
    if report is not None:
        payload["skipped_rows"] = len(report.bad)
    rows = [
        {"row": int(row), "text": text, "reference": ref, "prediction": hyp, "confidence": round(float(conf), 5),
         **({"prediction_with_oos": final} if threshold is not None else {})}
        for row, text, ref, hyp, conf, final in zip(dataset["row"], dataset["text"], references, labels, confidences,
                                                    with_oos)
    ]
    return payload, rows


def write_intent_outputs(output_dir: str | Path, payload: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """eval_results.json, predictions.jsonl and confusion_matrix.png in ``output_dir``."""
    write_eval_outputs(output_dir, payload, rows)
    plot_confusion_matrix([r["prediction"] for r in rows], [r["reference"] for r in rows],
                          Path(output_dir) / CONFUSION_MATRIX, title=f"Intents [{payload['split']}]")
