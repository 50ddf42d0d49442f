"""Scores for every task: WER/CER (raw and normalized) for ASR; accuracy and macro-F1 for classes.

WER is computed with jiwer, the library behind ``evaluate.load("wer")``, called directly so that
scoring works offline (``evaluate.load`` fetches its metric scripts from the Hub).
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

from finetune.data.text import Normalizer, scoring_normalizer


def error_rates(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER over the pairs (errors summed over all words / characters, not averaged)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("no utterances to score")
    refs = [r if r.strip() else "" for r in references]
    hyps = [h if h.strip() else "" for h in predictions]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return {"wer": _rate(words), "cer": _rate(chars)}


def _rate(output: jiwer.WordOutput | jiwer.CharacterOutput) -> float:
    errors = output.substitutions + output.deletions + output.insertions
    reference_length = output.substitutions + output.deletions + output.hits
    if reference_length == 0:
        return 0.0 if errors == 0 else float(errors)
    return errors / reference_length


def asr_metrics(
    predictions: Sequence[str], references: Sequence[str], normalizer: Normalizer | None = None
) -> dict[str, float]:
    """``wer``/``cer`` after normalization (the headline figures) and ``wer_raw``/``cer_raw`` as written."""
    normalize = normalizer or scoring_normalizer("en")
    raw = error_rates(predictions, references)
    normalized = error_rates([normalize(p) for p in predictions], [normalize(r) for r in references])
    return {
        "wer": normalized["wer"],
        "cer": normalized["cer"],
        "wer_raw": raw["wer"],
        "cer_raw": raw["cer"],
    }


def utterance_wer(prediction: str, reference: str, normalizer: Normalizer | None = None) -> float:
    """WER of one utterance after normalization, for the per-utterance predictions file."""
    normalize = normalizer or scoring_normalizer("en")
    return error_rates([normalize(prediction)], [normalize(reference)])["wer"]


def classification_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support over the classes seen in either."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("no examples to score")
    labels = sorted(set(references) | set(predictions))
    precision, recall, f1, support = precision_recall_fscore_support(
        references, predictions, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(references, predictions)),
        "f1_macro": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }
