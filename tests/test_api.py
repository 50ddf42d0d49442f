"""Training and evaluating from Python, without the CLI: ``finetune.train`` / ``finetune.evaluate``.

Everything runs the tiny random Whisper (asr_seq2seq) on the shipped ``sample:fsdd`` clips.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import finetune
from finetune import api
from finetune.config import ConfigError
from finetune.tasks.base import TaskOptions
from tests.helpers import whisper_stopping_early


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_whisper_dir: Path) -> Path:
    """The tiny Whisper, stopping after 8 tokens (a random model rarely says end-of-text)."""
    return whisper_stopping_early(tiny_whisper_dir, tmp_path_factory.mktemp("whisper-8"), max_length=8)


def _values(output_dir: Path, model: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "task": "asr_seq2seq",
        "model_name_or_path": str(model),
        "encoder_context_seconds": 2,
        "dataset_name": "sample:fsdd",
        "max_train_samples": 8,
        "max_eval_samples": 4,
        "max_duration_in_seconds": 2,
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "save_strategy": "no",
        "logging_steps": 1,
        "generation_max_length": 8,  # = the model's own max_length, so `evaluate` decodes alike
        "seed": 7,
        "use_cpu": True,
        "dataloader_num_workers": 0,
        **overrides,
    }


def _global_step(output_dir: Path) -> int:
    return json.loads((output_dir / "trainer_state.json").read_text())["global_step"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, dict[str, Any]]:
    """One run trained from a plain dict through ``finetune.train``: its output dir and results."""
    run = tmp_path_factory.mktemp("api") / "run"
    return run, finetune.train(_values(run, model_dir))


def test_the_package_exports_the_python_api() -> None:
    assert finetune.train is api.train
    assert finetune.evaluate is api.evaluate
    assert finetune.load_config is api.load_config
    assert {"train", "evaluate", "load_config"} <= set(finetune.__all__)


@pytest.mark.slow
def test_train_from_a_dict_returns_results_and_writes_the_run(trained: tuple[Path, dict[str, Any]]) -> None:
    run, results = trained
    assert {"train", "eval"} <= set(results)
    assert results["train"]["train_runtime"] >= 0 and "train_loss" in results["train"]
    assert results["eval"]["task"] == "asr_seq2seq" and results["eval"]["num_samples"] == 4
    assert {"wer", "cer", "wer_raw", "cer_raw"} <= set(results["eval"])

    assert (run / "model.safetensors").is_file() and (run / "config.json").is_file()
    # the processor is saved beside the weights (transformers 5 names it processor_config.json)
    assert (run / "processor_config.json").is_file() or (run / "preprocessor_config.json").is_file()
    on_disk = json.loads((run / "eval_results.json").read_text())
    assert on_disk["wer"] == results["eval"]["wer"] and on_disk["num_samples"] == 4
    assert len((run / "predictions.jsonl").read_text().splitlines()) == 4
    card = (run / "README.md").read_text()
    assert card.startswith("---") and "automatic-speech-recognition" in card
    saved = yaml.safe_load((run / "finetune_config.yaml").read_text())
    assert saved["task"] == "asr_seq2seq" and saved["max_steps"] == 2 and saved["dataset_name"] == "sample:fsdd"
    assert _global_step(run) == 2


@pytest.mark.slow
def test_keyword_overrides_win_over_the_dict(tmp_path: Path, model_dir: Path) -> None:
    run = tmp_path / "run"
    values = _values(tmp_path / "ignored", model_dir, max_steps=4, eval_split_name=None)
    results = finetune.train(values, max_steps=1, output_dir=str(run))
    assert "eval" not in results  # eval_split_name: null trains only
    assert not (tmp_path / "ignored").exists()
    assert _global_step(run) == 1
    saved = yaml.safe_load((run / "finetune_config.yaml").read_text())
    assert saved["max_steps"] == 1 and saved["output_dir"] == str(run)
    assert values["max_steps"] == 4  # the caller's dict is left as it was


@pytest.mark.slow
def test_train_accepts_options_from_load_config(tmp_path: Path, model_dir: Path) -> None:
    run = tmp_path / "run"
    task, options, values = finetune.load_config(_values(run, model_dir, eval_split_name=None))
    assert task.name == "asr_seq2seq" and isinstance(options, TaskOptions)
    assert options.training.predict_with_generate is True  # the task's defaults are applied
    assert values["max_steps"] == 2
    results = finetune.train(options)
    assert "train" in results and _global_step(run) == 2
    assert (run / "model.safetensors").is_file()
    saved = yaml.safe_load((run / "finetune_config.yaml").read_text())
    assert saved["task"] == "asr_seq2seq" and saved["max_steps"] == 2 and saved["learning_rate"] == 1e-3
    # and built options take keyword overrides like a dict does
    again = tmp_path / "again"
    finetune.train(options, output_dir=str(again), max_steps=1)
    assert _global_step(again) == 1


@pytest.mark.slow
def test_evaluate_scores_a_saved_model_and_writes_results(tmp_path: Path,
                                                          trained: tuple[Path, dict[str, Any]]) -> None:
    run, _ = trained
    out = tmp_path / "eval"
    payload = finetune.evaluate(run, "sample:fsdd", split="test", max_eval_samples=4, output_dir=out,
                                batch_size=4)
    assert payload["task"] == "asr_seq2seq" and payload["split"] == "test" and payload["num_samples"] == 4
    assert payload["dataset"] == "sample:fsdd" and {"wer", "cer", "wer_raw", "cer_raw"} <= set(payload)
    assert json.loads((out / "eval_results.json").read_text()) == json.loads(json.dumps(payload))
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["reference"] for r in rows] == ["zero"] * 4
    # the same model on the same clips: the same figures as the end of training
    assert payload["wer"] == pytest.approx(json.loads((run / "eval_results.json").read_text())["wer"])


@pytest.mark.slow
def test_evaluate_writes_next_to_the_model_by_default(tmp_path: Path, model_dir: Path) -> None:
    copy = whisper_stopping_early(model_dir, tmp_path / "model", max_length=4)
    payload = finetune.evaluate(str(copy), "sample:fsdd", split="test", max_eval_samples=2)
    assert payload["num_samples"] == 2
    assert json.loads((copy / "eval-test" / "eval_results.json").read_text())["num_samples"] == 2


@pytest.mark.parametrize("option", ["no_such_option", "learning_rate"])
def test_an_unknown_evaluate_option_is_refused_by_name(tmp_path: Path, model_dir: Path, option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        finetune.evaluate(model_dir, "sample:fsdd", split="test", output_dir=tmp_path / "eval", **{option: 1})
    assert not (tmp_path / "eval").exists()
