"""Tiny random text encoders for the intent tests: a word-level BERT tokenizer and a 1-layer, 32-wide BERT."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# three intents a tiny model can learn from keywords in a few steps
QUERIES = {
    "PlayMusic": ["play some {} music", "put on {} songs", "play the {} playlist", "i want to hear {} music"],
    "GetWeather": ["what is the weather in {}", "will it rain in {}", "weather forecast for {}", "is it sunny in {}"],
    "BookRestaurant": ["book a table in {}", "reserve a restaurant in {}", "book dinner for two in {}",
                       "find me a table at a {} restaurant"],
}
FILLERS = ["jazz", "paris", "rock", "london", "tokyo", "blues", "berlin", "pop"]


def intent_rows(per_template: int, offset: int = 0) -> list[dict[str, str]]:
    """Queries with their intents; ``offset`` picks other fillers, so test rows differ from training rows."""
    rows = []
    for intent, templates in QUERIES.items():
        for template in templates:
            for k in range(per_template):
                rows.append({"text": template.format(FILLERS[(k + offset) % len(FILLERS)]), "intent": intent})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _vocabulary() -> dict[str, int]:
    words = sorted({w for templates in QUERIES.values() for t in templates for w in t.replace("{}", "").split()}
                   | set(FILLERS) | {"the", "a", "in", "please"})
    return {token: i for i, token in enumerate(SPECIAL_TOKENS + words)}


def build_tiny_bert(target: Path, *, labels: list[str] | None = None) -> Path:
    """Save a random 1-layer BERT with a word-level tokenizer: a bare encoder (``BertModel``, as a
    pretrained checkpoint is shipped) or, with ``labels``, a classifier as the intent recipe saves one."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

    vocab = _vocabulary()
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)
    torch.manual_seed(0)
    if labels:
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    model.save_pretrained(target)
    BertTokenizer(vocab=vocab, model_max_length=64).save_pretrained(target)
    return target
