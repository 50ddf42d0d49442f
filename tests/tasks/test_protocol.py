"""Every registered task keeps the task protocol: what it declares, its keys and defaults, and the
package rules around it (one Trainer builder, choice fields refused before anything loads).

The tests iterate the registry, so a new task is checked by being registered.
"""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

import finetune
from finetune import api
from finetune.config import ConfigError, DataArguments
from finetune.tasks import TASKS, all_tasks, get_task
from finetune.tasks.base import CardFacts, Task

PACKAGE = Path(finetune.__file__).resolve().parent
PIPELINE_TAGS = {"automatic-speech-recognition", "audio-classification", "text-classification"}
TASK_NAMES = list(TASKS)


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def _related(classes: set[type]) -> bool:
    """True when every pair of ``classes`` is a class and its subclass (TrainingArguments and
    Seq2SeqTrainingArguments share their fields by inheritance, not by redeclaring them)."""
    ordered = list(classes)
    return all(issubclass(a, b) or issubclass(b, a) for i, a in enumerate(ordered) for b in ordered[i + 1:])


def _option_classes(task: Task) -> list[type]:
    """Every dataclass whose fields are keys of the task: training and evaluation."""
    seen: list[type] = []
    for cls in (*task.argument_classes(), *task.evaluation_option_classes):
        if cls not in seen:
            seen.append(cls)
    return seen


def _tiny_whisper_values(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """An asr_seq2seq config that is never trained: the model path does not exist, so any test that
    gets a ConfigError from it got it before a model was loaded."""
    return {"task": "asr_seq2seq", "model_name_or_path": str(tmp_path / "no-such-model"),
            "dataset_name": "sample:fsdd", "output_dir": str(tmp_path / "run"), "max_steps": 2,
            "use_cpu": True, **overrides}


# ---------------------------------------------------------------------------------------- the registry


def test_all_tasks_returns_one_task_per_registry_entry() -> None:
    assert [task.name for task in all_tasks()] == TASK_NAMES


@pytest.mark.parametrize("name", TASK_NAMES)
def test_task_declares_what_the_protocol_asks(name: str) -> None:
    task = get_task(name)
    assert isinstance(task, Task)
    assert task.name == name
    assert task.architectures and all(isinstance(a, str) and a for a in task.architectures)
    assert isinstance(task.card, CardFacts)
    assert task.card.pipeline_tag in PIPELINE_TAGS
    assert task.card.metrics, "the card's model-index needs at least one metric"
    assert task.headline_metrics and all(isinstance(m, str) for m in task.headline_metrics)
    usage = task.usage_python("owner/model", {})
    assert isinstance(usage, str) and usage.strip()
    assert "owner/model" in usage, "the card's usage snippet must load the model it describes"
    assert isinstance(task.uses_trainer, bool) and isinstance(task.reads_audio, bool)


# ---------------------------------------------------------------------------------------- keys


@pytest.mark.parametrize("name", TASK_NAMES)
def test_within_a_task_every_key_is_declared_once(name: str) -> None:
    """parse_into gives a key to the first class declaring it: a second declaration could never be set."""
    task = get_task(name)
    for classes in (task.argument_classes(), (DataArguments, *task.evaluation_option_classes)):
        owners: dict[str, list[type]] = {}
        for cls in classes:
            for f in _init_fields(cls):
                owners.setdefault(f.name, []).append(cls)
        twice = {key: [c.__name__ for c in found] for key, found in owners.items()
                 if len(found) > 1 and not _related(set(found))}
        assert not twice, f"{name}: keys declared in more than one option class: {twice}"


def test_across_tasks_a_key_name_is_one_field() -> None:
    """One key, one field: the same name in two dataclasses could differ in type, default and help
    from one task to the next."""
    owners: dict[str, set[type]] = {}
    for task in all_tasks():
        for cls in _option_classes(task):
            for f in _init_fields(cls):
                owners.setdefault(f.name, set()).add(cls)
    clashes = {key: sorted(c.__qualname__ for c in classes) for key, classes in owners.items()
               if len(classes) > 1 and not _related(classes)}
    assert not clashes, f"key names declared by more than one dataclass: {clashes}"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_every_default_targets_a_key_of_the_task(name: str) -> None:
    task = get_task(name)
    keys = {f.name for cls in task.argument_classes() for f in _init_fields(cls)}
    assert set(task.defaults) <= keys, f"{name}: defaults for keys it does not have: {set(task.defaults) - keys}"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_list_keys_shows_the_task_defaults(name: str) -> None:
    task = get_task(name)
    rows = api.list_keys(name)
    keys = [key for key, _, _ in rows]
    assert len(keys) == len(set(keys))
    shown = {key: default for key, default, _ in rows}
    for key, value in task.defaults.items():
        assert shown[key] == repr(value), f"{name}: list_keys shows {key} = {shown[key]}, the task uses {value!r}"


@pytest.mark.parametrize(("name", "expected"), [
    ("asr_seq2seq", {"predict_with_generate": "True", "remove_unused_columns": "False",
                     "metric_for_best_model": "'wer'", "save_total_limit": "2", "report_to": "'none'"}),
    ("asr_ctc", {"model_name_or_path": "None"}),
    ("asr_distill", {"freeze_encoder": "True", "predict_with_generate": "True"}),
])
def test_list_keys_effective_defaults(name: str, expected: dict[str, str]) -> None:
    shown = {key: default for key, default, _ in api.list_keys(name)}
    assert {key: shown.get(key) for key in expected} == expected


def test_cli_list_keys_prints_the_effective_defaults(tmp_path: Path, capsys) -> None:
    from finetune.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"task": "asr_seq2seq"}))
    assert main(["train", str(config), "--list-keys"]) == 0
    out = capsys.readouterr().out
    assert "predict_with_generate = True" in out.splitlines()
    assert "remove_unused_columns = False" in out.splitlines()
    assert "model_name_or_path = (required)" in out.splitlines()


