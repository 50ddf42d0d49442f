"""Sequential (long-form Whisper) transcription streams long files: the same features, the same text.

Before, the pipeline computed the log-mel features of the whole recording at once: peak RSS grew with
the file's length (tiny random Whisper, 8 kHz WAV of FSDD digits: 1.31 GB for 20 minutes, 2.85 GB for
60); streamed: 0.62 GB and 0.63 GB (a 20-second clip: 0.60 GB), with byte-identical segments, and the
same on real tiny.en (5 minutes, segment timestamps).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import WhisperFeatureExtractor

import finetune.inference.transcribe as transcribe_module
from finetune.inference import streaming
from finetune.inference.streaming import StreamedFeatures
from finetune.inference.transcribe import StreamedAudio, TranscribeOptions, Transcriber
from tests.helpers import tone

RATE = 22050


def _speechy(num_samples: int, seed: int = 0) -> np.ndarray:
    """Noise bursts and tones with a changing loudness: a spectrum with a real maximum to clamp under."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / 16000
    envelope = 0.05 + 0.3 * np.abs(np.sin(2 * np.pi * t / 7.3)) * (np.sin(2 * np.pi * t / 1.7) > 0)
    signal = rng.standard_normal(num_samples) * 0.2 + np.sin(2 * np.pi * (300 + 40 * np.sin(t)) * t)
    return (envelope * signal).astype(np.float32)


@pytest.mark.parametrize("num_samples", [480161, 3000 * 160 * 2 + 160 + 37, 16000 * 75 + 59])
def test_streamed_frames_equal_the_extractors_whole_file_features(num_samples: int) -> None:
    """Bit for bit: first and last frames (reflected ends), windows at odd offsets, one frame alone
    (a single column rounds differently if not widened), and the clamp under the global maximum."""
    extractor = WhisperFeatureExtractor()
    audio = _speechy(num_samples)
    audio[num_samples // 2:num_samples // 2 + 4000] *= 8  # the loudest moment is in the middle
    whole = extractor(audio, sampling_rate=16000, truncation=False, padding="longest", return_tensors="pt",
                      return_attention_mask=True)
    expected = whole["input_features"]
    features = StreamedFeatures(audio, extractor)
    assert features.num_frames == expected.shape[-1] == whole["attention_mask"].shape[-1]
    frames = features.num_frames
    for start, stop in [(0, 3000), (0, 1), (1, 2), (1234, 4234), (frames - 3000, frames), (frames - 1, frames),
                        (frames - 17, frames), (3000, 6000), (2999, 3001)]:
        stop = min(stop, frames)
        assert torch.equal(features.frames(start, stop), expected[:, :, start:stop]), (start, stop)


@pytest.fixture(scope="module")
def long_stereo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """70 s of stereo at 22.05 kHz: more than two windows, resampled and downmixed on the way."""
    path = tmp_path_factory.mktemp("sequential") / "long.wav"
    # louder towards the end: the first windows' own maxima are below the recording's (which clamps them)
    mono = np.concatenate([tone(10.0, rate=RATE, freq=200 + 50 * i) * (i + 1) / 7 for i in range(7)])
    mono[RATE * 33:RATE * 36] = 0.0  # a silence: the random model's timestamps move the windows about
    sf.write(path, np.stack([mono, 0.5 * mono], axis=1), RATE)
    return path


@pytest.mark.parametrize("timestamps", ["segment", "word"])
def test_sequential_transcripts_stream_in_bounded_blocks_and_equal_the_whole_file_ones(
        timestamps: str, tiny_whisper_dir: Path, long_stereo: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import whisper_stopping_early

    model_dir = whisper_stopping_early(tiny_whisper_dir, tmp_path / "whisper", max_length=12)
    transcriber = Transcriber(model_dir, TranscribeOptions(device="cpu", num_beams=1, timestamps=timestamps,
                                                           progress=False))
    assert transcriber.long_form == "sequential"
    slices: list[tuple[int, int]] = []
    held: list[int] = []
    original = StreamedAudio.__getitem__

    def recording(self, index):
        slices.append((index.start, index.stop))
        samples = original(self, index)
        held.append(len(self._buffer))
        return samples

    monkeypatch.setattr(StreamedAudio, "__getitem__", recording)
    monkeypatch.setattr(transcribe_module, "STREAM_MIN_S", 30.0)
    [streamed] = list(transcriber([long_stereo]))
    window = 30 * 16000 + 400  # a window's samples and the STFT's reach either side
    assert slices and max(stop - start for start, stop in slices) <= window  # read a window at a time
    assert max(held) <= window + transcribe_module.STREAM_BLOCK_S * 16000 + 1  # and only that is held
    monkeypatch.setattr(transcribe_module, "STREAM_MIN_S", 1e9)  # decoded whole, as before
    count = len(slices)
    [whole] = list(transcriber([long_stereo]))
    assert len(slices) == count
    assert streamed.error is None and whole.error is None
    assert streamed.transcript.text == whole.transcript.text and whole.transcript.text  # random weights: text
    assert streamed.transcript.segments == whole.transcript.segments and len(whole.transcript.segments) > 1
    assert streamed.transcript.words == whole.transcript.words
    assert streamed.transcript.duration == pytest.approx(whole.transcript.duration)


def test_language_detection_sees_the_first_window_and_a_bypass_is_an_error(tiny_whisper_dir: Path) -> None:
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper_dir).eval()
    streaming.install(model)
    extractor = WhisperFeatureExtractor()
    audio = _speechy(16000 * 40)
    expected = extractor(audio, sampling_rate=16000, truncation=False, padding="longest",
                         return_tensors="pt")["input_features"]
    placeholder = StreamedFeatures(audio, extractor).placeholder(dtype=torch.float32, device="cpu")
    seen: list[torch.Tensor] = []
    handle = model.get_encoder().register_forward_pre_hook(
        lambda _m, args, kwargs: seen.append((args[0] if args else kwargs["input_features"]).clone()),
        with_kwargs=True)
    config = model.generation_config
    config.lang_to_id = {"<|en|>": 50259, "<|de|>": 50261}
    streamed_ids = model.detect_language(input_features=placeholder, generation_config=config)
    whole_ids = model.detect_language(input_features=expected, generation_config=config)
    handle.remove()
    assert torch.equal(seen[0], expected[:, :, :3000]) and torch.equal(seen[0], seen[1])
    assert torch.equal(streamed_ids, whole_ids)
    with pytest.raises(RuntimeError, match="streamed features"):
        model.get_encoder()(placeholder[:, :, :3000])


def test_a_streamed_recording_that_fits_one_window_is_featurized_whole(tiny_whisper_dir: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.helpers import whisper_stopping_early

    path = tmp_path / "short.wav"
    sf.write(path, tone(5.0, rate=RATE), RATE)
    model_dir = whisper_stopping_early(tiny_whisper_dir, tmp_path / "whisper", max_length=8)
    transcriber = Transcriber(model_dir, TranscribeOptions(device="cpu", num_beams=1, progress=False))
    monkeypatch.setattr(transcribe_module, "STREAM_MIN_S", 1.0)
    assert isinstance(transcriber._load(path), StreamedAudio)
    [streamed] = list(transcriber([path]))
    monkeypatch.setattr(transcribe_module, "STREAM_MIN_S", 1e9)
    [whole] = list(transcriber([path]))
    assert streamed.transcript.text == whole.transcript.text and whole.transcript.text
