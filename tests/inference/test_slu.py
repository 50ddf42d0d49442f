"""The spoken-command cascade on tiny random models: API, composition, OOS rule, CLI, evaluation from audio."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from finetune.cli import main
from finetune.inference.slu import SpokenCommandPipeline
from tests.helpers import tone, whisper_stopping_early
from tests.intent_helpers import build_tiny_bert

LABELS = ["BookRestaurant", "GetWeather", "PlayMusic"]

DIGITS_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_digit_recordings.py"


@pytest.fixture(scope="module")
def intent_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random intent classifier saved as the recipe saves one, with an OOS threshold in its config."""
    target = build_tiny_bert(tmp_path_factory.mktemp("tiny-intent"), labels=LABELS)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text())
    config.update(oos_threshold=0.2, oos_label="oos")
    config_path.write_text(json.dumps(config))
    return target


@pytest.fixture(scope="module")
def asr_dir(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Whisper, told to stop after a few tokens (random weights rarely say end-of-text)."""
    return whisper_stopping_early(tiny_whisper_dir, tmp_path_factory.mktemp("tiny-asr"), max_length=6)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audiofolder with transcripts and gold intents (one intent the tiny model never saw: 'Dance')."""
    root = tmp_path_factory.mktemp("spoken")
    folder = root / "test"
    folder.mkdir()
    rows = [("a.wav", "play some jazz", "PlayMusic", 300.0), ("b.wav", "will it rain in paris", "GetWeather", 500.0),
            ("c.flac", "book a table", "BookRestaurant", 700.0), ("d.wav", "dance with me", "Dance", 900.0)]
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text", "intent"])
        for name, text, intent, freq in rows:
            sf.write(folder / name, tone(1.0, rate=8000, freq=freq), 8000)  # 8 kHz: resampled on load
            writer.writerow([name, text, intent])
    return root


def test_cascade_answers_every_kind_of_input(asr_dir: Path, intent_dir: Path, spoken: Path) -> None:
    slu = SpokenCommandPipeline.from_pretrained(str(asr_dir), str(intent_dir), batch_size=2)
    inputs = [spoken / "test" / "a.wav", str(spoken / "test" / "c.flac"), tone(0.5),
              {"array": tone(0.5, rate=8000), "sampling_rate": 8000}]
    results = slu(inputs)
    assert [r["audio"] for r in results] == [str(inputs[0]), str(inputs[1]), "<array>", "<array>"]
    for result in results:
        assert isinstance(result["transcript"], str)
        assert result["top_intent"] in LABELS and 0 < result["confidence"] <= 1
        assert result["intent"] == (result["top_intent"] if result["confidence"] >= 0.2 else "oos")
        scores = [a["confidence"] for a in result["alternatives"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert result["alternatives"][0] == {"intent": result["top_intent"], "confidence": result["confidence"]}
    assert slu(tone(0.5))[0]["audio"] == "<array>"  # a single input gives a list of one


def test_user_built_pipelines_compose_and_the_oos_threshold_applies(asr_dir: Path, intent_dir: Path) -> None:
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(asr_dir))
    classifier = pipeline("text-classification", model=str(intent_dir))
    texts = ["play some jazz", "will it rain in paris"]
    assert SpokenCommandPipeline(asr, classifier).oos_threshold == 0.2  # read from the model's config
    assert SpokenCommandPipeline(asr, classifier).generate_kwargs == {"num_beams": 1}  # greedy, as training scores
    assert SpokenCommandPipeline(asr, classifier, num_beams=None).generate_kwargs == {}  # the pipeline's own
    everything_rejected = SpokenCommandPipeline(asr, classifier, oos_threshold=1.01).classify(texts)
    assert [r["intent"] for r in everything_rejected] == ["oos", "oos"]
    nothing_rejected = SpokenCommandPipeline(asr, classifier, oos_threshold=0.0).classify(texts)
    assert [r["intent"] for r in nothing_rejected] == [r["top_intent"] for r in everything_rejected]
    direct = classifier(texts)
    assert [r["top_intent"] for r in nothing_rejected] == [d["label"] for d in direct]
    assert [r["confidence"] for r in nothing_rejected] == pytest.approx([d["score"] for d in direct], abs=1e-5)


def test_audio_longer_than_the_window_is_cut_at_pauses_or_refused_by_name(
        tiny_whisper_dir: Path, intent_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-second recognizer hears a 5 s command in pieces that fit, cut between words; speech with no
    pause longer than its window is refused naming the file, never transcribed in part."""
    from tests.helpers import build_tiny_whisper, script_module

    short = whisper_stopping_early(build_tiny_whisper(tmp_path / "short", context_seconds=2), tmp_path / "asr2",
                                   max_length=6)
    slu = SpokenCommandPipeline.from_pretrained(str(short), str(intent_dir))
    heard: list[float] = []
    original = slu.asr.__call__

    def spy(inputs, **kwargs):
        heard.extend(len(item["raw"]) / 16000 for item in inputs)
        return original(inputs, **kwargs)

    monkeypatch.setattr(slu, "asr", spy)
    with script_module(DIGITS_SCRIPT) as digits:
        paused, continuous = digits.ten_digits().audio, digits.ten_digits(speaker="nicolas", pause_s=0.0).audio
    command = tmp_path / "command.wav"
    sf.write(command, paused, 16000)
    [answer] = slu([command])
    # every sample is heard, in pieces that fit the window
    assert len(heard) >= 3 and max(heard) <= 2.0 and sum(heard) == pytest.approx(len(paused) / 16000, abs=1e-3)
    assert isinstance(answer["transcript"], str) and answer["intent"]
    no_pause = tmp_path / "speech.wav"
    sf.write(no_pause, continuous, 16000)
    with pytest.raises(ValueError, match="speech.wav: .* has no pause to cut at, but the model sees at most 2 s"):
        slu([no_pause])


@pytest.mark.slow
def test_slu_cli_writes_one_json_answer_per_file(asr_dir: Path, intent_dir: Path, spoken: Path,
                                                 tmp_path: Path, capsys) -> None:
    files = [str(spoken / "test" / name) for name in ("a.wav", "b.wav", "c.flac")]
    out = tmp_path / "answers.json"
    assert main(["slu", "--asr", str(asr_dir), "--intent", str(intent_dir), *files, "--output", str(out)]) == 0
    answers = json.loads(out.read_text())
    assert [a["audio"] for a in answers] == files and all(a["intent"] in LABELS + ["oos"] for a in answers)
    assert main(["slu", "--asr", str(asr_dir), "--intent", str(intent_dir), str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err


@pytest.mark.slow
def test_slu_evaluate_reports_wer_both_accuracies_and_the_gap(asr_dir: Path, intent_dir: Path, spoken: Path,
                                                              tmp_path: Path, capsys) -> None:
    common = ["slu-evaluate", "--asr", str(asr_dir), "--intent", str(intent_dir), "--data", str(spoken)]
    assert main([*common, "--output-dir", str(tmp_path / "strict")]) == 2
    assert "Dance" in capsys.readouterr().err  # an intent the model never saw stops the run by name

    out = tmp_path / "eval"
    assert main([*common, "--output-dir", str(out), "--unseen-intents", "oos", "--batch-size", "3"]) == 0
    results = json.loads((out / "eval_results.json").read_text())
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert results["task"] == "slu" and results["num_samples"] == len(rows) == 4
    assert [r["gold_intent"] for r in rows] == ["PlayMusic", "GetWeather", "BookRestaurant", "oos"]
    assert 0 <= results["asr"]["wer"] and {"wer_raw", "cer", "exact_share"} <= set(results["asr"])
    spoken_accuracy = np.mean([r["intent_from_transcript"] == r["gold_intent"] for r in rows])
    written_accuracy = np.mean([r["intent_from_gold_text"] == r["gold_intent"] for r in rows])
    assert results["intent_from_transcripts"]["accuracy"] == pytest.approx(spoken_accuracy)
    assert results["intent_from_gold_text"]["accuracy"] == pytest.approx(written_accuracy)
    assert results["error_propagation"]["accuracy_gap"] == pytest.approx(written_accuracy - spoken_accuracy)
    assert results["oos"]["threshold"] == 0.2
    assert (out / "confusion_matrix_transcripts.png").is_file() and (out / "confusion_matrix_gold_text.png").is_file()

    # the gold-text figures are the intent model's own answers on those texts
    from transformers import pipeline

    direct = pipeline("text-classification", model=str(intent_dir))([r["reference"] for r in rows])
    assert [r["intent_from_gold_text"] for r in rows] == [d["label"] for d in direct]
