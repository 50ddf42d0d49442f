"""Model names: a mistyped local path is a local error with close matches (never a Hub lookup), and a
model of the wrong family for a task says which task, which model and what the task takes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from finetune.cli import main
from finetune.config import ModelArguments
from finetune.models.registry import ModelNotFoundError, WrongModelError, looks_like_path, resolve_model_path
from finetune.models.text_classifier import load_text_classifier
from finetune.models.whisper import load_whisper
from tests.intent_helpers import build_tiny_bert


def _model_dir(path: Path, model_type: str = "whisper") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type}))
    return path


def test_a_missing_local_folder_is_a_local_error_with_close_matches(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"^no model at \./models/nope \(no such folder; expected a folder "
                                                 r"with config\.json, an offline: alias or a Hub id\)"):
        resolve_model_path("./models/nope")
    _model_dir(tmp_path / "models" / "whisper-tiny")
    with pytest.raises(ModelNotFoundError, match=r"did you mean \./models/whisper-tiny\?"):
        resolve_model_path("./models/whisper-tyni")
    with pytest.raises(ModelNotFoundError, match=r"model folders there: \./models/whisper-tiny"):
        resolve_model_path("./models/nope")
    with pytest.raises(ModelNotFoundError, match="models/nope"):  # `models/` exists here: not a Hub id
        resolve_model_path("models/nope")
    (tmp_path / "models" / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="the folder has no config.json"):
        resolve_model_path("./models/empty")
    assert resolve_model_path("./models/empty", model=False) == "./models/empty"  # a tokenizer-only folder
    assert resolve_model_path("./models/whisper-tiny") == "./models/whisper-tiny"


def test_hub_ids_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model_path("openai/whisper-tiny") == "openai/whisper-tiny"
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"
    assert not looks_like_path("openai/whisper-tiny")
    assert all(looks_like_path(p) for p in ("./x", "../x", "/x", "~/x", "a/b/c", "x/", r"a\b"))


def test_the_cli_reports_a_missing_model_without_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "whisper.yaml"
    config.write_text(yaml.safe_dump({"task": "asr_seq2seq", "model_name_or_path": "./models/nope",
                                      "dataset_name": str(tmp_path / "data"), "output_dir": str(tmp_path / "run"),
                                      "use_cpu": True}))
    assert main(["train", str(config)]) == 2
    assert "no model at ./models/nope" in capsys.readouterr().err


def test_a_model_of_the_wrong_family_names_task_model_and_what_it_takes(tiny_whisper_dir: Path,
                                                                        tmp_path: Path) -> None:
    bert = build_tiny_bert(tmp_path / "bert")
    with pytest.raises(WrongModelError, match=r"task asr_seq2seq/asr_distill: .*bert is a 'bert' model \(BertModel\), "
                                              r"but .* takes a Whisper speech recognition model"):
        load_whisper(ModelArguments(model_name_or_path=str(bert)))
    with pytest.raises(WrongModelError, match=r"task intent: .* is a 'whisper' model "
                                              r"\(WhisperForConditionalGeneration\), but intent takes a text encoder"):
        load_text_classifier(ModelArguments(model_name_or_path=str(tiny_whisper_dir)), {0: "a"}, {"a": 0})
