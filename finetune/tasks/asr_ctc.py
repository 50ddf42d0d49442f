"""Recipe: CTC speech recognition with a Wav2Vec2-family encoder (Wav2Vec2, HuBERT, WavLM,
Data2Vec-audio), fine-tuned from a pretrained encoder or trained from scratch, with Trainer.

setup (character vocabulary from the training transcripts, model, data) -> train -> save model +
processor -> evaluate (greedy CTC, optionally beam search with an n-gram LM).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCTC, Trainer, TrainingArguments, Wav2Vec2Processor, set_seed

from finetune.config import ConfigError, DataArguments, ModelArguments, RunArguments
from finetune.data.collators import IGNORE_INDEX, CTCCollator
from finetune.data.report import BadRow, DataReport, write_reports
from finetune.data.speech import load_speech_split
from finetune.data.text import scoring_normalizer
from finetune.metrics import asr_metrics
from finetune.models.ctc import (
    CTC_ARCHITECTURES,
    DELIMITER,
    PAD,
    UNK,
    CTCArguments,
    build_tokenizer,
    build_vocab,
    ctc_frames_needed,
    load_ctc_model,
    load_feature_extractor,
    load_tokenizer,
    output_frames,
)
from finetune.models.ctc_decoding import (
    BeamSearchDecoder,
    CTCDecodingArguments,
    decoder_labels,
    greedy_ids,
    missing_beam_search_packages,
    write_arpa,
)
from finetune.recipe import (
    ASR_TRAINER_DEFAULTS,
    asr_headline,
    asr_results_payload,
    checkpoint_to_resume,
    predict_in_order,
    save_trained,
    strip_prefix,
    trainer_callbacks,
    utterance_rows,
    write_eval_outputs,
)

logger = logging.getLogger(__name__)

NAME = "asr_ctc"
ARCHITECTURES = CTC_ARCHITECTURES
LANGUAGE_MODEL = "language_model.arpa"
FRAMES = "ctc_frames"  # encoder frames of each clip, computed from its duration
TRAINER_DEFAULTS: dict[str, Any] = dict(ASR_TRAINER_DEFAULTS)
# model_name_or_path may be left out when model_config trains from scratch
DEFAULTS: dict[str, Any] = {**TRAINER_DEFAULTS, "model_name_or_path": None}


def argument_classes() -> tuple[type, ...]:
    return (RunArguments, ModelArguments, DataArguments, CTCArguments, CTCDecodingArguments, TrainingArguments)


def train(
    run: RunArguments,
    model_args: ModelArguments,
    data_args: DataArguments,
    ctc_args: CTCArguments,
    decoding: CTCDecodingArguments,
    training_args: TrainingArguments,
) -> dict[str, Any]:
    """Train (or fine-tune) and evaluate; returns the training and final metrics."""
    _check(model_args, data_args, ctc_args, decoding)
    set_seed(training_args.seed)
    resume_from = checkpoint_to_resume(training_args.output_dir, run.resume)
    if ctc_args.group_by_length:
        training_args.train_sampling_strategy = "group_by_length"
    extractor = load_feature_extractor(model_args, ctc_args)
    rate = extractor.sampling_rate

    with training_args.main_process_first(desc="preparing data"):
        train_raw, train_report = load_speech_split(data_args, data_args.train_split_name, sampling_rate=rate,
                                                    max_samples=data_args.max_train_samples)
        if ctc_args.tokenizer_name_or_path:
            tokenizer = load_tokenizer(ctc_args.tokenizer_name_or_path, model_args)
        else:
            tokenizer = build_tokenizer(build_vocab(train_raw["text"]))
            logger.info("CTC vocabulary: %d symbols from the training transcripts", len(tokenizer))
        model = load_ctc_model(model_args, ctc_args, tokenizer, fresh_head=not ctc_args.tokenizer_name_or_path)
        processor = Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer)
        train_set = _with_labels(train_raw, train_report, processor, model, data_args.on_bad_rows)
        eval_set, eval_report = None, None
        if data_args.eval_split_name:
            eval_source = data_args.eval_dataset_name or data_args.dataset_name
            eval_raw, eval_report = load_speech_split(data_args, data_args.eval_split_name, sampling_rate=rate,
                                                      source=eval_source, max_samples=data_args.max_eval_samples,
                                                      materialize=True)
            eval_set = _with_labels(eval_raw, eval_report, processor, model, data_args.on_bad_rows)
    if training_args.should_save:
        write_reports([r for r in (train_report, eval_report) if r], training_args.output_dir)
        if decoding.lm_order:
            path = write_arpa(train_raw["text"], Path(training_args.output_dir) / LANGUAGE_MODEL, decoding.lm_order)
            logger.info("wrote a %d-gram word LM from the training transcripts to %s", decoding.lm_order, path)

    trainer = _trainer(model, processor, training_args, train_set, eval_set)
    results: dict[str, Any] = {}
    if run.evaluate_before_training and eval_set is not None and resume_from is None:
        results["zero_shot"] = _evaluate(trainer, eval_set, processor, CTCDecodingArguments(), None)
        logger.info("before training: %s", asr_headline(results["zero_shot"]))
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    save_trained(trainer, training_args, metric="wer" if eval_set is not None else None)
    results["train"] = train_output.metrics
    if not math.isfinite(train_output.training_loss):
        logger.warning("the training loss is not finite: lower the learning rate or raise warmup_steps; an "
                       "infinite CTC loss means a clip too short for its transcript (set ctc_zero_infinity=true)")

    if eval_set is not None:
        lm_path = decoding.lm_path or (str(Path(training_args.output_dir) / LANGUAGE_MODEL)
                                       if decoding.lm_order else None)
        metrics = _evaluate(trainer, eval_set, processor, decoding, lm_path)
        results["eval"] = metrics
        if trainer.is_world_process_zero():
            model_name = model_args.model_name_or_path or f"scratch:{ctc_args.model_config}"
            payload = _results_payload(metrics, model_name, data_args, eval_report)
            payload["train_runtime_s"] = round(train_output.metrics.get("train_runtime", 0.0), 1)
            if "zero_shot" in results:
                payload["zero_shot"] = {k: results["zero_shot"][k] for k in ("loss", "wer", "cer", "wer_raw",
                                                                             "cer_raw")}
            write_eval_outputs(training_args.output_dir, payload, metrics.pop("predictions"))
        logger.info("%s: %s", decoding.decoding, asr_headline(metrics))
    return results


def evaluate(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 8,
             decoding: CTCDecodingArguments | None = None) -> dict[str, Any]:
    """Score a saved CTC model on one split: greedy decoding (what ``pipeline()`` does) unless
    ``decoding`` asks for beam search (with ``lm_path``; an LM is not built here)."""
    decoding = decoding or CTCDecodingArguments()
    if decoding.lm_order:
        raise ValueError("evaluate uses an existing LM (lm_path); lm_order builds one during training only")
    if decoding.decoding == "beam":
        missing = missing_beam_search_packages(with_lm=decoding.uses_lm)
        if missing:
            raise ValueError(f"beam search needs {' and '.join(missing)}: pip install {' '.join(missing)}")
    processor = Wav2Vec2Processor.from_pretrained(model_dir)
    model = AutoModelForCTC.from_pretrained(model_dir, use_safetensors=True)
    split = data_args.eval_split_name or "test"
    dataset, report = load_speech_split(data_args, split, sampling_rate=processor.feature_extractor.sampling_rate,
                                        max_samples=data_args.max_eval_samples, materialize=True)
    dataset = _with_labels(dataset, report, processor, model, data_args.on_bad_rows)
    args = TrainingArguments(output_dir=output_dir, per_device_eval_batch_size=batch_size,
                             **{k: v for k, v in TRAINER_DEFAULTS.items() if k != "save_total_limit"})
    metrics = _evaluate(_trainer(model, processor, args, None, dataset), dataset, processor, decoding,
                        decoding.lm_path)
    predictions = metrics.pop("predictions")
    payload = _results_payload(metrics, model_dir, data_args, report, split=split)
    write_eval_outputs(output_dir, payload, predictions)
    if report:
        write_reports([report], output_dir)
    return payload


def _check(model_args: ModelArguments, data_args: DataArguments, ctc_args: CTCArguments,
           decoding: CTCDecodingArguments) -> None:
    """Contradictions in the config, caught before anything is loaded."""
    if bool(model_args.model_name_or_path) == bool(ctc_args.model_config):
        raise ConfigError("give model_name_or_path (a pretrained encoder: local dir or Hub id) or model_config "
                          "(train from scratch), exactly one of them")
    if data_args.streaming and not ctc_args.tokenizer_name_or_path:
        raise ConfigError("streaming training cannot build a vocabulary from the transcripts before training: "
                          "set tokenizer_name_or_path")
    if data_args.streaming and decoding.lm_order:
        raise ConfigError("lm_order builds the LM from the full training transcripts: not with streaming; "
                          "give lm_path instead")
    if decoding.decoding == "beam":
        missing = missing_beam_search_packages(with_lm=decoding.uses_lm)
        if missing:
            raise ConfigError(f"decoding: beam needs {' and '.join(missing)} (pip install {' '.join(missing)}); "
                              "or use decoding: greedy")


def _with_labels(dataset, report: DataReport | None, processor, model, on_bad_rows: str):
    """Character ids for every transcript; rows whose audio gives the encoder fewer frames than CTC
    needs for the transcript are bad rows (they would give an infinite loss, or NaN, much later)."""
    tokenizer = processor.tokenizer
    rate = processor.feature_extractor.sampling_rate

    def encode(texts) -> dict[str, list]:
        return {"labels": tokenizer([str(t) for t in texts]).input_ids}

    def count_frames(durations) -> dict[str, list]:
        return {FRAMES: output_frames(model, [max(int(round(float(d) * rate)), 1) for d in durations])}

    if report is None:  # a stream: encode and drop infeasible rows lazily
        dataset = dataset.map(encode, batched=True, input_columns=["text"])
        dataset = dataset.map(count_frames, batched=True, input_columns=["duration"])
        return dataset.filter(lambda labels, frames: frames >= ctc_frames_needed(labels),
                              input_columns=["labels", FRAMES])
    dataset = dataset.map(encode, batched=True, input_columns=["text"], desc="encoding transcripts")
    dataset = dataset.add_column(FRAMES, count_frames(dataset["duration"])[FRAMES])
    needed = [ctc_frames_needed(labels) for labels in dataset["labels"]]
    frames = dataset[FRAMES]
    short = [i for i, (have, need) in enumerate(zip(frames, needed)) if have < need]
    if short:
        sources = dataset["source_file"]
        bad = [BadRow(row=i, source=sources[i], reason=f"audio too short for its transcript: the encoder gives "
                      f"{frames[i]} CTC frames, the transcript needs {needed[i]}") for i in short]
        report.bad.extend(bad)
        DataReport(dataset=report.dataset, split=report.split, total=report.total, bad=bad).enforce(on_bad_rows)
        dataset = dataset.select(sorted(set(range(len(frames))) - set(short)))
    return dataset


class CTCTrainer(Trainer):
    """Trainer that blanks the frames past each clip's end before scoring.

    In a padded batch the encoder also emits frames for the padding; CTC loss never trained them,
    so they would decode to stray characters. The collator passes each clip's frame count
    (``ctc_frames``), which is taken out of the model inputs here.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs.pop(FRAMES, None)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        frames = inputs.pop(FRAMES, None)
        loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        if logits is not None and frames is not None:
            padding = torch.arange(logits.shape[1], device=logits.device)[None, :] >= frames[:, None]
            blank = self.accelerator.unwrap_model(model).config.pad_token_id
            logits = logits.masked_fill(padding[..., None], -1e4)
            logits[..., blank] = logits[..., blank].masked_fill(padding, 0.0)
        return loss, logits, labels


