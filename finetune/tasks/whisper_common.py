"""What every Whisper (encoder-decoder) task shares: reading and tokenizing splits, the Seq2SeqTrainer's
parts, generation-based scoring and the card.

Used by fine-tuning (asr_seq2seq) and distillation (asr_distill), which differ only in how the model
is built and which loss trains it; tasks never import each other.
"""

from __future__ import annotations

import logging
import random
from typing import Any, ClassVar

import numpy as np
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from finetune.data.collators import IGNORE_INDEX, SpeechSeq2SeqCollator
from finetune.data.joining import ClipJoiningArguments, add_joined_clips
from finetune.data.report import BadRow, DataReport
from finetune.data.speech import load_speech_split
from finetune.evaluation.asr import (
    ASR_METRICS,
    asr_headline,
    score_transcripts,
    transcript_metrics,
)
from finetune.models import dynamic_context
from finetune.models.decoding_defaults import DecodingArguments, save_decoding_defaults
from finetune.models.whisper import (
    WhisperArguments,
    allow_empty_output,
    check_row_languages,
    context_seconds,
    detected_languages,
    load_whisper,
    model_language,
    row_labels,
)
from finetune.tasks.base import ASR_TRAINER_DEFAULTS, Scores, Task, TaskRun
from finetune.tasks.cards import ASR_CARD, asr_usage_cli, whisper_usage_python
from finetune.training.trainers import DURATION_COLUMN, predict_in_order, strip_prefix

logger = logging.getLogger(__name__)


class WhisperTask(Task):
    """Reading, encoding and scoring shared by the Whisper tasks; subclasses build the model."""

    architectures = frozenset({"WhisperForConditionalGeneration"})
    training_arguments_class = Seq2SeqTrainingArguments
    trainer_class = Seq2SeqTrainer
    defaults: ClassVar[dict[str, Any]] = {**ASR_TRAINER_DEFAULTS, "predict_with_generate": True}
    headline_metrics = ASR_METRICS
    best_metric = "wer"
    card = ASR_CARD

    def read_split(self, run: TaskRun, split: str, source: str, max_samples: int | None, *,
                   training: bool) -> tuple[Any, DataReport | None]:
        """Decode + validate a split, then tokenize transcripts and reject those the decoder cannot hold."""
        data = run.options.data
        processor, model = run.processor, run.model
        dataset, report = load_speech_split(data, split, sampling_rate=processor.feature_extractor.sampling_rate,
                                            source=source, max_samples=max_samples, materialize=not training,
                                            needs_text=self.reads_transcripts(run, training=training))
        joining = run.options.groups.get(ClipJoiningArguments)
        if training and report is not None and joining is not None:
            window = run.state.get("window_seconds") or context_seconds(processor)
            dataset = add_joined_clips(dataset, joining, sampling_rate=processor.feature_extractor.sampling_rate,
                                       max_seconds=window, seed=run.options.training.seed)
        max_label_length = run.state.get("max_label_length") or model.config.max_target_positions
        tokenizer = processor.tokenizer

        if training and data.allow_empty_transcripts:  # no-speech clips: answering nothing must be possible
            allow_empty_output(model.generation_config)
        shares = run.options.groups.get(WhisperArguments) if training else None
        seed = run.options.training.seed

        def tokenize(texts: list[str], languages: list[str], durations: list[float], prompts: list[str],
                     sources: list[str]) -> dict[str, list]:
            timed = prompted = None
            if shares is not None:  # training rows only: timestamps and prompts on a seeded share of them
                timed = [float(d) if drawn(seed, "timestamps", s, shares.timestamp_probability) else None
                         for d, s in zip(durations, sources)]
                prompted = [p if drawn(seed, "prompt", s, shares.prompt_probability) else None
                            for p, s in zip(prompts, sources)]
            return {"labels": row_labels(tokenizer, texts, languages, end_seconds=timed, prompts=prompted)}

        columns = ["text", "language", "duration", "prompt", "source_file"]
        if report is None:  # streaming: tokenize and drop over-long labels lazily
            dataset = dataset.map(tokenize, batched=True, input_columns=columns)
            return dataset.filter(lambda labels: len(labels) <= max_label_length, input_columns=["labels"]), None
        if data.language_column_name:
            languages = set(dataset["language"])
            check_row_languages(model.generation_config, languages, data.language_column_name)
            run.state.setdefault("row_languages", set()).update(languages)
        dataset = dataset.map(tokenize, batched=True, input_columns=columns, desc="tokenizing transcripts")
        lengths = [len(labels) for labels in dataset["labels"]]
        too_long = [i for i, n in enumerate(lengths) if n > max_label_length]
        if too_long:
            sources = dataset["source_file"]
            bad = [BadRow(row=i, source=sources[i], reason=f"transcript too long ({lengths[i]} tokens > "
                                                           f"{max_label_length} decoder positions)")
                   for i in too_long]
            report.bad.extend(bad)
            DataReport(dataset=report.dataset, split=split, total=report.total, bad=bad).enforce(data.on_bad_rows)
            dataset = dataset.select(sorted(set(range(len(lengths))) - set(too_long)))
        return dataset, report

    def reads_transcripts(self, run: TaskRun, *, training: bool) -> bool:
        """Whether a split must have transcripts (a task that labels its own training audio needs none)."""
        return True

    def trainer_kwargs(self, run: TaskRun) -> dict[str, Any]:
        compute_metrics = transcript_metrics(decode_ids, run.processor.tokenizer, run.normalizer)

        collator = SpeechSeq2SeqCollator(run.processor, run.model.config.decoder_start_token_id,
                                         dynamic_step_seconds=dynamic_context.enabled_step_seconds(run.model),
                                         prompt_start_token_id=prompt_start_token(run.processor.tokenizer))
        return {"data_collator": collator, "processing_class": run.processor, "compute_metrics": compute_metrics}

    def finish_training(self, run: TaskRun, trainer: Any) -> dict[str, Any]:
        """Save the decoding the run evaluated with (``generation_max_length``, ``generation_num_beams``) and
        the decoding defaults it was given (:mod:`finetune.models.decoding_defaults`) in the model's
        generation config, so ``finetune evaluate``, ``transcribe`` and ``pipeline()`` decode the same way."""
        args, generation = run.options.training, run.model.generation_config
        step = dynamic_context.enabled_step_seconds(run.model)
        durations = _durations(trainer.train_dataset)
        if step is not None and durations:
            dynamic_context.mark_trained(run.model.config, step, longest_seconds=max(durations))
        if getattr(args, "generation_max_length", None):
            generation.max_length = args.generation_max_length
        if getattr(args, "generation_num_beams", None):
            generation.num_beams = args.generation_num_beams
        if DecodingArguments in run.options.groups:
            save_decoding_defaults(generation, run.options[DecodingArguments])
        if run.state.get("row_languages"):  # the card lists them; the model detects which one it hears
            generation.finetune_languages = sorted(run.state["row_languages"])
        return {}

    def score(self, run: TaskRun, trainer: Any, dataset: Any, prefix: str) -> Scores:
        """Generate over ``dataset`` once: corpus metrics plus one row per utterance."""
        output, elapsed = predict_in_order(trainer, dataset, prefix)
        predictions, references = decode_ids(output.predictions, output.label_ids, run.processor.tokenizer)
        languages = dataset["language"] if run.options.data.language_column_name else None
        metrics, rows = score_transcripts(predictions, references, dataset["source_file"], run.normalizer,
                                          elapsed=elapsed, languages=languages)
        if languages is not None:  # the model chose each row's language: how often it chose the row's own
            size = trainer.args.per_device_eval_batch_size
            batches = (trainer.data_collator([dataset[i] for i in range(start, min(start + size, len(dataset)))])
                       for start in range(0, len(dataset), size))  # in dataset order, as the rows are
            found = detected_languages(run.model, batches)
            metrics["language_accuracy"] = sum(a == b for a, b in zip(found, languages)) / max(len(found), 1)
            for row, language in zip(rows, found):
                row["predicted_language"] = language
        loss = strip_prefix(output.metrics, prefix).get("loss")
        return Scores({**metrics, **({"loss": loss} if loss is not None else {})}, rows)

    def headline(self, metrics: dict[str, Any]) -> str:
        return asr_headline(metrics)

    def load_saved(self, run: TaskRun, model_dir: str) -> None:
        run.model, run.processor = load_whisper(run.options.model)
        dynamic_context.serve_as_trained(run.model)
        bound_clip_length(run)
        run.language = run.language or model_language(run.model)

    def start_dynamic_context(self, run: TaskRun, model: Any, step_seconds: float | None) -> None:
        """Train ``model`` at dynamic context (``step_seconds``; None: as it was saved) and say so in its
        config; batches are grouped by duration unless the config chose how to batch."""
        if step_seconds is None:
            return
        dynamic_context.enable_dynamic_context(model, step_seconds)
        dynamic_context.mark_trained(model.config, step_seconds)
        args = run.options.training
        if not run.options.data.max_batch_seconds and args.train_sampling_strategy == "random":
            args.train_sampling_strategy = "group_by_length"
            args.length_column_name = DURATION_COLUMN
        logger.info("dynamic encoder context: each batch runs on its longest clip rounded up to %g s (batches "
                    "grouped by duration)", step_seconds)

    def usage_python(self, repo_id: str, config: dict[str, Any]) -> str:
        return whisper_usage_python(repo_id, config)

    def usage_cli(self, repo_id: str) -> str:
        return asr_usage_cli(repo_id)


