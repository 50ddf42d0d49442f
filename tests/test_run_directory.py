"""One run per output directory, one run's results in it, and clear refusals of configs that would
train nothing: the lock (finetune_run.lock), finished runs, overwrite_output_dir, training arguments.

Most tests never load a model: the config names one that does not exist, so a test that gets the
error it expects got it before anything was loaded (as tests/tasks/test_protocol.py does).
"""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import finetune
from finetune import api
from finetune.cli import main
from finetune.config import ConfigError
from finetune.outputs import EVAL_RESULTS, RUN_CONFIG, RUN_LOCK
from finetune.training.run_lock import RunDirectoryInUse, RunLock, current_owner


def _never_loaded(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {"task": "asr_seq2seq", "model_name_or_path": str(tmp_path / "no-such-model"),
            "dataset_name": "sample:fsdd", "output_dir": str(tmp_path / "run"), "max_steps": 2,
            "use_cpu": True, **overrides}


def _tiny(tmp_path: Path, model: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A quickstart-like run of the tiny Whisper: no checkpoints, an eval split (seconds on a CPU)."""
    return {"task": "asr_seq2seq", "model_name_or_path": str(model), "encoder_context_seconds": 2,
            "dataset_name": "sample:fsdd", "max_train_samples": 4, "max_eval_samples": 2,
            "max_duration_in_seconds": 2, "output_dir": str(output_dir), "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 2, "learning_rate": 1e-3, "max_steps": 1, "save_strategy": "no",
            "generation_max_length": 4, "seed": 7, "use_cpu": True, "dataloader_num_workers": 0, **overrides}


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(directory: Path, **fields: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": "2025-01-02T03:04:05+00:00",
             "purpose": "training run", "token": "someone-else", **fields}
    path = directory / RUN_LOCK
    path.write_text(json.dumps(owner))
    return path


# ---------------------------------------------------------------------------------------- the lock


def test_a_second_run_on_a_locked_directory_fails_at_once_naming_the_owner(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunLock(run):
        lock = json.loads((run / RUN_LOCK).read_text())
        assert lock["host"] == socket.gethostname() and lock["pid"] == os.getpid() and lock["started_at"]
        started = time.perf_counter()
        with pytest.raises(RunDirectoryInUse) as error:
            api.train(_never_loaded(tmp_path))
        assert time.perf_counter() - started < 10
        message = str(error.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and lock["started_at"] in message
        assert not (run / RUN_CONFIG).exists()  # refused before writing anything
    assert not (run / RUN_LOCK).exists()


def test_the_cli_reports_a_locked_directory_without_a_traceback(tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_never_loaded(tmp_path)))
    with RunLock(tmp_path / "run"):
        assert main(["train", str(config)]) == 2
    err = capsys.readouterr().err
    assert "is in use by a training run" in err and f"pid {os.getpid()}" in err and "Traceback" not in err


def test_the_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # the model does not exist: the run fails after taking the lock
        api.train(_never_loaded(tmp_path))
    assert (tmp_path / "run" / RUN_CONFIG).is_file()
    assert not (tmp_path / "run" / RUN_LOCK).exists()
    with pytest.raises(OSError):  # and the next run on it is not locked out
        api.train(_never_loaded(tmp_path))


def test_a_stale_lock_on_this_host_is_reported_and_taken_over(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    dead = _dead_pid()
    _write_lock(tmp_path / "run", pid=dead)
    with caplog.at_level(logging.WARNING):
        with pytest.raises(OSError) as error:
            api.train(_never_loaded(tmp_path))
    assert not isinstance(error.value, RunDirectoryInUse)
    assert "stale lock" in caplog.text and f"pid {dead}" in caplog.text
    assert not (tmp_path / "run" / RUN_LOCK).exists()


def test_a_lock_whose_pid_was_reused_is_stale(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    me = current_owner("training run")
    if me.process_start is None:
        pytest.skip("no /proc: process start times unknown")
    _write_lock(tmp_path / "run", pid=os.getpid(), process_start=me.process_start - 1, boot_id=me.boot_id)
    with caplog.at_level(logging.WARNING), RunLock(tmp_path / "run"):
        pass
    assert "now belongs to another process" in caplog.text


def test_a_lock_of_a_killed_but_unreaped_process_is_stale(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stat = Path("/proc/self/stat")
    if not stat.exists():
        pytest.skip("no /proc")
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not waited for: a zombie
    state = Path(f"/proc/{child.pid}/stat")
    deadline = time.time() + 10
    while time.time() < deadline and state.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.02)
    try:
        _write_lock(tmp_path / "run", pid=child.pid)
        with caplog.at_level(logging.WARNING), RunLock(tmp_path / "run"):
            pass
        assert "stale lock" in caplog.text
    finally:
        child.wait()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    path = _write_lock(tmp_path / "run", host="gpu-node-17", pid=_dead_pid())
    before = path.read_bytes()
    with pytest.raises(RunDirectoryInUse) as error:
        api.train(_never_loaded(tmp_path))
    message = str(error.value)
    assert "gpu-node-17" in message and "2025-01-02T03:04:05" in message
    assert f"delete {path}" in message
    assert path.read_bytes() == before


def test_only_the_saving_process_takes_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under accelerate launch, the other ranks of the run that holds the lock must not fail on it."""
    from transformers import TrainingArguments

    monkeypatch.setattr(TrainingArguments, "should_save", property(lambda self: False))
    with RunLock(tmp_path / "run"):  # the main process's lock
        held = (tmp_path / "run" / RUN_LOCK).read_bytes()
        with pytest.raises(OSError) as error:  # gets as far as loading the (missing) model
            api.train(_never_loaded(tmp_path))
        assert not isinstance(error.value, RunDirectoryInUse)
        assert (tmp_path / "run" / RUN_LOCK).read_bytes() == held
        assert not (tmp_path / "run" / RUN_CONFIG).exists()  # only the saving process writes


def _contend(directory: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with RunLock(directory):
            results.put("won")
            time.sleep(1.0)
    except RunDirectoryInUse:
        results.put("refused")


def test_of_runs_starting_together_exactly_one_takes_the_lock(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_contend, args=(str(tmp_path / "run"), barrier, results)) for _ in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
    outcomes = sorted(results.get(timeout=5) for _ in processes)
    assert outcomes == ["refused"] * 5 + ["won"]


def test_evaluate_takes_the_lock_of_its_output_dir(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    out = tmp_path / "eval"
    with RunLock(out, purpose="evaluation"):
        with pytest.raises(RunDirectoryInUse, match="in use by an? evaluation"):
            finetune.evaluate(tiny_whisper_dir, "sample:fsdd", split="test", output_dir=out, max_eval_samples=1)
    assert not (out / EVAL_RESULTS).exists()


def test_an_unwritable_output_dir_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    real_open = os.open

    def denied(path, *args, **kwargs):  # what a folder the user cannot write to answers (root writes anywhere)
        if str(path).startswith(str(run)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(ConfigError, match=f"output_dir {run} cannot be written to"):
        api.train(_never_loaded(tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(_never_loaded(tmp_path)))
    assert main(["train", str(config)]) == 2
    assert f"output_dir {run} cannot be written to" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any folder")
def test_a_read_only_output_dir_is_a_clear_error(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="cannot be written to"):
            api.train(_never_loaded(tmp_path, output_dir=str(parent / "run")))
    finally:
        parent.chmod(0o700)


# ---------------------------------------------------------------------------------------- training arguments


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps must be 1 or more"),
    ({"max_steps": 0}, "max_steps: 0 trains for no step"),
    ({"max_steps": -1, "num_train_epochs": 0}, "num_train_epochs: 0"),
    ({"save_steps": 10, "save_strategy": "no"}, "save_strategy: \"no\" saves none"),
])
def test_arguments_that_would_train_nothing_are_refused_before_loading(tmp_path: Path, overrides: dict[str, Any],
                                                                       expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as error:
        api.train(_never_loaded(tmp_path, **overrides))
    assert "base model would be saved as fine-tuned" in str(error.value) or "save_steps" in overrides
    assert not (tmp_path / "run").exists()


def test_a_config_without_output_dir_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    values = _never_loaded(tmp_path)
    del values["output_dir"]
    with pytest.raises(ConfigError, match="output_dir is required"):
        api.train(values)
    assert not (tmp_path / "trainer_output").exists()


# ---------------------------------------------------------------------------------------- one run's results


@pytest.mark.slow
def test_a_finished_run_is_never_overwritten_unless_asked(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    run = tmp_path / "run"
    finetune.train(_tiny(tmp_path, tiny_whisper_dir, run))
    (run / "confusion_matrix.png").write_bytes(b"stale")  # as a classifier's run leaves one
    (run / "notes.txt").write_text("mine")
    eval_dir = run / "eval-test"
    eval_dir.mkdir()
    (eval_dir / EVAL_RESULTS).write_text("{}")
    weights = (run / "model.safetensors").read_bytes()
    saved, report = (run / RUN_CONFIG).read_bytes(), (run / "data_report.json").read_bytes()

    # a fresh run into it (here one that would also fail) is refused before it writes anything
    with pytest.raises(FileExistsError, match="already holds a finished run") as error:
        finetune.train(_tiny(tmp_path, tmp_path / "no-such-model", run, learning_rate=5e-3))
    assert "overwrite_output_dir: true" in str(error.value) and "another output_dir" in str(error.value)
    assert (run / RUN_CONFIG).read_bytes() == saved and (run / "model.safetensors").read_bytes() == weights
    assert (run / "data_report.json").read_bytes() == report and (run / EVAL_RESULTS).is_file()
    # resume=true with no checkpoint to continue from would train again from the start: refused too
    with pytest.raises(FileExistsError, match="no whole checkpoint"):
        finetune.train(_tiny(tmp_path, tiny_whisper_dir, run, resume=True))
    with pytest.raises(ConfigError, match="set one of them"):
        finetune.train(_tiny(tmp_path, tiny_whisper_dir, run, resume=True, overwrite_output_dir=True))

    # overwrite_output_dir: the previous run's results are gone before the new one writes, even those
    # the new run does not write again (no eval split here)
    results = finetune.train(_tiny(tmp_path, tiny_whisper_dir, run, eval_split_name=None, overwrite_output_dir=True,
                                   learning_rate=5e-3))
    assert "eval" not in results
    assert not (run / EVAL_RESULTS).exists() and not (run / "predictions.jsonl").exists()
    assert not (run / "confusion_matrix.png").exists() and not eval_dir.exists()
    assert (run / "model.safetensors").read_bytes() != weights
    assert yaml.safe_load((run / RUN_CONFIG).read_text())["learning_rate"] == 5e-3
    assert (run / "notes.txt").read_text() == "mine"  # files that are not the run's are kept


def test_leftovers_of_a_run_that_never_finished_are_cleared(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "data_report.json").write_text("{}")
    (run / "zero_shot_results.json").write_text("{}")
    (run / "README.md").write_text("my notes")  # not ours without a model: kept
    with pytest.raises(OSError):
        api.train(_never_loaded(tmp_path))
    assert not (run / "zero_shot_results.json").exists() and not (run / "data_report.json").exists()
    assert (run / "README.md").read_text() == "my notes"


def test_usual_training_arguments_pass_the_checks() -> None:
    from transformers import TrainingArguments

    from finetune.training.arguments import check_training_arguments

    for values in ({"max_steps": 5}, {"num_train_epochs": 1}, {"save_strategy": "no"},
                   {"save_strategy": "no", "save_steps": None}, {"save_strategy": "steps", "save_steps": 10}):
        args = TrainingArguments(output_dir="out", report_to="none", **values)
        check_training_arguments(args, {"output_dir": "out", **values})
    # a task that trains without the Trainer's loop (intent_few_shot) is checked for output_dir only
    check_training_arguments(TrainingArguments(output_dir="o", max_steps=0), {"output_dir": "o"}, trains=False)
