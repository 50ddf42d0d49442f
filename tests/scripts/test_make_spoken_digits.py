"""scripts/make_spoken_digits.py: the number words, balanced seeded plans, clear errors, and (with espeak-ng)
a small real multilingual audiofolder."""

from __future__ import annotations

import csv
import hashlib
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from tests.helpers import script_module

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_spoken_digits.py"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (apt-get install espeak-ng)")


@pytest.fixture(scope="module")
def script():
    with script_module(SCRIPT) as module:
        yield module


def read_metadata(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_number_words_are_spelled_right_and_nfc(script) -> None:
    assert script.NUMBER_WORDS == {
        "fr": ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf"),
        "de": ("null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun"),
        "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    }
    assert script.digit_text([2, 7], "fr") == "deux sept"
    assert script.digit_text([5, 0, 1], "de") == "fünf null eins"
    for words in script.NUMBER_WORDS.values():
        assert all(unicodedata.is_normalized("NFC", word) for word in words)
    assert len(script.digit_text([0], "fr")) == 4 and len(script.digit_text([5], "de")) == 4  # é, ü: one code point


def test_plan_is_balanced_interleaved_and_within_bounds(script) -> None:
    utterances = script.plan("train", 60, ["fr", "de", "en"], 3, [140, 190], seed=0)
    assert Counter(u.language for u in utterances) == {"fr": 60, "de": 60, "en": 60}
    assert [u.language for u in utterances[:6]] == ["fr", "de", "en"] * 2  # every prefix stays balanced
    for u in utterances:
        words = u.text.split()
        assert 1 <= len(words) <= 3 and set(words) <= set(script.NUMBER_WORDS[u.language])
        assert u.voice in script.VOICES[u.language] and u.speed in (140, 190)
    assert {len(u.text.split()) for u in utterances} == {1, 2, 3}
    assert {u.voice for u in utterances if u.language == "de"} == set(script.VOICES["de"])
    assert all(len(u.text.split()) == 1 for u in script.plan("test", 20, ["fr"], 1, [165], seed=0))


def test_plan_is_seeded_per_split_and_language(script) -> None:
    first = script.plan("train", 30, ["fr", "de"], 3, [140, 165, 190], seed=0)
    assert first == script.plan("train", 30, ["fr", "de"], 3, [140, 165, 190], seed=0)
    assert first != script.plan("train", 30, ["fr", "de"], 3, [140, 165, 190], seed=1)
    test = script.plan("test", 30, ["fr", "de"], 3, [140, 165, 190], seed=0)
    assert [u.text for u in test] != [u.text for u in first]  # drawn independently of train
    french = [u for u in first if u.language == "fr"]
    assert french == script.plan("train", 30, ["fr"], 3, [140, 165, 190], seed=0)  # a language added: fr unchanged
    names = [job.file_name for job in script.speech_jobs("train", first)]
    assert names[:2] == ["train_fr_00000.wav", "train_de_00000.wav"] and len(set(names)) == len(names)


@pytest.mark.parametrize(("argv", "message"), [
    (["--languages", "fr,es"], "--languages expects a comma-separated list of fr, de, en, got 'fr,es'"),
    (["--languages", "fr,fr"], "--languages lists a language twice"),
    (["--split", "train"], "--split expects NAME=COUNT"),
    (["--split", "train=0"], "--split expects NAME=COUNT"),
    (["--max-digits", "0"], "--max-digits must be at least 1"),
    (["--speeds", "40"], "--speeds must be 80..450"),
])
def test_bad_options_are_named(script, tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    base = ["--out", str(tmp_path), "--split", "test=2"]
    with pytest.raises(SystemExit) as exit_:
        script.main(base + argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_missing_espeak_is_a_clear_error(script, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert script.main(["--out", str(tmp_path / "out"), "--split", "test=2"]) == 2
    assert "apt-get install espeak-ng" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@needs_espeak
def test_every_listed_voice_speaks_and_sounds_different(script) -> None:
    from espeak_synth import espeak_binary, synthesize

    binary = espeak_binary()
    for language, voices in script.VOICES.items():
        text = script.digit_text([2, 7], language)
        sounds = {hashlib.sha1(synthesize(binary, text, voice=voice, speed=165, sampling_rate=16000,
                                          label=voice).tobytes()).hexdigest() for voice in voices}
        assert len(sounds) == len(voices), f"{language}: two voices give the same audio"


@needs_espeak
def test_speaks_a_small_multilingual_audiofolder(script, tmp_path: Path) -> None:
    argv = ["--languages", "fr,de", "--split", "train=4", "--split", "test=2", "--workers", "1", "--seed", "5"]
    assert script.main(["--out", str(tmp_path / "a"), *argv]) == 0
    records = read_metadata(tmp_path / "a" / "train" / "metadata.csv")
    assert list(records[0]) == ["file_name", "text", "language", "voice", "speed", "duration"]
    assert Counter(r["language"] for r in records) == {"fr": 4, "de": 4}
    assert len(read_metadata(tmp_path / "a" / "test" / "metadata.csv")) == 4
    for record in records:
        info = sf.info(tmp_path / "a" / "train" / record["file_name"])
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert abs(info.duration - float(record["duration"])) < 0.002 and 0.3 < info.duration < 5
        assert record["voice"] in script.VOICES[record["language"]]

    # same seed, same metadata (durations included): the set is reproducible byte for byte
    assert script.main(["--out", str(tmp_path / "b"), *argv]) == 0
    for split in ("train", "test"):
        assert ((tmp_path / "a" / split / "metadata.csv").read_bytes()
                == (tmp_path / "b" / split / "metadata.csv").read_bytes())