# ---------------------------------------------------------------------------------------- one Trainer builder

TRAINER_NAMES = {"Trainer", "Seq2SeqTrainer", "CTCTrainer", "DistillationTrainer"}
BUILDER = PACKAGE / "training" / "trainers.py"


def _trainer_subclasses(trees: dict[Path, ast.Module]) -> set[str]:
    """Names of the package's own classes that derive (directly or not) from a Trainer."""
    names = set(TRAINER_NAMES)
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names:
                    bases = {b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else ""
                             for b in node.bases}
                    if bases & names:
                        names.add(node.name)
                        grew = True
    return names


def _foreign_names(tree: ast.Module) -> set[str]:
    """Names a module imports from another library than transformers or finetune (setfit has a
    ``Trainer`` of its own, which is not a transformers Trainer)."""
    foreign = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root not in {"transformers", "finetune"} and node.level == 0:
                foreign |= {alias.asname or alias.name for alias in node.names}
    return foreign


def test_only_the_builder_constructs_a_trainer() -> None:
    trees = {path: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
             for path in sorted(PACKAGE.rglob("*.py"))}
    trainer_names = _trainer_subclasses(trees)
    found = []
    for path, tree in trees.items():
        if path == BUILDER:
            continue
        foreign = _foreign_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in trainer_names and func.id not in foreign:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {func.id}(...)")
            elif isinstance(func, ast.Attribute) and func.attr in trainer_names:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} ...{func.attr}(...)")
    assert not found, "Trainers built outside finetune/training/trainers.py (use build_trainer / make_trainer): " \
                      + "; ".join(found)


def test_the_scan_sees_a_trainer_call_and_ignores_class_definitions() -> None:
    """The scan above is not vacuous: a call is caught, a subclass definition and super() are not."""
    source = ("from transformers import Trainer\nclass MyTrainer(Trainer):\n    def __init__(self, **kw):\n"
              "        super().__init__(**kw)\n\ndef make():\n    return MyTrainer(model=None)\n")
    tree = ast.parse(source)
    names = _trainer_subclasses({Path("x.py"): tree})
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id in names]
    assert calls == ["MyTrainer"]


# ---------------------------------------------------------------------------------------- choice fields


def test_a_bad_whisper_task_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="whisper_task") as error:
        api.load_config(_tiny_whisper_values(tmp_path, whisper_task="translat"))
    assert "translate" in str(error.value)  # the valid choices are listed


def test_a_bad_text_normalization_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="text_normalization") as error:
        api.load_config(_tiny_whisper_values(tmp_path, text_normalization="upper"))
    assert "'upper'" in str(error.value)


@pytest.mark.parametrize(("key", "value"), [("whisper_task", "translat"), ("text_normalization", "upper"),
                                            ("on_bad_rows", "ignore")])
def test_train_refuses_a_bad_choice_before_loading_the_model(tmp_path: Path, key: str, value: str) -> None:
    # the model path does not exist: had anything been loaded first, the error would be another
    with pytest.raises(ConfigError, match=key):
        api.train(_tiny_whisper_values(tmp_path, **{key: value}))
    assert not (tmp_path / "run").exists()


def test_data_arguments_built_in_python_check_their_choices() -> None:
    with pytest.raises(ValueError, match="on_bad_rows"):
        DataArguments(dataset_name="x", on_bad_rows="ignore")
    with pytest.raises(ValueError, match="text_normalization"):
        DataArguments(dataset_name="x", text_normalization="upper")
    assert DataArguments(dataset_name="x", on_bad_rows="skip").on_bad_rows == "skip"


def _literal_choices(annotation: Any) -> tuple | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    for member in typing.get_args(annotation) if typing.get_origin(annotation) is not None else ():
        if typing.get_origin(member) is typing.Literal:
            return typing.get_args(member)
    return None


def _choice_fields() -> list[tuple[type, str]]:
    """(class, field) for every Literal-typed key of every task's own option classes."""
    found = []
    for task in all_tasks():
        for cls in _option_classes(task):
            if cls.__module__.startswith("transformers"):
                continue
            hints = typing.get_type_hints(cls)
            for f in _init_fields(cls):
                if _literal_choices(hints.get(f.name)) and (cls, f.name) not in found:
                    found.append((cls, f.name))
    return found


def test_every_choice_field_of_every_option_class_checks_its_value_when_built_in_python() -> None:
    """check_choices' contract: an option class refuses a bad choice however it was built."""
    fields = _choice_fields()
    assert (DataArguments, "on_bad_rows") in fields and len(fields) > 3
    unchecked = []
    for cls, name in fields:
        required = {f.name: "x" for f in _init_fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        try:
            cls(**{**required, name: "not-a-choice"})
        except ValueError as error:
            assert name in str(error), f"{cls.__name__}: the error does not name {name!r}: {error}"
        else:
            unchecked.append(f"{cls.__qualname__}.{name}")
    assert not unchecked, f"choice fields that accept any value when built in Python: {unchecked}"
