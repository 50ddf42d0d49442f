"""Recipe: fine-tune an encoder-decoder speech recognizer (Whisper) with Seq2SeqTrainer.

setup (model, processor, data) -> optional zero-shot evaluation -> train -> save -> evaluate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, set_seed

from finetune.config import DataArguments, ModelArguments, RunArguments
from finetune.data.collators import IGNORE_INDEX, SpeechSeq2SeqCollator
from finetune.data.report import BadRow, DataReport, write_reports
from finetune.data.speech import load_speech_split
from finetune.data.text import scoring_normalizer
from finetune.metrics import asr_metrics, utterance_wer
from finetune.models.lora import ADAPTER_DIR, LoraArguments, apply_lora, merge_lora
from finetune.models.whisper import (
    WhisperArguments,
    configure_generation,
    context_seconds,
    freeze_for_finetuning,
    load_whisper,
    set_encoder_context,
)
from finetune.recipe import (
    checkpoint_to_resume,
    predict_in_order,
    save_trained,
    strip_prefix,
    trainer_callbacks,
    write_eval_outputs,
)
from finetune.trainers import finetune_trainer

logger = logging.getLogger(__name__)

NAME = "asr_seq2seq"
ARCHITECTURES = {"WhisperForConditionalGeneration"}
DEFAULTS: dict[str, Any] = {
    "predict_with_generate": True,
    "remove_unused_columns": False,  # the collator needs the raw audio column
    "label_names": ["labels"],
    "metric_for_best_model": "wer",
    "greater_is_better": False,
    "length_column_name": "duration",
    "report_to": "none",
    "save_total_limit": 2,
}


def argument_classes() -> tuple[type, ...]:
    return (RunArguments, ModelArguments, DataArguments, WhisperArguments, LoraArguments, Seq2SeqTrainingArguments)


def train(
    run: RunArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    whisper_args: WhisperArguments,
    lora_args: LoraArguments,
    training_args: Seq2SeqTrainingArguments,
) -> dict[str, Any]:
    """Fine-tune and evaluate; returns the final (and zero-shot, if asked) metrics."""
    set_seed(training_args.seed)
    logger.info("training on %s, world size %d", training_args.device, training_args.world_size)
    resume_from = checkpoint_to_resume(training_args.output_dir, run.resume)
    with training_args.main_process_first(desc="loading model"):
        model, processor = load_whisper(model_args)
    configure_generation(model, processor, language=whisper_args.language, task=whisper_args.whisper_task)
    if data_args.max_duration_in_seconds > whisper_args.encoder_context_seconds:
        logger.info("clips longer than encoder_context_seconds=%d are bad rows", whisper_args.encoder_context_seconds)
        data_args.max_duration_in_seconds = float(whisper_args.encoder_context_seconds)

    max_label_length = whisper_args.max_label_length or model.config.max_target_positions
    with training_args.main_process_first(desc="preparing data"):
        train_set, train_report = _prepare(data_args, processor, data_args.train_split_name, max_label_length,
                                           data_args.dataset_name, data_args.max_train_samples, for_training=True)
        eval_set, eval_report = None, None
        if data_args.eval_split_name:
            eval_set, eval_report = _prepare(data_args, processor, data_args.eval_split_name, max_label_length,
                                             data_args.eval_dataset_name or data_args.dataset_name,
                                             data_args.max_eval_samples)
    if training_args.should_save:
        write_reports([r for r in (train_report, eval_report) if r], training_args.output_dir)

    results: dict[str, Any] = {}
    if run.evaluate_before_training and eval_set is not None and resume_from is None:
        zero_shot_trainer = _trainer(model, processor, training_args, None, eval_set)
        results["zero_shot"] = _evaluate(zero_shot_trainer, eval_set, processor, "zero_shot")
        logger.info("zero-shot: %s", _headline(results["zero_shot"]))

    set_encoder_context(model, processor, whisper_args.encoder_context_seconds)
    freeze_for_finetuning(model, freeze_encoder=whisper_args.freeze_encoder)
    model = apply_lora(model, lora_args)
    trainer = _trainer(model, processor, training_args, train_set, eval_set, data_args.max_batch_seconds)
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    if lora_args.lora_r:  # save and evaluate a plain model: adapters merged into the weights
        adapter_dir = Path(training_args.output_dir) / ADAPTER_DIR if trainer.is_world_process_zero() else None
        trainer.model = trainer.model_wrapped = merge_lora(trainer.model, adapter_dir)
    save_trained(trainer, training_args, metric="wer")
    results["train"] = train_output.metrics

    if eval_set is not None:
        results["eval"] = _evaluate(trainer, eval_set, processor, "eval")
        logger.info("fine-tuned: %s", _headline(results["eval"]))
        if trainer.is_world_process_zero():
            payload = _results_payload(results["eval"], model_args.model_name_or_path, data_args, eval_report)
            if "zero_shot" in results:
                payload["zero_shot"] = {k: results["zero_shot"][k] for k in ("wer", "cer", "wer_raw", "cer_raw")}
            write_eval_outputs(training_args.output_dir, payload, results["eval"].pop("predictions"))
    return results


def evaluate(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 8) -> dict[str, Any]:
    """Score a saved (or imported) model on one split; writes eval_results.json + predictions.jsonl."""
    model, processor = load_whisper(ModelArguments(model_name_or_path=model_dir))
    data_args.max_duration_in_seconds = min(data_args.max_duration_in_seconds, float(context_seconds(processor)))
    split = data_args.eval_split_name or "test"
    dataset, report = _prepare(data_args, processor, split, model.config.max_target_positions,
                               data_args.dataset_name, data_args.max_eval_samples)
    args = Seq2SeqTrainingArguments(
        output_dir=output_dir, per_device_eval_batch_size=batch_size, **{k: v for k, v in DEFAULTS.items()
                                                                          if k != "save_total_limit"}
    )
    metrics = _evaluate(_trainer(model, processor, args, None, dataset), dataset, processor, "eval")
    predictions = metrics.pop("predictions")
    payload = _results_payload(metrics, model_dir, data_args, report, split=split)
    write_eval_outputs(output_dir, payload, predictions)
    if report:
        write_reports([report], output_dir)
    return payload


def _prepare(data_args: DataArguments, processor, split: str, max_label_length: int, source: str,
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


def _trainer(model, processor, args: Seq2SeqTrainingArguments, train_set, eval_set,
             max_batch_seconds: float | None = None) -> Seq2SeqTrainer:
    tokenizer = processor.tokenizer
    normalizer = scoring_normalizer("en")

    def compute_metrics(prediction) -> dict[str, float]:
        predictions, references = _decode(prediction.predictions, prediction.label_ids, tokenizer)
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


def _decode(prediction_ids: np.ndarray, label_ids: np.ndarray, tokenizer) -> tuple[list[str], list[str]]:
    pad = tokenizer.pad_token_id
    prediction_ids = np.where(prediction_ids == IGNORE_INDEX, pad, prediction_ids)
    label_ids = np.where(label_ids == IGNORE_INDEX, pad, label_ids)
    predictions = [t.strip() for t in tokenizer.batch_decode(prediction_ids, skip_special_tokens=True)]
    references = [t.strip() for t in tokenizer.batch_decode(label_ids, skip_special_tokens=True)]
    return predictions, references


def _evaluate(trainer: Seq2SeqTrainer, dataset, processor, prefix: str) -> dict[str, Any]:
    """Generate over ``dataset`` once: corpus metrics plus one row per utterance."""
    output, elapsed = predict_in_order(trainer, dataset, prefix)
    predictions, references = _decode(output.predictions, output.label_ids, processor.tokenizer)
    normalizer = scoring_normalizer("en")
    sources = dataset["source_file"]
    rows = [
        {"source_file": Path(src).name if src else "", "reference": ref, "prediction": hyp,
         "wer": utterance_wer(hyp, ref, normalizer)}
        for src, ref, hyp in zip(sources, references, predictions)
    ]
    metrics = strip_prefix(output.metrics, prefix)
    metrics.update(num_samples=len(rows), runtime_s=round(elapsed, 3),
                   seconds_per_sample=round(elapsed / max(len(rows), 1), 4), predictions=rows)
    return metrics


def _results_payload(metrics: dict[str, Any], model: str, data_args: DataArguments, report: DataReport | None,
                     split: str | None = None) -> dict[str, Any]:
    payload = {
        "task": NAME,
        "model": str(model),
        "dataset": data_args.eval_dataset_name or data_args.dataset_name,
        "split": split or data_args.eval_split_name,
        "num_samples": metrics["num_samples"],
        "wer": metrics["wer"],
        "cer": metrics["cer"],
        "wer_raw": metrics["wer_raw"],
        "cer_raw": metrics["cer_raw"],
        "runtime_s": metrics["runtime_s"],
        "seconds_per_sample": metrics["seconds_per_sample"],
    }
    if report is not None:
        payload["skipped_rows"] = len(report.bad)
    return payload


def _headline(metrics: dict[str, Any]) -> str:
    return (f"WER {metrics['wer']:.2%} (raw {metrics['wer_raw']:.2%}), CER {metrics['cer']:.2%} "
            f"on {metrics['num_samples']} utterances")