def drawn(seed: int, what: str, source: str, probability: float) -> bool:
    """Whether a training row gets ``what`` (timestamps, a prompt): a draw fixed by the seed and the row's
    source, so a resumed or repeated run writes the same labels."""
    if probability <= 0:
        return False
    return random.Random(f"{seed}:{what}:{source}").random() < probability


def prompt_start_token(tokenizer: Any) -> int | None:
    """``<|startofprev|>``'s id, where the vocabulary has it."""
    token_id = tokenizer.convert_tokens_to_ids("<|startofprev|>")
    return None if token_id is None or token_id == tokenizer.unk_token_id else int(token_id)


def _durations(dataset: Any) -> list[float]:
    """The training clips' durations, where the split holds them in memory (not streamed)."""
    names = getattr(dataset, "column_names", None) or []
    return [float(d) for d in dataset[DURATION_COLUMN]] if DURATION_COLUMN in names else []


def bound_clip_length(run: TaskRun, seconds: float | None = None) -> None:
    """Clips longer than the encoder's context (``seconds``, default the processor's) are bad rows."""
    data = run.options.data
    limit = float(seconds if seconds is not None else context_seconds(run.processor))
    data.max_duration_in_seconds = min(data.max_duration_in_seconds, limit)


def decode_ids(prediction_ids: np.ndarray, label_ids: np.ndarray, tokenizer) -> tuple[list[str], list[str]]:
    pad = tokenizer.pad_token_id
    prediction_ids = np.where(prediction_ids == IGNORE_INDEX, pad, prediction_ids)
    label_ids = np.where(label_ids == IGNORE_INDEX, pad, label_ids)
    predictions = [t.strip() for t in tokenizer.batch_decode(prediction_ids, skip_special_tokens=True)]
    references = [t.strip() for t in tokenizer.batch_decode(label_ids, skip_special_tokens=True)]
    return predictions, references
