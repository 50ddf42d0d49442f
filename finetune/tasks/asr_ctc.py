"""Task: CTC speech recognition with a Wav2Vec2-family encoder (Wav2Vec2, HuBERT, WavLM, Data2Vec-audio),
fine-tuned from a pretrained encoder or trained from scratch, with Trainer.

prepare (feature extractor) -> read train -> fit (character vocabulary from the training transcripts,
model, processor; the n-gram LM of ``lm_order``) -> encode (character ids; clips too short for their
transcript are bad rows) -> train -> save model + processor -> score (greedy CTC, optionally beam search
with an n-gram LM).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from transformers import Trainer, Wav2Vec2Processor

from finetune.config import ConfigError
from finetune.data.collators import IGNORE_INDEX, CTCCollator
from finetune.data.report import BadRow, DataReport
from finetune.data.speech import load_speech_split
from finetune.evaluation.asr import ASR_METRICS, asr_headline, score_transcripts, transcript_metrics
from finetune.evaluation.ctc_decoding import (
    BeamSearchDecoder,
    CTCDecodingArguments,
    decoder_labels,
    greedy_ids,
    missing_beam_search_packages,
    write_arpa,
)
from finetune.evaluation.metrics import asr_metrics
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
    load_saved_ctc,
    load_tokenizer,
    output_frames,
)
from finetune.models.speech_encoder import FreezeArguments, SpecAugmentArguments
from finetune.outputs import LANGUAGE_MODEL
from finetune.tasks.base import ASR_TRAINER_DEFAULTS, Scores, Task, TaskOptions, TaskRun
from finetune.tasks.cards import ASR_CARD, asr_usage_cli, asr_usage_python
from finetune.training.trainers import predict_in_order, strip_prefix

logger = logging.getLogger(__name__)

FRAMES = "ctc_frames"  # encoder frames of each clip, computed from its duration

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


class CTCFineTuning(Task):
    name = "asr_ctc"
    architectures = frozenset(CTC_ARCHITECTURES)
    option_classes = (CTCArguments, FreezeArguments, SpecAugmentArguments, CTCDecodingArguments)
    evaluation_option_classes = (CTCDecodingArguments,)
    trainer_class = CTCTrainer
    # model_name_or_path may be left out when model_config trains from scratch; SpecAugment as in
    # transformers' run_speech_recognition_ctc example
    defaults: ClassVar[dict[str, Any]] = {**ASR_TRAINER_DEFAULTS, "model_name_or_path": None, "mask_time_prob": 0.05,
                                          "mask_time_length": 10, "mask_feature_prob": 0.0, "mask_feature_length": 10}
    headline_metrics = ("loss", *ASR_METRICS)  # CTC loss per target character, then the error rates
    best_metric = "wer"
    card = ASR_CARD

    def check(self, options: TaskOptions) -> None:
        ctc, data, decoding = options[CTCArguments], options.data, options[CTCDecodingArguments]
        if bool(options.model.model_name_or_path) == bool(ctc.model_config):
            raise ConfigError("give model_name_or_path (a pretrained encoder: local dir or Hub id) or model_config "
                              "(train from scratch), exactly one of them")
        if ctc.model_config and options[FreezeArguments].freeze_encoder:
            raise ConfigError("freeze_encoder keeps a pretrained encoder fixed: not with model_config (training "
                              "from scratch)")
        if data.streaming and not ctc.tokenizer_name_or_path:
            raise ConfigError("streaming training cannot build a vocabulary from the transcripts before training: "
                              "set tokenizer_name_or_path")
        if data.streaming and decoding.lm_order:
            raise ConfigError("lm_order builds the LM from the full training transcripts: not with streaming; "
                              "give lm_path instead")
        missing = missing_packages(decoding)
        if missing:
            raise ConfigError(f"decoding: beam needs {' and '.join(missing)} (pip install {' '.join(missing)}); "
                              "or use decoding: greedy")

    def base_model_name(self, options: TaskOptions) -> str:
        return options.model.model_name_or_path or f"scratch:{options[CTCArguments].model_config}"

    # ------------------------------------------------------------------------------ training

    def prepare(self, run: TaskRun) -> None:
        options = run.options
        if options[CTCArguments].group_by_length:
            options.training.train_sampling_strategy = "group_by_length"
        run.state["extractor"] = load_feature_extractor(options.model, options[CTCArguments])

    def read_split(self, run: TaskRun, split: str, source: str, max_samples: int | None, *,
                   training: bool) -> tuple[Any, DataReport | None]:
        extractor = run.processor.feature_extractor if run.processor is not None else run.state["extractor"]
        return load_speech_split(run.options.data, split, sampling_rate=extractor.sampling_rate, source=source,
                                 max_samples=max_samples, materialize=not training)

    def fit(self, run: TaskRun, train_set: Any, report: DataReport | None) -> Any:
        """The character vocabulary (or the given tokenizer), the model under a head of its size, and the
        word n-gram LM of ``lm_order`` from the training transcripts."""
        options = run.options
        ctc = options[CTCArguments]
        if ctc.tokenizer_name_or_path:
            tokenizer = load_tokenizer(ctc.tokenizer_name_or_path, options.model)
        else:
            tokenizer = build_tokenizer(build_vocab(train_set["text"]))
            logger.info("CTC vocabulary: %d symbols from the training transcripts", len(tokenizer))
        run.model = load_ctc_model(options.model, ctc, tokenizer, freeze=options[FreezeArguments],
                                   spec_augment=options[SpecAugmentArguments],
                                   fresh_head=not ctc.tokenizer_name_or_path)
        run.processor = Wav2Vec2Processor(feature_extractor=run.state.pop("extractor"), tokenizer=tokenizer)
        decoding = options[CTCDecodingArguments]
        run.state["lm_path"] = decoding.lm_path
        if decoding.lm_order:
            path = Path(options.training.output_dir) / LANGUAGE_MODEL
            if options.training.should_save:
                write_arpa(train_set["text"], path, decoding.lm_order)
                logger.info("wrote a %d-gram word LM from the training transcripts to %s", decoding.lm_order, path)
            run.state["lm_path"] = str(path)
        return train_set

    def encode(self, run: TaskRun, dataset: Any, report: DataReport | None, *, training: bool) -> Any:
        return with_labels(dataset, report, run.processor, run.model, run.options.data.on_bad_rows)

    def trainer_kwargs(self, run: TaskRun) -> dict[str, Any]:
        compute_metrics = transcript_metrics(decode_greedy, run.processor.tokenizer, run.normalizer)

        def keep_best_ids(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return logits.argmax(dim=-1)  # evaluation keeps ids, not (frames x vocab) scores

        return {"data_collator": CTCCollator(run.processor), "processing_class": run.processor,
                "compute_metrics": compute_metrics, "preprocess_logits_for_metrics": keep_best_ids}

    def finish_training(self, run: TaskRun, trainer: Any) -> dict[str, Any]:
        loss = next((entry["train_loss"] for entry in reversed(trainer.state.log_history) if "train_loss" in entry),
                    None)
        if loss is not None and not math.isfinite(loss):
            logger.warning("the training loss is not finite: lower the learning rate or raise warmup_steps; an "
                           "infinite CTC loss means a clip too short for its transcript (set ctc_zero_infinity=true)")
        return {}

    # ------------------------------------------------------------------------------ scoring

    def score(self, run: TaskRun, trainer: Any, dataset: Any, prefix: str) -> Scores:
        """Predict once: corpus metrics (greedy, and beam search if asked) plus one row per utterance.
        The untrained model (zero-shot) is scored greedily: beam search over an untrained head says nothing."""
        decoding = decoding_options(run) if prefix != self.zero_shot_key else CTCDecodingArguments()
        lm_path = run.state.get("lm_path") if decoding.decoding == "beam" else None
        beam = decoding.decoding == "beam"
        keep_ids = trainer.preprocess_logits_for_metrics
        if beam:  # beam search needs every frame's scores, not just the best id
            trainer.preprocess_logits_for_metrics = lambda logits, labels: torch.log_softmax(logits.float(), dim=-1)
        try:
            output, elapsed = predict_in_order(trainer, dataset, prefix)
        finally:
            trainer.preprocess_logits_for_metrics = keep_ids
        tokenizer = run.processor.tokenizer
        greedy, _ = decode_greedy(output.predictions, output.label_ids, tokenizer)
        references = [str(text) for text in dataset["text"]]  # as written: characters outside the vocabulary count
        predictions, extra = greedy, {}
        if beam:
            started = time.perf_counter()
            labels = decoder_labels(tokenizer.get_vocab(), PAD, UNK, DELIMITER)
            decoder = BeamSearchDecoder(labels, lm_path=lm_path, alpha=decoding.lm_alpha, beta=decoding.lm_beta,
                                        beam_width=decoding.beam_width)
            predictions = decoder.decode([output.predictions[i, :n] for i, n in enumerate(dataset[FRAMES])])
            elapsed += time.perf_counter() - started
            extra["greedy"] = asr_metrics(greedy, references, run.normalizer)
        if references and not any(predictions):
            logger.warning("every prediction is empty: the model emits only blanks, typical early in CTC training. "
                           "Train longer, raise the learning rate (with warmup), or check that the transcripts and "
                           "vocabulary match (WER stays 1.0 until it learns to emit characters)")
        metrics, rows = score_transcripts(predictions, references, dataset["source_file"], run.normalizer,
                                          elapsed=elapsed)
        loss = strip_prefix(output.metrics, prefix).get("loss")
        head = {"num_samples": metrics.pop("num_samples"), "decoding": decoding.decoding + ("+lm" if lm_path else ""),
                **({"loss": loss} if loss is not None else {}), **extra}
        return Scores({**head, **metrics}, rows)

    def headline(self, metrics: dict[str, Any]) -> str:
        return f"{metrics.get('decoding', 'greedy')}: {asr_headline(metrics)}"

    def load_saved(self, run: TaskRun, model_dir: str) -> None:
        """A saved CTC model scored greedily (what ``pipeline()`` does) unless the evaluation options ask for
        beam search (with ``lm_path``; an LM is not built here)."""
        decoding = decoding_options(run)
        if decoding.lm_order:
            raise ValueError("evaluate uses an existing LM (lm_path); lm_order builds one during training only")
        missing = missing_packages(decoding)
        if missing:
            raise ValueError(f"beam search needs {' and '.join(missing)}: pip install {' '.join(missing)}")
        run.model, run.processor = load_saved_ctc(model_dir)
        run.state["lm_path"] = decoding.lm_path

    # ------------------------------------------------------------------------------ the card

    def usage_python(self, repo_id: str, config: dict[str, Any]) -> str:
        return asr_usage_python(repo_id, 'chunk_length_s=20, return_timestamps="word"')  # chunks, timed words

    def usage_cli(self, repo_id: str) -> str:
        return asr_usage_cli(repo_id)


def decoding_options(run: TaskRun) -> CTCDecodingArguments:
    """How this run decodes: the config's decoding options, greedy where none were given."""
    return run.options.groups.get(CTCDecodingArguments) or CTCDecodingArguments()


