"""Task: fine-tune an encoder-decoder speech recognizer (Whisper) with Seq2SeqTrainer.

prepare (model, processor, language) -> zero-shot score at the checkpoint's context -> trim the
context, freeze, add LoRA adapters -> train -> merge adapters -> save -> score.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from finetune.data.joining import ClipJoiningArguments
from finetune.models import dynamic_context
from finetune.models.decoding_defaults import DecodingArguments
from finetune.models.lora import LoraArguments, apply_lora, merge_lora
from finetune.models.speech_encoder import (
    EncoderContextArguments,
    FreezeArguments,
    SpecAugmentArguments,
)
from finetune.models.whisper import (
    WhisperArguments,
    configure_generation,
    context_seconds,
    freeze_for_finetuning,
    load_whisper,
    model_language,
    set_encoder_context,
)
from finetune.outputs import LORA_ADAPTER_DIR
from finetune.tasks.base import TaskRun
from finetune.tasks.whisper_common import WhisperTask, bound_clip_length

logger = logging.getLogger(__name__)


class WhisperFineTuning(WhisperTask):
    name = "asr_seq2seq"
    option_classes = (WhisperArguments, EncoderContextArguments, FreezeArguments, LoraArguments, ClipJoiningArguments,
                      DecodingArguments, SpecAugmentArguments)

    def prepare(self, run: TaskRun) -> None:
        options = run.options
        run.model, run.processor = load_whisper(options.model)
        run.model.config.update(options[SpecAugmentArguments].overrides())  # read at each training forward
        # per-row languages (language_column_name): each label carries its own, the model detects it
        per_row = bool(options.data.language_column_name)
        configure_generation(run.model, run.processor, language=None if per_row else options.data.language,
                             task=options[WhisperArguments].whisper_task)
        run.language = run.language or model_language(run.model)
        run.state["max_label_length"] = options[WhisperArguments].max_label_length
        dynamic_context.serve_as_trained(run.model)  # a model saved at dynamic context is scored so
        context = options[EncoderContextArguments].encoder_context_seconds or context_seconds(run.processor)
        if options.data.max_duration_in_seconds > context:
            logger.info("clips longer than the encoder context (%d s) are bad rows", context)
        bound_clip_length(run, context)
        run.state["window_seconds"] = context  # joined training recordings (join_clips) fit it

    def adapt_for_training(self, run: TaskRun, model: Any) -> Any:
        options = run.options
        context = options[EncoderContextArguments]
        if context.encoder_context_seconds is not None:  # a fixed window replaces a dynamic one
            dynamic_context.disable_dynamic_context(model)
            dynamic_context.unmark(model.config)
            set_encoder_context(model, run.processor, context.encoder_context_seconds)
        self.start_dynamic_context(run, model, context.dynamic_step_seconds)
        freeze = options[FreezeArguments]
        freeze_for_finetuning(model, freeze_encoder=freeze.freeze_encoder,
                              freeze_feature_encoder=bool(freeze.freeze_feature_encoder))
        return apply_lora(model, options[LoraArguments])

    def finish_training(self, run: TaskRun, trainer: Any) -> dict[str, Any]:
        """Save and score a plain model: LoRA adapters merged into the weights (kept apart too)."""
        if run.options[LoraArguments].lora_r:
            output_dir = Path(run.options.training.output_dir)
            adapter_dir = output_dir / LORA_ADAPTER_DIR if trainer.is_world_process_zero() else None
            trainer.model = trainer.model_wrapped = run.model = merge_lora(trainer.model, adapter_dir)
        return super().finish_training(run, trainer)
