"""Recipe: fine-tune an encoder-decoder speech recognizer (Whisper) with Seq2SeqTrainer.

setup (model, processor, data) -> optional zero-shot evaluation -> train -> save -> evaluate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import Seq2SeqTrainingArguments, set_seed

from finetune.config import DataArguments, ModelArguments, RunArguments
from finetune.data.report import write_reports
from finetune.models.lora import ADAPTER_DIR, LoraArguments, apply_lora, merge_lora
from finetune.models.whisper import (
    WhisperArguments,
    configure_generation,
    freeze_for_finetuning,
    load_whisper,
    set_encoder_context,
)
from finetune.recipe import asr_headline, checkpoint_to_resume, save_trained, write_eval_outputs
from finetune.whisper_recipe import (
    WHISPER_DEFAULTS,
    evaluate_generation,
    evaluate_saved,
    prepare_split,
    results_payload,
    whisper_trainer,
)

logger = logging.getLogger(__name__)

NAME = "asr_seq2seq"
ARCHITECTURES = {"WhisperForConditionalGeneration"}
DEFAULTS: dict[str, Any] = dict(WHISPER_DEFAULTS)


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
        train_set, train_report = prepare_split(data_args, processor, data_args.train_split_name, max_label_length,
                                                data_args.dataset_name, data_args.max_train_samples,
                                                for_training=True)
        eval_set, eval_report = None, None
        if data_args.eval_split_name:
            eval_set, eval_report = prepare_split(data_args, processor, data_args.eval_split_name,
                                                  max_label_length,
                                                  data_args.eval_dataset_name or data_args.dataset_name,
                                                  data_args.max_eval_samples)
    if training_args.should_save:
        write_reports([r for r in (train_report, eval_report) if r], training_args.output_dir)

    results: dict[str, Any] = {}
    if run.evaluate_before_training and eval_set is not None and resume_from is None:
        zero_shot_trainer = whisper_trainer(model, processor, training_args, None, eval_set)
        results["zero_shot"] = evaluate_generation(zero_shot_trainer, eval_set, processor, "zero_shot")
        logger.info("zero-shot: %s", asr_headline(results["zero_shot"]))

    set_encoder_context(model, processor, whisper_args.encoder_context_seconds)
    freeze_for_finetuning(model, freeze_encoder=whisper_args.freeze_encoder)
    model = apply_lora(model, lora_args)
    trainer = whisper_trainer(model, processor, training_args, train_set, eval_set, data_args.max_batch_seconds)
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    if lora_args.lora_r:  # save and evaluate a plain model: adapters merged into the weights
        adapter_dir = Path(training_args.output_dir) / ADAPTER_DIR if trainer.is_world_process_zero() else None
        trainer.model = trainer.model_wrapped = merge_lora(trainer.model, adapter_dir)
    save_trained(trainer, training_args, metric="wer")
    results["train"] = train_output.metrics

    if eval_set is not None:
        results["eval"] = evaluate_generation(trainer, eval_set, processor, "eval")
        logger.info("fine-tuned: %s", asr_headline(results["eval"]))
        if trainer.is_world_process_zero():
            payload = results_payload(results["eval"], model_args.model_name_or_path, data_args, eval_report)
            if "zero_shot" in results:
                payload["zero_shot"] = {k: results["zero_shot"][k] for k in ("wer", "cer", "wer_raw", "cer_raw")}
            write_eval_outputs(training_args.output_dir, payload, results["eval"].pop("predictions"))
    return results


def evaluate(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 8) -> dict[str, Any]:
    """Score a saved (or imported) model on one split; writes eval_results.json + predictions.jsonl."""
    return evaluate_saved(model_dir, data_args, output_dir, batch_size=batch_size)
