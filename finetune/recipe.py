"""What every recipe does around its Trainer: checkpoints to resume from, and result files.

Kept out of the task modules so that they stay one readable page each and never import each other.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from finetune.data.report import write_json_atomic

logger = logging.getLogger(__name__)

EVAL_RESULTS = "eval_results.json"
PREDICTIONS = "predictions.jsonl"
RUN_CONFIG = "finetune_config.yaml"


def complete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint folders that finished saving (their trainer_state.json is written last), oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        name = child.name
        if child.is_dir() and name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and name.split("-")[-1].isdigit():
            if (child / "trainer_state.json").is_file():
                found.append(child)
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def checkpoint_to_resume(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The newest complete checkpoint when resuming; refuse to train over checkpoints otherwise."""
    checkpoints = complete_checkpoints(output_dir)
    if resume:
        if not checkpoints:
            logger.info("resume=true but %s holds no complete checkpoint: starting from the beginning", output_dir)
            return None
        logger.info("resuming from %s", checkpoints[-1])
        return str(checkpoints[-1])
    if checkpoints:
        raise FileExistsError(
            f"{output_dir} already holds checkpoints ({checkpoints[-1].name}); set resume=true to continue that "
            "run, or choose another output_dir (nothing was overwritten)"
        )
    return None


def replace_pickled_training_args(output_dir: str | os.PathLike, training_args: Any) -> None:
    """The Trainer pickles its arguments to training_args.bin; a shared model dir holds no pickles,
    so keep them as JSON instead (checkpoints keep theirs: resuming reads it)."""
    output_dir = Path(output_dir)
    (output_dir / "training_args.bin").unlink(missing_ok=True)
    tmp = output_dir / ".training_args.json.tmp"
    tmp.write_text(training_args.to_json_string(), encoding="utf-8")
    os.replace(tmp, output_dir / "training_args.json")


def strip_prefix(metrics: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``eval_wer`` -> ``wer``; drop Trainer bookkeeping we report under clearer names."""
    out = {}
    for key, value in metrics.items():
        name = key[len(prefix) + 1 :] if key.startswith(prefix + "_") else key
        out[name] = value
    return out


def write_eval_outputs(
    output_dir: str | os.PathLike, results: dict[str, Any], predictions: list[dict[str, Any]] | None
) -> Path:
    """Write ``eval_results.json`` and the per-utterance ``predictions.jsonl``, each atomically."""
    output_dir = Path(output_dir)
    write_json_atomic(output_dir / EVAL_RESULTS, results)
    if predictions is not None:
        _write_jsonl_atomic(output_dir / PREDICTIONS, predictions)
    return output_dir / EVAL_RESULTS


def _write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_run_config(output_dir: str | os.PathLike, values: dict[str, Any]) -> None:
    """Keep the exact config a model was trained with beside it (tokens never included)."""
    safe = {k: v for k, v in values.items() if "token" not in k.lower()}
    path = Path(output_dir) / RUN_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(safe, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)
