"""Batch builders: waveforms in, model inputs out.

Features are computed per batch from the cached waveforms (see :mod:`finetune.data.speech`), which
keeps the cache model-independent and lets dataloader workers overlap feature work with training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


@dataclass
class SpeechSeq2SeqCollator:
    """Log-mel features + labels for encoder-decoder ASR (Whisper).

    Labels are padded with -100 so the loss ignores padding. The tokenizer writes the decoder start
    token at the front of every label sequence; the model's shift-right adds it back, so it is
    dropped here, once, rather than trained on twice. A batch holding a prompted row (labels that
    start with ``<|startofprev|>``, see :func:`finetune.models.whisper.row_labels`) gets its decoder
    inputs written out instead: the prompt is read, as at inference, but never a target.
    """

    processor: Any
    decoder_start_token_id: int
    # dynamic encoder context: pad to the batch's longest clip rounded up to this step, not to the window
    dynamic_step_seconds: float | None = None
    prompt_start_token_id: int | None = None  # <|startofprev|>

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        audio = [np.asarray(row["audio"], dtype=np.float32) for row in rows]
        extractor = self.processor.feature_extractor
        # the mask goes to generate at evaluation: without it, generate warns that it cannot infer one
        # (Whisper's pad and end tokens are the same); the encoder itself reads every frame
        batch = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt",
                          return_attention_mask=True, **dynamic_padding(extractor, audio, self.dynamic_step_seconds))
        if "labels" in rows[0]:
            sequences = [np.asarray(row["labels"]).tolist() for row in rows]
            if self.prompt_start_token_id is not None and any(s[:1] == [self.prompt_start_token_id]
                                                              for s in sequences):
                batch["decoder_input_ids"], batch["labels"] = prompted_decoder_batch(
                    sequences, self.decoder_start_token_id, self.processor.tokenizer.pad_token_id)
            else:
                batch["labels"] = pad_labels(sequences, self.decoder_start_token_id)
        return batch


def prompted_decoder_batch(sequences: list[list[int]], decoder_start_token_id: int,
                           pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder inputs, labels) of full label sequences, some with a prompt in front of the decoder start
    token: inputs are each sequence but its last token, labels the sequence shifted by one with every
    target up to the decoder start token (the prompt and the start itself) set to -100."""
    longest = max(len(s) for s in sequences) - 1
    inputs = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    labels = torch.full((len(sequences), longest), IGNORE_INDEX, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        start = sequence.index(decoder_start_token_id)
        inputs[i, : len(sequence) - 1] = torch.tensor(sequence[:-1], dtype=torch.long)
        targets = torch.tensor(sequence[1:], dtype=torch.long)
        targets[:start] = IGNORE_INDEX
        labels[i, : len(sequence) - 1] = targets
    return inputs, labels


def dynamic_padding(extractor: Any, audio: list[np.ndarray], step_seconds: float | None) -> dict[str, Any]:
    """Feature-extractor arguments that pad a batch to its longest clip rounded up to ``step_seconds``
    (none: the extractor's own window)."""
    if step_seconds is None:
        return {}
    longest = max(len(a) for a in audio)
    return {"max_length": padded_samples(longest, step_seconds, extractor.sampling_rate, extractor.n_samples)}


def padded_samples(longest_samples: int, step_seconds: float, sampling_rate: int, window_samples: int) -> int:
    """Samples to pad a batch to: its longest clip rounded up to the step (an even number of 10 ms
    frames, as Whisper's strided convolution needs), at most the window."""
    frames = max(2, int(round(step_seconds * 100)))
    step = (frames + frames % 2) * sampling_rate // 100
    return min(window_samples, max(step, math.ceil(longest_samples / step) * step))


def pad_labels(sequences: list[list[int]], decoder_start_token_id: int | None = None) -> torch.Tensor:
    """Right-pad with -100; drop a leading decoder start token shared by every row."""
    if decoder_start_token_id is not None and all(len(s) and s[0] == decoder_start_token_id for s in sequences):
        sequences = [s[1:] for s in sequences]
    longest = max(len(s) for s in sequences)
    labels = torch.full((len(sequences), longest), IGNORE_INDEX, dtype=torch.long)
    for i, sequence in enumerate(sequences):
        # a copy: rows read from Arrow are read-only arrays, which torch warns about sharing
        labels[i, : len(sequence)] = torch.from_numpy(np.array(sequence, dtype=np.int64))
    return labels


@dataclass
class CTCCollator:
    """Raw waveforms (``input_values``, normalised and padded by the feature extractor) + CTC labels.

    Labels are padded with -100: CTC loss reads only the real characters of each row.
    ``attention_mask`` is returned when the feature extractor is set to (models with layer-norm
    feature encoders); group-norm models (wav2vec2-base) expect zero-padded audio without it.
    Rows that carry ``frames_column`` (each clip's number of encoder frames) pass it on, so that
    evaluation can tell a clip's frames from the batch padding's; it is not a model input.
    """

    processor: Any
    frames_column: str = "ctc_frames"

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        audio = [np.asarray(row["audio"], dtype=np.float32) for row in rows]
        extractor = self.processor.feature_extractor
        batch = extractor(audio, sampling_rate=extractor.sampling_rate, padding=True, return_tensors="pt")
        if "labels" in rows[0]:
            batch["labels"] = pad_labels([np.asarray(row["labels"]).tolist() for row in rows])
        if self.frames_column in rows[0]:
            batch[self.frames_column] = torch.as_tensor([int(row[self.frames_column]) for row in rows])
        return batch


@dataclass
class AudioClassificationCollator:
    """Waveforms -> features of any audio encoder, plus one class id a row.

    ``padding`` is what the encoder needs: ``True`` (to the longest clip) for Wav2Vec2-family
    models, ``"max_length"`` for Whisper, whose encoder only accepts its full context.
    """

    feature_extractor: Any
    padding: bool | str = True

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        audio = [np.asarray(row["audio"], dtype=np.float32) for row in rows]
        extractor = self.feature_extractor
        batch = extractor(audio, sampling_rate=extractor.sampling_rate, padding=self.padding, return_tensors="pt")
        if "labels" in rows[0]:
            batch["labels"] = torch.as_tensor([int(row["labels"]) for row in rows], dtype=torch.long)
        return batch
