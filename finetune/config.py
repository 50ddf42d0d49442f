"""One YAML file (plus ``key=value`` overrides) -> the argument dataclasses of a task.

The file is flat, as in the transformers example scripts: every key belongs to exactly one of the
task's dataclasses (``ModelArguments``, ``DataArguments``, a family's own arguments and
``TrainingArguments``/``Seq2SeqTrainingArguments``), so any standard Trainer field is settable.
The one extra key, ``task``, picks the recipe. Values are converted to the field's type here, so a
mistyped key or value fails before any model is loaded, with an error that names the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A config file, key or value that cannot be used; the message names the file and key."""


@dataclass
class ModelArguments:
    """Which pretrained model to start from and how to load it."""

    model_name_or_path: str = field(
        metadata={"help": "A local directory, a Hub id, or an offline alias such as 'offline:whisper-tiny.en'."}
    )
    revision: str = field(default="main", metadata={"help": "Hub revision (branch, tag or commit)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where Hub downloads are cached."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run model code from the Hub repo. Off unless you trust the repo."}
    )


@dataclass
class DataArguments:
    """What to train and evaluate on; names follow the transformers example scripts."""

    dataset_name: str = field(
        metadata={"help": "Audiofolder dir (<dir>/<split>/metadata.csv), CSV/JSONL manifest, or Hub dataset id."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_split_name: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split_name: str | None = field(default="test", metadata={"help": "Split to evaluate on (null: none)."})
    eval_dataset_name: str | None = field(
        default=None, metadata={"help": "Evaluate on another source (defaults to dataset_name)."}
    )
    audio_column_name: str | None = field(
        default=None, metadata={"help": "Audio column (default: the first of audio, file_name, path, ...)."}
    )
    text_column_name: str | None = field(
        default=None, metadata={"help": "Transcript column (default: the first of text, transcript, sentence, ...)."}
    )
    label_column_name: str | None = field(default=None, metadata={"help": "Class column for classification tasks."})
    max_duration_in_seconds: float = field(default=30.0, metadata={"help": "Longer clips are bad rows."})
    min_duration_in_seconds: float = field(default=0.0, metadata={"help": "Shorter clips are bad rows."})
    language: str | None = field(
        default=None,
        metadata={"help": "Language of the speech or text (ISO code or Whisper name: en, fr, french). Picks the "
                          "normalizer of the normalized WER (Whisper's English one for English, the basic one "
                          "otherwise), Whisper's language token and the card's language. Default: the model's "
                          "own (English for English-only Whisper checkpoints), else English."},
    )
    language_column_name: str | None = field(
        default=None,
        metadata={"help": "Column holding each row's language (code or Whisper name), for a multilingual Whisper "
                          "trained on several languages: each row's labels carry its own language token, the "
                          "model detects the language when it evaluates, and each row is scored with its "
                          "language's normalizer. An empty cell takes `language`."},
    )
    prompt_column_name: str | None = field(
        default=None,
        metadata={"help": "Whisper: column of text to prompt each training row with (its previous text, names, "
                          "context), used on a share of rows (prompt_probability) so prompted decoding "
                          "(--initial-prompt, prompt_ids) still works after fine-tuning."},
    )
    allow_empty_transcripts: bool = field(
        default=False,
        metadata={"help": "Keep clips whose transcript is empty as no-speech examples (silence, noise, music) the "
                          "model learns to answer with nothing: the standard cure for text invented over "
                          "silence. Off: an empty transcript is a bad row."},
    )
    text_normalization: Literal["none", "lower", "basic", "english"] = field(
        default="none",
        metadata={"help": "Applied to training targets: none, lower (lowercase + collapse spaces), basic, english."},
    )
    on_bad_rows: Literal["fail", "skip"] = field(
        default="fail",
        metadata={"help": "fail: stop and list the bad rows; skip: drop them, count them, write a report."},
    )
    max_batch_seconds: float | None = field(
        default=None,
        metadata={
            "help": "Bound each training batch by padded audio seconds (count x longest clip) to cap memory; "
            "per_device_train_batch_size stays the most clips a batch may hold."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N eval rows."})
    streaming: bool = field(default=False, metadata={"help": "Stream a Hub dataset instead of downloading it."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for decoding."})
    data_cache_dir: str | None = field(
        default=None, metadata={"help": "Cache for decoded audio (default: the datasets cache)."}
    )

    def __post_init__(self) -> None:
        check_choices(self)
        if self.max_batch_seconds is not None and self.max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be positive (or null: off), got {self.max_batch_seconds}")
        if self.min_duration_in_seconds < 0 or self.max_duration_in_seconds <= self.min_duration_in_seconds:
            raise ValueError("need 0 <= min_duration_in_seconds < max_duration_in_seconds")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be at least 1, or null for all rows; got {value!r}")


@dataclass
class RunArguments:
    """What to do with the run as a whole (not a model or data setting)."""

    task: str = field(metadata={"help": "The recipe: asr_seq2seq, ..."})
    resume: bool = field(
        default=False, metadata={"help": "Continue from the newest complete checkpoint in output_dir, if any."}
    )
    evaluate_before_training: bool = field(
        default=False, metadata={"help": "Measure the eval split with the untouched model first (zero-shot)."}
    )
    # transformers 5 has no overwrite_output_dir of its own; this is ours (finetune.training.run_directory)
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start a new run in an output_dir that holds a finished run or checkpoints: the previous "
                          "run's model, results and checkpoints are deleted first (resume must be false)."},
    )
    resume_allow_config_changes: bool = field(
        default=False,
        metadata={"help": "With resume=true, continue even though keys that decide the weights (data, learning "
                          "rate, seed...) differ from the saved finetune_config.yaml; the previous config is "
                          "kept in finetune_config_history.yaml."},
    )


def check_choices(options: Any) -> None:
    """Refuse a value outside a ``Literal`` field's choices; option classes call it from ``__post_init__``
    so a choice is checked however the options were built (config file, dict or Python)."""
    hints = typing.get_type_hints(type(options))
    for f in dataclasses.fields(options):
        annotation = hints.get(f.name)
        choices = _literal_choices(annotation)
        value = getattr(options, f.name)
        if choices is not None and value not in choices and not (value is None and _allows_none(annotation)):
            raise ValueError(f"{f.name!r} must be one of {list(choices)}, got {value!r}")


def _literal_choices(annotation: Any) -> tuple | None:
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for member in typing.get_args(annotation):
            if typing.get_origin(member) is typing.Literal:
                return typing.get_args(member)
    return None


def _allows_none(annotation: Any) -> bool:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return union and type(None) in typing.get_args(annotation)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a flat YAML mapping, turning parse errors into a ConfigError that points at the line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value at the top level, got {type(loaded).__name__}")
    nested = [key for key, value in loaded.items() if isinstance(value, dict) and key not in _DICT_VALUED_KEYS]
    if nested:
        raise ConfigError(f"{path}: keys must be flat (key: value); {nested[0]!r} holds a nested mapping")
    return loaded


# Trainer fields whose value is itself a mapping.
_DICT_VALUED_KEYS = {
    "lr_scheduler_kwargs",
    "gradient_checkpointing_kwargs",
    "activation_checkpointing_kwargs",
    "fsdp_config",
    "accelerator_config",
    "liger_kernel_config",
    "deepspeed",
    "optim_args",
}


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``values`` with ``key=value`` strings applied (see :func:`parse_overrides`)."""
    return {**values, **parse_overrides(overrides)}


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``key=value`` strings as a dict; the value is read as YAML so ``true``, ``3`` and ``[a, b]`` work."""
    merged: dict[str, Any] = {}
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r} is not of the form key=value")
        try:
            merged[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            merged[key.strip()] = raw
    return merged


def parse_into(classes: tuple[type, ...], values: dict[str, Any], source: str = "config") -> tuple[Any, ...]:
    """Split a flat mapping over ``classes`` and build each; unknown keys list the valid ones."""
    owners: dict[str, type] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.init:
                owners.setdefault(f.name, cls)
    unknown = [key for key in values if key not in owners]
    if unknown:
        raise ConfigError(_unknown_keys_message(unknown, sorted(owners), source))
    built = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        kwargs = {
            key: coerce(value, hints.get(key, Any), key=key, source=source)
            for key, value in values.items()
            if owners[key] is cls
        }
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.init
            and f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(f"{source}: required key(s) missing: {', '.join(missing)}")
        try:
            built.append(cls(**kwargs))
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{source}: {error}") from None
    return tuple(built)


def _unknown_keys_message(unknown: list[str], valid: list[str], source: str) -> str:
    lines = [f"{source}: unknown key(s): {', '.join(unknown)}"]
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
        if close:
            lines.append(f"  {key!r}: did you mean {' or '.join(repr(c) for c in close)}?")
    lines.append("valid keys: " + ", ".join(valid))
    return "\n".join(lines)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(value: Any, annotation: Any, *, key: str, source: str = "config") -> Any:
    """Convert ``value`` to the field type ``annotation`` or raise a ConfigError naming ``key``."""
    if value is None or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        for member in members:  # keep a value that already fits one member as it is
            if _is_instance(value, member):
                return value
        for member in members:
            try:
                return coerce(value, member, key=key, source=source)
            except ConfigError:
                continue
        raise _type_error(value, annotation, key, source)
    if origin is typing.Literal:
        if value in typing.get_args(annotation):
            return value
        raise ConfigError(f"{source}: {key!r} must be one of {list(typing.get_args(annotation))}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _type_error(value, annotation, key, source)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _type_error(value, annotation, key, source)
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _type_error(value, annotation, key, source)
    if annotation is str or annotation is Path:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return annotation(value) if annotation is Path else str(value)
        raise _type_error(value, annotation, key, source)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        allowed = [member.value for member in annotation]
        if value in allowed or isinstance(value, annotation):
            return value
        raise ConfigError(f"{source}: {key!r} must be one of {allowed}, got {value!r}")
    if origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        raise _type_error(value, annotation, key, source)
    if origin is dict or annotation is dict:
        if isinstance(value, dict):
            return value
        raise _type_error(value, annotation, key, source)
    return value


def _is_instance(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, float)
    if isinstance(origin, type):
        return isinstance(value, origin)
    return False


def _type_error(value: Any, annotation: Any, key: str, source: str) -> ConfigError:
    name = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
    return ConfigError(f"{source}: {key!r} expects {name}, got {value!r} ({type(value).__name__})")


def describe_fields(classes: tuple[type, ...], defaults: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """(key, default, help) rows for ``--list-keys``; ``defaults`` (a task's own) replace the declared ones."""
    defaults = defaults or {}
    rows = []
    for cls in classes:
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in defaults:
                default = repr(defaults[f.name])
            elif f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "(required)"
            rows.append((f.name, default, f.metadata.get("help", "")))
    return rows
