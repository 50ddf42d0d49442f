"""Turning CTC frame scores into text: greedy (always), beam search with an optional word n-gram LM.

Greedy is argmax per frame, merge repeats, drop blanks: what ``pipeline()`` does with a saved model.
Beam search and LM fusion come from pyctcdecode (and KenLM for the LM), used only when installed:
``pip install pyctcdecode kenlm`` (pyctcdecode 0.5 pins numpy<2 but runs on numpy 2; install it
with ``--no-deps`` plus ``pygtrie`` on a numpy-2 environment). An n-gram LM can be built from the
training transcripts here (:func:`write_arpa`), so no external LM toolkit is needed.
"""

from __future__ import annotations

import importlib.util
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from finetune.config import check_choices

BOS, EOS, UNK_WORD = "<s>", "</s>", "<unk>"


@dataclass
class CTCDecodingArguments:
    """How evaluation turns frame scores into text."""

    decoding: Literal["greedy", "beam"] = field(
        default="greedy", metadata={"help": "greedy, or beam (needs pyctcdecode)."}
    )
    beam_width: int = field(default=32, metadata={"help": "Beams kept by beam search."})
    lm_path: str | None = field(
        default=None, metadata={"help": "Word n-gram LM (ARPA or KenLM binary) fused into beam search (needs kenlm)."}
    )
    lm_order: int | None = field(
        default=None,
        metadata={"help": "Build a word n-gram LM of this order from the training transcripts (saved as "
                          "language_model.arpa in output_dir) and fuse it into beam search."},
    )
    lm_alpha: float = field(default=0.5, metadata={"help": "LM weight in beam search."})
    lm_beta: float = field(default=1.0, metadata={"help": "Word insertion bonus in beam search."})

    def __post_init__(self) -> None:
        check_choices(self)
        if (self.lm_path or self.lm_order) and self.decoding != "beam":
            raise ValueError("an LM (lm_path / lm_order) is used by beam search only: set decoding: beam")
        if self.lm_path and self.lm_order:
            raise ValueError("give either lm_path (an existing LM) or lm_order (build one), not both")
        if self.lm_order is not None and not 2 <= self.lm_order <= 6:
            raise ValueError(f"lm_order must be 2..6 (KenLM reads bigrams and up), got {self.lm_order}")

    @property
    def uses_lm(self) -> bool:
        return bool(self.lm_path or self.lm_order)


def missing_beam_search_packages(with_lm: bool) -> list[str]:
    """The packages beam search (with an LM: also KenLM) still needs; empty when it can run."""
    needed = ["pyctcdecode"] + (["kenlm"] if with_lm else [])
    return [name for name in needed if importlib.util.find_spec(name) is None]


def greedy_ids(logits: np.ndarray) -> np.ndarray:
    """(batch, frames, vocab) scores -> (batch, frames) best ids; the tokenizer merges and drops blanks."""
    return np.argmax(logits, axis=-1)


def decoder_labels(vocab: dict[str, int], pad: str, unk: str, delimiter: str) -> list[str]:
    """pyctcdecode's label list, in id order: blank is "", the word delimiter a space, unknown ``⁇``."""
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise ValueError("the CTC vocabulary ids are not 0..N-1")
    special = {pad: "", delimiter: " ", unk: "⁇"}
    return [special.get(token, token) for token, _ in by_id]


class BeamSearchDecoder:
    """pyctcdecode's beam search over per-utterance log-probabilities, with an optional KenLM model."""

    def __init__(self, labels: list[str], *, lm_path: str | None, alpha: float, beta: float, beam_width: int):
        missing = missing_beam_search_packages(with_lm=lm_path is not None)
        if missing:
            raise RuntimeError(f"beam search needs {' and '.join(missing)}: pip install {' '.join(missing)}")
        from pyctcdecode import build_ctcdecoder

        if lm_path is not None and not Path(lm_path).is_file():
            raise FileNotFoundError(f"language model not found: {lm_path}")
        self.beam_width = beam_width
        self.decoder = build_ctcdecoder(labels, kenlm_model_path=lm_path, alpha=alpha, beta=beta)

    def decode(self, log_probs: Sequence[np.ndarray]) -> list[str]:
        """``log_probs``: one (frames, vocab) array an utterance, cut to its real length."""
        return [self.decoder.decode(np.asarray(x, dtype=np.float32), beam_width=self.beam_width).strip()
                for x in log_probs]


