"""The config layer: flat YAML + key=value onto the task's dataclasses, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import Seq2SeqTrainingArguments

from finetune.config import ConfigError, DataArguments, ModelArguments, apply_overrides, load_yaml, parse_into
from finetune.models.speech_encoder import EncoderContextArguments
from finetune.models.whisper import WhisperArguments

CLASSES = (ModelArguments, DataArguments, WhisperArguments, EncoderContextArguments, Seq2SeqTrainingArguments)


def _parse(values: dict):
    return parse_into(CLASSES, {"model_name_or_path": "m", "dataset_name": "d", **values}, source="test.yaml")


def test_keys_are_distributed_and_typed(tmp_path: Path) -> None:
    model, data, _, whisper, training = _parse(
        {"learning_rate": "1e-4", "max_steps": "12", "bf16": "false", "encoder_context_seconds": 2,
         "output_dir": str(tmp_path), "max_duration_in_seconds": 2}
    )
    assert training.learning_rate == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string
    assert training.max_steps == 12
    assert training.bf16 is False
    assert whisper.encoder_context_seconds == 2
    assert data.max_duration_in_seconds == 2.0


def test_unknown_key_lists_valid_keys_and_suggests() -> None:
    with pytest.raises(ConfigError) as error:
        _parse({"learnig_rate": 1e-4})
    message = str(error.value)
    assert "test.yaml" in message and "learnig_rate" in message
    assert "did you mean 'learning_rate'" in message
    assert "valid keys:" in message and "per_device_train_batch_size" in message


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError, match=r"'max_steps' expects int, got 'many'"):
        _parse({"max_steps": "many"})
    with pytest.raises(ConfigError, match="'bf16' expects bool"):
        _parse({"bf16": "maybe"})


def test_invalid_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="on_bad_rows"):
        _parse({"on_bad_rows": "ignore"})
    with pytest.raises(ConfigError, match="encoder_context_seconds"):
        _parse({"encoder_context_seconds": 45})


def test_missing_required_key() -> None:
    with pytest.raises(ConfigError, match="model_name_or_path"):
        parse_into(CLASSES, {"dataset_name": "d"}, source="x.yaml")


def test_overrides_are_read_as_yaml() -> None:
    merged = apply_overrides({"max_steps": 5}, ["max_steps=7", "bf16=true", "report_to=[tensorboard]", "x="])
    assert merged == {"max_steps": 7, "bf16": True, "report_to": ["tensorboard"], "x": None}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["max_steps"])


def test_malformed_yaml_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: asr_seq2seq\nmax_steps: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(listing)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_shipped_configs_parse() -> None:
    from finetune.tasks import get_task

    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")):
        values = load_yaml(path)
        first_line = path.read_text().splitlines()[0]
        assert first_line.startswith("# ") and path.name in first_line, f"{path.name} must open with its command"
        task = get_task(values["task"])
        parse_into(task.argument_classes(), {**task.defaults, **values}, source=path.name)
