"""What a training run may find in its output_dir, and what it does about it before writing anything.

``finetune.api.train`` calls :func:`prepare_run_directory` once, holding the directory's lock
(:mod:`finetune.training.run_lock`), before the run config is saved:

- ``overwrite_output_dir: true``: the previous run's artifacts (every name in
  :data:`finetune.outputs.RUN_ARTIFACTS`, the model files transformers saved, its checkpoints and the
  ``eval-*`` folders of its evaluations) are removed first, so none of its results can survive into the
  new run's card. Folders set aside as ``incomplete-``/``damaged-`` and files of unknown names are kept.
- a fresh run (``resume: false``, or ``resume: true`` with no whole checkpoint) into a directory that holds
  a finished run (config.json + weights, or eval_results.json) is refused: it would overwrite the weights,
  the saved config and the data report and leave the old eval_results.json, predictions and confusion
  matrix beside the new model. Our leftovers of a run that never finished are removed.
- ``resume: true`` with a checkpoint to continue from: the saved ``finetune_config.yaml`` is compared
  with the new config (effective values, task defaults included). A change is refused, listing each key
  as ``old -> new``, unless ``resume_allow_config_changes: true``; any change that goes through is
  recorded in ``finetune_config_history.yaml`` (the previous config, what changed and when), since
  ``finetune_config.yaml`` then holds the new one.

What may change on resume without being refused (it is still recorded): where the run lives
(``output_dir``), how often and where it logs, evaluates and saves, how evaluation batches, Hub
publishing settings, ``evaluate_before_training``, and ``max_steps`` / ``num_train_epochs`` growing (to
train on). Everything else (data, model, learning rate, seed, batch size, schedule...) decides the
weights, and changing it mid-run gives a model that neither config describes.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from finetune.config import ConfigError
from finetune.outputs import (
    EVAL_RESULTS,
    EVALUATION_ARTIFACTS,
    GENERATION_CONFIG,
    MODEL_CARD,
    MODEL_CONFIG,
    MODEL_FILE_PATTERNS,
    RUN_ARTIFACTS,
    RUN_CONFIG,
    RUN_CONFIG_HISTORY,
    RUN_LOCK,
    write_text,
)
from finetune.training.checkpoints import checkpoint_dirs, newest_whole_checkpoint

logger = logging.getLogger(__name__)

# keys about this invocation, not about the run: never compared
NOT_COMPARED = frozenset({"resume", "resume_allow_config_changes", "overwrite_output_dir", "hub_token"})
# keys that may change on resume (recorded, not refused): they do not decide the weights
MAY_CHANGE_ON_RESUME = frozenset({
    "output_dir", "run_name", "logging_dir", "logging_strategy", "logging_steps", "logging_first_step",
    "logging_nan_inf_filter", "log_level", "log_level_replica", "log_on_each_node", "disable_tqdm", "report_to",
    "eval_strategy", "eval_steps", "eval_delay", "eval_on_start", "per_device_eval_batch_size",
    "eval_accumulation_steps", "save_strategy", "save_steps", "save_total_limit", "save_only_model",
    "save_on_each_node", "push_to_hub", "hub_model_id", "hub_private_repo", "hub_strategy", "hub_revision",
    "hub_always_push", "evaluate_before_training",
})
# keys that may grow on resume (train on for longer); shrinking or switching epochs <-> steps is a change
MAY_GROW_ON_RESUME = frozenset({"max_steps", "num_train_epochs"})

_NOT_SET = "(not set)"
# names of a finished model's weights
_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
# what a fresh run leaves alone of our names when no finished run is there: they may be the user's
_KEPT_WITHOUT_A_MODEL = {MODEL_CARD, MODEL_CONFIG, GENERATION_CONFIG}


# ---------------------------------------------------------------------------------------- what is there


def finished_run(output_dir: str | Path) -> list[str]:
    """The files showing that ``output_dir`` holds a finished run (empty: it does not)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    weights = sorted({p.name for pattern in _WEIGHTS for p in root.glob(pattern) if p.is_file()})
    if (root / MODEL_CONFIG).is_file() and weights:
        found += [MODEL_CONFIG, weights[0]]
    if (root / EVAL_RESULTS).is_file():
        found.append(EVAL_RESULTS)
    return found


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _only_evaluation_outputs(folder: Path) -> bool:
    names = {p.name for p in folder.iterdir()}
    return EVAL_RESULTS in names and names <= set(EVALUATION_ARTIFACTS)


