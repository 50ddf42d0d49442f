"""A run killed with SIGKILL and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.numpy import load_file

import finetune
from finetune.training.checkpoints import (
    COMPLETE_MARKER,
    MarkCompleteCallback,
    checkpoint_to_resume,
)

REPO = Path(__file__).resolve().parents[2]


def _config(path: Path, model_dir: Path, output_dir: Path) -> Path:
    values = {
        "task": "asr_seq2seq", "model_name_or_path": str(model_dir), "encoder_context_seconds": 2,
        "dataset_name": "sample:fsdd", "max_train_samples": 24, "max_eval_samples": 4,
        "max_duration_in_seconds": 2, "output_dir": str(output_dir), "per_device_train_batch_size": 4,
        "learning_rate": 1e-3, "max_steps": 8, "save_steps": 2, "logging_steps": 1, "seed": 3,
        "generation_max_length": 6, "use_cpu": True, "save_total_limit": 2, "dataloader_num_workers": 0,
        "max_batch_seconds": 3.0,  # resume must replay duration-bounded batches too
    }
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    straight = tmp_path / "straight"
    finetune.train(_config(tmp_path / "a.yaml", tiny_whisper_dir, straight))

    killed = tmp_path / "killed"
    config = _config(tmp_path / "b.yaml", tiny_whisper_dir, killed)
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen([sys.executable, "-m", "finetune", "train", str(config)], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = killed / "checkpoint-4" / COMPLETE_MARKER
    deadline = time.time() + 300
    while not marker.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert marker.exists(), "the run ended before its second checkpoint"
    assert not (killed / "model.safetensors").exists(), "killed too late to test anything"

    finetune.train(config, resume=True)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        assert abs(a[name] - b[name]).max() <= 1e-5, name
    results_a = json.loads((straight / "eval_results.json").read_text())
    results_b = json.loads((killed / "eval_results.json").read_text())
    assert results_a["wer"] == results_b["wer"] and results_a["cer"] == results_b["cer"]
    losses_a = [h["loss"] for h in json.loads((straight / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    losses_b = [h["loss"] for h in json.loads((killed / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert losses_a == pytest.approx(losses_b, rel=1e-4)


def test_half_written_checkpoints_are_set_aside_not_resumed(tmp_path: Path) -> None:
    complete = tmp_path / "checkpoint-2"
    complete.mkdir()
    (complete / "trainer_state.json").write_text("{}")
    (complete / COMPLETE_MARKER).write_text("{}")
    partial = tmp_path / "checkpoint-4"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")  # killed mid-save: no marker
    assert checkpoint_to_resume(tmp_path, resume=True) == str(complete)
    assert not partial.exists()
    # set aside under a name the Trainer's rotation (it globs checkpoint-*) cannot match, so never deleted
    assert [p.name.rsplit("-", 2)[0] for p in tmp_path.glob("incomplete-checkpoint-4-*")] == [
        "incomplete-checkpoint-4"]
    assert (next(tmp_path.glob("incomplete-checkpoint-4-*")) / "model.safetensors").read_bytes() == b"half"


def test_marker_is_written_only_for_an_existing_checkpoint(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    state = TrainerState()
    state.global_step = 6
    (tmp_path / "checkpoint-6").mkdir()
    MarkCompleteCallback().on_save(args, state, TrainerControl())
    assert json.loads((tmp_path / "checkpoint-6" / COMPLETE_MARKER).read_text())["global_step"] == 6
