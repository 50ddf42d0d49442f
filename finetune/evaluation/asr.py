"""How every speech recognizer is scored: WER/CER raw and normalized, one row per utterance.

CTC and Whisper recipes, ``finetune evaluate`` and the SLU evaluation all go through here, so the same
transcripts get the same figures whichever path produced them. The normalizer follows the language.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from finetune.data.text import Normalizer, scoring_normalizer
from finetune.evaluation.metrics import asr_metrics, utterance_wer

# the headline figures, in the order reports and cards show them
ASR_METRICS = ("wer", "cer", "wer_raw", "cer_raw")


def score_transcripts(predictions: Sequence[str], references: Sequence[str], sources: Sequence[str | None],
                      normalizer: Normalizer, *, elapsed: float, languages: Sequence[str] | None = None,
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Corpus metrics (with their counts: ``num_samples`` utterances, ``num_reference_words``, and speed)
    and the per-utterance rows for one split. Raises ValueError when no reference has a word to score.

    ``languages`` (one code a row): each row is normalized with its own language's normalizer, and each
    language gets its own ``wer_<code>``/``cer_<code>``/``num_samples_<code>`` beside the corpus figures."""
    if languages is None:
        rows = utterance_rows(sources, references, predictions, normalizer)
        scores = asr_metrics(predictions, references, normalizer)
    else:
        normalizers = [scoring_normalizer(language) for language in languages]
        rows = [{**utterance_rows([src], [ref], [hyp], norm)[0], "language": language}
                for src, ref, hyp, norm, language in zip(sources, references, predictions, normalizers, languages)]
        scores = {**asr_metrics(predictions, references, normalizers), **per_language(predictions, references,
                                                                                       languages)}
    metrics = {"num_samples": len(rows), **scores,
               "runtime_s": round(elapsed, 3), "seconds_per_sample": round(elapsed / max(len(rows), 1), 4)}
    return metrics, rows


def per_language(predictions: Sequence[str], references: Sequence[str], languages: Sequence[str]) -> dict[str, Any]:
    """``wer_<code>``, ``cer_<code>``, ``num_samples_<code>`` of each language's rows, scored with its normalizer."""
    found: dict[str, Any] = {}
    for language in sorted(set(languages)):
        rows = [i for i, row_language in enumerate(languages) if row_language == language]
        scores = asr_metrics([predictions[i] for i in rows], [references[i] for i in rows],
                             scoring_normalizer(language))
        found.update({f"wer_{language}": scores["wer"], f"cer_{language}": scores["cer"],
                      f"num_samples_{language}": len(rows)})
    return found


def transcript_metrics(decode: Callable[..., tuple[list[str], list[str]]], tokenizer: Any,
                       normalizer: Normalizer) -> Callable[[Any], dict[str, float]]:
    """A Trainer ``compute_metrics``: ``decode(prediction ids, label ids, tokenizer)`` gives the texts
    (each model family decodes its own way), scored as every transcript is."""

    def compute_metrics(prediction: Any) -> dict[str, float]:
        predictions, references = decode(prediction.predictions, prediction.label_ids, tokenizer)
        return asr_metrics(predictions, references, normalizer)

    return compute_metrics


def asr_headline(metrics: dict[str, Any]) -> str:
    words = f" ({metrics['num_reference_words']} reference words)" if "num_reference_words" in metrics else ""
    return (f"WER {metrics['wer']:.2%} (raw {metrics['wer_raw']:.2%}), CER {metrics['cer']:.2%} "
            f"on {metrics['num_samples']} utterances{words}")


def utterance_rows(sources: Sequence[str | None], references: Sequence[str], predictions: Sequence[str],
                   normalizer: Normalizer) -> list[dict[str, Any]]:
    """predictions.jsonl rows: file, reference, prediction and that utterance's WER."""
    return [
        {"source_file": Path(src).name if src else "", "reference": ref, "prediction": hyp,
         "wer": utterance_wer(hyp, ref, normalizer)}
        for src, ref, hyp in zip(sources, references, predictions)
    ]
