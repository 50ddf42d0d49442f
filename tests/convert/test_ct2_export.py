"""Fine-tuned Whisper -> CTranslate2: the files faster-whisper needs, identical greedy tokens, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from finetune.cli import main
from finetune.convert.ct2_export import MissingDependencyError, check_round_trip, export_ct2

pytest.importorskip("ctranslate2")
pytest.importorskip("faster_whisper")

FSDD = Path(__file__).resolve().parents[2] / "finetune" / "samples" / "fsdd" / "test"
CLIPS = [FSDD / "3_theo_0.flac", FSDD / "7_lucas_0.flac"]


@pytest.fixture(scope="module")
def short_context_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Whisper whose encoder sees 2 s, as `encoder_context_seconds: 2` fine-tuning saves it."""
    from transformers import WhisperProcessor

    from tests.helpers import build_tiny_whisper

    target = build_tiny_whisper(tmp_path_factory.mktemp("ctx2"), context_seconds=2)
    processor = WhisperProcessor.from_pretrained(target)
    extractor = processor.feature_extractor
    extractor.chunk_length, extractor.n_samples = 2, 2 * extractor.sampling_rate
    extractor.nb_max_frames = extractor.n_samples // extractor.hop_length
    processor.save_pretrained(target)
    return target


def test_export_round_trip_gives_the_same_tokens_and_faster_whisper_serves_it(tiny_whisper_dir: Path,
                                                                              tmp_path: Path) -> None:
    out = export_ct2(tiny_whisper_dir, tmp_path / "ct2")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "model.bin", "preprocessor_config.json", "tokenizer.json", "vocabulary.json"]
    assert json.loads((out / "preprocessor_config.json").read_text())["chunk_length"] == 30
    assert not list(tmp_path.glob(".ct2.*"))  # no staging folder left behind

    report = check_round_trip(tiny_whisper_dir, out, CLIPS, max_new_tokens=12)
    assert report.identical, report.describe()
    assert [Path(item.source).name for item in report.items] == [p.name for p in CLIPS]
    assert all(item.transformers_text == item.ct2_text for item in report.items)
    assert all(isinstance(item.faster_whisper_text, str) for item in report.items)  # faster-whisper served it
    assert report.to_dict()["identical"] is True


def test_short_context_model_runs_in_ctranslate2_and_says_faster_whisper_cannot(
        short_context_whisper: Path, tmp_path: Path, caplog) -> None:
    out = export_ct2(short_context_whisper, tmp_path / "ct2")
    assert json.loads((out / "preprocessor_config.json").read_text())["chunk_length"] == 2
    assert "faster-whisper's transcribe pads every window to 30 s" in caplog.text
    report = check_round_trip(short_context_whisper, out, CLIPS[:1], max_new_tokens=12)
    assert report.identical, report.describe()
    assert report.items[0].faster_whisper_text is None and "not run" in report.describe()


def test_export_refuses_to_overwrite_and_non_whisper_dirs(tiny_whisper_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export_ct2(tiny_whisper_dir, tmp_path / "taken")
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ValueError, match="'bert'"):
        export_ct2(other, tmp_path / "out")
    with pytest.raises(ValueError, match="quantization must be one of"):
        export_ct2(tiny_whisper_dir, tmp_path / "out", quantization="int3")


def test_missing_ctranslate2_says_what_to_install(tiny_whisper_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match="pip install ctranslate2"):
        export_ct2(tiny_whisper_dir, tmp_path / "out")
    assert main(["export-ct2", "--model", str(tiny_whisper_dir), "--output-dir", str(tmp_path / "out")]) == 2


def test_cli_export_with_check(tiny_whisper_dir: Path, tmp_path: Path, capsys) -> None:
    code = main(["export-ct2", "--model", str(tiny_whisper_dir), "--output-dir", str(tmp_path / "ct2"),
                 "--quantization", "float32", "--check", str(CLIPS[0])])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "same tokens" in out and "wrote CTranslate2 model" in out
