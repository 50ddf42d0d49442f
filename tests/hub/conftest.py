"""Hub fixtures: a local fake Hub wired in through HF_ENDPOINT, and one tiny Whisper run that pushes to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

import finetune
from tests.hub.fake_hub import FakeHub

TOKEN = "hf_test_token_never_printed_0123456789"


@contextmanager
def online_against(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """Point huggingface_hub at ``hub``: endpoint, online mode and a token, undone on exit.

    huggingface_hub reads HF_ENDPOINT/HF_HUB_OFFLINE into its constants at import, so the constants
    are patched as well as the environment. Every path under HF_HOME (token file, xet cache, the
    registry caches it refreshes online) moves into ``tmp_path``, so only HF_TOKEN counts and nothing
    is written outside the test's folder.
    """
    from huggingface_hub import constants

    home = str(constants.HF_HOME)
    for name in dir(constants):
        value = getattr(constants, name)
        if name.isupper() and isinstance(value, str) and value.startswith(home):
            monkeypatch.setattr(constants, name, str(tmp_path / "hf_home") + value[len(home):])
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hub:
        yield hub


@pytest.fixture(scope="session")
def pushed_run(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FakeHub]:
    """`finetune train` of the tiny Whisper with push_to_hub: true, against a fake Hub; (run dir, hub)."""
    root = tmp_path_factory.mktemp("pushed-run")
    config = {
        "task": "asr_seq2seq", "model_name_or_path": str(tiny_whisper_dir), "encoder_context_seconds": 2,
        "dataset_name": "sample:fsdd", "max_train_samples": 8, "max_eval_samples": 4,
        "max_duration_in_seconds": 2, "output_dir": str(root / "run"), "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4, "learning_rate": 1e-3, "max_steps": 2, "logging_steps": 1,
        "eval_strategy": "steps", "eval_steps": 1, "save_strategy": "no", "generation_max_length": 6,
        "seed": 3, "use_cpu": True, "evaluate_before_training": True, "push_to_hub": True,
        "hub_model_id": "tester/tiny-whisper-fsdd", "hub_private_repo": True,
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    hub = FakeHub()
    with pytest.MonkeyPatch.context() as monkeypatch, online_against(hub, monkeypatch, root):
        finetune.train(path)
    assert json.loads((root / "run" / "eval_results.json").read_text())["num_samples"] == 4
    return root / "run", hub
