"""Task: distil a fine-tuned Whisper teacher into a student with fewer decoder layers.

prepare (teacher, student built from it) -> read + tokenize data (optionally replace the labels with the
teacher's transcripts) -> score the teacher (``evaluate_before_training``) -> train on CE + KL -> save
the student as a plain Whisper model -> score it.

Reading, scoring and result files are shared with fine-tuning (:mod:`finetune.tasks.whisper_common`),
so a student is scored exactly as its teacher was; the loss lives in :mod:`finetune.models.distill`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from transformers import WhisperForConditionalGeneration, WhisperProcessor

from finetune.config import ConfigError, ModelArguments
from finetune.data.joining import ClipJoiningArguments
from finetune.data.report import DataReport
from finetune.data.text import Normalizer
from finetune.evaluation.asr import ASR_METRICS
from finetune.models import dynamic_context
from finetune.models.decoding_defaults import DecodingArguments
from finetune.models.distill import (
    DistillArguments,
    DistillationTrainer,
    build_student,
    count_parameters,
    student_layer_ids,
)
from finetune.models.speech_encoder import EncoderContextArguments, FreezeArguments
from finetune.models.whisper import freeze_for_finetuning, load_whisper, model_language
from finetune.tasks.base import TaskOptions, TaskRun, make_trainer
from finetune.tasks.whisper_common import WhisperTask, bound_clip_length, decode_ids
from finetune.training.trainers import predict_in_order

logger = logging.getLogger(__name__)


class WhisperDistillation(WhisperTask):
    name = "asr_distill"
    option_classes = (DistillArguments, FreezeArguments, EncoderContextArguments, ClipJoiningArguments,
                      DecodingArguments)
    uses_model_arguments = False  # the starting point is the teacher
    trainer_class = DistillationTrainer
    # distil-whisper keeps the copied encoder fixed; the teacher then reuses the student's encoder output
    defaults: ClassVar[dict[str, Any]] = {**WhisperTask.defaults, "freeze_encoder": True}
    headline_metrics = (*ASR_METRICS, "num_samples", "seconds_per_sample")
    zero_shot_key = "teacher"  # what evaluate_before_training scores

    def base_model_name(self, options: TaskOptions) -> str:
        return options[DistillArguments].teacher_model_name_or_path

    def check(self, options: TaskOptions) -> None:
        if options[EncoderContextArguments].encoder_context_seconds is not None:
            raise ConfigError("asr_distill: the student keeps its teacher's encoder window; encoder_context_seconds "
                              "cannot change it (dynamic_encoder_context: true runs the student at each batch's "
                              "length)")

    def reads_transcripts(self, run: TaskRun, *, training: bool) -> bool:
        """With pseudo_labels the teacher transcribes the training audio: it needs no transcripts."""
        return not (training and run.options[DistillArguments].pseudo_labels)

    def prepare(self, run: TaskRun) -> None:
        distill = run.options[DistillArguments]
        teacher, run.processor = load_teacher(distill.teacher_model_name_or_path)
        dynamic_context.serve_as_trained(teacher)
        run.state["teacher"] = teacher
        run.state["layer_ids"] = student_layer_ids(teacher, distill)
        run.model = build_student(teacher, run.state["layer_ids"])
        dynamic_context.serve_as_trained(run.model)
        run.language = run.language or model_language(teacher)
        bound_clip_length(run)  # the student keeps the teacher's encoder context: longer clips are bad rows

    def encode(self, run: TaskRun, dataset: Any, report: DataReport | None, *, training: bool) -> Any:
        if training and run.options[DistillArguments].pseudo_labels:
            labeller = make_trainer(self, run, run.state["teacher"], None, None)
            return pseudo_label(labeller, run.processor, dataset, run.normalizer)
        return dataset

    def zero_shot_model(self, run: TaskRun) -> Any:
        return run.state["teacher"]

    def adapt_for_training(self, run: TaskRun, model: Any) -> Any:
        freeze = run.options[FreezeArguments]
        freeze_for_finetuning(model, freeze_encoder=freeze.freeze_encoder,
                              freeze_feature_encoder=bool(freeze.freeze_feature_encoder))
        self.start_dynamic_context(run, model, run.options[EncoderContextArguments].dynamic_step_seconds)
        return model

    def trainer_kwargs(self, run: TaskRun) -> dict[str, Any]:
        return {**super().trainer_kwargs(run), "teacher": run.state["teacher"],
                "distill": run.options[DistillArguments],
                "reuse_student_encoder": run.options[FreezeArguments].freeze_encoder}

    def finish_training(self, run: TaskRun, trainer: Any) -> dict[str, Any]:
        distill, teacher = run.options[DistillArguments], run.state["teacher"]
        super().finish_training(run, trainer)
        return {"student": {"teacher_layers": run.state["layer_ids"], "parameters": count_parameters(run.model),
                            "teacher_parameters": count_parameters(teacher), "pseudo_labels": distill.pseudo_labels}}


def load_teacher(name_or_path: str) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """The teacher and its processor; a missing or unreadable teacher names the config key."""
    try:
        return load_whisper(ModelArguments(model_name_or_path=name_or_path))
    except OSError as error:
        raise FileNotFoundError(
            f"teacher_model_name_or_path: no Whisper model at {name_or_path!r} (expected a saved model dir "
            f"with config.json and model.safetensors, an offline: alias or a reachable Hub id): {error}"
        ) from None


def pseudo_label(labeller: Any, processor: WhisperProcessor, train_set: Any, normalize: Normalizer) -> Any:
    """Replace the training labels with the transcripts ``labeller`` (a Trainer over the teacher) generates.

    The given transcripts stay in the ``text`` column; ``labels`` are the teacher's words, tokenized
    the way the Whisper tasks tokenize transcripts, so the student learns what the teacher says.
    """
    if not hasattr(train_set, "column_names") or not hasattr(train_set, "__len__"):
        raise ValueError("pseudo_labels needs a sized training split: it does not work with streaming: true")
    labeller.compute_metrics = None  # the given transcripts, if any, are not what is being measured
    output, elapsed = predict_in_order(labeller, train_set, "pseudo")
    transcripts, _ = decode_ids(output.predictions, output.label_ids, processor.tokenizer)
    given = [(new, old) for new, old in zip(transcripts, train_set["text"]) if old]
    changed = sum(normalize(new) != normalize(old) for new, old in given)
    logger.info("pseudo-labels: the teacher transcribed %d training clips in %.0f s; %d of the %d given "
                "transcripts differ (after normalization)", len(transcripts), elapsed, changed, len(given))
    empty = sum(not t.strip() for t in transcripts)
    if empty:
        logger.info("pseudo-labels: %d clips transcribed as nothing are trained to give nothing", empty)
    labels = processor.tokenizer([" " + t if t.strip() else "" for t in transcripts]).input_ids
    return train_set.remove_columns("labels").add_column("labels", labels).add_column("pseudo_text", transcripts)

