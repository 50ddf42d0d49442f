"""A silent clip judged by the no-speech threshold must not take its batch down."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from finetune.inference.transcribe import TranscribeOptions, Transcriber
from finetune.models.whisper_generate import IntegerTokenIds, keep_token_ids_integer
from tests.helpers import build_tiny_whisper


def test_float_token_ids_come_back_as_integers() -> None:
    wrapped = IntegerTokenIds(lambda: torch.tensor([[50257.0, 0.0]]))
    assert wrapped().dtype == torch.long
    as_dict = IntegerTokenIds(lambda: {"sequences": torch.tensor([[1.0]])})
    assert as_dict()["sequences"].dtype == torch.long

    class Model:
        def generate(self):
            return torch.tensor([[1, 2]])

    model = Model()
    keep_token_ids_integer(model)
    keep_token_ids_integer(model)  # once
    assert isinstance(model.generate, IntegerTokenIds) and not isinstance(model.generate.generate, IntegerTokenIds)
    assert model.generate().tolist() == [[1, 2]]


def test_a_batch_with_a_skipped_silent_clip_decodes(tmp_path, monkeypatch) -> None:
    model_dir = build_tiny_whisper(tmp_path / "whisper")
    files = []
    for index in range(3):
        path = tmp_path / f"clip{index}.wav"
        sf.write(path, np.random.default_rng(index).normal(0, 0.1, 16000).astype(np.float32), 16000)
        files.append(path)
    options = TranscribeOptions(batch_size=3, progress=False, temperature=(0.0, 0.5), log_prob_threshold=-1.0,
                                no_speech_threshold=0.5)
    transcriber = Transcriber(model_dir, options)
    inner = transcriber.pipe.model.generate.generate

    def skipping(*args, **kwargs):  # what transformers returns when it skips one clip as silent
        tokens = inner(*args, **kwargs)
        tokens = tokens["sequences"] if isinstance(tokens, dict) else tokens
        return tokens.float()

    transcriber.pipe.model.generate.generate = skipping
    results = list(transcriber(files))
    assert [r.error for r in results] == [None, None, None]
    with pytest.raises(TypeError):  # without the wrapper, the pipeline cannot decode the batch
        transcriber.pipe.model.generate = skipping
        list(transcriber(files))
