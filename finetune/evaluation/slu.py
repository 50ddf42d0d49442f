"""Score the spoken-command cascade on audio with gold transcripts and gold intents.

Four numbers tell where the errors come from:

- WER of the recognizer (normalized and raw, as for every ASR result);
- intent accuracy from the recognizer's transcripts (what a user gets);
- intent accuracy from the gold text (the intent model alone, with perfect recognition);
- their gap: the accuracy lost to recognition errors (error propagation).

The data is any audio source ``finetune`` reads (audiofolder, manifest, Hub dataset) with a transcript
column and an intent column, e.g. the spoken SNIPS set written by ``scripts/make_spoken_snips.py``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from finetune.config import DataArguments
from finetune.data.report import write_reports
from finetune.data.speech import load_speech_split
from finetune.data.text import scoring_normalizer
from finetune.evaluation.metrics import asr_metrics, classification_metrics, utterance_wer
from finetune.evaluation.plots import plot_confusion_matrix
from finetune.inference.slu import SpokenCommandPipeline
from finetune.outputs import CONFUSION_MATRIX_GOLD_TEXT, CONFUSION_MATRIX_TRANSCRIPTS, write_eval_outputs

logger = logging.getLogger(__name__)

TASK = "slu"


def evaluate_slu(
    slu: SpokenCommandPipeline, data_args: DataArguments, output_dir: str | Path, *, asr_name: str = "",
    intent_name: str = "", unseen_intents: str = "error",
) -> dict[str, Any]:
    """Run the cascade over ``data_args``' eval split; write eval_results.json, predictions.jsonl,
    data_report.json and two confusion matrices (from transcripts, from gold text) to ``output_dir``."""
    split = data_args.eval_split_name or "test"
    if slu.max_seconds is not None:  # longer clips are bad rows, reported, not a crash mid-run
        data_args.max_duration_in_seconds = min(data_args.max_duration_in_seconds, slu.max_seconds)
    dataset, report = load_speech_split(data_args, split, sampling_rate=slu.sampling_rate, needs_text=True,
                                        needs_label=True, max_samples=data_args.max_eval_samples)
    known = slu.classifier.model.config.label2id
    labels = list(dataset["label"])
    unseen = sorted(set(labels) - set(known) - {slu.oos_label})  # gold 'oos' rows are out-of-scope queries
    gold_intents = [label if label in known else slu.oos_label for label in labels]
    if unseen and unseen_intents == "error":
        raise ValueError(f"{data_args.dataset_name} [{split}]: intent(s) the intent model was never trained on: "
                         f"{', '.join(unseen)} (unseen_intents='oos', or --unseen-intents oos, scores them as "
                         "out-of-scope)")
    gold_texts = list(dataset["text"])

    started = time.perf_counter()
    transcripts = slu.transcribe(list(dataset["audio"]))
    asr_seconds = time.perf_counter() - started
    started = time.perf_counter()
    from_transcripts = slu.classify(transcripts)
    intent_seconds = time.perf_counter() - started
    from_text = slu.classify(gold_texts)

    normalizer = scoring_normalizer(data_args.language or slu.language)
    asr = asr_metrics(transcripts, gold_texts, normalizer)
    rows = [
        {"source_file": Path(src).name if src else "", "reference": ref, "transcript": hyp,
         "wer": utterance_wer(hyp, ref, normalizer), "gold_intent": gold,
         "intent_from_transcript": spoken["top_intent"], "confidence": spoken["confidence"],
         "intent_from_gold_text": written["top_intent"]}
        for src, ref, hyp, gold, spoken, written in zip(dataset["source_file"], gold_texts, transcripts,
                                                        gold_intents, from_transcripts, from_text)
    ]
    spoken_scores = classification_metrics([r["top_intent"] for r in from_transcripts], gold_intents)
    written_scores = classification_metrics([r["top_intent"] for r in from_text], gold_intents)
    payload: dict[str, Any] = {
        "task": TASK,
        "asr_model": asr_name,
        "intent_model": intent_name,
        "dataset": data_args.dataset_name,
        "split": split,
        "num_samples": len(rows),
        "asr": {**asr, "exact_share": sum(r["wer"] == 0 for r in rows) / len(rows)},
        "intent_from_transcripts": spoken_scores,
        "intent_from_gold_text": written_scores,
        "error_propagation": {
            "accuracy_gap": written_scores["accuracy"] - spoken_scores["accuracy"],
            "f1_macro_gap": written_scores["f1_macro"] - spoken_scores["f1_macro"],
        },
        "runtime_s": {"asr": round(asr_seconds, 2), "intent": round(intent_seconds, 2),
                      "asr_seconds_per_sample": round(asr_seconds / len(rows), 4)},
        "skipped_rows": len(report.bad) if report is not None else 0,
        "asr_generate_kwargs": dict(slu.generate_kwargs),
    }
    if slu.oos_threshold is not None:
        payload["oos"] = _oos_block(slu, from_transcripts, from_text, gold_intents)

    output_dir = Path(output_dir)
    write_eval_outputs(output_dir, payload, rows)
    if report is not None:
        write_reports([report], output_dir)
    plot_confusion_matrix([r["intent_from_transcript"] for r in rows], gold_intents,
                          output_dir / CONFUSION_MATRIX_TRANSCRIPTS, title="Intents from transcripts")
    plot_confusion_matrix([r["intent_from_gold_text"] for r in rows], gold_intents,
                          output_dir / CONFUSION_MATRIX_GOLD_TEXT, title="Intents from gold text")
    logger.info("WER %.2f%%; intent accuracy %.2f%% from transcripts, %.2f%% from gold text (gap %.2f points)",
                100 * asr["wer"], 100 * spoken_scores["accuracy"], 100 * written_scores["accuracy"],
                100 * payload["error_propagation"]["accuracy_gap"])
    return payload


def _oos_block(slu: SpokenCommandPipeline, spoken: list[dict], written: list[dict], gold: list[str]) -> dict:
    """The same figures with the intent model's out-of-scope rule applied (rejections count as answers)."""
    spoken_accuracy = classification_metrics([r["intent"] for r in spoken], gold)["accuracy"]
    written_accuracy = classification_metrics([r["intent"] for r in written], gold)["accuracy"]
    return {
        "threshold": slu.oos_threshold,
        "label": slu.oos_label,
        "rejected_share_transcripts": sum(r["intent"] == slu.oos_label for r in spoken) / len(spoken),
        "rejected_share_gold_text": sum(r["intent"] == slu.oos_label for r in written) / len(written),
        "accuracy_from_transcripts": spoken_accuracy,
        "accuracy_from_gold_text": written_accuracy,
        "accuracy_gap": written_accuracy - spoken_accuracy,
    }


def run_slu_evaluation(asr_model: str, intent_model: str, data_args: DataArguments, output_dir: str | Path, *,
                       batch_size: int = 8, unseen_intents: str = "error", num_beams: int | None = 1
                       ) -> dict[str, Any]:
    """What ``finetune slu-evaluate`` does: build the cascade from two model dirs and score it."""
    slu = SpokenCommandPipeline.from_pretrained(asr_model, intent_model, batch_size=batch_size, num_beams=num_beams)
    return evaluate_slu(slu, data_args, output_dir, asr_name=asr_model, intent_name=intent_model,
                        unseen_intents=unseen_intents)


def headline(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without per-intent tables, for printing."""
    return {key: ({k: v for k, v in value.items() if k != "per_class"} if isinstance(value, dict) else value)
            for key, value in payload.items()}