def _trainer(model, processor, args: TrainingArguments, train_set, eval_set) -> Trainer:
    tokenizer = processor.tokenizer
    normalizer = scoring_normalizer("en")

    def compute_metrics(prediction) -> dict[str, float]:
        predictions, references = _decode_greedy(prediction.predictions, prediction.label_ids, tokenizer)
        return asr_metrics(predictions, references, normalizer)

    def keep_best_ids(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)  # evaluation keeps ids, not (frames x vocab) scores

    return CTCTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=CTCCollator(processor),
        processing_class=processor,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=keep_best_ids,
        callbacks=trainer_callbacks(),
    )


def _decode_greedy(ids: np.ndarray, label_ids: np.ndarray, tokenizer) -> tuple[list[str], list[str]]:
    """Best ids per frame -> text (repeats merged, blanks dropped); -100 padding reads as blank."""
    if ids.ndim == 3:
        ids = greedy_ids(ids)
    pad = tokenizer.pad_token_id
    ids = np.where(ids == IGNORE_INDEX, pad, ids)
    label_ids = np.where(label_ids == IGNORE_INDEX, pad, label_ids)
    predictions = [t.strip() for t in tokenizer.batch_decode(ids)]
    references = [t.strip() for t in tokenizer.batch_decode(label_ids, group_tokens=False)]
    return predictions, references


