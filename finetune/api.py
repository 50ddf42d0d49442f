"""The Python front door: ``train`` a task from a config, ``evaluate`` any saved model.

    import finetune
    results = finetune.train("configs/quickstart.yaml", max_steps=50)
    scores = finetune.evaluate("outputs/quickstart", "sample:fsdd", split="test")

Everything a run does besides the task itself happens here, once, for every task and for the CLI
alike: the task's defaults merged under the user's values, the Hub token kept out of every file, the
run config saved beside the model, the model card written and, when asked, the push to the Hub.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import sys
from pathlib import Path
from typing import Any

from finetune.config import (
    ConfigError,
    DataArguments,
    RunArguments,
    check_choices,
    describe_fields,
    load_yaml,
    parse_into,
)
from finetune.outputs import MODEL_CONFIG, save_run_config
from finetune.tasks import Task, detect_task, get_task
from finetune.tasks.base import TaskOptions
from finetune.training.arguments import check_training_arguments
from finetune.training.run_directory import effective_values, prepare_run_directory
from finetune.training.run_lock import RunLock

logger = logging.getLogger("finetune")

Config = str | os.PathLike | dict[str, Any] | TaskOptions


def load_config(config: Config, **overrides: Any) -> tuple[Task, TaskOptions, dict[str, Any]]:
    """The task, its parsed options and the flat values they came from.

    ``config`` is a YAML path, a flat dict of keys (as in the YAML file) or already-built
    :class:`TaskOptions`; ``overrides`` replace keys. The task's own defaults sit under the user's values.
    """
    if isinstance(config, TaskOptions):
        values = {**_values_of(config), **overrides}
        source = "options"
    elif isinstance(config, dict):
        values, source = {**config, **overrides}, "config"
    else:
        values, source = {**load_yaml(config), **overrides}, str(config)
    if "task" not in values:
        raise ConfigError(f"{source}: the 'task' key is required (e.g. task: asr_seq2seq)")
    task = get_task(str(values["task"]))
    parsed = parse_into(task.argument_classes(), {**task.defaults, **values}, source=source)
    return task, TaskOptions.from_parsed(parsed), values


def list_keys(task_name: str) -> list[tuple[str, str, str]]:
    """(key, effective default, help) for every key the task accepts."""
    task = get_task(task_name)
    return describe_fields(task.argument_classes(), task.defaults)


def train(config: Config, **overrides: Any) -> dict[str, Any]:
    """Train the config's task and evaluate it; returns the results by phase (``zero_shot``, ``train``,
    ``eval``). The output directory gets the model, eval_results.json, the run config and the card.

    The run holds the output directory's lock (``finetune_run.lock``) from before it writes anything to
    its end, so a second run on the same directory fails at once; it refuses to start over a finished
    run (unless ``overwrite_output_dir``) and to resume with a config that would mix two runs (see
    :mod:`finetune.training.run_directory`).
    """
    task, options, values = load_config(config, **overrides)
    for group in options.all():
        if not isinstance(group, type(options.training)):
            check_choices(group)
    training = options.training
    check_training_arguments(training, values, trains=task.uses_trainer)
    effective = effective_values(options.all())
    _keep_token_out_of_files(training)
    # The Trainer's own push_to_hub would contact the Hub at start-up and after every save; we push
    # once, after the model card is written, and only from the main process.
    push = bool(getattr(training, "push_to_hub", False))
    training.push_to_hub = False
    main = bool(training.should_save)  # under accelerate launch: the process that saves (rank 0)
    with RunLock(training.output_dir, purpose="training run", enabled=main):
        run = options.run
        prepare_run_directory(training.output_dir, resume=run.resume, overwrite=run.overwrite_output_dir,
                              allow_config_changes=run.resume_allow_config_changes, new_values=effective,
                              effective_of=lambda saved: effective_values(load_config(saved)[1].all()), main=main)
        if main:
            save_run_config(training.output_dir, values)
        results = task.train(options)
        if main:
            _publish(training, push)
    return results


def evaluate(model: str | os.PathLike, data: str, *, split: str = "test", output_dir: str | os.PathLike | None = None,
             batch_size: int = 8, **options: Any) -> dict[str, Any]:
    """Score a saved model on one split of ``data`` (audiofolder, manifest or Hub dataset id).

    ``options`` are keys of DataArguments (``text_column_name``, ``on_bad_rows``, ``language`` ...) and
    the evaluation options of the model's task (``finetune evaluate --list-keys --model DIR``). Writes
    eval_results.json and predictions.jsonl to ``output_dir`` (default ``<model>/eval-<split>``).
    """
    from finetune.models.registry import resolve_model_path

    model_dir = resolve_model_path(str(model))
    task = get_task(detect_task(model_dir))
    values = {"dataset_name": data, "eval_split_name": split, **options}
    parsed = parse_into((DataArguments, *task.evaluation_option_classes), values, source="evaluate")
    data_args, groups = parsed[0], {type(group): group for group in parsed[1:]}
    target = str(output_dir or Path(model_dir) / f"eval-{split}")
    with RunLock(target, purpose="evaluation"):  # one writer per folder, as for training
        return task.evaluate(model_dir, data_args, target, batch_size=batch_size, groups=groups)


def evaluation_keys(model: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(key, default, help) of what ``evaluate`` accepts for this model's task."""
    from finetune.models.registry import resolve_model_path

    task = get_task(detect_task(resolve_model_path(str(model))))
    return describe_fields((DataArguments, *task.evaluation_option_classes))


