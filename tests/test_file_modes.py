"""Files a run leaves are readable by the user's group as any other tool's are: their modes follow the
umask (0644/0755 under umask 022), not the private 0600 of ``tempfile.mkstemp`` or of safetensors."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import finetune
from finetune.cli import main
from finetune.outputs import follow_umask, staged_directory, write_bytes, write_json, write_text
from tests.tasks.test_asr_seq2seq import _config


@pytest.fixture()
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _modes(root: Path) -> dict[str, str]:
    """Relative path -> octal permission bits, for root and everything under it."""
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode))
            for p in [root, *sorted(root.rglob("*"))] if not p.is_symlink()}


def _wrong(root: Path) -> dict[str, str]:
    return {name: mode for name, mode in _modes(root).items()
            if mode != ("0o755" if (root / name).is_dir() else "0o644")}


@pytest.mark.slow
def test_every_file_of_a_training_run_follows_the_umask(tmp_path: Path, tiny_whisper_dir: Path, umask_022,
                                                         capsys) -> None:
    config = _config(tmp_path, tiny_whisper_dir, max_steps=2, save_strategy="no", save_steps=None,
                     evaluate_before_training=True)
    finetune.train(config)
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {"README.md", "eval_results.json", "predictions.jsonl", "finetune_config.yaml", "data_report.json",
            "training_args.json", "trainer_state.json", "model.safetensors", "config.json", "tokenizer.json",
            "zero_shot_results.json"} <= names, names
    assert _wrong(run) == {}

    # what the verbs write afterwards: a regenerated card, the push dry run's manifest
    (run / "README.md").unlink()
    assert main(["card", "--model", str(run)]) == 0
    assert main(["push", "--model", str(run), "--repo-id", "me/digits", "--dry-run"]) == 0
    assert {"README.md", "hub_upload_manifest.json"} <= {p.name for p in run.iterdir()}
    assert _wrong(run) == {}


def test_the_card_verb_follows_a_stricter_umask_too(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["WhisperForConditionalGeneration"], '
                                       '"model_type": "whisper"}')
    previous = os.umask(0o027)
    try:
        assert main(["card", "--model", str(model), "--repo-id", "me/m"]) == 0
    finally:
        os.umask(previous)
    assert oct(stat.S_IMODE((model / "README.md").stat().st_mode)) == "0o640"


def test_writers_and_a_staged_directory_follow_the_umask(tmp_path: Path, umask_022) -> None:
    """Whatever writes into a staged folder (our writers, open(), safetensors, mkstemp) ends up 0644."""
    import numpy as np
    from safetensors.numpy import save_file

    write_text(tmp_path / "a.txt", "a")
    write_bytes(tmp_path / "b.bin", b"b")
    write_json(tmp_path / "c.json", {"c": 1})
    with staged_directory(tmp_path / "staged") as staging:
        write_json(staging / "own.json", {})
        (staging / "plain.txt").write_text("plain")
        (staging / "nested").mkdir(mode=0o700)
        save_file({"w": np.zeros(2, dtype=np.float32)}, str(staging / "nested" / "weights.safetensors"))
        fd, private = tempfile.mkstemp(dir=staging)
        os.close(fd)
        script = staging / "run.sh"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o700)
    staged = tmp_path / "staged"
    assert not staging.exists() and (staged / Path(private).name).is_file()
    assert _wrong(staged) == {"run.sh": "0o755"}  # all 0644 / 0755; executables keep their x bits
    assert {oct(stat.S_IMODE((tmp_path / n).stat().st_mode)) for n in ("a.txt", "b.bin", "c.json")} == {"0o644"}


def test_follow_umask_leaves_links_alone(tmp_path: Path, umask_022) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o600)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights").write_bytes(b"w")
    (folder / "weights").chmod(0o600)
    (folder / "link").symlink_to(outside)
    follow_umask([folder, tmp_path / "missing"])
    assert oct(stat.S_IMODE((folder / "weights").stat().st_mode)) == "0o644"
    assert oct(stat.S_IMODE(outside.stat().st_mode)) == "0o600"
    shutil.rmtree(folder)


def test_checkpoint_files_follow_the_umask(tmp_path: Path) -> None:
    """safetensors writes 0600; a checkpoint the Trainer saved is readable by the group like the final model."""
    from finetune.training.checkpoints import write_marker

    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(b"weights")
    weights.chmod(0o600)
    old = os.umask(0o022)
    try:
        write_marker(checkpoint, 2)
    finally:
        os.umask(old)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
