"""What every Whisper (encoder-decoder) recipe shares: data preparation, the Seq2SeqTrainer with its
collator and WER metrics, generation-based scoring and the result payload.

Used by the fine-tuning recipe (asr_seq2seq) and the distillation recipe (asr_distill), which differ only
in how the model is built and which loss trains it; tasks never import each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from finetune.config import DataArguments, ModelArguments
from finetune.data.collators import IGNORE_INDEX, SpeechSeq2SeqCollator
from finetune.data.report import BadRow, DataReport, write_reports
from finetune.data.speech import load_speech_split
from finetune.data.text import scoring_normalizer
from finetune.metrics import asr_metrics
from finetune.models.whisper import context_seconds, load_whisper
from finetune.recipe import (
    ASR_TRAINER_DEFAULTS,
    asr_results_payload,
    predict_in_order,
    strip_prefix,
    trainer_callbacks,
    utterance_rows,
    write_eval_outputs,
)
from finetune.trainers import finetune_trainer

# Trainer defaults that differ from transformers' own, for every Whisper recipe
WHISPER_DEFAULTS: dict[str, Any] = {**ASR_TRAINER_DEFAULTS, "predict_with_generate": True}


def evaluate_saved(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 8) -> dict[str, Any]:
    """Score a saved (or imported) model on one split; writes eval_results.json + predictions.jsonl."""
    model, processor = load_whisper(ModelArguments(model_name_or_path=model_dir))
    data_args.max_duration_in_seconds = min(data_args.max_duration_in_seconds, float(context_seconds(processor)))
    split = data_args.eval_split_name or "test"
    dataset, report = prepare_split(data_args, processor, split, model.config.max_target_positions,
                               data_args.dataset_name, data_args.max_eval_samples)
    args = Seq2SeqTrainingArguments(
        output_dir=output_dir, per_device_eval_batch_size=batch_size, **{k: v for k, v in WHISPER_DEFAULTS.items()
                                                                          if k != "save_total_limit"}
    )
    metrics = evaluate_generation(whisper_trainer(model, processor, args, None, dataset), dataset, processor, "eval")
    predictions = metrics.pop("predictions")
    payload = results_payload(metrics, model_dir, data_args, report, split=split)
    write_eval_outputs(output_dir, payload, predictions)
    if report:
        write_reports([report], output_dir)
    return payload



def prepare_split(data_args: DataArguments, processor, split: str, max_label_length: int, source: str,
             max_samples: int | None, for_training: bool = False):
    """Decode + validate a split, then tokenize transcripts and reject those the decoder cannot hold."""
    dataset, report = load_speech_split(
        data_args, split, sampling_rate=processor.feature_extractor.sampling_rate, source=source,
        max_samples=max_samples, materialize=not for_training,
    )
    tokenizer = processor.tokenizer

    def tokenize(texts: list[str]) -> dict[str, list]:
        # Whisper was pretrained on text that starts with a space after the prefix tokens
        return {"labels": tokenizer([" " + t.lstrip() for t in texts]).input_ids}

    if report is None:  # streaming: tokenize and drop over-long labels lazily
        dataset = dataset.map(tokenize, batched=True, input_columns=["text"])
        return dataset.filter(lambda labels: len(labels) <= max_label_length, input_columns=["labels"]), None
    dataset = dataset.map(tokenize, batched=True, input_columns=["text"], desc="tokenizing transcripts")
    lengths = [len(labels) for labels in dataset["labels"]]
    too_long = [i for i, n in enumerate(lengths) if n > max_label_length]
    if too_long:
        sources = dataset["source_file"]
        extra = DataReport(dataset=report.dataset, split=split, total=report.total, bad=[
            BadRow(row=i, source=sources[i],
                   reason=f"transcript too long ({lengths[i]} tokens > {max_label_length} decoder positions)")
            for i in too_long
        ])
        report.bad.extend(extra.bad)
        extra.enforce(data_args.on_bad_rows)
        keep = sorted(set(range(len(lengths))) - set(too_long))
        dataset = dataset.select(keep)
    return dataset, report



def whisper_trainer(model, processor, args: Seq2SeqTrainingArguments, train_set, eval_set,
             max_batch_seconds: float | None = None) -> Seq2SeqTrainer:
    tokenizer = processor.tokenizer
    normalizer = scoring_normalizer("en")

    def compute_metrics(prediction) -> dict[str, float]:
        predictions, references = decode_ids(prediction.predictions, prediction.label_ids, tokenizer)
        return asr_metrics(predictions, references, normalizer)

    return finetune_trainer(
        Seq2SeqTrainer,
        max_batch_seconds=max_batch_seconds,
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=SpeechSeq2SeqCollator(processor, model.config.decoder_start_token_id),
        processing_class=processor,
        compute_metrics=compute_metrics,
        callbacks=trainer_callbacks(),
    )



def decode_ids(prediction_ids: np.ndarray, label_ids: np.ndarray, tokenizer) -> tuple[list[str], list[str]]:
    pad = tokenizer.pad_token_id
    prediction_ids = np.where(prediction_ids == IGNORE_INDEX, pad, prediction_ids)
    label_ids = np.where(label_ids == IGNORE_INDEX, pad, label_ids)
    predictions = [t.strip() for t in tokenizer.batch_decode(prediction_ids, skip_special_tokens=True)]
    references = [t.strip() for t in tokenizer.batch_decode(label_ids, skip_special_tokens=True)]
    return predictions, references



def evaluate_generation(trainer: Seq2SeqTrainer, dataset, processor, prefix: str) -> dict[str, Any]:
    """Generate over ``dataset`` once: corpus metrics plus one row per utterance."""
    output, elapsed = predict_in_order(trainer, dataset, prefix)
    predictions, references = decode_ids(output.predictions, output.label_ids, processor.tokenizer)
    normalizer = scoring_normalizer("en")
    sources = dataset["source_file"]
    rows = utterance_rows(sources, references, predictions, normalizer)
    metrics = strip_prefix(output.metrics, prefix)
    metrics.update(num_samples=len(rows), runtime_s=round(elapsed, 3),
                   seconds_per_sample=round(elapsed / max(len(rows), 1), 4), predictions=rows)
    return metrics


def results_payload(metrics: dict[str, Any], model: str, data_args: DataArguments, report: DataReport | None,
                    split: str | None = None, task: str = "asr_seq2seq") -> dict[str, Any]:
    return asr_results_payload(task, metrics, model, data_args, report, split)
