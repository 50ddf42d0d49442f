"""Recipe: distil a fine-tuned Whisper teacher into a student with fewer decoder layers.

setup (teacher, student built from it, data) -> optional pseudo-labels (the teacher's transcripts of the
training audio) -> optional teacher evaluation -> train on CE + KL -> save -> evaluate the student.

Data preparation, scoring and result files are shared with fine-tuning (:mod:`finetune.whisper_recipe`),
so a student is scored exactly as its teacher was; what this recipe adds lives in
:mod:`finetune.models.distill`.
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import Seq2SeqTrainingArguments, WhisperForConditionalGeneration, WhisperProcessor, set_seed

from finetune.config import DataArguments, ModelArguments, RunArguments
from finetune.data.report import write_reports
from finetune.data.text import scoring_normalizer
from finetune.models.distill import (
    DistillArguments,
    DistillationTrainer,
    build_student,
    count_parameters,
    student_layer_ids,
)
from finetune.models.whisper import context_seconds, freeze_for_finetuning, load_whisper
from finetune.recipe import (
    asr_headline,
    checkpoint_to_resume,
    predict_in_order,
    save_trained,
    trainer_callbacks,
    write_eval_outputs,
)
from finetune import whisper_recipe
from finetune.trainers import finetune_trainer

logger = logging.getLogger(__name__)

NAME = "asr_distill"
ARCHITECTURES = {"WhisperForConditionalGeneration"}  # a student is a plain Whisper model
DEFAULTS: dict[str, Any] = dict(whisper_recipe.WHISPER_DEFAULTS)
HEADLINE = ("wer", "cer", "wer_raw", "cer_raw", "num_samples", "seconds_per_sample")


def argument_classes() -> tuple[type, ...]:
    return (RunArguments, DataArguments, DistillArguments, Seq2SeqTrainingArguments)


def train(
    run: RunArguments,
    data_args: DataArguments,
    distill_args: DistillArguments,
    training_args: Seq2SeqTrainingArguments,
) -> dict[str, Any]:
    """Build the student, distil, save it as a plain Whisper model and score it (and the teacher)."""
    set_seed(training_args.seed)
    resume_from = checkpoint_to_resume(training_args.output_dir, run.resume)
    with training_args.main_process_first(desc="loading teacher"):
        teacher, processor = load_teacher(distill_args.teacher_model_name_or_path)
    layer_ids = student_layer_ids(teacher, distill_args)
    student = build_student(teacher, layer_ids)
    freeze_for_finetuning(student, freeze_encoder=distill_args.freeze_encoder)
    # the student keeps the teacher's encoder context: longer clips are bad rows
    data_args.max_duration_in_seconds = min(data_args.max_duration_in_seconds, float(context_seconds(processor)))

    max_label_length = teacher.config.max_target_positions
    with training_args.main_process_first(desc="preparing data"):
        train_set, train_report = whisper_recipe.prepare_split(
            data_args, processor, data_args.train_split_name, max_label_length, data_args.dataset_name,
            data_args.max_train_samples, for_training=True)
        eval_set, eval_report = None, None
        if data_args.eval_split_name:
            eval_set, eval_report = whisper_recipe.prepare_split(
                data_args, processor, data_args.eval_split_name, max_label_length,
                data_args.eval_dataset_name or data_args.dataset_name, data_args.max_eval_samples)
    if training_args.should_save:
        write_reports([r for r in (train_report, eval_report) if r], training_args.output_dir)
    if distill_args.pseudo_labels:
        train_set = pseudo_label(teacher, processor, training_args, train_set)

    results: dict[str, Any] = {}
    if run.evaluate_before_training and eval_set is not None and resume_from is None:
        teacher_scorer = whisper_recipe.whisper_trainer(teacher, processor, training_args, None, eval_set)
        results["teacher"] = whisper_recipe.evaluate_generation(teacher_scorer, eval_set, processor, "teacher")
        logger.info("teacher: %s", asr_headline(results["teacher"]))

    # the Whisper recipe's trainer brings the collator and metrics; only the training loss differs
    scorer = whisper_recipe.whisper_trainer(student, processor, training_args, None, eval_set)
    trainer = finetune_trainer(
        DistillationTrainer,
        max_batch_seconds=data_args.max_batch_seconds,
        model=student,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=scorer.data_collator,
        processing_class=processor,
        compute_metrics=scorer.compute_metrics,
        callbacks=trainer_callbacks(),
        teacher=teacher,
        distill=distill_args,
    )
    train_output = trainer.train(resume_from_checkpoint=resume_from)
    save_trained(trainer, training_args, metric="wer")
    results["train"] = train_output.metrics

    if eval_set is not None:
        results["eval"] = whisper_recipe.evaluate_generation(trainer, eval_set, processor, "eval")
        logger.info("student: %s", asr_headline(results["eval"]))
        if trainer.is_world_process_zero():
            payload = whisper_recipe.results_payload(results["eval"], distill_args.teacher_model_name_or_path,
                                                     data_args, eval_report, task=NAME)
            payload["student"] = {"teacher_layers": layer_ids, "parameters": count_parameters(student),
                                  "teacher_parameters": count_parameters(teacher),
                                  "pseudo_labels": distill_args.pseudo_labels}
            if "teacher" in results:
                payload["teacher"] = {k: results["teacher"][k] for k in HEADLINE}
            write_eval_outputs(training_args.output_dir, payload, results["eval"].pop("predictions"))
    results.get("teacher", {}).pop("predictions", None)
    return results


def evaluate(model_dir: str, data_args: DataArguments, output_dir: str, batch_size: int = 8) -> dict[str, Any]:
    """A student is a plain Whisper model: scored exactly as the Whisper recipe scores any."""
    return whisper_recipe.evaluate_saved(model_dir, data_args, output_dir, batch_size=batch_size)


def load_teacher(name_or_path: str) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """The teacher and its processor; a missing or unreadable teacher names the config key."""
    try:
        return load_whisper(ModelArguments(model_name_or_path=name_or_path))
    except OSError as error:
        raise FileNotFoundError(
            f"teacher_model_name_or_path: no Whisper model at {name_or_path!r} (expected a saved model dir "
            f"with config.json and model.safetensors, an offline: alias or a reachable Hub id): {error}"
        ) from None


def pseudo_label(teacher: WhisperForConditionalGeneration, processor: WhisperProcessor,
                 training_args: Seq2SeqTrainingArguments, train_set):
    """Replace the training labels with the teacher's transcripts of the same audio.

    The given transcripts stay in the ``text`` column; ``labels`` are the teacher's words, tokenized
    the way the Whisper recipe tokenizes transcripts, so the student learns what the teacher says.
    """
    if not hasattr(train_set, "column_names") or not hasattr(train_set, "__len__"):
        raise ValueError("pseudo_labels needs a sized training split: it does not work with streaming: true")
    labeller = whisper_recipe.whisper_trainer(teacher, processor, training_args, None, None)
    output, elapsed = predict_in_order(labeller, train_set, "pseudo")
    transcripts, _ = whisper_recipe.decode_ids(output.predictions, output.label_ids, processor.tokenizer)
    normalize = scoring_normalizer("en")
    changed = sum(normalize(new) != normalize(old) for new, old in zip(transcripts, train_set["text"]))
    logger.info("pseudo-labels: the teacher transcribed %d training clips in %.0f s; %d differ from the given "
                "transcripts (after Whisper's English normalization)", len(transcripts), elapsed, changed)
    labels = processor.tokenizer([" " + t for t in transcripts]).input_ids
    return train_set.remove_columns("labels").add_column("labels", labels).add_column("pseudo_text", transcripts)
