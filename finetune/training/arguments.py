"""Trainer arguments that transformers accepts but that would make a run do nothing, or something else
than asked, without saying so: refused here, once, before anything is loaded or written.

- no ``output_dir``: transformers quietly writes to ``./trainer_output``.
- ``gradient_accumulation_steps`` below 1, ``max_steps: 0``, or ``num_train_epochs`` <= 0 with no
  ``max_steps``: no optimizer step is taken, and the untouched base model would be saved (and carded)
  as the fine-tuned one.
- ``save_steps`` with ``save_strategy: "no"``: the two ask for opposite things; refused rather than
  guessed, since guessing "no" loses the checkpoints a long run was meant to keep.
"""

from __future__ import annotations

import enum
from typing import Any

from finetune.config import ConfigError

_NOTHING_TRAINED = "no optimizer step would be taken and the base model would be saved as fine-tuned"


def _value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def check_training_arguments(args: Any, values: dict[str, Any], *, trains: bool = True) -> None:
    """Raise a ConfigError naming the key for arguments that would make the run a silent no-op.

    ``args`` are the parsed TrainingArguments, ``values`` the flat config as the user wrote it (to tell
    a key that was set from a transformers default). ``trains=False`` (a task that trains without the
    Trainer's loop, such as intent_few_shot) checks only ``output_dir``.
    """
    output_dir = values.get("output_dir")
    if output_dir is None or not str(output_dir).strip():
        raise ConfigError("output_dir is required: the folder for the model, its checkpoints and results "
                          "(transformers would quietly use ./trainer_output)")
    if not trains:
        return
    accumulation = getattr(args, "gradient_accumulation_steps", 1)
    if accumulation is None or accumulation < 1:
        raise ConfigError(f"gradient_accumulation_steps must be 1 or more, got {accumulation}: {_NOTHING_TRAINED}")
    max_steps = getattr(args, "max_steps", -1)
    if max_steps == 0:
        raise ConfigError(f"max_steps: 0 trains for no step: {_NOTHING_TRAINED}. Set max_steps to the number of "
                          "steps, or -1 to train for num_train_epochs")
    epochs = getattr(args, "num_train_epochs", 1)
    if max_steps < 0 and (epochs is None or epochs <= 0):
        raise ConfigError(f"num_train_epochs: {epochs} with no max_steps trains for no step: {_NOTHING_TRAINED}. "
                          "Set num_train_epochs above 0, or max_steps")
    if values.get("save_steps") is not None and _value(getattr(args, "save_strategy", None)) == "no":
        raise ConfigError(f"save_steps: {values['save_steps']} asks for a checkpoint every {values['save_steps']} "
                          "steps, but save_strategy: \"no\" saves none: set save_strategy: steps to keep "
                          "checkpoints, or remove save_steps")
