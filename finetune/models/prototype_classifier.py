"""Intents as points in a sentence-embedding space: a query gets the intent whose prototype is nearest.

Embeddings are mean-pooled over the tokens and L2-normalized (what sentence-transformers'
all-MiniLM-L6-v2 was trained for), so the score of an intent is a cosine similarity in [-1, 1].
A prototype is the normalized mean of an intent's example embeddings (few-shot) or the embedding of
its description (zero-shot). Below ``oos_threshold`` the answer is the out-of-scope label.

Saved directory (self-contained, safetensors only): the encoder as a plain transformers model
(``AutoModel`` and ``pipeline("feature-extraction")`` load it), its tokenizer (``model_max_length`` =
the length used), and ``intent_prototypes.safetensors`` (one row per intent, in ``id2label`` order).
``config.json`` names :data:`ARCHITECTURE` so that ``finetune evaluate`` routes it to the
``intent_few_shot`` task, and carries ``id2label``, the OOS rule and how the prototypes were made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from finetune.models.registry import check_model_family, resolve_model_path
from finetune.models.text_classifier import (
    DEFAULT_OOS_LABEL,
    OOS_LABEL_KEY,
    OOS_THRESHOLD_KEY,
    TEXT_CLASSIFIER_TYPES,
    TEXT_ENCODER_NEEDS,
    apply_oos,
    load_checked_tokenizer,
)

ARCHITECTURE = "SentenceEncoderIntentClassifier"
PROTOTYPES_FILE = "intent_prototypes.safetensors"
METADATA_KEY = "intent_prototypes"  # config.json: how the prototypes were made (method, shots, seed, ...)


class PrototypeModelError(ValueError):
    """A directory that is not a saved prototype classifier, or one whose files disagree."""


def load_encoder(name_or_path: str, *, revision: str = "main", cache_dir: str | None = None,
                 trust_remote_code: bool = False) -> tuple[PreTrainedModel, Any]:
    """A bare text encoder and its tokenizer (local dir, Hub id or ``offline:all-MiniLM-L6-v2``)."""
    path = resolve_model_path(name_or_path)
    common = {"revision": revision, "cache_dir": cache_dir, "trust_remote_code": trust_remote_code}
    check_model_family(name_or_path, PretrainedConfig.get_config_dict(path, **common)[0], task="intent_few_shot",
                       accepted=TEXT_CLASSIFIER_TYPES, needs=TEXT_ENCODER_NEEDS)
    encoder = AutoModel.from_pretrained(path, use_safetensors=True, **common)
    encoder.eval()
    return encoder, load_checked_tokenizer(path, encoder.config, **common)


def embed_texts(encoder: PreTrainedModel, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 64,
                max_length: int = 128) -> np.ndarray:
    """``(len(texts), hidden)`` float32 array of normalized mean-pooled embeddings, in input order.

    Texts are batched by length (less padding); padding tokens are left out of the mean.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    order = np.argsort([len(text) for text in texts], kind="stable")
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    device = next(encoder.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            encoded = tokenizer([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt").to(device)
            hidden = encoder(**encoded).last_hidden_state
            mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            out[rows] = torch.nn.functional.normalize(pooled.float(), dim=-1).cpu().numpy()
    return out


def prototypes_from(embeddings: np.ndarray, labels: Sequence[str], intents: Sequence[str]) -> np.ndarray:
    """One normalized mean embedding per intent, in ``intents`` order; every intent needs a row."""
    labels = np.asarray(labels)
    missing = [intent for intent in intents if not (labels == intent).any()]
    if missing:
        raise ValueError(f"no examples for intent(s) {missing}: every intent needs at least one")
    means = np.stack([embeddings[labels == intent].mean(axis=0) for intent in intents])
    return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class PrototypeClassifier:
    """An encoder plus one prototype per intent; scores are cosine similarities."""

    encoder: PreTrainedModel
    tokenizer: Any
    intents: list[str]
    prototypes: np.ndarray  # (len(intents), hidden), rows normalized
    max_length: int = 128
    oos_threshold: float | None = None
    oos_label: str = DEFAULT_OOS_LABEL
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.prototypes.shape != (len(self.intents), self.encoder.config.hidden_size):
            raise PrototypeModelError(f"{self.prototypes.shape[0]} prototypes of width {self.prototypes.shape[-1]} "
                                      f"for {len(self.intents)} intents and a {self.encoder.config.hidden_size}-wide "
                                      "encoder")

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return embed_texts(self.encoder, self.tokenizer, texts, batch_size=batch_size, max_length=self.max_length)

    def classify(self, embeddings: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Nearest intent and its cosine similarity for each embedding (no OOS rule applied)."""
        similarities = embeddings @ self.prototypes.T
        best = similarities.argmax(axis=1)
        return [self.intents[int(i)] for i in best], similarities[np.arange(len(best)), best]

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[str]:
        """Intents for raw queries, with ``oos_label`` below the threshold."""
        labels, similarities = self.classify(self.embed(texts, batch_size))
        return apply_oos(labels, similarities, self.oos_threshold, self.oos_label)

    def save(self, output_dir: str | Path) -> Path:
        output_dir = Path(output_dir)
        self.encoder.save_pretrained(output_dir)  # safetensors: the only format transformers 5 writes
        self.tokenizer.model_max_length = self.max_length  # feature-extraction pipelines truncate the same way
        self.tokenizer.save_pretrained(output_dir)
        save_file({"prototypes": np.ascontiguousarray(self.prototypes, dtype=np.float32)},
                  str(output_dir / PROTOTYPES_FILE))
        config = json.loads((output_dir / "config.json").read_text(encoding="utf-8"))
        config.update({
            "architectures": [ARCHITECTURE],
            "id2label": {str(i): intent for i, intent in enumerate(self.intents)},
            "label2id": {intent: i for i, intent in enumerate(self.intents)},
            OOS_THRESHOLD_KEY: self.oos_threshold,
            OOS_LABEL_KEY: self.oos_label,
            METADATA_KEY: {"pooling": "mean", "normalize": True, "max_length": self.max_length, **self.metadata},
        })
        (output_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n",
                                                encoding="utf-8")
        return output_dir

    @classmethod
    def load(cls, model_dir: str | Path, *, trust_remote_code: bool = False) -> PrototypeClassifier:
        model_dir = Path(model_dir)
        config_path = model_dir / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        if ARCHITECTURE not in (config.get("architectures") or []):
            raise PrototypeModelError(f"{model_dir}: not a saved {ARCHITECTURE} (config.json architectures: "
                                      f"{config.get('architectures')})")
        if not (model_dir / PROTOTYPES_FILE).is_file():
            raise PrototypeModelError(f"{model_dir}: {PROTOTYPES_FILE} is missing")
        id2label = {int(k): v for k, v in config["id2label"].items()}
        encoder_config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        encoder = AutoModel.from_pretrained(model_dir, config=encoder_config, use_safetensors=True,
                                            trust_remote_code=trust_remote_code)
        encoder.eval()
        metadata = dict(config.get(METADATA_KEY) or {})
        return cls(
            encoder=encoder,
            tokenizer=load_checked_tokenizer(str(model_dir), encoder.config, trust_remote_code=trust_remote_code),
            intents=[id2label[i] for i in range(len(id2label))],
            prototypes=load_file(str(model_dir / PROTOTYPES_FILE))["prototypes"],
            max_length=int(metadata.get("max_length", 128)),
            oos_threshold=config.get(OOS_THRESHOLD_KEY),
            oos_label=config.get(OOS_LABEL_KEY) or DEFAULT_OOS_LABEL,
            metadata=metadata,
        )
