"""A marked checkpoint is resumed from only if it is still whole; checkpoints set aside are never
deleted by the Trainer's checkpoint rotation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from transformers.trainer_utils import rotate_checkpoints, sort_checkpoints

from finetune.training.checkpoints import (
    COMPLETE_MARKER,
    MarkCompleteCallback,
    checkpoint_problem,
    checkpoint_to_resume,
    set_aside_incomplete,
    write_marker,
)


def _checkpoint(root: Path, step: int, *, marked: bool = True, legacy_marker: bool = False) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"w": np.arange(256, dtype=np.float32) + step}, str(folder / "model.safetensors"))
    (folder / "optimizer.pt").write_bytes(b"o" * 100)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if marked:
        if legacy_marker:  # as versions before sizes were recorded wrote it
            (folder / COMPLETE_MARKER).write_text(json.dumps({"global_step": step, "saved_at": 0}))
        else:
            write_marker(folder, step)
    return folder


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_the_marker_records_every_file_and_its_size(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    folder = _checkpoint(tmp_path, 6, marked=False)
    (folder / "sub").mkdir()
    (folder / "sub" / "shard.bin").write_bytes(b"xyz")
    state = TrainerState()
    state.global_step = 6
    MarkCompleteCallback().on_save(TrainingArguments(output_dir=str(tmp_path), report_to="none"), state,
                                   TrainerControl())
    marker = json.loads((folder / COMPLETE_MARKER).read_text())
    assert marker["global_step"] == 6
    assert marker["files"] == {"model.safetensors": (folder / "model.safetensors").stat().st_size,
                               "optimizer.pt": 100, "sub/shard.bin": 3,
                               "trainer_state.json": (folder / "trainer_state.json").stat().st_size}
    assert checkpoint_problem(folder) is None


@pytest.mark.parametrize("legacy_marker", [False, True])
def test_a_newest_checkpoint_cut_short_after_marking_falls_back_to_the_previous(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, legacy_marker: bool) -> None:
    previous = _checkpoint(tmp_path, 2, legacy_marker=legacy_marker)
    newest = _checkpoint(tmp_path, 4, legacy_marker=legacy_marker)
    _cut_in_half(newest / "model.safetensors")
    with caplog.at_level(logging.INFO):
        assert checkpoint_to_resume(tmp_path, resume=True) == str(previous)
    assert "checkpoint-4 cannot be resumed from" in caplog.text and "falling back" in caplog.text
    assert ("cut short" if not legacy_marker else "does not open") in caplog.text
    assert f"resuming from {previous}" in caplog.text
    # set aside, never deleted, under a name neither resume nor the Trainer's rotation matches
    damaged = list(tmp_path.glob("damaged-checkpoint-4-*"))
    assert len(damaged) == 1 and not newest.exists()
    assert (damaged[0] / "optimizer.pt").read_bytes() == b"o" * 100


def test_a_missing_or_shorter_file_is_damage(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path, 2)
    (folder / "optimizer.pt").write_bytes(b"o" * 10)
    assert "optimizer.pt is cut short: 10 bytes, 100" in checkpoint_problem(folder)
    (folder / "optimizer.pt").unlink()
    assert checkpoint_problem(folder) == "optimizer.pt is missing"
    (folder / COMPLETE_MARKER).write_text("{not json")
    assert "cannot be read" in checkpoint_problem(folder)


def test_no_whole_checkpoint_starts_from_the_beginning(tmp_path: Path) -> None:
    _cut_in_half(_checkpoint(tmp_path, 2) / "model.safetensors")
    assert checkpoint_to_resume(tmp_path, resume=True) is None
    assert [p.name.split("-2-")[0] for p in tmp_path.iterdir()] == ["damaged-checkpoint"]


def test_set_aside_checkpoints_survive_the_trainers_rotation(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 3, marked=False)  # killed while saving
    _cut_in_half(_checkpoint(tmp_path, 4) / "model.safetensors")  # damaged after marking
    assert checkpoint_to_resume(tmp_path, resume=True) == str(tmp_path / "checkpoint-2")
    set_aside = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("checkpoint-"))
    assert [name.rsplit("-", 2)[0] for name in set_aside] == ["damaged-checkpoint-4", "incomplete-checkpoint-3"]
    # the run goes on and saves more checkpoints; rotation (save_total_limit) deletes old ones
    for step in (4, 6, 8):
        _checkpoint(tmp_path, step)
    assert {Path(p).name for p in sort_checkpoints(str(tmp_path))} == {f"checkpoint-{s}" for s in (2, 4, 6, 8)}
    rotate_checkpoints(str(tmp_path), save_total_limit=1, use_mtime=True)
    rotate_checkpoints(str(tmp_path), save_total_limit=1, use_mtime=False)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert [name for name in left if name.startswith("checkpoint-")] == ["checkpoint-8"]
    assert sorted(name for name in left if not name.startswith("checkpoint-")) == set_aside


def test_checkpoints_set_aside_by_older_versions_are_renamed_out_of_the_rotations_reach(tmp_path: Path) -> None:
    legacy = tmp_path / "checkpoint-3.incomplete-1700000000"
    legacy.mkdir()
    (legacy / "model.safetensors").write_bytes(b"half")
    assert any(Path(p).name == legacy.name for p in sort_checkpoints(str(tmp_path)))  # what rotation would delete
    assert checkpoint_to_resume(tmp_path, resume=False) is None
    renamed = list(tmp_path.glob("incomplete-checkpoint-3-*"))
    assert len(renamed) == 1 and (renamed[0] / "model.safetensors").read_bytes() == b"half"
    assert sort_checkpoints(str(tmp_path)) == []


def test_set_aside_incomplete_names_are_unique(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, marked=False)
    first = set_aside_incomplete(tmp_path)
    _checkpoint(tmp_path, 2, marked=False)  # killed again while saving the same step, the same second
    second = set_aside_incomplete(tmp_path)
    assert len({*first, *second}) == 2 and all(p.is_dir() for p in (*first, *second))
