"""The run directory: the name of every artifact a run or an evaluation leaves, and the only writers.

Every file is written to a temporary name in its own folder and renamed into place, so a crash or a
full disk never leaves half a file where a reader (the card, ``push``, ``resume``) expects a whole one;
a folder (a converted model) is built under a staging name and renamed at the end. Permissions follow
the user's umask, as files written by ``open()`` do, not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

# what a trained model directory holds besides the transformers files
EVAL_RESULTS = "eval_results.json"
PREDICTIONS = "predictions.jsonl"
RUN_CONFIG = "finetune_config.yaml"
DATA_REPORT = "data_report.json"
TRAINING_ARGS = "training_args.json"
PICKLED_TRAINING_ARGS = "training_args.bin"  # the Trainer's; replaced by TRAINING_ARGS in a saved model
TRAINER_STATE = "trainer_state.json"
TRAINING_CURVE = "training_curve.png"
CONFUSION_MATRIX = "confusion_matrix.png"
MODEL_CARD = "README.md"
MODEL_CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
LANGUAGE_MODEL = "language_model.arpa"
FEW_SHOT_EXAMPLES = "few_shot_examples.jsonl"
LORA_ADAPTER_DIR = "lora_adapter"
HUB_MANIFEST = "hub_upload_manifest.json"
CHECKPOINT_COMPLETE = "finetune_complete.json"  # marks a checkpoint folder the Trainer finished writing
RUN_LOCK = "finetune_run.lock"  # held by the one run (or evaluation) writing a directory: host, pid, start
RUN_CONFIG_HISTORY = "finetune_config_history.yaml"  # earlier configs of a run resumed with changes
ZERO_SHOT_RESULTS = "zero_shot_results.json"  # the untouched model's scores, kept for a resumed run
# set-aside checkpoint folders start with these, never with "checkpoint-": the Trainer's rotation
# (transformers' sort_checkpoints globs "checkpoint-*") would count them as checkpoints and delete them
INCOMPLETE_CHECKPOINT_PREFIX = "incomplete-"  # killed while saving: no completion marker
DAMAGED_CHECKPOINT_PREFIX = "damaged-"  # marked complete, but a file is missing, cut short or unreadable
# slu-evaluate: the intent confusion matrices from transcripts and from the gold text
CONFUSION_MATRIX_TRANSCRIPTS = "confusion_matrix_transcripts.png"
CONFUSION_MATRIX_GOLD_TEXT = "confusion_matrix_gold_text.png"

# Every name above that a training run writes into its output_dir: a run started with
# overwrite_output_dir removes them (with the model files below and the checkpoints) before it writes.
RUN_ARTIFACTS = (
    EVAL_RESULTS, PREDICTIONS, RUN_CONFIG, RUN_CONFIG_HISTORY, DATA_REPORT, TRAINING_ARGS, PICKLED_TRAINING_ARGS,
    TRAINER_STATE, TRAINING_CURVE, CONFUSION_MATRIX, MODEL_CARD, MODEL_CONFIG, GENERATION_CONFIG, LANGUAGE_MODEL,
    FEW_SHOT_EXAMPLES, LORA_ADAPTER_DIR, HUB_MANIFEST, ZERO_SHOT_RESULTS,
)
# ...and what transformers' save_pretrained writes beside them (weights, processor, tokenizer), as patterns
MODEL_FILE_PATTERNS = (
    "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json",
    "preprocessor_config.json", "processor_config.json", "feature_extractor_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt",
    "merges.txt", "normalizer.json", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "chat_template.json", "adapter_config.json", "all_results.json", "train_results.json",
)
# what an evaluation (``finetune evaluate``, default ``<model>/eval-<split>``) leaves in its folder
EVALUATION_ARTIFACTS = (EVAL_RESULTS, PREDICTIONS, DATA_REPORT, CONFUSION_MATRIX, CONFUSION_MATRIX_TRANSCRIPTS,
                        CONFUSION_MATRIX_GOLD_TEXT)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def follow_umask(paths: Iterable[str | os.PathLike]) -> None:
    """Give each file, and each folder with everything in it, the mode ``open()``/``mkdir`` would have
    given it under the user's umask (0644 and 0755 under umask 022; executables keep their x bits).

    For what other libraries write into a run's folders their own way: safetensors writes its files
    0600, so a model saved by transformers would otherwise be unreadable to the user's group.
    Symbolic links are left alone (and not followed).
    """
    mask = _umask()
    for path in paths:
        path = Path(path)
        if path.is_symlink() or not path.exists():
            continue
        if path.is_dir():
            _set_mode(path, 0o777 & ~mask)
            for folder, dirs, files in os.walk(path):
                for name in dirs:
                    if not (Path(folder) / name).is_symlink():
                        _set_mode(Path(folder) / name, 0o777 & ~mask)
                for name in files:
                    _set_file_mode(Path(folder) / name, mask)
        else:
            _set_file_mode(path, mask)


def _set_file_mode(path: Path, mask: int) -> None:
    if path.is_symlink():
        return
    executable = path.stat().st_mode & 0o111
    _set_mode(path, (0o777 if executable else 0o666) & ~mask)


def _set_mode(path: Path, mode: int) -> None:
    if path.stat().st_mode & 0o7777 != mode:
        os.chmod(path, mode)


@contextlib.contextmanager
def _atomic(path: Path, mode: str = "w", *, durable: bool = False) -> Iterator[Any]:
    """A handle on a temp file beside ``path``, renamed onto it once the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> Path:
    """Write ``text`` atomically; ``durable`` also syncs it to disk before the rename."""
    path = Path(path)
    with _atomic(path, durable=durable) as handle:
        handle.write(text)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    with _atomic(path, "wb") as handle:
        handle.write(data)
    return path


