"""Inference loads go through the same checks as training: a Whisper folder without tokenizer.json used
to transcribe every file to an empty line; a mistyped model path was looked up on the Hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from finetune.cli import main
from finetune.inference.slu import SpokenCommandPipeline
from finetune.inference.transcribe import TranscribeOptions, Transcriber
from finetune.models.consistency import TokenizerMismatchError
from tests.helpers import tone
from tests.intent_helpers import build_tiny_bert


@pytest.fixture(scope="module")
def broken_whisper(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("broken") / "whisper"
    shutil.copytree(tiny_whisper_dir, target)
    (target / "tokenizer.json").unlink()
    return target


def test_transcribe_refuses_a_model_without_its_tokenizer(broken_whisper: Path) -> None:
    with pytest.raises(TokenizerMismatchError, match=r"no tokenizer\.json.*107 tokens, the model 51864"):
        Transcriber(broken_whisper, TranscribeOptions(device="cpu"))


def test_slu_refuses_a_recognizer_without_its_tokenizer(broken_whisper: Path, tmp_path: Path) -> None:
    intent = build_tiny_bert(tmp_path / "intent", labels=["a", "b"])
    with pytest.raises(TokenizerMismatchError, match=str(broken_whisper)):
        SpokenCommandPipeline.from_pretrained(str(broken_whisper), str(intent), device="cpu")


def test_cli_transcribe_names_a_missing_model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    sf.write(tmp_path / "a.wav", tone(1.0), 16000)
    assert main(["transcribe", "--model", "./models/nope", "a.wav", "--device", "cpu"]) == 2
    assert "no model at ./models/nope" in capsys.readouterr().err
