"""Model cards: written after training from the run's real results, valid Hub metadata, any task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from finetune.cli import main
from finetune.evaluation.plots import plot_confusion_matrix
from finetune.hub.card import ModelCardError, render_model_card, validate_card, write_model_card
from finetune.training.run_directory import record_config_change


def _metric(card: ModelCard, kind: str, name_part: str) -> float:
    [value] = [r.metric_value for r in card.data.eval_results if r.metric_type == kind and name_part in r.metric_name]
    return value


def test_training_writes_a_card_with_the_real_results(pushed_run: tuple[Path, object]) -> None:
    run, _ = pushed_run
    card = ModelCard.load(run / "README.md")
    results = json.loads((run / "eval_results.json").read_text())
    data = card.data
    assert data.pipeline_tag == "automatic-speech-recognition"
    assert data.language == "en" and data.library_name == "transformers"
    assert {"finetune", "whisper", "asr-seq2seq"} <= set(data.tags)
    assert data.model_name == "tester/tiny-whisper-fsdd"
    assert _metric(card, "wer", "normalized") == round(100 * results["wer"], 2)
    assert _metric(card, "cer", "raw") == round(100 * results["cer_raw"], 2)
    [first] = data.eval_results[:1]
    assert (first.dataset_name, first.dataset_type, first.dataset_split) == (
        "Free Spoken Digit Dataset (sample)", "fsdd", "test")

    body = card.text
    assert "CC BY-SA 4.0" in body and "github.com/Jakobovski/free-spoken-digit-dataset" in body  # from SOURCE.md
    assert "ShareAlike" in body
    assert "| learning_rate | 0.001 |" in body and "| steps trained | 2 |" in body
    assert "Before fine-tuning" in body  # evaluate_before_training results
    assert body.count("\n| 1 | ") + body.count("\n| 2 | ") == 2  # one training-log row per evaluation
    assert "![Training curve](training_curve.png)" in body and (run / "training_curve.png").is_file()
    assert "encoder sees 2 s of audio" in body
    assert 'pipeline("automatic-speech-recognition", model="tester/tiny-whisper-fsdd")' in body


def test_card_verb_regenerates_the_same_card(pushed_run: tuple[Path, object], tmp_path: Path) -> None:
    run, _ = pushed_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "README.md").unlink()
    assert main(["card", "--model", str(copy), "--repo-id", "tester/tiny-whisper-fsdd"]) == 0
    assert (copy / "README.md").read_text() == (run / "README.md").read_text()


def _classifier_dir(tmp_path: Path, *, task: str, architecture: str, base: str, data_license: str,
                    oos: bool = False) -> Path:
    """A model dir as the classification recipes leave it (results, config, state, confusion matrix)."""
    data = tmp_path / "data"
    data.mkdir(parents=True)
    (data / "SOURCE.md").write_text(f"# Toy commands\nA few labelled examples.\nSource: example.org/toy.\n"
                                    f"License: {data_license}\n")
    model = tmp_path / "model"
    model.mkdir(parents=True)
    labels = ["left", "right", "stop"]
    (model / "config.json").write_text(json.dumps({
        "architectures": [architecture], "model_type": architecture.split("For")[0].lower(),
        "id2label": dict(enumerate(labels))}))
    references = ["left", "left", "right", "right", "stop", "stop"]
    predictions = ["left", "right", "right", "right", "stop", "stop"]
    per_class = {"left": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2},
                 "right": {"precision": 0.6667, "recall": 1.0, "f1": 0.8, "support": 2},
                 "stop": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}}
    results = {"task": task, "model": base, "dataset": str(data), "split": "test", "num_samples": 6,
               "accuracy": 5 / 6, "f1_macro": 0.8222, "per_class": per_class, "runtime_s": 0.1,
               "seconds_per_sample": 0.0167}
    if oos:
        results["oos"] = {"threshold": 0.42, "label": "oos", "accuracy": 0.8, "f1_macro": 0.79}
    (model / "eval_results.json").write_text(json.dumps(results))
    (model / "finetune_config.yaml").write_text(yaml.safe_dump(
        {"task": task, "model_name_or_path": base, "dataset_name": str(data), "learning_rate": 3e-5}))
    (model / "trainer_state.json").write_text(json.dumps({"global_step": 4, "epoch": 2.0, "train_batch_size": 8,
        "log_history": [{"step": 2, "epoch": 1.0, "loss": 1.1}, {"step": 4, "epoch": 2.0, "loss": 0.7},
                        {"step": 4, "epoch": 2.0, "eval_loss": 0.8, "eval_accuracy": 0.83, "eval_runtime": 0.1}]}))
    plot_confusion_matrix(predictions, references, model / "confusion_matrix.png")
    (model / "model.safetensors").write_bytes(b"not read by the card")
    return model


def test_audio_classifier_card(tmp_path: Path) -> None:
    model = _classifier_dir(tmp_path, task="audio_classification", architecture="Wav2Vec2ForSequenceClassification",
                            base="facebook/wav2vec2-base", data_license="CC BY 4.0, with attribution.")
    card = ModelCard.load(write_model_card(model))
    assert card.data.pipeline_tag == "audio-classification"
    assert card.data.base_model == "facebook/wav2vec2-base"
    assert _metric(card, "accuracy", "Accuracy") == round(5 / 6, 4)
    [f1] = [r for r in card.data.eval_results if r.metric_type == "f1"]
    assert (f1.metric_value, f1.metric_args) == (0.8222, {"average": "macro"})
    body = card.text
    assert "| left | 1.000 | 0.500 | 0.667 | 2 |" in body
    assert "![Confusion matrix](confusion_matrix.png)" in body
    assert (model / "training_curve.png").is_file() and "training_curve.png" in body  # drawn from the state
    assert "**Toy commands**: CC BY 4.0, with attribution. Source: example.org/toy." in body
    assert 'pipeline("audio-classification"' in body


def test_intent_card_uses_the_offline_base_models_origin(tmp_path: Path) -> None:
    model = _classifier_dir(tmp_path, task="intent", architecture="BertForSequenceClassification",
                            base="offline:all-MiniLM-L6-v2", data_license="CC0 (public domain dedication)", oos=True)
    card = ModelCard.load(write_model_card(model, repo_id="me/intents"))
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert (card.data.license, card.data.language) == ("apache-2.0", "en")
    assert "rejected below a confidence of 0.42" in card.text
    assert 'pipeline("text-classification", model="me/intents")' in card.text


def test_unreadable_inputs_and_invalid_metadata_are_named(tmp_path: Path, capsys) -> None:
    model = _classifier_dir(tmp_path, task="intent", architecture="BertForSequenceClassification",
                            base="x/y", data_license="MIT")
    (model / "eval_results.json").write_text("{not json")
    with pytest.raises(ModelCardError, match="eval_results.json: not valid JSON"):
        render_model_card(model)
    assert main(["card", "--model", str(tmp_path)]) == 2  # not a model dir
    assert "no config.json" in capsys.readouterr().err

    good = write_model_card(_classifier_dir(tmp_path / "b", task="intent", base="x/y", data_license="MIT",
                                            architecture="BertForSequenceClassification")).read_text()
    broken_index = good.replace("    dataset:\n", "    datasett:\n", 1)
    with pytest.raises(ModelCardError, match="metadata does not parse|model-index"):
        validate_card(broken_index)
    with pytest.raises(ModelCardError, match="pipeline_tag"):
        validate_card(good.replace("pipeline_tag: text-classification", "pipeline_tag: text-magic"))


def test_ctc_model_trained_from_scratch(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Wav2Vec2ForCTC"], "model_type": "wav2vec2"}))
    (tmp_path / "eval_results.json").write_text(json.dumps({
        "task": "asr_ctc", "model": "scratch:configs/models/small.json", "dataset": "sample:fsdd", "split": "test",
        "num_samples": 60, "wer": 0.13, "cer": 0.095, "wer_raw": 0.13, "cer_raw": 0.095}))
    (tmp_path / "finetune_config.yaml").write_text(yaml.safe_dump(
        {"task": "asr_ctc", "model_config": "configs/models/small.json", "dataset_name": "sample:fsdd"}))
    card = ModelCard.load(write_model_card(tmp_path, repo_id="me/ctc-digits"))
    assert card.data.base_model is None and card.data.pipeline_tag == "automatic-speech-recognition"
    assert _metric(card, "wer", "normalized") == 13.0
    assert "trained from scratch" in card.text
    assert "Trained from random initialisation with the architecture in `configs/models/small.json`." in card.text
    assert 'chunk_length_s=20, return_timestamps="word"' in card.text  # CTC pipelines time words, not segments


def test_template_is_found_outside_the_source_tree(tmp_path: Path, monkeypatch) -> None:
    """A wheel install has no model_cards/ beside the package: the copy under <prefix>/share is used."""
    from finetune.hub import card

    installed = tmp_path / "share" / "finetune" / "model_cards" / "template.md"
    installed.parent.mkdir(parents=True)
    installed.write_text(card.default_template().read_text())
    monkeypatch.setattr(card, "TEMPLATE_CANDIDATES", (tmp_path / "missing" / "template.md", installed))
    assert card.default_template() == installed
    monkeypatch.setattr(card, "TEMPLATE_CANDIDATES", (tmp_path / "missing" / "template.md",))
    with pytest.raises(FileNotFoundError, match="model card template not found"):
        card.default_template()


def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder named after a user, inside the test's folder."""
    home = tmp_path / "home" / "qzuser7"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_card_names_no_folder_of_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Base model, data and output dir given as absolute paths (in the home folder): the card shows each by its
    last component only, in the prose, the data table and the run_config block alike."""
    home = _home(tmp_path, monkeypatch)
    base = str(home / "models" / "base")
    model = _classifier_dir(home / "work", task="audio_classification", base=base, data_license="MIT",
                            architecture="Wav2Vec2ForSequenceClassification")
    data = home / "work" / "data"
    config = yaml.safe_dump({
        "task": "audio_classification", "model_name_or_path": base, "dataset_name": str(data),
        "eval_dataset_name": f"file://{data}/test.csv", "output_dir": str(model), "logging_dir": str(model / "logs"),
        "train_split_name": "train", "learning_rate": 3e-5})
    (model / "finetune_config.yaml").write_text(config)
    (model / "data_report.json").write_text(json.dumps({"splits": [
        {"split": "train", "dataset": str(data), "total": 6, "kept": 5,
         "bad_rows": [{"source": str(data / "clips" / "a.wav"), "reason": f"cannot decode {data}/clips/a.wav"}]}]}))
    (model / "training_args.json").write_text(json.dumps({"output_dir": str(model), "learning_rate": 3e-5,
                                                          "logging_dir": str(model / "logs")}))

    text = write_model_card(model).read_text()
    assert str(tmp_path) not in text and "qzuser7" not in text
    body = ModelCard(text).text
    assert "Starting weights: `base`." in body and "Trained on `data`, split `train`" in body
    assert "| train | `data` | 6 | 5 | 1 |" in body
    run_config = body.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(run_config) == {
        "task": "audio_classification", "model_name_or_path": "base", "dataset_name": "data",
        "eval_dataset_name": "test.csv", "output_dir": "model", "logging_dir": "logs", "train_split_name": "train",
        "learning_rate": 3e-5}
    assert (model / "finetune_config.yaml").read_text() == config  # the local files keep their paths


def test_scratch_architecture_outside_the_project_is_shown_by_name(tmp_path: Path) -> None:
    architecture = tmp_path / "configs" / "small.json"
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Wav2Vec2ForCTC"], "model_type": "wav2vec2"}))
    (tmp_path / "eval_results.json").write_text(json.dumps({
        "task": "asr_ctc", "model": f"scratch:{architecture}", "dataset": "sample:fsdd", "split": "test",
        "num_samples": 60, "wer": 0.13, "cer": 0.095, "wer_raw": 0.13, "cer_raw": 0.095}))
    (tmp_path / "finetune_config.yaml").write_text(yaml.safe_dump(
        {"task": "asr_ctc", "model_config": str(architecture), "dataset_name": "sample:fsdd"}))
    text = write_model_card(tmp_path, repo_id="me/ctc-digits").read_text()
    assert "Trained from random initialisation with the architecture in `small.json`." in text
    assert str(tmp_path) not in text


def test_card_says_the_run_was_resumed_with_changed_settings(tmp_path: Path) -> None:
    model = _classifier_dir(tmp_path, task="intent", architecture="BertForSequenceClassification", base="x/y",
                            data_license="MIT")
    previous = yaml.safe_load((model / "finetune_config.yaml").read_text())
    record_config_change(model, previous, {"learning_rate": (3e-5, 1e-5), "max_steps": (4, 8),
                                           "output_dir": (str(tmp_path / "old"), str(model))},
                         str(model / "checkpoint-4"))
    body = ModelCard(write_model_card(model).read_text()).text
    assert "This run was resumed with changed settings" in body and "`finetune_config_history.yaml`" in body
    [line] = [line for line in body.splitlines() if line.startswith("- resumed from `checkpoint-4`")]
    assert "`learning_rate`: `3.0e-05` -> `1.0e-05`" in line and "`max_steps`: `4` -> `8`" in line
    assert "`output_dir`: `old` -> `model`" in line
    # only the change that decides the weights is a limitation: training on longer or elsewhere is not
    [limitation] = [item for item in body.splitlines() if "Part of the training ran with" in item]
    assert "`learning_rate`" in limitation and "max_steps" not in limitation
    assert str(tmp_path) not in body

    (model / "finetune_config_history.yaml").unlink()
    assert "resumed" not in ModelCard(write_model_card(model).read_text()).text
