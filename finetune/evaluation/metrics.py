"""Scores for every task: WER/CER (raw and normalized) for ASR; accuracy and macro-F1 for classes.

WER is computed with jiwer, the library behind ``evaluate.load("wer")``, called directly so that
scoring works offline (``evaluate.load`` fetches its metric scripts from the Hub).
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

from finetune.data.text import Normalizer, scoring_normalizer


def error_rates(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER over the pairs (errors summed over all words / characters, not averaged), with
    the counts they are rates of: ``num_reference_words`` and ``num_reference_chars``.

    A rate over zero reference words is undefined, not 0%: when every reference is empty this raises
    ValueError (a reference that is empty among others is fine: its hypothesis words count as insertions).
    """
    return _error_rates(predictions, references)


def _error_rates(predictions: Sequence[str], references: Sequence[str], empty_after: str = "") -> dict[str, float]:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("no utterances to score")
    refs = [r if r.strip() else "" for r in references]
    hyps = [h if h.strip() else "" for h in predictions]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    num_words, num_chars = _reference_length(words), _reference_length(chars)
    if num_words == 0 or num_chars == 0:
        raise ValueError(f"no reference words to score: all {len(references)} reference transcript(s) are "
                         f"empty{empty_after}, and an error rate over zero reference words/characters is undefined")
    return {"wer": _errors(words) / num_words, "cer": _errors(chars) / num_chars,
            "num_reference_words": num_words, "num_reference_chars": num_chars}


def _errors(output: jiwer.WordOutput | jiwer.CharacterOutput) -> int:
    return output.substitutions + output.deletions + output.insertions


def _reference_length(output: jiwer.WordOutput | jiwer.CharacterOutput) -> int:
    return output.substitutions + output.deletions + output.hits


def asr_metrics(
    predictions: Sequence[str], references: Sequence[str],
    normalizer: Normalizer | Sequence[Normalizer] | None = None,
) -> dict[str, float]:
    """``wer``/``cer`` after normalization (the headline figures), ``wer_raw``/``cer_raw`` as written, and
    ``num_reference_words``: the normalized reference words ``wer`` is a rate of. ``normalizer`` may be one
    a row (rows in several languages).

    Raises ValueError when there is no reference word to score, as written or after normalization (a
    normalizer drops fillers such as "um" and bracketed tags such as "[noise]").
    """
    normalizers = (list(normalizer) if isinstance(normalizer, Sequence)
                   else [normalizer or scoring_normalizer("en")] * len(predictions))
    raw = error_rates(predictions, references)
    normalized = _error_rates([n(p) for n, p in zip(normalizers, predictions)],
                              [n(r) for n, r in zip(normalizers, references)],
                              empty_after=" after scoring normalization (which removes fillers such as 'um' and "
                                          "tags such as '[noise]')")
    return {
        "wer": normalized["wer"],
        "cer": normalized["cer"],
        "wer_raw": raw["wer"],
        "cer_raw": raw["cer"],
        "num_reference_words": normalized["num_reference_words"],
    }


def utterance_wer(prediction: str, reference: str, normalizer: Normalizer | None = None) -> float:
    """WER of one utterance after normalization, for the per-utterance predictions file.

    A reference with no words (after normalization, e.g. a clip of silence or only "[noise]") has no
    error rate in the usual sense; here it is defined so that one such row does not stop the whole file:
    0.0 when the hypothesis is empty too, else the number of hypothesis words (each one an insertion,
    counted against a reference length of 1), so any output on such a clip is above 0. The corpus figures
    (:func:`asr_metrics`) count those insertions as errors over the words of the other references.
    """
    normalize = normalizer or scoring_normalizer("en")
    hypothesis, target = normalize(prediction), normalize(reference)
    if not target.split():
        return float(len(hypothesis.split()))
    return error_rates([hypothesis], [target])["wer"]


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