def remove_previous_run(output_dir: str | Path) -> list[str]:
    """``overwrite_output_dir``: remove the previous run's artifacts, model files, checkpoints and
    evaluation folders; returns the names removed. Unknown files and set-aside checkpoints stay."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    doomed: set[Path] = {root / name for name in RUN_ARTIFACTS if (root / name).exists()}
    doomed |= {p for pattern in MODEL_FILE_PATTERNS for p in root.glob(pattern) if p.is_file()}
    doomed |= set(checkpoint_dirs(root))
    doomed |= {p for p in root.glob("eval-*") if p.is_dir() and _only_evaluation_outputs(p)}
    doomed = {p for p in doomed if p.name != RUN_LOCK}
    for path in sorted(doomed):
        _remove(path)
    return sorted(p.name for p in doomed)


def remove_leftovers(output_dir: str | Path) -> list[str]:
    """A fresh run where no finished run is: our files of a run that never finished (a data report, a
    zero-shot score, a config history...), so none outlives it into this run."""
    root = Path(output_dir)
    doomed = [root / name for name in RUN_ARTIFACTS
              if name not in _KEPT_WITHOUT_A_MODEL and name != RUN_CONFIG and (root / name).exists()]
    for path in doomed:
        _remove(path)
    return sorted(p.name for p in doomed)


# ---------------------------------------------------------------------------------------- config changes


def plain(value: Any) -> Any:
    """A config value as YAML holds it: enums by value, dataclasses as mappings, other objects by name."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    text = str(value)
    return type(value).__name__ if " object at 0x" in text else text


def effective_values(groups: tuple[Any, ...]) -> dict[str, Any]:
    """Every key of parsed option groups with the value the run uses (defaults included)."""
    values: dict[str, Any] = {}
    for group in groups:
        for f in dataclasses.fields(group):
            if f.init and f.name not in values:
                values[f.name] = plain(getattr(group, f.name))
    return values


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """key -> (old, new) for every compared key whose value differs."""
    changes = {}
    for key in sorted((set(old) | set(new)) - NOT_COMPARED):
        before, after = old.get(key, _NOT_SET), new.get(key, _NOT_SET)
        if before != after:
            changes[key] = (before, after)
    return changes


def _grows(key: str, before: Any, after: Any) -> bool:
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (before, after))
    if not numbers:
        return False
    if key == "max_steps" and before <= 0:
        return False  # the run counted epochs; a step count now is another schedule
    return after >= before


