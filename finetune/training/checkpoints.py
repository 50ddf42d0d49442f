"""Crash-safe checkpoints: a checkpoint counts only once it is known to be whole.

The Trainer writes a checkpoint file by file, so a kill during a save leaves a folder that looks
like a checkpoint but is not. Right after the Trainer finishes a save, :class:`MarkCompleteCallback`
adds ``finetune_complete.json`` (written to a temp name, flushed, then renamed) recording the name and
size of every file in the folder, and only folders holding that marker are resumed from. Before
resuming, the newest marked checkpoint is checked against its marker (every recorded file present with
its recorded size, every ``*.safetensors`` file readable): one cut short or damaged after it was marked
is set aside and the previous one is used, with a warning that says so.

Folders that cannot be resumed are renamed aside, never deleted: unmarked ones to
``incomplete-checkpoint-N-<time>``, damaged ones to ``damaged-checkpoint-N-<time>``. Those names do not
start with ``checkpoint-``, so the Trainer's checkpoint rotation (``save_total_limit``; transformers'
``sort_checkpoints`` globs ``checkpoint-*``) can neither count nor delete them. Folders set aside by
older versions as ``checkpoint-N.incomplete-<time>`` (which that glob matches) are renamed likewise.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from finetune.outputs import (
    CHECKPOINT_COMPLETE,
    DAMAGED_CHECKPOINT_PREFIX,
    INCOMPLETE_CHECKPOINT_PREFIX,
    follow_umask,
    write_json,
)

logger = logging.getLogger(__name__)

COMPLETE_MARKER = CHECKPOINT_COMPLETE
# how versions before the rename set unmarked checkpoints aside (a name the Trainer's rotation matches)
_LEGACY_SET_ASIDE = re.compile(rf"^({PREFIX_CHECKPOINT_DIR}-\d+)\.incomplete-(\d+)$")


def _step(path: Path) -> int | None:
    prefix = f"{PREFIX_CHECKPOINT_DIR}-"
    tail = path.name[len(prefix) :] if path.name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def checkpoint_dirs(output_dir: str | os.PathLike) -> list[Path]:
    """Every ``checkpoint-N`` folder, oldest step first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _step(p) is not None]
    return sorted(found, key=_step)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE_MARKER).is_file()


