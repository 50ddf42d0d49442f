"""The recipes, one module a task, looked up by the ``task`` key of a config.

Every task module offers the same small surface:
``NAME``, ``ARCHITECTURES`` (model classes it can evaluate), ``argument_classes()``,
``DEFAULTS`` (Trainer defaults that differ from transformers' own), ``train(*arguments)`` and
``evaluate(model_dir, data_args, output_dir, batch_size)``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

TASK_MODULES = {
    "asr_seq2seq": "finetune.tasks.asr_seq2seq",
    "asr_distill": "finetune.tasks.asr_distill",
    "asr_ctc": "finetune.tasks.asr_ctc",
    "audio_classification": "finetune.tasks.audio_classification",
    "intent": "finetune.tasks.intent",
    "intent_few_shot": "finetune.tasks.intent_few_shot",
}


class UnknownTaskError(ValueError):
    pass


def get_task(name: str) -> ModuleType:
    if name not in TASK_MODULES:
        raise UnknownTaskError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASK_MODULES))}")
    return importlib.import_module(TASK_MODULES[name])


def detect_task(model_dir: str | Path) -> str:
    """Name the task that can evaluate a saved model, from ``architectures`` in its config.json."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        raise UnknownTaskError(f"{model_dir}: no config.json, so this is not a saved model directory")
    architectures = json.loads(config_path.read_text(encoding="utf-8")).get("architectures") or []
    for name in TASK_MODULES:
        if set(architectures) & set(get_task(name).ARCHITECTURES):
            return name
    raise UnknownTaskError(f"{model_dir}: no task handles architectures {architectures}")
