"""The normalized WER follows the language: Whisper's English normalizer for English only, the basic
one (which keeps accents and spells no numbers) for every other language, in training and evaluation."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

from finetune import api
from finetune.data.text import scoring_normalizer
from finetune.evaluation.metrics import asr_metrics, utterance_wer
from finetune.tasks.base import TaskRun
from tests.helpers import whisper_stopping_early

REPO = Path(__file__).resolve().parents[2]
FSDD_TEST = REPO / "finetune" / "samples" / "fsdd" / "test"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------- the normalizers


def test_french_keeps_accents_and_english_folds_them() -> None:
    french = scoring_normalizer("fr")
    assert french("Élève, café!").split() == ["élève", "café"]
    assert "é" in french("Élève, café!")
    assert scoring_normalizer("en")("Élève, café!").split() == ["eleve", "cafe"]


def test_english_rules_apply_to_english_only() -> None:
    english, french = scoring_normalizer("en"), scoring_normalizer("fr")
    assert english("Two cats.") == english("2 cats") == "2 cats"  # spelled numbers, punctuation, case
    assert english("Mr. Smith") == english("mister smith")
    assert french("Deux chats.").split() == ["deux", "chats"]  # no English number rules on French words
    assert french("two").split() == ["two"]


def test_a_missing_accent_is_an_error_in_french_only() -> None:
    french = asr_metrics(["cafe"], ["café"], scoring_normalizer("fr"))
    assert french["wer"] == 1.0 and french["cer"] == pytest.approx(0.25)
    # the assertion above would not hold with the English normalizer: it folds the accent away
    english = asr_metrics(["cafe"], ["café"], scoring_normalizer("en"))
    assert english["wer"] == 0.0
    assert french["wer_raw"] == english["wer_raw"] == 1.0  # raw scores never normalize


def test_french_sentence_scores_differ_by_normalizer() -> None:
    references = ["L'élève a vingt-cinq ans.", "Où est la gare ?"]
    predictions = ["l'eleve a 25 ans", "ou est la gare"]
    french = asr_metrics(predictions, references, scoring_normalizer("fr"))
    english = asr_metrics(predictions, references, scoring_normalizer("en"))
    assert french["wer"] > english["wer"]
    assert utterance_wer(predictions[1], references[1], scoring_normalizer("fr")) == pytest.approx(1 / 4)


@pytest.mark.parametrize("language", [None, "en", "english", "English", "EN", "<|en|>"])
def test_every_spelling_of_english_picks_the_english_normalizer(language: str | None) -> None:
    """Whisper's tokenizer and the model card read a language case-blind (and as a <|xx|> token):
    the scoring normalizer must agree with them, or `language: English` scores English as French."""
    assert scoring_normalizer(language)("Two cats.").split() == ["2", "cats"]


@pytest.mark.parametrize("language", ["fr", "french", "French", "de", "es"])
def test_other_languages_pick_the_basic_normalizer(language: str) -> None:
    assert scoring_normalizer(language)("Élève, deux!").split() == ["élève", "deux"]


def test_task_run_normalizer_follows_the_configured_language(tmp_path: Path) -> None:
    _, options, _ = api.load_config({"task": "asr_seq2seq", "model_name_or_path": str(tmp_path / "m"),
                                     "dataset_name": "sample:fsdd", "output_dir": str(tmp_path / "run"),
                                     "language": "fr"})
    assert options.data.language == "fr"
    assert TaskRun(options, language=options.data.language).normalizer("Élève, café!").split() == ["élève", "café"]
    assert TaskRun(options, language="french").normalizer("Élève, café!").split() == ["élève", "café"]
    assert TaskRun(options, language="en").normalizer("Élève, café!").split() == ["eleve", "cafe"]
    assert TaskRun(options).normalizer("Two cats.").split() == ["2", "cats"]  # no language known: English


# ---------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_whisper_dir: Path) -> Path:
    return whisper_stopping_early(tiny_whisper_dir, tmp_path_factory.mktemp("whisper-12"), max_length=12)


@pytest.fixture(scope="module")
def french_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real clips with (mostly French) transcripts whose word counts differ between the two
    normalizers: the English one makes 'twenty five' one word ('25'), the basic one keeps two."""
    root = tmp_path_factory.mktemp("french")
    folder = root / "test"
    folder.mkdir()
    transcripts = ["L'élève a vingt-cinq ans.", "twenty five", "Café, s'il vous plaît !", "Où est la gare ?"]
    sources = sorted(FSDD_TEST.glob("*.flac"))[:4]
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcript"])
        for source, text in zip(sources, transcripts):
            shutil.copy(source, folder / source.name)
            writer.writerow([source.name, text])
    return root


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_evaluate_with_language_fr_scores_with_the_basic_normalizer(tmp_path: Path, model_dir: Path,
                                                                   french_folder: Path) -> None:
    """The tiny Whisper is English-only (training refuses language: fr for it), but scoring a saved
    model follows the language given to `evaluate`."""
    out = tmp_path / "fr"
    payload = api.evaluate(model_dir, str(french_folder), split="test", language="fr", output_dir=out,
                           batch_size=4)
    rows = _rows(out)
    assert payload["num_samples"] == len(rows) == 4
    predictions, references = [r["prediction"] for r in rows], [r["reference"] for r in rows]
    assert references[0] == "L'élève a vingt-cinq ans."
    basic = asr_metrics(predictions, references, BasicTextNormalizer())
    english = asr_metrics(predictions, references, EnglishTextNormalizer({}))
    assert basic["wer"] != english["wer"], "the data no longer tells the normalizers apart"
    assert payload["wer"] == pytest.approx(basic["wer"]) and payload["cer"] == pytest.approx(basic["cer"])
    assert payload["wer_raw"] == pytest.approx(basic["wer_raw"])
    for row in rows:
        assert row["wer"] == pytest.approx(utterance_wer(row["prediction"], row["reference"], BasicTextNormalizer()))

    # the same model and clips without a language: the model's own (English), with its normalizer
    out_en = tmp_path / "en"
    default = api.evaluate(model_dir, str(french_folder), split="test", output_dir=out_en, batch_size=4)
    assert [r["prediction"] for r in _rows(out_en)] == predictions  # only the scoring changed
    assert default["wer"] == pytest.approx(english["wer"]) and default["cer"] == pytest.approx(english["cer"])
