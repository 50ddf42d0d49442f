"""Pictures a person would rather read than a table: confusion matrices and training curves."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

FONT_CACHE_NOTICE = "Matplotlib is building the font cache"


class _FontCacheNotice(logging.Filter):
    """Drops matplotlib's one-time notice that it is indexing the system's fonts: nothing to act on, and the
    first plot of a run on a fresh machine would print it in the middle of training output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(FONT_CACHE_NOTICE)


def _pyplot():
    """matplotlib's pyplot on the Agg backend (files, no display), its font-cache notice filtered."""
    logger = logging.getLogger("matplotlib.font_manager")
    if not any(isinstance(f, _FontCacheNotice) for f in logger.filters):
        logger.addFilter(_FontCacheNotice())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(
    predictions: Sequence[str], references: Sequence[str], path: str | Path, *, title: str = "Confusion matrix"
) -> Path:
    """Row-normalised confusion matrix (recall on the diagonal) with counts, saved as PNG.

    Large label sets (e.g. 77 intents) drop the per-cell numbers and keep the colour scale.
    """
    plt = _pyplot()
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(references) | set(predictions))
    counts = confusion_matrix(references, predictions, labels=labels)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.35 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 10 else 45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = float(np.trace(counts) / max(counts.sum(), 1))
    ax.set_title(f"{title} (accuracy {accuracy:.1%}, n={int(counts.sum())})")
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training_curve(trainer_state: str | Path, path: str | Path, *, metric: str | None = None) -> Path | None:
    """Training loss (and an eval metric, if logged) against step, from trainer_state.json."""
    plt = _pyplot()

    history = json.loads(Path(trainer_state).read_text(encoding="utf-8")).get("log_history", [])
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    if not losses:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(*zip(*losses), label="training loss", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    key = f"eval_{metric}" if metric else None
    evals = [(h["step"], h[key]) for h in history if key and key in h]
    if evals:
        other = ax.twinx()
        other.plot(*zip(*evals), "o-", color="tab:orange", label=f"eval {metric}")
        other.set_ylabel(metric)
        other.legend(loc="upper center")
    ax.legend(loc="upper right")
    ax.set_title("Training curve")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
