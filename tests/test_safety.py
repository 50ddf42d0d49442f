"""Safe by default: no pickles in a saved model, tokens never written or logged, nothing written
outside the output directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

import finetune
from finetune.config import ModelArguments

SECRET = "hf_DoNotLeakThisTokenAnywhere123"


def test_remote_code_is_off_unless_asked() -> None:
    assert ModelArguments(model_name_or_path="x").trust_remote_code is False


@pytest.mark.slow
def test_token_is_never_written_and_outputs_stay_in_output_dir(
    tmp_path: Path, tiny_whisper_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    values = {"task": "asr_seq2seq", "model_name_or_path": str(tiny_whisper_dir), "dataset_name": "sample:fsdd",
              "max_train_samples": 8, "max_eval_samples": 4, "encoder_context_seconds": 2,
              "max_duration_in_seconds": 2, "output_dir": "out", "max_steps": 2, "save_steps": 1,
              "per_device_train_batch_size": 4, "generation_max_length": 4, "use_cpu": True, "hub_token": SECRET}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    with caplog.at_level(logging.DEBUG):
        finetune.train(tmp_path / "c.yaml")
    assert SECRET not in caplog.text
    written = [p for p in work.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(work / "out") for p in written), written
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), f"token written into {path}"
    top_level = {p.name for p in (work / "out").iterdir() if p.is_file()}
    assert "model.safetensors" in top_level and not any(name.endswith((".bin", ".pt", ".pth")) for name in top_level)