def write_json(path: str | os.PathLike, payload: object, *, durable: bool = False) -> Path:
    """Indented UTF-8 JSON, atomically."""
    return write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n", durable=durable)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line, atomically."""
    path = Path(path)
    with _atomic(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_yaml(path: str | os.PathLike, values: dict[str, Any]) -> Path:
    return write_text(path, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def staged_directory(target: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """Build a folder under a staging name beside ``target``; it becomes ``target`` only if the block
    ends without error (an existing ``target`` is replaced only with ``replace``)."""
    target = Path(target)
    if target.exists() and not replace:
        raise FileExistsError(f"{target} already exists (nothing was written; choose another folder)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        os.chmod(staging, 0o777 & ~_umask())
        yield staging
        follow_umask([staging])  # what other writers (save_pretrained, converters) put there
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_run_config(output_dir: str | os.PathLike, values: dict[str, Any]) -> Path:
    """The exact config a model was trained with, beside it (keys naming a token are never kept)."""
    safe = {key: value for key, value in values.items() if "token" not in key.lower()}
    return write_yaml(Path(output_dir) / RUN_CONFIG, safe)


def write_eval_outputs(output_dir: str | os.PathLike, results: dict[str, Any],
                       predictions: list[dict[str, Any]] | None) -> Path:
    """``eval_results.json`` and the per-example ``predictions.jsonl``, each atomically."""
    output_dir = Path(output_dir)
    write_json(output_dir / EVAL_RESULTS, results)
    if predictions is not None:
        write_jsonl(output_dir / PREDICTIONS, predictions)
    return output_dir / EVAL_RESULTS


def replace_pickled_training_args(output_dir: str | os.PathLike, training_args: Any) -> None:
    """The Trainer pickles its arguments to training_args.bin; a shared model dir holds no pickles, so
    they are kept as JSON instead (checkpoints keep theirs: resuming reads it).

    Called once the model is saved, so it also gives the files transformers saved (and the LoRA adapter
    folder) the modes of the user's umask: safetensors writes its weights 0600."""
    output_dir = Path(output_dir)
    (output_dir / PICKLED_TRAINING_ARGS).unlink(missing_ok=True)
    write_text(output_dir / TRAINING_ARGS, training_args.to_json_string())
    saved = {p for pattern in MODEL_FILE_PATTERNS for p in output_dir.glob(pattern) if p.is_file()}
    follow_umask(sorted(saved) + [output_dir / name for name in (MODEL_CONFIG, GENERATION_CONFIG, LORA_ADAPTER_DIR)])


def write_zero_shot(output_dir: str | os.PathLike, scored: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """The untouched model's scores, measured before a run's first step: a resumed run puts them back
    into its results instead of losing them. ``scored`` says what was measured (source, split, rows)."""
    return write_json(Path(output_dir) / ZERO_SHOT_RESULTS, {"scored": scored, "metrics": metrics})


def read_zero_shot(output_dir: str | os.PathLike, scored: dict[str, Any]) -> dict[str, Any] | None:
    """The saved zero-shot scores if they measured exactly ``scored``; None otherwise (or unreadable)."""
    path = Path(output_dir) / ZERO_SHOT_RESULTS
    try:
        saved = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("scored") != json.loads(json.dumps(scored)):
        return None
    metrics = saved.get("metrics")
    return metrics if isinstance(metrics, dict) else None
