"""``max_batch_seconds`` bounds the training batches of every audio task, and a text task refuses it.

The tiny configs and the clips (0.5-0.6 s each) are those of the resume test: with a cap of 0.9
padded seconds a batch holds one clip, so one epoch takes one step per training row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune import api
from finetune.config import ConfigError
from finetune.tasks import TASKS, get_task
from tests.training.test_resume_every_task import (
    CONFIGS,
    ONE_CLIP_SECONDS,
    TRAIN_CLIPS,
    Resources,
    trainer_tasks,
)

BATCH = 4
ONE_EPOCH = {"num_train_epochs": 1, "per_device_train_batch_size": BATCH, "save_strategy": "no",
             "eval_split_name": None, "logging_steps": 1}


def _audio_tasks() -> list[str]:
    """Registered Trainer-based tasks that read audio (a task that does not import is kept: its test fails)."""
    names = []
    for name in trainer_tasks():
        try:
            if not get_task(name).reads_audio:
                continue
        except ImportError:
            pass
        names.append(name)
    return names


def _text_tasks() -> list[str]:
    names = []
    for name in TASKS:
        try:
            if get_task(name).reads_audio:
                continue
        except ImportError:
            pass
        names.append(name)
    return names


@pytest.fixture(scope="module")
def resources(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Resources:
    return Resources(request, tmp_path_factory.mktemp("resources"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _steps(output_dir: Path) -> int:
    return json.loads((output_dir / "trainer_state.json").read_text())["global_step"]


def _kept_training_rows(output_dir: Path) -> int:
    report = json.loads((output_dir / "data_report.json").read_text())
    return next(split["kept"] for split in report["splits"] if split["split"] == "train")


def test_the_clips_fit_one_per_capped_batch() -> None:
    seconds = [clip[0] for clip in TRAIN_CLIPS]
    assert max(seconds) <= ONE_CLIP_SECONDS < 2 * min(seconds)
    assert len(seconds) % BATCH == 0


def test_the_audio_tasks_are_all_covered() -> None:
    audio = {name for name in TASKS if get_task(name).reads_audio and get_task(name).uses_trainer}
    assert set(_audio_tasks()) == audio and audio <= set(CONFIGS)
    assert {"asr_seq2seq", "asr_ctc"} <= audio


@pytest.mark.slow
@pytest.mark.parametrize("name", _audio_tasks())
def test_max_batch_seconds_bounds_every_audio_task(name: str, tmp_path: Path, resources: Resources) -> None:
    rows = len(TRAIN_CLIPS)
    capped = tmp_path / "capped"
    api.train({**CONFIGS[name](resources, capped), **ONE_EPOCH, "max_batch_seconds": ONE_CLIP_SECONDS})
    assert _kept_training_rows(capped) == rows
    assert _steps(capped) == rows  # one clip a batch

    counted = tmp_path / "counted"
    api.train({**CONFIGS[name](resources, counted), **ONE_EPOCH})
    assert _steps(counted) == rows // BATCH


@pytest.mark.slow
@pytest.mark.parametrize("name", _audio_tasks())
def test_a_cap_below_the_longest_clip_is_an_error_naming_it(name: str, tmp_path: Path,
                                                            resources: Resources) -> None:
    with pytest.raises(ValueError, match="max_batch_seconds=0.3 is shorter than row"):
        api.train({**CONFIGS[name](resources, tmp_path / "run"), **ONE_EPOCH, "max_batch_seconds": 0.3})


def _few_shot(res: Resources, output_dir: Path) -> dict[str, Any]:
    return {"task": "intent_few_shot", "model_name_or_path": str(res.bert), "dataset_name": str(res.intents),
            "max_seq_length": 16, "output_dir": str(output_dir), "seed": 7, "use_cpu": True}


TEXT_CONFIGS = {"intent_few_shot": _few_shot}


@pytest.mark.parametrize("name", _text_tasks())
def test_a_text_task_refuses_max_batch_seconds(name: str, tmp_path: Path, resources: Resources) -> None:
    build = CONFIGS.get(name) or TEXT_CONFIGS.get(name)
    assert build is not None, f"add a tiny {name} config"
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="max_batch_seconds"):
        api.train({**build(resources, run), "max_batch_seconds": 10.0})
    assert not (run / "model.safetensors").exists() and not (run / "config.json").exists()
