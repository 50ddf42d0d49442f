"""No-speech clips end to end on a tiny random Whisper: empty-transcript rows train under
allow_empty_transcripts, are bad rows without it, and are scored against an empty reference."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

import finetune
from finetune.cli import main
from tests.helpers import script_module

REPO = Path(__file__).resolve().parents[2]
FSDD = REPO / "finetune" / "samples" / "fsdd"
SCRIPT = REPO / "scripts" / "make_no_speech_clips.py"
NO_SPEECH = {"train": 4, "test": 3}
DIGITS = {"train": 8, "test": 3}


def _digits(target: Path) -> Path:
    """A few FSDD rows per split: the speech beside the no-speech clips."""
    for split, count in DIGITS.items():
        (target / split).mkdir(parents=True)
        with (FSDD / split / "metadata.csv").open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header, rows = reader.fieldnames, list(reader)[:count]
        for row in rows:
            shutil.copy2(FSDD / split / row["file_name"], target / split / row["file_name"])
        with (target / split / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
    return target


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("no-speech")
    out = root / "mixed"
    with script_module(SCRIPT) as script:
        splits = [arg for split, count in NO_SPEECH.items() for arg in ("--split", f"{split}={count}")]
        assert script.main(["--out", str(out), *splits, "--seed", "5", "--with", str(_digits(root / "digits"))]) == 0
    return out


def _config(tmp_path: Path, model_dir: Path, data: Path, **overrides) -> Path:
    values = {
        "task": "asr_seq2seq",
        "model_name_or_path": str(model_dir),
        "encoder_context_seconds": 3,
        "dataset_name": str(data),
        "text_column_name": "transcript",
        "max_duration_in_seconds": 3,
        "on_bad_rows": "fail",
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "max_steps": 2,
        "save_strategy": "no",
        "logging_steps": 1,
        "generation_max_length": 8,
        "seed": 7,
        "use_cpu": True,
        **overrides,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_empty_transcripts_are_bad_rows_unless_allowed(tmp_path: Path, tiny_whisper_dir: Path, mixed_folder: Path,
                                                       one_torch_thread, capsys) -> None:
    config = _config(tmp_path, tiny_whisper_dir, mixed_folder)
    assert main(["train", str(config)]) != 0
    error = capsys.readouterr().err
    assert "empty transcript" in error and "allow_empty_transcripts" in error
    assert "no_speech_0000_" in error  # the bad rows are named
    assert not (tmp_path / "run" / "eval_results.json").exists()

    finetune.train(config, allow_empty_transcripts=True)
    run = tmp_path / "run"
    results = json.loads((run / "eval_results.json").read_text())
    assert results["num_samples"] == DIGITS["test"] + NO_SPEECH["test"] and results["wer"] >= 0
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    silent = [row for row in rows if Path(row["source_file"]).name.startswith("no_speech_")]
    assert len(silent) == NO_SPEECH["test"] and all(row["reference"] == "" for row in silent)
    assert all(row["reference"] for row in rows if row not in silent)
    report = json.loads((run / "data_report.json").read_text())
    assert report["splits"][0]["kept"] == DIGITS["train"] + NO_SPEECH["train"]
    # Whisper checkpoints forbid ending at once (end-of-text in begin_suppress_tokens): the saved model may
    generation = json.loads((run / "generation_config.json").read_text())
    assert generation["eos_token_id"] not in (generation.get("begin_suppress_tokens") or [])


def test_an_empty_row_is_labelled_prefix_and_end_token_only(tiny_whisper_dir: Path) -> None:
    from transformers import WhisperTokenizer

    from finetune.models.whisper import row_labels

    tokenizer = WhisperTokenizer.from_pretrained(tiny_whisper_dir)
    empty, spoken, blank = row_labels(tokenizer, ["", "one", "   "], ["", "", ""])
    assert empty == blank == [*tokenizer.prefix_tokens, tokenizer.eos_token_id]
    assert tokenizer.convert_tokens_to_ids("Ġ") not in empty  # no stray space token
    assert spoken[:len(tokenizer.prefix_tokens)] == tokenizer.prefix_tokens and len(spoken) > len(empty)
