"""The trainer builder leaves no notice on the console that a user cannot act on."""

from __future__ import annotations

import logging
import warnings
from unittest import mock

import numpy as np
import pytest
import torch
from transformers import (
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    trainer_utils,
)

from finetune.data.collators import SpeechSeq2SeqCollator, pad_labels
from finetune.models import generate_notices
from finetune.training.trainers import align_special_tokens, build_trainer
from tests.helpers import build_tiny_whisper


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_whisper(tmp_path_factory.mktemp("tiny") / "whisper")
    return WhisperForConditionalGeneration.from_pretrained(path), WhisperProcessor.from_pretrained(path)


def test_trainer_built_on_cpu_pins_no_memory_and_needs_no_token_alignment(tiny, tmp_path):
    model, processor = tiny
    model.config.bos_token_id = 12345  # differs from the tokenizer's, as tiny.en's config does
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = build_trainer(Seq2SeqTrainer, model=model, args=args, processing_class=processor)
    if not torch.cuda.is_available():
        assert trainer.args.dataloader_pin_memory is False
    assert model.config.bos_token_id == processor.tokenizer.bos_token_id
    assert model.generation_config.bos_token_id == processor.tokenizer.bos_token_id
    with mock.patch.object(trainer_utils.logger, "warning") as warning:
        trainer_utils.align_special_tokens(model, processor)
    warning.assert_not_called()  # nothing left for the Trainer to align, so nothing to warn about


def test_alignment_keeps_a_list_of_end_tokens(tiny):
    model, processor = tiny
    model.generation_config.eos_token_id = [7, 8]
    align_special_tokens(model, processor)
    assert model.generation_config.eos_token_id == [processor.tokenizer.eos_token_id, 7, 8]


def test_labels_from_read_only_arrays_raise_no_warning():
    row = np.array([50257, 1, 2, 50256], dtype=np.int64)
    row.setflags(write=False)  # what rows read from Arrow are
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = pad_labels([row, row[:2]], decoder_start_token_id=50257)
    assert labels.tolist() == [[1, 2, 50256], [1, -100, -100]]


def test_whisper_batches_carry_the_attention_mask_generate_needs(tiny):
    _, processor = tiny
    collate = SpeechSeq2SeqCollator(processor, decoder_start_token_id=50257, dynamic_step_seconds=1.0)
    batch = collate([{"audio": np.zeros(8000, np.float32)}, {"audio": np.zeros(24000, np.float32)}])
    assert batch["attention_mask"].shape == batch["input_features"].shape[::2]
    assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()


def test_only_whisper_generates_own_suppress_token_notice_is_filtered():
    generate_notices.install()
    generate_notices.install()  # idempotent
    logger = logging.getLogger(generate_notices.GENERATE_LOGGER)
    assert sum(isinstance(f, generate_notices.WhisperSuppressTokensNotice) for f in logger.filters) == 1
    notice = ("Passing `generation_config` together with generation-related arguments=({args}) is deprecated "
              "and will be removed in future versions.")

    def kept(args: str) -> bool:
        record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, notice.format(args=args), None, None)
        return logger.filter(record)

    assert not kept("{'suppress_tokens', 'begin_suppress_tokens'}")
    assert not kept("{'begin_suppress_tokens', 'suppress_tokens'}")
    assert kept("{'suppress_tokens', 'max_new_tokens'}")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "something else", None, None)
    assert logger.filter(record)


def test_missing_end_timestamp_notice_is_dropped_only_while_finetune_decodes(tmp_path, caplog):
    """Silence with segment timestamps: transformers says the last segment has no end on every file; the
    transcriber gives it one (the file's end) and the console stays quiet, and a user's own call still warns."""
    import soundfile as sf

    from finetune.inference.transcribe import TranscribeOptions, Transcriber

    logger = logging.getLogger(generate_notices.TOKENIZER_LOGGER)
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1,
                               generate_notices.MISSING_END + ", which can happen...", None, None)
    with generate_notices.missing_end_timestamp_handled():
        assert not logger.filter(record)
    assert logger.filter(record)  # outside finetune's decoding, the user's own pipeline() call sees it
    path = build_tiny_whisper(tmp_path / "whisper")
    clip = tmp_path / "silence.wav"
    sf.write(clip, np.zeros(32000, np.float32), 16000)
    transcriber = Transcriber(path, TranscribeOptions(progress=False, num_beams=1, timestamps="segment"))
    with caplog.at_level(logging.WARNING):
        [result] = transcriber([clip])
    assert result.error is None
    assert all(segment.end is not None for segment in result.transcript.segments)
    assert generate_notices.MISSING_END not in caplog.text


def test_matplotlib_font_cache_notice_is_dropped_where_plots_are_drawn(tmp_path):
    from finetune.evaluation import plots

    plots.plot_confusion_matrix(["a", "b"], ["a", "a"], tmp_path / "cm.png")
    logger = logging.getLogger("matplotlib.font_manager")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1,
                               "Matplotlib is building the font cache; this may take a moment.", None, None)
    assert not logger.filter(record)
    other = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "findfont: Font family not found", None, None)
    assert logger.filter(other)  # every other matplotlib warning still shows
    assert (tmp_path / "cm.png").stat().st_size > 0
