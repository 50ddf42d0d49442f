"""finetune: fine-tune pretrained speech Transformers from one YAML config, and serve the result.

    import finetune

    results = finetune.train("configs/quickstart.yaml", max_steps=50)     # or a dict of config keys
    scores = finetune.evaluate("outputs/quickstart", "sample:fsdd", split="test")
    for result in finetune.Transcriber("outputs/quickstart")(["clip.flac"]):
        print(result.transcript.text)

The heavy imports (torch, transformers) happen on first use, so ``import finetune`` stays cheap. Importing
any part of the package filters one transformers notice about Whisper's own generate arguments
(:mod:`finetune.models.generate_notices`), so a user's own ``pipeline()`` beside it is quiet too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from finetune.models import generate_notices

generate_notices.install()

__version__ = "0.1.0"
__all__ = [
    "SpokenCommandPipeline",
    "TranscribeOptions",
    "Transcriber",
    "evaluate",
    "list_keys",
    "load_config",
    "train",
]

_PUBLIC = {
    "train": "finetune.api",
    "evaluate": "finetune.api",
    "load_config": "finetune.api",
    "list_keys": "finetune.api",
    "Transcriber": "finetune.inference.transcribe",
    "TranscribeOptions": "finetune.inference.transcribe",
    "SpokenCommandPipeline": "finetune.inference.slu",
}

if TYPE_CHECKING:
    from finetune.api import evaluate, list_keys, load_config, train
    from finetune.inference.slu import SpokenCommandPipeline
    from finetune.inference.transcribe import TranscribeOptions, Transcriber


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'finetune' has no attribute {name!r}")
