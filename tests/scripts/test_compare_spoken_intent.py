"""scripts/compare_spoken_intent.py: same clips and gold for every approach, warm-up left untimed, sizes
of the files a model needs, and a whole run on tiny random models (direct classifier vs cascade)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import script_module, tone, whisper_stopping_early
from tests.intent_helpers import build_tiny_bert

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_spoken_intent.py"
LABELS = ["BookRestaurant", "GetWeather", "PlayMusic"]


@pytest.fixture(scope="module")
def script():
    with script_module(SCRIPT) as module:
        yield module


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fake(script, name: str, answers: dict[float, str], calls: list[tuple[str, float]]):
    """An approach that answers from a clip's first sample and logs every call."""

    def predict(clip: np.ndarray) -> str:
        calls.append((name, float(clip[0])))
        return answers[float(clip[0])]

    return script.Approach(name, predict, [], 10, None)


def test_compare_scores_every_approach_on_the_same_clips_taking_turns_after_warmup(script) -> None:
    clips = [np.full(4, v, dtype=np.float32) for v in (0.0, 1.0, 2.0, 3.0)]
    gold = ["a", "a", "b", "b"]
    calls: list[tuple[str, float]] = []
    right = _fake(script, "right", {0.0: "a", 1.0: "a", 2.0: "b", 3.0: "b"}, calls)
    half = _fake(script, "half", {0.0: "a", 1.0: "b", 2.0: "b", 3.0: "a"}, calls)
    results = script.compare([right, half], clips, gold, warmup=2)

    warmup = [("right", 0.0), ("right", 1.0), ("half", 0.0), ("half", 1.0)]
    timed = [(name, v) for v in (0.0, 1.0, 2.0, 3.0) for name in ("right", "half")]  # turn by turn
    assert calls == warmup + timed
    assert results["right"]["accuracy"] == 1.0 and results["right"]["f1_macro"] == 1.0
    assert results["half"]["accuracy"] == 0.5 and results["half"]["f1_macro"] == pytest.approx(0.5)
    assert results["half"]["predictions"] == ["a", "b", "b", "a"] and results["half"]["num_samples"] == 4
    latency = results["half"]["latency_ms"]
    assert 0 <= latency["median"] <= latency["p90"] and latency["mean"] >= 0

    with pytest.raises(ValueError, match="names must differ"):
        script.compare([right, right], clips, gold)
    with pytest.raises(ValueError, match="3 clips for 4 gold"):
        script.compare([right], clips[:3], gold)


def test_model_size_counts_only_the_files_loading_needs(script, tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"w" * 1000)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}" * 10)
    (tmp_path / "predictions.jsonl").write_text("x" * 5000)  # results and plots are not part of the model
    (tmp_path / "confusion_matrix.png").write_bytes(b"p" * 5000)
    assert script.model_files_bytes(tmp_path) == 1000 + 2 + 20
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        script.model_files_bytes(tmp_path)


def test_limit_spreads_over_a_split_sorted_by_intent(script) -> None:
    assert script.spread(700, 7) == [0, 116, 233, 349, 466, 582, 699]
    assert script.spread(5, None) == script.spread(5, 9) == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def models(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny direct classifier (2-second context, built by the recipe's builder), a tiny recognizer told
    to stop after a few tokens, and a tiny intent model, all on the same three intents."""
    from finetune.config import ModelArguments
    from finetune.models.audio_classifier import AudioClassifierArguments, load_audio_classifier

    direct = tmp_path_factory.mktemp("direct")
    model, extractor = load_audio_classifier(ModelArguments(model_name_or_path=str(tiny_whisper_dir)),
                                             AudioClassifierArguments(),
                                             {label: i for i, label in enumerate(LABELS)},
                                             encoder_context_seconds=2)
    model.save_pretrained(direct)
    extractor.save_pretrained(direct)

    asr = whisper_stopping_early(tiny_whisper_dir, tmp_path_factory.mktemp("asr"), max_length=6)
    return {"direct": direct, "asr": asr, "intent": build_tiny_bert(tmp_path_factory.mktemp("intent"),
                                                                      labels=LABELS)}


def test_whole_run_on_tiny_models_writes_one_comparable_row_per_approach(script, models, tmp_path: Path,
                                                                          capsys) -> None:
    folder = tmp_path / "spoken" / "test"
    folder.mkdir(parents=True)
    rows = [("a.wav", 1.0, "play some jazz", "PlayMusic"), ("b.wav", 1.5, "will it rain", "GetWeather"),
            ("c.wav", 0.8, "book a table", "BookRestaurant"), ("d.wav", 1.2, "play rock", "PlayMusic"),
            ("long.wav", 3.0, "book dinner for two in paris", "BookRestaurant")]  # over the 2 s context
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "text", "intent"])
        for k, (name, seconds, text, intent) in enumerate(rows):
            sf.write(folder / name, tone(seconds, freq=300.0 + 100 * k), 16000)
            writer.writerow([name, text, intent])
    out = tmp_path / "results" / "spoken_intent.json"

    payload = script.main(["--direct", str(models["direct"]), "--asr", str(models["asr"]), "--intent",
                           str(models["intent"]), "--data", str(tmp_path / "spoken"), "--warmup", "1",
                           "--out", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    assert payload["num_samples"] == 4 and payload["skipped_rows"] == 1  # the direct model's 2 s bound both
    assert payload["threads"] == 1 and payload["batch_size"] == 1
    direct, cascade = payload["approaches"]["direct"], payload["approaches"]["cascade"]
    assert direct["models"] == [str(models["direct"])]
    assert cascade["models"] == [str(models["asr"]), str(models["intent"])]
    for result in (direct, cascade):
        assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["f1_macro"] <= 1.0
        assert result["latency_ms"]["mean"] > 0 and "predictions" not in result
        assert sum(c["support"] for c in result["per_class"].values()) == 4
    # the cascade ships a whole recognizer (decoder and vocabulary included) plus a text model
    assert cascade["parameters"] > direct["parameters"] > 0
    assert cascade["disk_bytes"] == (script.model_files_bytes(models["asr"])
                                     + script.model_files_bytes(models["intent"]))
    table = capsys.readouterr().out
    assert "| direct |" in table and "| cascade |" in table and "4 clips" in table