def refused_changes(changes: dict[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The changes that decide the weights (see the module docstring)."""
    return {key: change for key, change in changes.items()
            if key not in MAY_CHANGE_ON_RESUME and not (key in MAY_GROW_ON_RESUME and _grows(key, *change))}


def _shown(value: Any) -> str:
    if value == _NOT_SET:
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def record_config_change(output_dir: str | Path, previous: dict[str, Any], changes: dict[str, tuple[Any, Any]],
                         resumed_from: str) -> Path:
    """Append the previous config and what changed to finetune_config_history.yaml (oldest first)."""
    path = Path(output_dir) / RUN_CONFIG_HISTORY
    history: list[Any] = []
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            history = loaded if isinstance(loaded, list) else []
        except yaml.YAMLError:
            logger.warning("%s cannot be read: starting it again", path)
    history.append({
        "replaced_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from": Path(resumed_from).name,
        "changed": {key: {"old": before, "new": after} for key, (before, after) in changes.items()},
        "config": {key: value for key, value in previous.items() if "token" not in key.lower()},
    })
    header = (f"# Earlier configs of this run, oldest first: each was replaced when the run was resumed with\n"
              f"# the changes listed. {RUN_CONFIG} holds the config of the latest part.\n")
    return write_text(path, header + yaml.safe_dump(history, sort_keys=False, allow_unicode=True))


def _check_resumed_config(root: Path, resumed_from: Path, new: dict[str, Any], allow: bool, main: bool,
                          effective_of: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    saved_path = root / RUN_CONFIG
    if not saved_path.is_file():
        logger.warning("resume: %s has no %s, so the new config cannot be compared with the one the run was "
                       "started with", root, RUN_CONFIG)
        return
    try:
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"resume: {saved_path} cannot be read ({error}); it is the config this run was "
                          "started with: restore it, or start a new run in another output_dir") from None
    try:
        old = effective_of(saved)
    except (ConfigError, ValueError, TypeError) as error:
        logger.warning("resume: the saved %s no longer parses (%s): comparing its keys as written", RUN_CONFIG, error)
        old = {key: plain(value) for key, value in saved.items()}
        new = {key: value for key, value in new.items() if key in saved}
    changes = config_changes(old, new)
    refused = refused_changes(changes)
    if refused and not allow:
        listed = "\n".join(f"  {key}: {_shown(a)} -> {_shown(b)}" for key, (a, b) in refused.items())
        raise ConfigError(
            f"resume=true continues the run in {root} from {resumed_from.name}, but the config differs from the "
            f"one it was started with ({RUN_CONFIG}):\n{listed}\nResuming would mix two runs, and the saved "
            "config would describe only the second. Put the old values back, start a new run in another "
            "output_dir, or set resume_allow_config_changes: true to continue anyway (the change is then "
            f"recorded in {RUN_CONFIG_HISTORY}). Free to change on resume: output_dir, how often to log, "
            "evaluate and save, Hub settings, and max_steps / num_train_epochs upwards.")
    if refused:
        logger.warning("resume with a changed config (resume_allow_config_changes): %s; the previous config is "
                       "kept in %s", ", ".join(f"{k} {_shown(a)} -> {_shown(b)}" for k, (a, b) in refused.items()),
                       RUN_CONFIG_HISTORY)
    if changes and main:
        record_config_change(root, saved, changes, str(resumed_from))


def prepare_run_directory(output_dir: str | Path, *, resume: bool, overwrite: bool, allow_config_changes: bool,
                          new_values: dict[str, Any], effective_of: Callable[[dict[str, Any]], dict[str, Any]],
                          main: bool = True) -> None:
    """Refuse what would mix two runs in ``output_dir``; clear what a new run must not inherit.

    ``new_values``: the new config's effective values (:func:`effective_values`); ``effective_of``
    turns a saved config (flat keys) into the same. Every process of a multi-process run calls this
    (so that all of them refuse alike); only ``main`` removes or writes anything.
    """
    root = Path(output_dir)
    if overwrite and resume:
        raise ConfigError("resume=true continues the run in output_dir, overwrite_output_dir=true deletes it "
                          "first: set one of them")
    if overwrite:
        if main:
            removed = remove_previous_run(root)
            if removed:
                logger.warning("overwrite_output_dir: removed the previous run from %s: %s", root, ", ".join(removed))
        return
    if resume:
        whole = newest_whole_checkpoint(root)
        if whole is not None:
            _check_resumed_config(root, whole, new_values, allow_config_changes, main, effective_of)
            return
    finished = finished_run(root)
    if finished:
        again = ("resume=true finds no whole checkpoint there to continue from, so it would train again from the "
                 "start" if resume else "a new run would overwrite its weights, saved config and data report and "
                 "leave its results beside the new model")
        raise FileExistsError(
            f"{root} already holds a finished run ({', '.join(finished)}); {again}. Choose another output_dir, or "
            "set overwrite_output_dir: true (with resume: false) to delete the previous run's model, results and "
            "checkpoints first (nothing was written)")
    existing = checkpoint_dirs(root)
    if existing and not resume:
        raise FileExistsError(
            f"{root} already holds checkpoints ({existing[-1].name}); set resume=true to continue that run, "
            "overwrite_output_dir: true to start it again, or choose another output_dir (nothing was overwritten)")
    if main:
        removed = remove_leftovers(root)
        if removed:
            logger.info("%s: removed what a run that never finished left there: %s", root, ", ".join(removed))
