"""Whisper training labels with timestamps kept and prompts in front: written the way Whisper decodes
(``<|0.00|> text <|end|>``; ``get_prompt_ids`` + prefix), and the prompt read but never a target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import WhisperForConditionalGeneration, WhisperProcessor

import finetune
from finetune.data.collators import IGNORE_INDEX, SpeechSeq2SeqCollator
from finetune.models.whisper import WhisperArguments, row_labels
from finetune.tasks.whisper_common import drawn, prompt_start_token

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def processor(tiny_whisper_dir: Path) -> WhisperProcessor:
    processor = WhisperProcessor.from_pretrained(tiny_whisper_dir)
    processor.tokenizer.set_prefix_tokens(predict_timestamps=False)
    return processor


def test_timed_labels_carry_the_clip_bounds_as_timestamp_tokens(processor: WhisperProcessor) -> None:
    tokenizer = processor.tokenizer
    plain, timed = row_labels(tokenizer, ["two three", "two three"], ["", ""], end_seconds=[None, 1.234])
    assert tokenizer.convert_tokens_to_ids("<|notimestamps|>") in plain
    assert tokenizer.convert_tokens_to_ids("<|notimestamps|>") not in timed
    assert tokenizer.decode(timed, decode_with_timestamps=True, skip_special_tokens=True) == \
        "<|0.00|> two three<|1.24|>"
    assert tokenizer.decode(timed, skip_special_tokens=True) == tokenizer.decode(plain, skip_special_tokens=True)
    silent = row_labels(tokenizer, [""], [""], end_seconds=[2.0])[0]  # a no-speech clip stays untimed
    assert silent == [*tokenizer.prefix_tokens, tokenizer.eos_token_id]


def test_prompted_labels_start_with_the_prompt_ids_generate_uses(processor: WhisperProcessor) -> None:
    tokenizer = processor.tokenizer
    plain, prompted = row_labels(tokenizer, ["nine", "nine"], ["", ""], prompts=[None, " seven  eight "])
    prompt = [int(i) for i in tokenizer.get_prompt_ids("seven eight")]
    assert prompted == prompt + plain
    long_prompt = row_labels(tokenizer, ["nine"], [""], prompts=["one " * 400])[0]
    assert long_prompt[0] == prompt[0] and len(long_prompt) == 1 + 223 + len(plain)  # the end of a long one kept


def test_prompt_is_read_but_not_a_target(processor: WhisperProcessor, tiny_whisper_dir: Path) -> None:
    tokenizer = processor.tokenizer
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    start = model.config.decoder_start_token_id
    collator = SpeechSeq2SeqCollator(processor, start, prompt_start_token_id=prompt_start_token(tokenizer))
    plain, prompted = row_labels(tokenizer, ["nine", "nine"], ["", ""], prompts=[None, "seven eight"])
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    batch = collator([{"audio": audio, "labels": plain}, {"audio": audio, "labels": prompted}])
    assert batch["decoder_input_ids"].shape == batch["labels"].shape
    assert batch["decoder_input_ids"][1, 0] == tokenizer.convert_tokens_to_ids("<|startofprev|>")
    shown = [t for t in batch["labels"][1].tolist() if t != IGNORE_INDEX]
    assert shown == plain[1:]  # the same targets as the plain row: the prompt and the start token masked
    alone = collator([{"audio": audio, "labels": plain}])
    assert "decoder_input_ids" not in alone and alone["labels"][0].tolist() == plain[1:]
    with torch.no_grad():  # the plain row's loss is the same whether or not a prompted row shares its batch
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        alone_logits = model(input_features=alone["input_features"], labels=alone["labels"]).logits
    assert torch.allclose(logits[0, : alone_logits.shape[1]], alone_logits[0], atol=1e-5)


def test_shares_are_seeded_draws_near_their_probability() -> None:
    sources = [f"clip_{i}.wav" for i in range(2000)]
    picks = [drawn(42, "timestamps", s, 0.2) for s in sources]
    assert picks == [drawn(42, "timestamps", s, 0.2) for s in sources]  # the same run writes the same labels
    assert 0.17 < sum(picks) / len(picks) < 0.23
    assert picks != [drawn(7, "timestamps", s, 0.2) for s in sources]
    assert not any(drawn(42, "prompt", s, 0.0) for s in sources)


@pytest.mark.parametrize("value", [-0.1, 1.5, True])
def test_shares_must_be_probabilities(value) -> None:
    with pytest.raises(ValueError, match="timestamp_probability must be a number from 0 to 1"):
        WhisperArguments(timestamp_probability=value)


@pytest.mark.slow
def test_training_with_prompts_and_timestamps_then_prompted_decoding(tmp_path: Path, tiny_whisper_dir: Path) -> None:
    """A run with a prompt column and every label timed trains, and the saved model decodes with
    ``prompt_ids`` and with timestamps through ``pipeline()``."""
    import csv
    import shutil

    sample = Path(finetune.__file__).parent / "samples" / "fsdd"
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
        with open(sample / split / "metadata.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))[:8]
        with open(tmp_path / "data" / split / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "transcript", "previous"])
            for index, row in enumerate(rows):
                shutil.copy(sample / split / row["file_name"], tmp_path / "data" / split / row["file_name"])
                writer.writerow([row["file_name"], row["transcript"], rows[index - 1]["transcript"]])
    config = {"task": "asr_seq2seq", "model_name_or_path": str(tiny_whisper_dir), "dataset_name": str(tmp_path / "data"),
              "prompt_column_name": "previous", "prompt_probability": 1.0, "timestamp_probability": 1.0,
              "max_duration_in_seconds": 2, "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 4,
              "max_steps": 2, "learning_rate": 1e-3, "generation_max_length": 8, "save_strategy": "no",
              "use_cpu": True, "seed": 1}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    results = finetune.train(path)
    assert results["train"]["train_loss"] > 0
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(tmp_path / "run"))
    tokenizer = asr.tokenizer
    clip = {"raw": np.zeros(16000, dtype=np.float32), "sampling_rate": 16000}
    prompted = asr(dict(clip), generate_kwargs={"prompt_ids": tokenizer.get_prompt_ids("zero one",
                                                                                        return_tensors="pt")})
    assert isinstance(prompted["text"], str) and "zero one" not in prompted["text"][:8]  # the prompt is not output
    assert "chunks" in asr(dict(clip), return_timestamps=True)