def complete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Checkpoints that finished saving, oldest first."""
    return [p for p in checkpoint_dirs(output_dir) if is_complete(p)]


def _files(checkpoint: Path) -> dict[str, int]:
    """Every file under ``checkpoint`` but the marker: relative POSIX path -> size in bytes."""
    sizes = {}
    for path in sorted(checkpoint.rglob("*")):
        if path.is_file() and path.name != COMPLETE_MARKER:
            sizes[path.relative_to(checkpoint).as_posix()] = path.stat().st_size
    return sizes


def write_marker(checkpoint: Path, step: int) -> None:
    """The completion marker: the step, when, and the name and size of every file the save wrote (the
    Trainer's files get the user's umask first: safetensors writes them 0600)."""
    follow_umask([checkpoint])
    write_json(checkpoint / COMPLETE_MARKER, {"global_step": step, "saved_at": time.time(),
                                              "files": _files(checkpoint)}, durable=True)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why a marked checkpoint cannot be resumed from (a file missing or smaller than its marker
    recorded, or a safetensors file that does not open), or None when it is whole.

    Markers written before sizes were recorded (no ``files``) are checked for readable safetensors only.
    """
    try:
        marker = json.loads((checkpoint / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"its marker {COMPLETE_MARKER} cannot be read ({error})"
    recorded = marker.get("files") if isinstance(marker, dict) else None
    if isinstance(recorded, dict):
        for name, size in recorded.items():
            path = checkpoint / name
            if not path.is_file():
                return f"{name} is missing"
            actual = path.stat().st_size
            # smaller only: under DDP another rank may still finish its rng_state_<rank>.pth after rank 0
            # has written the marker, so a file may be recorded smaller than it ends up (never larger)
            if isinstance(size, int) and actual < size:
                return f"{name} is cut short: {actual} bytes, {size} when the checkpoint was saved"
    from safetensors import safe_open

    for path in sorted(checkpoint.rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="numpy"):
                pass
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            return f"{path.relative_to(checkpoint).as_posix()} does not open ({error})"
    return None


def newest_whole_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest marked checkpoint that is whole (see :func:`checkpoint_problem`); renames nothing."""
    return next((p for p in reversed(complete_checkpoints(output_dir)) if checkpoint_problem(p) is None), None)


def _aside_path(folder: Path, name: str, prefix: str, stamp: float | None = None) -> Path:
    """``<prefix><name>-<time>`` beside ``folder``, a name not taken yet (nor matched by the Trainer's rotation)."""
    when = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if stamp is None else stamp))
    base = f"{prefix}{name}-{when}"
    target = folder.with_name(base)
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{base}-{n}")
    return target


def _set_aside(checkpoint: Path, prefix: str) -> Path:
    target = _aside_path(checkpoint, checkpoint.name, prefix)
    checkpoint.rename(target)
    return target


def _rename_legacy_set_asides(output_dir: Path) -> list[Path]:
    """``checkpoint-N.incomplete-<t>`` (older versions' name, matched by the rotation's glob) ->
    ``incomplete-checkpoint-N-<time>``."""
    moved = []
    if not output_dir.is_dir():
        return moved
    for path in sorted(output_dir.iterdir()):
        found = _LEGACY_SET_ASIDE.match(path.name)
        if found and path.is_dir():
            target = _aside_path(path, found.group(1), INCOMPLETE_CHECKPOINT_PREFIX, float(found.group(2)))
            path.rename(target)
            logger.info("renamed the set-aside %s to %s (the Trainer's checkpoint rotation could delete it)",
                        path.name, target.name)
            moved.append(target)
    return moved


def set_aside_incomplete(output_dir: str | os.PathLike) -> list[Path]:
    """Rename unmarked checkpoints to ``incomplete-checkpoint-N-<time>``; returns the new paths."""
    moved = []
    _rename_legacy_set_asides(Path(output_dir))
    for checkpoint in checkpoint_dirs(output_dir):
        if not is_complete(checkpoint):
            target = _set_aside(checkpoint, INCOMPLETE_CHECKPOINT_PREFIX)
            logger.warning("%s was not completely saved (the run was stopped while saving): moved to %s",
                           checkpoint, target.name)
            moved.append(target)
    return moved


class MarkCompleteCallback(TrainerCallback):
    """Marks each checkpoint whole once the Trainer has written all of it (``on_save`` runs after)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if checkpoint.is_dir():
                write_marker(checkpoint, state.global_step)
        return control


def checkpoint_to_resume(output_dir: str | os.PathLike, resume: bool, *, set_aside: bool = True) -> str | None:
    """The newest whole checkpoint when resuming; refuse to train over checkpoints otherwise.

    Checkpoints left half-written by a killed run, and a newest checkpoint damaged after it was marked,
    are set aside first (``set_aside``: only the process that saves renames anything; the others only
    look, after it).
    """
    if set_aside:
        _rename_legacy_set_asides(Path(output_dir))
    if resume:
        if set_aside:
            set_aside_incomplete(output_dir)
        for checkpoint in reversed(complete_checkpoints(output_dir)):
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                logger.info("resuming from %s", checkpoint)
                return str(checkpoint)
            where = f"moved to {_set_aside(checkpoint, DAMAGED_CHECKPOINT_PREFIX).name}" if set_aside else "skipped"
            logger.warning("%s cannot be resumed from: %s (damaged after it was saved); %s, falling back to the "
                           "previous complete checkpoint", checkpoint, problem, where)
        logger.info("resume=true but %s holds no complete checkpoint: starting from the beginning", output_dir)
        return None
    existing = checkpoint_dirs(output_dir)
    if existing:
        raise FileExistsError(
            f"{output_dir} already holds checkpoints ({existing[-1].name}); set resume=true to continue that "
            "run, or choose another output_dir (nothing was overwritten)"
        )
    return None
