"""What every recipe does around its Trainer: checkpoints to resume from, and result files.

Kept out of the task modules so that they stay one readable page each and never import each other.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from finetune.checkpoints import MarkCompleteCallback, checkpoint_dirs, complete_checkpoints, set_aside_incomplete
from finetune.data.report import write_json_atomic

logger = logging.getLogger(__name__)

# Trainer defaults (differing from transformers' own) for every recipe that reads audio
AUDIO_TRAINER_DEFAULTS: dict[str, Any] = {
    "remove_unused_columns": False,  # the collators need the raw audio column
    "label_names": ["labels"],
    "length_column_name": "duration",
    "report_to": "none",
    "save_total_limit": 2,
}
# ...and for the speech recognizers among them: the best checkpoint is the one with the lowest WER
ASR_TRAINER_DEFAULTS: dict[str, Any] = {**AUDIO_TRAINER_DEFAULTS, "metric_for_best_model": "wer",
                                        "greater_is_better": False}

EVAL_RESULTS = "eval_results.json"
PREDICTIONS = "predictions.jsonl"
RUN_CONFIG = "finetune_config.yaml"
TRAINING_CURVE = "training_curve.png"


def checkpoint_to_resume(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The newest complete checkpoint when resuming; refuse to train over checkpoints otherwise.

    Checkpoints left half-written by a killed run are set aside first (see finetune.checkpoints).
    """
    if resume:
        set_aside_incomplete(output_dir)
        checkpoints = complete_checkpoints(output_dir)
        if not checkpoints:
            logger.info("resume=true but %s holds no complete checkpoint: starting from the beginning", output_dir)
            return None
        logger.info("resuming from %s", checkpoints[-1])
        return str(checkpoints[-1])
    existing = checkpoint_dirs(output_dir)
    if existing:
        raise FileExistsError(
            f"{output_dir} already holds checkpoints ({existing[-1].name}); set resume=true to continue that "
            "run, or choose another output_dir (nothing was overwritten)"
        )
    return None


def trainer_callbacks() -> list:
    """Callbacks every recipe's Trainer gets: checkpoints are marked complete once fully written."""
    return [MarkCompleteCallback()]


def replace_pickled_training_args(output_dir: str | os.PathLike, training_args: Any) -> None:
    """The Trainer pickles its arguments to training_args.bin; a shared model dir holds no pickles,
    so keep them as JSON instead (checkpoints keep theirs: resuming reads it)."""
    output_dir = Path(output_dir)
    (output_dir / "training_args.bin").unlink(missing_ok=True)
    tmp = output_dir / ".training_args.json.tmp"
    tmp.write_text(training_args.to_json_string(), encoding="utf-8")
    os.replace(tmp, output_dir / "training_args.json")


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
    from finetune.plots import plot_training_curve

    trainer.save_model(training_args.output_dir)
    trainer.save_state()
    if trainer.is_world_process_zero():
        replace_pickled_training_args(training_args.output_dir, training_args)
        output_dir = Path(training_args.output_dir)
        plot_training_curve(output_dir / "trainer_state.json", output_dir / TRAINING_CURVE, metric=metric)


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


def asr_results_payload(task: str, metrics: dict[str, Any], model: str, data_args: Any, report: Any,
                        split: str | None = None, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """eval_results.json for a speech recognizer: where it was scored, WER/CER raw and normalized, speed,
    and any ``extra`` metric keys the recipe adds (e.g. CTC's decoding mode)."""
    payload = {
        "task": task,
        "model": str(model),
        "dataset": data_args.eval_dataset_name or data_args.dataset_name,
        "split": split or data_args.eval_split_name,
        "num_samples": metrics["num_samples"],
        **{key: metrics[key] for key in extra if key in metrics},
        **{key: metrics[key] for key in ("wer", "cer", "wer_raw", "cer_raw", "runtime_s", "seconds_per_sample")},
    }
    if report is not None:
        payload["skipped_rows"] = len(report.bad)
    return payload


def asr_headline(metrics: dict[str, Any]) -> str:
    return (f"WER {metrics['wer']:.2%} (raw {metrics['wer_raw']:.2%}), CER {metrics['cer']:.2%} "
            f"on {metrics['num_samples']} utterances")


def utterance_rows(sources: list[str | None], references: list[str], predictions: list[str],
                   normalizer: Any) -> list[dict[str, Any]]:
    """predictions.jsonl rows: file, reference, prediction and that utterance's WER."""
    from finetune.metrics import utterance_wer

    return [
        {"source_file": Path(src).name if src else "", "reference": ref, "prediction": hyp,
         "wer": utterance_wer(hyp, ref, normalizer)}
        for src, ref, hyp in zip(sources, references, predictions)
    ]
