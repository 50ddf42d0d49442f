"""The registry: task name -> its :class:`~finetune.tasks.base.Task`, looked up by a config's ``task`` key.

Adding a task is one module in this folder (a Task subclass) and one line here.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from finetune.outputs import MODEL_CONFIG
from finetune.tasks.base import Task

# name -> "module:Class"; modules are imported on first use, so a CLI call loads only its own task
TASKS: dict[str, str] = {
    "asr_seq2seq": "finetune.tasks.asr_seq2seq:WhisperFineTuning",
    "asr_distill": "finetune.tasks.asr_distill:WhisperDistillation",
    "asr_ctc": "finetune.tasks.asr_ctc:CTCFineTuning",
    "audio_classification": "finetune.tasks.audio_classification:AudioClassification",
    "intent": "finetune.tasks.intent:IntentClassification",
    "intent_few_shot": "finetune.tasks.intent_few_shot:FewShotIntents",
}


class UnknownTaskError(ValueError):
    pass


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    module, _, cls = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def all_tasks() -> list[Task]:
    return [get_task(name) for name in TASKS]


def detect_task(model_dir: str | Path) -> str:
    """Name the task that can evaluate a saved model, from ``architectures`` in its config.json.

    The first registered task that claims an architecture wins (a distilled student is a plain Whisper
    model, scored as the fine-tuning task scores any)."""
    config_path = Path(model_dir) / MODEL_CONFIG
    if not config_path.is_file():
        raise UnknownTaskError(f"{model_dir}: no config.json, so this is not a saved model directory")
    architectures = json.loads(config_path.read_text(encoding="utf-8")).get("architectures") or []
    for name in TASKS:
        if set(architectures) & set(get_task(name).architectures):
            return name
    raise UnknownTaskError(f"{model_dir}: no task handles architectures {architectures}")
