"""Zero-/few-shot intents: seeded k-shot draws, descriptions, nearest prototype, OOS, train -> evaluate."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

import finetune
from finetune.cli import main
from finetune.data.few_shot import (
    intent_descriptions,
    readable_intent_name,
    sample_per_intent,
)
from finetune.data.report import BadDataError
from finetune.models.prototype_classifier import (
    PrototypeClassifier,
    embed_texts,
    load_encoder,
    prototypes_from,
)
from finetune.tasks import detect_task
from tests.intent_helpers import build_tiny_bert, intent_rows, write_jsonl

DESCRIPTIONS = {"BookRestaurant": "book a table in a restaurant", "GetWeather": "weather forecast",
                "PlayMusic": "play some music"}


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "data" / "train.jsonl", intent_rows(per_template=2))
    write_jsonl(tmp_path / "data" / "test.jsonl", intent_rows(per_template=1, offset=5))
    return tmp_path / "data"


def _config(tmp_path: Path, encoder: Path, data: Path, **overrides) -> Path:
    values = {"task": "intent_few_shot", "model_name_or_path": str(encoder), "dataset_name": str(data),
              "max_seq_length": 16, "output_dir": str(tmp_path / "run"), "seed": 7, "use_cpu": True, **overrides}
    path = tmp_path / "few_shot.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_intent_names_are_made_readable() -> None:
    assert readable_intent_name("BookRestaurant") == "book restaurant"
    assert readable_intent_name("SearchScreeningEvent") == "search screening event"
    assert readable_intent_name("card_arrival") == "card arrival"
    assert readable_intent_name("getATMCash") == "get atm cash"


def test_k_shot_draws_are_exact_and_seeded() -> None:
    labels = ["a"] * 20 + ["b"] * 7 + ["c"] * 3
    chosen = sample_per_intent(labels, 3, seed=1)
    assert Counter(labels[i] for i in chosen) == {"a": 3, "b": 3, "c": 3} and len(set(chosen)) == 9
    assert sample_per_intent(labels, 3, seed=1) == chosen
    assert sample_per_intent(labels, 3, seed=2) != chosen
    assert set(sample_per_intent(labels, 1, seed=1)) <= set(range(30))


def test_k_above_an_intents_examples_is_an_error_naming_it() -> None:
    with pytest.raises(BadDataError, match=r"num_shots=5 .* 'c' \(3\)") as error:
        sample_per_intent(["a"] * 20 + ["c"] * 3, 5, seed=0, source="snips [train]")
    assert "snips [train]" in str(error.value) and "'a'" not in str(error.value)


def test_descriptions_file_overrides_names_and_rejects_unknown_intents(tmp_path: Path) -> None:
    path = tmp_path / "descriptions.yaml"
    path.write_text("PlayMusic: play a song\n")
    assert intent_descriptions(["PlayMusic", "GetWeather"], path) == {"PlayMusic": "play a song",
                                                                      "GetWeather": "get weather"}
    path.write_text(json.dumps({"PlayMusic": "play a song", "Dance": "dance"}))
    with pytest.raises(BadDataError, match=r"descriptions.yaml: intent\(s\) not in the data: 'Dance'"):
        intent_descriptions(["PlayMusic", "GetWeather"], path)
    path.write_text("PlayMusic: ''\n")
    with pytest.raises(BadDataError, match="'PlayMusic' needs a non-empty text description"):
        intent_descriptions(["PlayMusic"], path)


def test_zero_shot_picks_the_intent_with_the_nearest_description(tiny_encoder: Path) -> None:
    encoder, tokenizer = load_encoder(str(tiny_encoder))
    intents = sorted(DESCRIPTIONS)
    texts = [DESCRIPTIONS[i] for i in intents]
    classifier = PrototypeClassifier(encoder=encoder, tokenizer=tokenizer, intents=intents,
                                     prototypes=prototypes_from(embed_texts(encoder, tokenizer, texts), intents, intents))
    labels, similarities = classifier.classify(classifier.embed(texts[::-1]))
    assert labels == intents[::-1] and np.allclose(similarities, 1.0, atol=1e-5)
    queries = ["book dinner in paris", "will it rain", "put on jazz songs please"]
    expected = embed_texts(encoder, tokenizer, queries) @ embed_texts(encoder, tokenizer, texts).T
    assert classifier.classify(classifier.embed(queries))[0] == [intents[i] for i in expected.argmax(axis=1)]
    # below the threshold the answer is out of scope: here the descriptions pass and the queries do not
    best_query = float(expected.max())
    assert best_query < 0.999
    classifier.oos_threshold = (best_query + 0.999) / 2
    assert classifier.predict(texts + queries) == intents + ["oos"] * 3


def test_zero_shot_train_save_and_evaluate_through_the_cli(tmp_path: Path, tiny_encoder: Path, data: Path) -> None:
    descriptions = tmp_path / "descriptions.json"
    descriptions.write_text(json.dumps(DESCRIPTIONS))
    config = _config(tmp_path, tiny_encoder, data, intent_descriptions_file=str(descriptions), oos_threshold=0.5)
    assert main(["train", str(config)]) == 0
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    assert saved["architectures"] == ["SentenceEncoderIntentClassifier"] and detect_task(run) == "intent_few_shot"
    assert saved["id2label"] == {"0": "BookRestaurant", "1": "GetWeather", "2": "PlayMusic"}
    assert saved["oos_threshold"] == 0.5 and saved["intent_prototypes"]["descriptions"] == DESCRIPTIONS
    assert load_file(str(run / "intent_prototypes.safetensors"))["prototypes"].shape == (3, 32)
    assert not list(run.glob("*.bin")) and not list(run.glob("*.pt")) and not list(run.glob("*.pkl"))
    assert (run / "README.md").is_file() and (run / "confusion_matrix.png").stat().st_size > 1000

    results = json.loads((run / "eval_results.json").read_text())
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert results["task"] == "intent_few_shot" and results["method"] == "zero-shot"
    assert results["num_samples"] == len(rows) == 12
    assert results["accuracy"] == pytest.approx(np.mean([r["prediction"] == r["reference"] for r in rows]))
    assert set(results["per_class"]) <= {"BookRestaurant", "GetWeather", "PlayMusic"}
    assert all((r["confidence"] < 0.5) == (r["prediction_with_oos"] == "oos") for r in rows)
    assert results["oos"]["rejected_share"] == pytest.approx(np.mean([r["prediction_with_oos"] == "oos"
                                                                      for r in rows]))

    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run), "--data", str(data), "--output-dir", str(out)]) == 0
    again = json.loads((out / "eval_results.json").read_text())
    assert again["accuracy"] == results["accuracy"] and again["oos"] == results["oos"]
    assert [json.loads(line)["prediction"] for line in (out / "predictions.jsonl").read_text().splitlines()] == [
        r["prediction"] for r in rows]


def test_k_shot_prototypes_are_the_mean_of_the_drawn_examples(tmp_path: Path, tiny_encoder: Path,
                                                              data: Path) -> None:
    config = _config(tmp_path, tiny_encoder, data, num_shots=2, descriptions_as_examples=False)
    finetune.train(config)
    run = tmp_path / "run"
    shots = [json.loads(line) for line in (run / "few_shot_examples.jsonl").read_text().splitlines()]
    assert Counter(s["intent"] for s in shots) == {"BookRestaurant": 2, "GetWeather": 2, "PlayMusic": 2}
    train = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    assert all(train[s["row"]]["text"] == s["text"] for s in shots)
    encoder, tokenizer = load_encoder(str(tiny_encoder))
    expected = prototypes_from(embed_texts(encoder, tokenizer, [s["text"] for s in shots], max_length=16),
                               [s["intent"] for s in shots], sorted(DESCRIPTIONS))
    saved = load_file(str(run / "intent_prototypes.safetensors"))["prototypes"]
    assert np.allclose(saved, expected, atol=1e-5)
    assert json.loads((run / "eval_results.json").read_text())["num_shots"] == 2


def test_descriptions_count_as_one_more_example_when_asked(tmp_path: Path, tiny_encoder: Path,
                                                           data: Path) -> None:
    config = _config(tmp_path, tiny_encoder, data, num_shots=1)  # descriptions_as_examples is on by default
    finetune.train(config)
    run = tmp_path / "run"
    shots = [json.loads(line) for line in (run / "few_shot_examples.jsonl").read_text().splitlines()]
    names = intent_descriptions(sorted(DESCRIPTIONS))  # no file: the readable intent names
    encoder, tokenizer = load_encoder(str(tiny_encoder))
    texts = [s["text"] for s in shots] + [names[i] for i in sorted(DESCRIPTIONS)]
    expected = prototypes_from(embed_texts(encoder, tokenizer, texts, max_length=16),
                               [s["intent"] for s in shots] + sorted(DESCRIPTIONS), sorted(DESCRIPTIONS))
    saved = load_file(str(run / "intent_prototypes.safetensors"))["prototypes"]
    assert np.allclose(saved, expected, atol=1e-5)


def test_setfit_tunes_the_encoder_then_saves_a_loadable_model(tmp_path: Path, tiny_encoder: Path,
                                                             data: Path) -> None:
    config = _config(tmp_path, tiny_encoder, data, num_shots=2, method="setfit", setfit_num_iterations=2,
                     learning_rate=1e-3, per_device_train_batch_size=4)
    finetune.train(config)
    run = tmp_path / "run"
    tuned = load_file(str(run / "model.safetensors"))
    original = load_file(str(tiny_encoder / "model.safetensors"))
    key = next(k for k in tuned if k.endswith("word_embeddings.weight"))
    assert not np.allclose(tuned[key], original[next(k for k in original if k.endswith("word_embeddings.weight"))])
    assert json.loads((run / "eval_results.json").read_text())["method"] == "setfit"
    classifier = PrototypeClassifier.load(run)
    assert set(classifier.predict(["play some jazz music"])) <= {"BookRestaurant", "GetWeather", "PlayMusic"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"num_shots": 9}, "num_shots=9 but these intents have fewer examples: 'BookRestaurant' (8)"),
    ({"method": "setfit"}, "method=setfit tunes on labelled examples: set num_shots >= 1"),
    ({"method": "knn"}, "'method' must be one of ['centroid', 'setfit'], got 'knn'"),
    ({"oos_threshold": 2}, "oos_threshold is a cosine similarity in [-1, 1]"),
])
def test_bad_settings_are_clear_errors(tmp_path: Path, tiny_encoder: Path, data: Path, capsys, overrides: dict,
                                       message: str) -> None:
    assert main(["train", str(_config(tmp_path, tiny_encoder, data, **overrides))]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "model.safetensors").exists()
