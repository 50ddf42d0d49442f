"""Chunked transcription streams long files: decoded block by block, the same windows, the same text.

Before, ``finetune transcribe`` decoded a whole recording (at its own rate and channel count) before the
first window: peak memory grew with the file's length (a 20-minute 44.1 kHz stereo WAV: 1.35 GB peak
RSS with the tiny model, against 0.6 GB for a 20-second clip; streamed: 0.67 GB).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import finetune.inference.transcribe as transcribe_module
from finetune.data.audio import AudioDecodeError, load_audio
from finetune.inference.transcribe import StreamedAudio, TranscribeOptions, Transcriber
from tests.helpers import tone

RATE = 22050


@pytest.fixture(scope="module")
def stereo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """70 s of stereo at 22.05 kHz: resampled and downmixed on the way."""
    path = tmp_path_factory.mktemp("stream") / "long.wav"
    mono = np.concatenate([tone(10.0, rate=RATE, freq=200 + 50 * i) for i in range(7)])
    sf.write(path, np.stack([mono, 0.5 * mono], axis=1), RATE)
    return path


@pytest.fixture(scope="module")
def tiny_ctc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    target = tmp_path_factory.mktemp("tiny-ctc")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (target / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(target / "vocab.json"), pad_token="<pad>", unk_token="<unk>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                         return_attention_mask=True)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16, 32), conv_kernel=(10, 8, 4), conv_stride=(5, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=len(vocab),
                            pad_token_id=0, feat_extract_norm="layer", do_stable_layer_norm=True)
    torch.manual_seed(1)
    Wav2Vec2ForCTC(config).save_pretrained(target)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(target)
    return target


def test_windows_are_read_block_by_block_and_match_the_whole_file(stereo: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    original = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        data = original(self, frames, *args, **kwargs)
        reads.append(frames)
        return data

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    audio = StreamedAudio(stereo, 16000, block_seconds=2.0)
    block = int(2.0 * RATE)
    assert reads and set(reads) == {block}  # the counting pass reads blocks too, never the whole file
    whole = load_audio(stereo, 16000)
    assert len(audio) == whole.size

    reads.clear()
    window, step = 16000 * 8, 16000 * 6
    first = audio[0:window]
    assert sum(reads) <= window * RATE / 16000 + block  # the first window needs only its own frames
    assert np.array_equal(first, whole[:window])
    for start in range(step, whole.size, step):
        assert np.array_equal(audio[start:start + window], whole[start:start + window])
    assert len(audio._buffer) <= window + block * 16000 / RATE + 1  # only the current window is held
    assert np.array_equal(audio[16000:32000], whole[16000:32000])  # going back re-reads from the start


def test_a_bad_stream_fails_like_load_audio(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.0, np.nan, 0.1] * 1000, dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="NaN/Inf"):
        StreamedAudio(path, 16000)
    assert not StreamedAudio.can_stream(tmp_path / "missing.wav")


@pytest.mark.parametrize("model", ["ctc", "whisper"])
def test_streamed_chunked_transcripts_equal_the_whole_file_ones(model: str, tiny_ctc: Path, tiny_whisper_dir: Path,
                                                                stereo: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    if model == "whisper":
        from tests.helpers import whisper_stopping_early

        model_dir = whisper_stopping_early(tiny_whisper_dir, tmp_path / "whisper", max_length=6)
        options = TranscribeOptions(long_form="chunked", chunk_length_s=10, batch_size=4, device="cpu", num_beams=1)
    else:
        model_dir = tiny_ctc
        options = TranscribeOptions(chunk_length_s=10, batch_size=4, device="cpu")
    transcriber = Transcriber(model_dir, options)
    streamed: list[int] = []
    monkeypatch.setattr(transcribe_module, "STREAM_MIN_S", 30.0)
    monkeypatch.setattr(StreamedAudio, "__init__", _recording(StreamedAudio.__init__, streamed))
    [with_stream] = list(transcriber([stereo]))
    assert streamed == [1]
    monkeypatch.setattr(transcribe_module, "STREAM_MIN_S", 1e9)  # decoded whole, as before
    [whole] = list(transcriber([stereo]))
    assert streamed == [1]
    assert with_stream.transcript.text == whole.transcript.text and whole.transcript.text  # random weights: text
    assert with_stream.transcript.duration == pytest.approx(whole.transcript.duration)


def _recording(init, calls: list[int]):
    def wrapped(self, *args, **kwargs):
        calls.append(1)
        init(self, *args, **kwargs)

    return wrapped