def _values_of(options: TaskOptions) -> dict[str, Any]:
    """Flat config values of built options: the task and every key that differs from its default."""
    values: dict[str, Any] = {}
    for group in options.all():
        if isinstance(group, RunArguments) or not dataclasses.is_dataclass(group):
            continue
        defaults = type(group)() if _constructible(type(group)) else None
        for f in dataclasses.fields(group):
            if not f.init:
                continue
            value = getattr(group, f.name)
            if defaults is None or value != getattr(defaults, f.name, object()):
                values[f.name] = value
    values = {"task": options.run.task, **{k: v for k, v in vars(options.run).items() if k != "task"}, **values}
    return _plain(values)


def _constructible(cls: type) -> bool:
    try:
        cls()
    except (TypeError, ValueError):
        return False
    return True


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Enums and other objects as the plain values a YAML file would hold."""
    out = {}
    for key, value in values.items():
        if isinstance(value, enum.Enum):  # transformers' strategies are str enums
            value = value.value
        if isinstance(value, (str, int, float, bool, list, dict)) or value is None:
            out[key] = value
    return out


def _publish(training_args: Any, push: bool) -> None:
    """Model card for every saved model; the Hub upload when the config asked for push_to_hub."""
    from finetune.hub.card import write_model_card

    output_dir = Path(training_args.output_dir)
    if not (output_dir / MODEL_CONFIG).is_file():
        return
    repo_id = getattr(training_args, "hub_model_id", None)
    print(f"wrote {write_model_card(output_dir, repo_id=repo_id)}", file=sys.stderr)
    if push:
        from finetune.hub.push import push_model

        result = push_model(output_dir, repo_id or output_dir.resolve().name,
                            private=bool(getattr(training_args, "hub_private_repo", False)))
        print(f"pushed {len(result.files)} files to {result.commit_url}", file=sys.stderr)


def _keep_token_out_of_files(training_args: Any) -> None:
    """The Trainer pickles its arguments into every checkpoint: a Hub token given in the config is
    moved to this process's HF_TOKEN (where huggingface_hub reads it) and removed from the arguments."""
    token = getattr(training_args, "hub_token", None)
    if token:
        logger.warning("hub_token in a config file is not kept in any output; prefer HF_TOKEN or `hf auth login`")
        os.environ.setdefault("HF_TOKEN", token)
        training_args.hub_token = None
