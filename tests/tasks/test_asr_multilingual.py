"""A multilingual Whisper trained on rows in several languages (``language_column_name``): each row's labels
carry its own language token, the model detects the language when it evaluates, each row is scored with
its language's normalizer, and the card lists the languages. A tiny model with the real multilingual
vocabulary stands in for openai/whisper-tiny; the audio is the shipped FSDD sample, its rows given French
and German transcripts (what is checked here is the bookkeeping; learning is shown by the espeak-ng run in
``scripts/bench_multilingual.py``)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

import finetune
from finetune.models.whisper import row_labels

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "finetune" / "samples" / "fsdd"
WORDS = {"fr": ["zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"],
         "de": ["null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"]}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _two_language_folder(target: Path, rows_per_split: dict[str, int]) -> Path:
    """The FSDD sample's clips, alternately labelled as French and German digits (with a language column)."""
    for split, count in rows_per_split.items():
        (target / split).mkdir(parents=True)
        with open(SAMPLE / split / "metadata.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))[::max(1, 60 // count)][:count]
        with open(target / split / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "transcript", "language"])
            for index, row in enumerate(rows):
                language = ("fr", "de")[index % 2]
                shutil.copy(SAMPLE / split / row["file_name"], target / split / row["file_name"])
                writer.writerow([row["file_name"], WORDS[language][int(row["label"])],
                                 "French" if language == "fr" and index % 4 == 0 else language])
    return target


def test_each_row_gets_its_own_language_token(tiny_multilingual_dir: Path) -> None:
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(tiny_multilingual_dir)
    tokenizer.set_prefix_tokens(language=None, task="transcribe", predict_timestamps=False)
    labels = row_labels(tokenizer, ["deux", "zwei", "two"], ["fr", "de", ""])
    ids = tokenizer.convert_tokens_to_ids
    assert labels[0][:4] == ids(["<|startoftranscript|>", "<|fr|>", "<|transcribe|>", "<|notimestamps|>"])
    assert labels[1][:4] == ids(["<|startoftranscript|>", "<|de|>", "<|transcribe|>", "<|notimestamps|>"])
    assert ids("<|fr|>") not in labels[2] and ids("<|de|>") not in labels[2]  # "" keeps the tokenizer's prefix
    assert tokenizer.decode(labels[0], skip_special_tokens=True).strip() == "deux"
    assert tokenizer.language is None  # the tokenizer saved with the model keeps its own prefix


def _config(tmp_path: Path, model: Path, data: Path, **overrides) -> Path:
    values = {"task": "asr_seq2seq", "model_name_or_path": str(model), "dataset_name": str(data),
              "language_column_name": "language", "encoder_context_seconds": 2, "max_duration_in_seconds": 2,
              "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
              "learning_rate": 1e-3, "max_steps": 2, "logging_steps": 1, "generation_max_length": 8, "seed": 3,
              "use_cpu": True, "save_strategy": "no", **overrides}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_two_language_run_scores_each_language_and_lists_them(tmp_path: Path, tiny_multilingual_dir: Path) -> None:
    data = _two_language_folder(tmp_path / "data", {"train": 8, "test": 8})
    finetune.train(_config(tmp_path, tiny_multilingual_dir, data))
    run = tmp_path / "run"
    results = json.loads((run / "eval_results.json").read_text())
    assert results["num_samples_fr"] == 4 and results["num_samples_de"] == 4
    assert {"wer_fr", "wer_de", "cer_fr", "cer_de", "language_accuracy"} <= set(results)
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert [row["language"] for row in rows[:4]] == ["fr", "de", "fr", "de"]  # "French" read as fr
    assert rows[0]["reference"] == "zéro"  # the basic normalizer keeps the accent
    generation = json.loads((run / "generation_config.json").read_text())
    assert generation["language"] is None and generation["finetune_languages"] == ["de", "fr"]
    card = (run / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["language"] == ["de", "fr"]
    assert "Languages: de, fr." in card


def test_unknown_or_unsupported_row_languages_are_refused(tmp_path: Path, tiny_multilingual_dir: Path,
                                                          tiny_whisper_dir: Path) -> None:
    data = _two_language_folder(tmp_path / "data", {"train": 4, "test": 4})
    metadata = data / "train" / "metadata.csv"
    metadata.write_text(metadata.read_text().replace(",de\n", ",klingon\n", 1))
    with pytest.raises(Exception, match=r"unknown language 'klingon' in column 'language'"):
        finetune.train(_config(tmp_path, tiny_multilingual_dir, data))
    clean = _two_language_folder(tmp_path / "clean", {"train": 4, "test": 4})
    with pytest.raises(ValueError, match="per-row languages need a multilingual Whisper"):
        finetune.train(_config(tmp_path, tiny_whisper_dir, clean, output_dir=str(tmp_path / "english")))
