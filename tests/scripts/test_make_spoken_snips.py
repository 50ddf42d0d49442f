"""scripts/make_spoken_snips.py: seeded planning, clear errors, and (with espeak-ng) a few real utterances."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from tests.helpers import script_module
from tests.intent_helpers import write_jsonl

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_spoken_snips.py"
QUERIES = [
    {"text": "Add the album to my Flow Español playlist.", "intent": "AddToPlaylist"},
    {"text": "will it be colder in Ohio", "intent": "GetWeather"},
    {"text": "-play some jazz", "intent": "PlayMusic"},  # a leading dash must not become an option
    {"text": "book a table for 3 at 7 pm", "intent": "BookRestaurant"},
]


@pytest.fixture(scope="module")
def script():
    with script_module(SCRIPT) as module:
        yield module


def test_plan_is_seeded_per_split_and_keeps_the_order(script) -> None:
    rows = [(f"query {i}", "A") for i in range(50)]
    voices, speeds = ["en-us", "en-gb+f2", "en-029"], [140, 190]
    first = script.plan(rows, 10, voices, speeds, "0:train")
    assert first == script.plan(rows, 10, voices, speeds, "0:train")
    assert [u.row for u in first] == sorted(u.row for u in first) and len(first) == 10
    assert first != script.plan(rows, 10, voices, speeds, "0:test")
    everything = script.plan(rows, None, voices, speeds, "0:test")
    assert [u.row for u in everything] == list(range(50))
    assert {u.voice for u in everything} == set(voices) and {u.speed for u in everything} == set(speeds)


def test_a_bad_line_is_named(script, tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "play jazz", "intent": "PlayMusic"}\n{"text": "", "intent": "PlayMusic"}\n')
    with pytest.raises(script.SynthesisError, match="test.jsonl:2: needs non-empty 'text' and 'intent'"):
        script.read_queries(path)


def test_missing_espeak_is_a_clear_error(script, tmp_path: Path, monkeypatch, capsys) -> None:
    write_jsonl(tmp_path / "data" / "test.jsonl", QUERIES)
    monkeypatch.setattr(shutil, "which", lambda name: None)  # espeak_synth looks it up
    assert script.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--split", "test"]) == 2
    assert "apt-get install espeak-ng" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_speaks_a_handful_of_queries_into_an_audiofolder(script, tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "test.jsonl", QUERIES)
    out = tmp_path / "spoken"
    voices = ["en-us", "en-gb+f2"]
    assert script.main(["--data", str(tmp_path / "data"), "--out", str(out), "--split", "test=3",
                        "--voices", *voices, "--speeds", "150", "180"]) == 0
    with (out / "test" / "metadata.csv").open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0]) == ["file_name", "text", "intent", "voice", "speed", "duration"]
    assert len(records) == 3 and {r["voice"] for r in records} <= set(voices)
    texts = {q["text"]: q["intent"] for q in QUERIES}
    for record in records:
        assert texts[record["text"]] == record["intent"]
        info = sf.info(out / "test" / record["file_name"])
        assert info.samplerate == 16000 and info.channels == 1
        assert abs(info.duration - float(record["duration"])) < 0.01 and 0.5 < info.duration < 10

    # the folder is a finetune audio source as it is: transcripts and intents come through
    from finetune.config import DataArguments
    from finetune.data.speech import load_speech_split

    dataset, report = load_speech_split(DataArguments(dataset_name=str(out)), "test", sampling_rate=16000,
                                        needs_text=True, needs_label=True)
    assert report.kept == 3 and sorted(dataset["label"]) == sorted(r["intent"] for r in records)
