"""resume=true continues one run: it refuses a config that would mix two runs (unless allowed, and then
the change is recorded), keeps the zero-shot baseline measured when the run started, and resumes from
the previous checkpoint when the newest was damaged after it was saved."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from finetune import api
from finetune.config import ConfigError
from finetune.outputs import EVAL_RESULTS, RUN_CONFIG, RUN_CONFIG_HISTORY, ZERO_SHOT_RESULTS


def _values(model: Path, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    return {"task": "asr_seq2seq", "model_name_or_path": str(model), "encoder_context_seconds": 2,
            "dataset_name": "sample:fsdd", "max_train_samples": 4, "max_eval_samples": 2,
            "max_duration_in_seconds": 2, "output_dir": str(output_dir), "per_device_train_batch_size": 2,
            "per_device_eval_batch_size": 2, "learning_rate": 1e-3, "max_steps": 2, "save_steps": 2,
            "logging_steps": 1, "generation_max_length": 4, "seed": 7, "use_cpu": True,
            "dataloader_num_workers": 0, **overrides}


def _step(output_dir: Path) -> int:
    return json.loads((output_dir / "trainer_state.json").read_text())["global_step"]


@pytest.mark.slow
def test_resume_refuses_a_changed_config_and_keeps_the_zero_shot_baseline(
        tmp_path: Path, tiny_whisper_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    values = _values(tiny_whisper_dir, run, evaluate_before_training=True)
    first = api.train(values)
    zero_shot = json.loads((run / EVAL_RESULTS).read_text())["zero_shot"]
    assert zero_shot and first["zero_shot"]["wer"] == zero_shot["wer"]
    assert (run / ZERO_SHOT_RESULTS).is_file()
    saved = (run / RUN_CONFIG).read_bytes()

    # data, learning rate, seed: the keys that decide the weights
    with pytest.raises(ConfigError) as error:
        api.train(values, resume=True, max_steps=4, learning_rate=2e-3, seed=8, max_train_samples=6)
    message = str(error.value)
    assert "learning_rate: 0.001 -> 0.002" in message and "seed: 7 -> 8" in message
    assert "max_train_samples: 4 -> 6" in message and "max_steps: 2 -> 4" not in message  # growing: allowed
    assert "resume_allow_config_changes: true" in message
    assert (run / RUN_CONFIG).read_bytes() == saved and not (run / RUN_CONFIG_HISTORY).exists()

    # how long, how often to log: may change; the resumed run keeps the baseline measured at its start
    with caplog.at_level(logging.INFO, logger="finetune"):
        resumed = api.train(values, resume=True, max_steps=4, logging_steps=2)
    assert f"resuming from {run / 'checkpoint-2'}" in caplog.text
    assert _step(run) == 4
    results = json.loads((run / EVAL_RESULTS).read_text())
    assert results["zero_shot"] == zero_shot and resumed["zero_shot"] == first["zero_shot"]
    history = yaml.safe_load((run / RUN_CONFIG_HISTORY).read_text())
    assert history[-1]["changed"] == {"logging_steps": {"old": 1, "new": 2}, "max_steps": {"old": 2, "new": 4}}
    assert history[-1]["config"]["max_steps"] == 2 and history[-1]["resumed_from"] == "checkpoint-2"

    # shrinking is a change; so is anything else not listed as free to change
    with pytest.raises(ConfigError, match="max_steps: 4 -> 3"):
        api.train(values, resume=True, max_steps=3, logging_steps=2)

    # allowed on request, and recorded: the saved config describes the latest part, the history the rest
    api.train(values, resume=True, max_steps=6, logging_steps=2, learning_rate=2e-3, resume_allow_config_changes=True)
    assert _step(run) == 6
    assert yaml.safe_load((run / RUN_CONFIG).read_text())["learning_rate"] == 2e-3
    history = yaml.safe_load((run / RUN_CONFIG_HISTORY).read_text())
    assert len(history) == 2
    assert history[-1]["changed"]["learning_rate"] == {"old": 0.001, "new": 0.002}
    assert history[-1]["config"]["max_steps"] == 4 and history[-1]["resumed_from"] == "checkpoint-4"
    assert json.loads((run / EVAL_RESULTS).read_text())["zero_shot"] == zero_shot


@pytest.mark.slow
def test_resume_skips_a_newest_checkpoint_damaged_after_saving(tmp_path: Path, tiny_whisper_dir: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    run = tmp_path / "run"
    values = _values(tiny_whisper_dir, run, max_steps=4, eval_split_name=None, save_total_limit=2)
    api.train(values)
    weights = run / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # e.g. a disk that lost a write

    with caplog.at_level(logging.INFO, logger="finetune"):
        api.train(values, resume=True)
    assert "checkpoint-4 cannot be resumed from" in caplog.text and "cut short" in caplog.text
    assert f"resuming from {run / 'checkpoint-2'}" in caplog.text
    assert _step(run) == 4
    damaged = list(run.glob("damaged-checkpoint-4-*"))
    assert len(damaged) == 1 and (damaged[0] / "optimizer.pt").is_file()  # kept, and not rotated away
    marker = json.loads((run / "checkpoint-4" / "finetune_complete.json").read_text())
    assert marker["files"]["model.safetensors"] == (run / "checkpoint-4" / "model.safetensors").stat().st_size


def test_what_may_change_on_resume() -> None:
    from finetune.training.run_directory import config_changes, refused_changes

    old = {"max_steps": 2, "num_train_epochs": 3.0, "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 2,
           "output_dir": "a", "resume": False, "dataset_name": "x"}
    new = {**old, "max_steps": 4, "logging_steps": 5, "save_steps": 4, "output_dir": "b", "resume": True}
    changes = config_changes(old, new)
    assert "resume" not in changes and set(changes) == {"max_steps", "logging_steps", "save_steps", "output_dir"}
    assert refused_changes(changes) == {}
    assert refused_changes(config_changes(old, {**old, "max_steps": 1})) == {"max_steps": (2, 1)}
    assert refused_changes(config_changes({**old, "max_steps": -1}, {**old, "max_steps": 10}))  # epochs -> steps
    assert refused_changes(config_changes(old, {**old, "num_train_epochs": 2.0})) == {"num_train_epochs": (3.0, 2.0)}
    assert refused_changes(config_changes(old, {**old, "dataset_name": "y", "seed": 3})) == {
        "dataset_name": ("x", "y"), "seed": ("(not set)", 3)}