def missing_packages(decoding: CTCDecodingArguments) -> list[str]:
    """What the decoding asked for still needs installed (beam search: pyctcdecode; with an LM, kenlm)."""
    return missing_beam_search_packages(with_lm=decoding.uses_lm) if decoding.decoding == "beam" else []


def with_labels(dataset, report: DataReport | None, processor, model, on_bad_rows: str):
    """Character ids for every transcript; rows whose audio gives the encoder fewer frames than CTC
    needs for the transcript are bad rows (they would give an infinite loss, or NaN, much later)."""
    tokenizer = processor.tokenizer
    rate = processor.feature_extractor.sampling_rate

    def encode(texts) -> dict[str, list]:
        return {"labels": tokenizer([str(t) for t in texts]).input_ids}

    def count_frames(durations) -> dict[str, list]:
        return {FRAMES: output_frames(model, [max(round(float(d) * rate), 1) for d in durations])}

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


def decode_greedy(ids: np.ndarray, label_ids: np.ndarray, tokenizer) -> tuple[list[str], list[str]]:
    """Best ids per frame -> text (repeats merged, blanks dropped); -100 padding reads as blank."""
    if ids.ndim == 3:
        ids = greedy_ids(ids)
    pad = tokenizer.pad_token_id
    ids = np.where(ids == IGNORE_INDEX, pad, ids)
    label_ids = np.where(label_ids == IGNORE_INDEX, pad, label_ids)
    predictions = [t.strip() for t in tokenizer.batch_decode(ids)]
    references = [t.strip() for t in tokenizer.batch_decode(label_ids, group_tokens=False)]
    return predictions, references