def _evaluate(trainer: Trainer, dataset, processor, decoding: CTCDecodingArguments, lm_path: str | None
              ) -> dict[str, Any]:
    """Predict once: corpus metrics (greedy, and beam search if asked) plus one row per utterance."""
    beam = decoding.decoding == "beam"
    keep_ids = trainer.preprocess_logits_for_metrics
    if beam:  # beam search needs every frame's scores, not just the best id
        trainer.preprocess_logits_for_metrics = lambda logits, labels: torch.log_softmax(logits.float(), dim=-1)
    try:
        output, elapsed = predict_in_order(trainer, dataset, "eval")
    finally:
        trainer.preprocess_logits_for_metrics = keep_ids
    tokenizer = processor.tokenizer
    greedy, _ = _decode_greedy(output.predictions, output.label_ids, tokenizer)
    references = [str(text) for text in dataset["text"]]  # as written: characters outside the vocabulary count
    normalizer = scoring_normalizer("en")
    metrics = strip_prefix(output.metrics, "eval")
    predictions = greedy
    if beam:
        started = time.perf_counter()
        labels = decoder_labels(tokenizer.get_vocab(), PAD, UNK, DELIMITER)
        decoder = BeamSearchDecoder(labels, lm_path=lm_path, alpha=decoding.lm_alpha, beta=decoding.lm_beta,
                                    beam_width=decoding.beam_width)
        predictions = decoder.decode([output.predictions[i, :n] for i, n in enumerate(dataset[FRAMES])])
        elapsed += time.perf_counter() - started
        metrics["greedy"] = asr_metrics(greedy, references, normalizer)
    metrics.update(asr_metrics(predictions, references, normalizer))
    if references and not any(predictions):
        logger.warning("every prediction is empty: the model emits only blanks, typical early in CTC training. "
                       "Train longer, raise the learning rate (with warmup), or check that the transcripts and "
                       "vocabulary match (WER stays 1.0 until it learns to emit characters)")
    sources = dataset["source_file"]
    rows = utterance_rows(sources, references, predictions, normalizer)
    metrics.update(decoding=decoding.decoding + ("+lm" if lm_path else ""), num_samples=len(rows),
                   runtime_s=round(elapsed, 3), seconds_per_sample=round(elapsed / max(len(rows), 1), 4),
                   predictions=rows)
    return metrics


def _results_payload(metrics: dict[str, Any], model: str, data_args: DataArguments, report: DataReport | None,
                     split: str | None = None) -> dict[str, Any]:
    # loss: CTC loss per target character; greedy: the greedy figures beside beam search's
    return asr_results_payload(NAME, metrics, model, data_args, report, split, extra=("decoding", "loss", "greedy"))

