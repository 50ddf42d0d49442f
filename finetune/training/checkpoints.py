"""Crash-safe checkpoints: a checkpoint counts only once it is known to be whole.

The Trainer writes a checkpoint file by file, so a kill during a save leaves a folder that looks
like a checkpoint but is not. Right after the Trainer finishes a save, :class:`MarkCompleteCallback`
adds ``finetune_complete.json`` (written to a temp name, flushed, then renamed), and only folders
holding that marker are resumed from. Unmarked folders from a killed run are renamed aside, never
deleted, so the Trainer's own checkpoint rotation cannot mistake them for real ones.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from finetune.outputs import CHECKPOINT_COMPLETE, write_json

logger = logging.getLogger(__name__)

COMPLETE_MARKER = CHECKPOINT_COMPLETE


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


def set_aside_incomplete(output_dir: str | os.PathLike) -> list[Path]:
    """Rename unmarked checkpoints to ``checkpoint-N.incomplete-<time>``; returns the new paths."""
    moved = []
    for checkpoint in checkpoint_dirs(output_dir):
        if not is_complete(checkpoint):
            target = checkpoint.with_name(f"{checkpoint.name}.incomplete-{int(time.time())}")
            checkpoint.rename(target)
            logger.warning("%s was not completely saved (the run was stopped while saving): moved to %s",
                           checkpoint, target.name)
            moved.append(target)
    return moved


def write_marker(checkpoint: Path, step: int) -> None:
    write_json(checkpoint / COMPLETE_MARKER, {"global_step": step, "saved_at": time.time()}, durable=True)


class MarkCompleteCallback(TrainerCallback):
    """Marks each checkpoint whole once the Trainer has written all of it (``on_save`` runs after)."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            if checkpoint.is_dir():
                write_marker(checkpoint, state.global_step)
        return control


def checkpoint_to_resume(output_dir: str | os.PathLike, resume: bool) -> str | None:
    """The newest complete checkpoint when resuming; refuse to train over checkpoints otherwise.

    Checkpoints left half-written by a killed run are set aside first.
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