def write_arpa(sentences: Iterable[str], path: str | Path, order: int = 2, discount: float | None = None) -> Path:
    """A word n-gram LM in ARPA format: absolute discounting with Katz-style backoff.

    Unigrams are add-one smoothed over the seen words plus ``</s>`` and ``<unk>``; each higher order
    keeps ``count - D`` for seen n-grams and gives the rest to the lower order through the backoff
    weight, so every conditional distribution sums to one. Small and exact rather than clever:
    meant for the closed, small vocabularies of command sets and digits; use KenLM's lmplz for more.
    """
    counts: list[Counter] = [Counter() for _ in range(order + 1)]  # counts[n][tuple of n words]
    for sentence in sentences:
        words = [BOS, *sentence.split(), EOS]
        for n in range(1, order + 1):
            for i in range(len(words) - n + 1):
                counts[n][tuple(words[i:i + n])] += 1
    del counts[1][(BOS,)]
    if not counts[1]:
        raise ValueError("no words to build a language model from")
    counts[1][(UNK_WORD,)] += 0
    total = sum(counts[1].values()) + len(counts[1])
    prob: dict[tuple[str, ...], float] = {g: (c + 1) / total for g, c in counts[1].items()}
    backoff: dict[tuple[str, ...], float] = {}

    def lower(word: str, history: tuple[str, ...]) -> float:
        """Backed-off probability of ``word`` after ``history`` from the orders already built."""
        if (*history, word) in prob:
            return prob[(*history, word)]
        if not history:
            return prob[(UNK_WORD,)]
        return backoff.get(history, 1.0) * lower(word, history[1:])

    for n in range(2, order + 1):
        grams = counts[n]
        d = discount if discount is not None else _ney_discount(grams)
        followers: dict[tuple[str, ...], list[tuple[str, int]]] = defaultdict(list)
        for gram, c in grams.items():
            followers[gram[:-1]].append((gram[-1], c))
        new_prob = {}
        for history, seen in followers.items():
            history_count = sum(c for _, c in seen)
            for word, c in seen:
                new_prob[(*history, word)] = (c - d) / history_count
            left = d * len(seen) / history_count
            covered = sum(lower(word, history[1:]) for word, _ in seen)
            backoff[history] = left / max(1.0 - covered, 1e-9)
        prob.update(new_prob)
    return _write(path, prob, backoff, order)


def _ney_discount(grams: Counter) -> float:
    ones = sum(1 for c in grams.values() if c == 1)
    twos = sum(1 for c in grams.values() if c == 2)
    estimate = ones / (ones + 2 * twos) if ones + twos else 0.5
    return min(max(estimate, 0.1), 0.9)


def _write(path: str | Path, prob: dict, backoff: dict, order: int) -> Path:
    by_order: list[list[tuple[str, ...]]] = [[] for _ in range(order + 1)]
    for gram in prob:
        by_order[len(gram)].append(gram)
    by_order[1].append((BOS,))  # a history only: never predicted
    lines = ["", "\\data\\"] + [f"ngram {n}={len(by_order[n])}" for n in range(1, order + 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        for gram in sorted(by_order[n]):
            logp = -99.0 if gram == (BOS,) else math.log10(prob[gram])
            line = f"{logp:.6f}\t{' '.join(gram)}"
            if n < order and gram in backoff:
                line += f"\t{math.log10(backoff[gram]):.6f}"
            lines.append(line)
    lines += ["", "\\end\\", ""]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
