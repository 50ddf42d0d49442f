"""Tests for finetune.data.audio: every format/rate/channel layout decodes, every bad input is an
AudioDecodeError. All synthetic files are written into tmp_path; real files come from shared/data."""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune.data import audio
from finetune.data.audio import AudioDecodeError, audio_duration, load_audio

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MP3_WRITABLE = "MPEG_LAYER_III" in sf.available_subtypes("MP3")
needs_mp3 = pytest.mark.skipif(not MP3_WRITABLE, reason="this libsndfile cannot write MPEG_LAYER_III")


def sine(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def write(path: Path, data: np.ndarray, rate: int, **kwargs) -> Path:
    sf.write(path, data, rate, **kwargs)
    return path


def assert_audio(y: np.ndarray) -> None:
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1
    assert np.isfinite(y).all()


# --- formats and subtypes ---------------------------------------------------------------------------

FORMATS = [
    # (format, subtype, extension, max abs error vs the float source; None = lossy, compare spectrum)
    ("WAV", "PCM_U8", "wav", 1 / 64),
    ("WAV", "PCM_16", "wav", 1e-4),
    ("WAV", "PCM_24", "wav", 1e-6),
    ("WAV", "FLOAT", "wav", 0.0),
    ("FLAC", "PCM_16", "flac", 1e-4),
    ("FLAC", "PCM_24", "flac", 1e-6),
    ("OGG", "VORBIS", "ogg", None),
    pytest.param("MP3", "MPEG_LAYER_III", "mp3", None, marks=needs_mp3),
]


@pytest.mark.parametrize("fmt,subtype,ext,tolerance", FORMATS)
def test_every_subtype_decodes(tmp_path, fmt, subtype, ext, tolerance):
    x = sine(16000)
    path = write(tmp_path / f"a.{ext}", x, 16000, format=fmt, subtype=subtype)
    y = load_audio(path, 16000)
    assert_audio(y)
    assert y.min() >= -1.0 and y.max() <= 1.0
    if tolerance is not None:
        assert len(y) == len(x)
        assert np.abs(y - x).max() <= tolerance
    else:  # lossy codecs may pad or trim a little; the tone and its level survive
        assert abs(len(y) - len(x)) <= 0.05 * len(x)
        assert abs(peak_frequency(y, 16000) - 440) <= 2
        assert np.sqrt(np.mean(y**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_str_and_pathlike_sources_agree(tmp_path):
    path = write(tmp_path / "a.wav", sine(16000), 16000)
    np.testing.assert_array_equal(load_audio(path, 16000), load_audio(str(path), 16000))


def test_matching_rate_is_returned_untouched(tmp_path):
    x = sine(16000, amp=0.9)
    path = write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, 16000), x)


# --- sample rates -------------------------------------------------------------------------------------


def test_96k_to_16k_keeps_duration_and_pitch(tmp_path):
    path = write(tmp_path / "hi.wav", sine(96000), 96000, subtype="PCM_24")
    y = load_audio(path, 16000)
    assert_audio(y)
    assert abs(len(y) - 16000) <= 1
    assert abs(peak_frequency(y, 16000) - 440) <= 1  # 1 s of signal -> 1 Hz bins
    assert np.abs(y[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_other_rates_resample_to_expected_length(tmp_path, rate):
    path = write(tmp_path / f"{rate}.wav", sine(rate, seconds=0.5), rate)
    y = load_audio(path, 16000)
    assert_audio(y)
    assert abs(len(y) - 8000) <= 1
    assert abs(peak_frequency(y, 16000) - 440) <= 2


def test_8k_upsampling_keeps_pitch(tmp_path):
    path = write(tmp_path / "lo.wav", sine(8000), 8000)
    y = load_audio(path, 16000)
    assert abs(len(y) - 16000) <= 1
    assert abs(peak_frequency(y, 16000) - 440) <= 1
    assert np.abs(y[1000:-1000]).max() == pytest.approx(0.5, abs=0.01)


def test_resampling_overshoot_is_clipped_for_integer_formats(tmp_path):
    square = np.where(sine(44100, amp=1.0) >= 0, 0.99997, -1.0).astype(np.float32)
    path = write(tmp_path / "sq.wav", square, 44100, subtype="PCM_16")
    y = load_audio(path, 16000)
    assert y.min() >= -1.0 and y.max() <= 1.0


@pytest.mark.parametrize("bad_rate", [0, -16000, 16000.5, True])
def test_invalid_target_rate_is_a_value_error(tmp_path, bad_rate):
    path = write(tmp_path / "a.wav", sine(16000), 16000)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_audio(path, bad_rate)


def test_implausible_header_rate_is_rejected(tmp_path):
    data = bytearray((write(tmp_path / "a.wav", sine(16000), 16000)).read_bytes())
    data[24:28] = (1).to_bytes(4, "little")  # WAV fmt chunk: sample rate field -> 1 Hz
    with pytest.raises(AudioDecodeError, match="implausible sample rate 1 Hz"):
        load_audio(bytes(data), 16000)


# --- channels -----------------------------------------------------------------------------------------


def test_six_channel_downmix_is_the_mean(tmp_path):
    levels = np.array([0.1, 0.2, -0.3, 0.4, 0.5, -0.6], dtype=np.float32)
    x = sine(16000, amp=0.3)[:, None] + levels[None, :]
    path = write(tmp_path / "6ch.wav", x, 16000, subtype="FLOAT")
    y = load_audio(path, 16000)
    assert_audio(y)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-6)


def test_stereo_downmix_and_resample(tmp_path):
    left, right = sine(44100, amp=0.6), np.full(44100, 0.2, dtype=np.float32)
    path = write(tmp_path / "st.flac", np.stack([left, right], axis=1), 44100, subtype="PCM_24")
    y = load_audio(path, 16000)
    assert_audio(y)
    assert abs(len(y) - 16000) <= 1
    assert float(np.mean(y)) == pytest.approx(0.1, abs=1e-3)  # (sine + 0.2) / 2 averages to 0.1
    assert abs(peak_frequency(y - y.mean(), 16000) - 440) <= 1


# --- in-memory sources ----------------------------------------------------------------------------------


def test_bytes_and_audio_dicts(tmp_path):
    path = write(tmp_path / "a.flac", sine(22050), 22050)
    raw = path.read_bytes()
    expected = load_audio(path, 16000)
    np.testing.assert_array_equal(load_audio(raw, 16000), expected)
    np.testing.assert_array_equal(load_audio(bytearray(raw), 16000), expected)
    np.testing.assert_array_equal(load_audio(memoryview(raw), 16000), expected)
    # Audio(decode=False) rows: bytes win over a path that only names a member of an archive
    np.testing.assert_array_equal(load_audio({"path": "archive/a.flac", "bytes": raw}, 16000), expected)
    np.testing.assert_array_equal(load_audio({"path": str(path), "bytes": None}, 16000), expected)
    np.testing.assert_array_equal(load_audio({"bytes": raw}, 16000), expected)


def test_bad_dicts_and_types():
    with pytest.raises(AudioDecodeError, match="neither 'bytes' nor 'path'"):
        load_audio({"path": None, "bytes": None}, 16000)
    with pytest.raises(AudioDecodeError, match="file not found") as info:
        load_audio({"path": "nowhere/x.wav", "bytes": None}, 16000)
    assert info.value.source == "nowhere/x.wav"
    with pytest.raises(AudioDecodeError, match="not a readable audio file") as info:
        load_audio({"path": "archive/x.wav", "bytes": b"not audio at all"}, 16000)
    assert info.value.source == "archive/x.wav"
    with pytest.raises(TypeError):
        load_audio(12345, 16000)


# --- bad inputs ------------------------------------------------------------------------------------------


def test_error_message_pickling_and_type():
    err = AudioDecodeError("x/y.wav", "file is empty (0 bytes)")
    assert str(err) == "cannot decode audio 'x/y.wav': file is empty (0 bytes)"
    assert isinstance(err, ValueError)
    clone = pickle.loads(pickle.dumps(err))  # DataLoader workers / datasets.map(num_proc) re-raise it
    assert (clone.source, clone.reason, str(clone)) == (err.source, err.reason, str(err))


def test_missing_file(tmp_path):
    path = tmp_path / "missing.wav"
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, 16000)
    assert info.value.source == str(path) and info.value.reason == "file not found"
    assert str(path) in str(info.value)


def test_directory_is_not_audio(tmp_path):
    with pytest.raises(AudioDecodeError, match="not a regular file"):
        load_audio(tmp_path, 16000)


def test_zero_length_file_and_bytes(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError) as info:
        load_audio(path, 16000)
    assert str(info.value) == f"cannot decode audio {str(path)!r}: file is empty (0 bytes)"
    with pytest.raises(AudioDecodeError, match=r"file is empty \(0 bytes\)") as info:
        load_audio(b"", 16000)
    assert info.value.source == "<bytes>"


def test_truncated_header(tmp_path):
    path = write(tmp_path / "cut.wav", sine(16000), 16000)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(AudioDecodeError, match="not a readable audio file") as info:
        load_audio(path, 16000)
    assert info.value.source == str(path)


def test_truncated_data_decodes_what_is_there(tmp_path):
    path = write(tmp_path / "cut.wav", sine(16000), 16000, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 2 * 1000])  # header + 1000 of 16000 samples
    y = load_audio(path, 16000)
    assert len(y) == 1000


def test_garbage_bytes_named_wav(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioDecodeError, match="not a readable audio file"):
        load_audio(path, 16000)
    with pytest.raises(AudioDecodeError):
        audio_duration(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_samples(tmp_path, bad):
    x = sine(16000)
    x[123] = bad
    path = write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="contains NaN/Inf samples"):
        load_audio(path, 16000)
    with pytest.raises(AudioDecodeError, match="contains NaN/Inf samples"):
        load_audio(path, 8000)  # checked before resampling could smear it


def test_zero_frame_wav(tmp_path):
    path = write(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioDecodeError, match="no audio samples"):
        load_audio(path, 16000)
    assert audio_duration(path) == 0.0


@pytest.mark.parametrize("rate", [16000, 48000])
def test_silence_is_valid(tmp_path, rate):
    path = write(tmp_path / "quiet.wav", np.zeros(rate // 2, dtype=np.int16), rate, subtype="PCM_16")
    y = load_audio(path, 16000)
    assert_audio(y)
    assert len(y) == 8000 and not y.any()


# --- header-only duration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate,frames,ext", [(96000, 96000, "wav"), (8000, 12345, "flac"), (44100, 22050, "ogg")])
def test_audio_duration_matches(tmp_path, rate, frames, ext):
    path = write(tmp_path / f"d.{ext}", np.zeros(frames, dtype=np.float32), rate)
    assert audio_duration(path) == pytest.approx(frames / rate)
    assert audio_duration(str(path)) == pytest.approx(len(load_audio(path, rate)) / rate)


def test_audio_duration_errors(tmp_path):
    with pytest.raises(AudioDecodeError, match="file not found"):
        audio_duration(tmp_path / "missing.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="file is empty"):
        audio_duration(tmp_path / "empty.wav")


# --- internals that the happy path never reaches here -------------------------------------------------------


def test_untrusted_header_is_read_in_blocks(tmp_path, monkeypatch):
    x = np.stack([sine(16000), sine(16000, freq=1000)], axis=1)
    path = write(tmp_path / "st.wav", x, 16000, subtype="FLOAT")
    expected = load_audio(path, 16000)
    monkeypatch.setattr(audio, "_TRUSTED_HEADER_SAMPLES", 100)
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 1000)  # 16 full blocks, then an empty read
    np.testing.assert_array_equal(load_audio(path, 16000), expected)
    monkeypatch.setattr(audio, "_BLOCK_FRAMES", 3000)  # 5 full blocks and a short one
    np.testing.assert_array_equal(load_audio(path, 16000), expected)


@needs_mp3
def test_mp3_header_claiming_billions_of_frames_still_decodes(tmp_path):
    # Found by fuzzing: a corrupt Xing frame count makes soundfile try to allocate terabytes up front.
    data = bytearray(write(tmp_path / "a.mp3", sine(16000), 16000, format="MP3").read_bytes())
    at = max(data.find(b"Xing"), data.find(b"Info"))
    if at < 0 or not int.from_bytes(data[at + 4 : at + 8], "big") & 1:
        pytest.skip("this libsndfile writes no Xing/Info frame count")
    data[at + 8 : at + 12] = (0x7FFFFFFF).to_bytes(4, "big")
    assert sf.info(io.BytesIO(bytes(data))).frames > 10**9
    y = load_audio(bytes(data), 16000)
    assert_audio(y)
    assert abs(len(y) - 16000) <= 0.05 * 16000


def test_audioread_fallback_decoder(tmp_path, monkeypatch):
    from audioread.rawread import RawAudioFile

    x = np.stack([sine(22050), -sine(22050)], axis=1) * 0.5
    raw = (write(tmp_path / "st.wav", x, 22050, subtype="PCM_16")).read_bytes()
    data, rate, subtype = audio._decode_with_audioread("<bytes>", raw, "st.wav", (RawAudioFile,))
    assert rate == 22050 and subtype == "PCM_16" and data.shape == x.shape
    np.testing.assert_allclose(data, x, atol=1 / 32768)
    # with a fallback available, what neither decoder reads is still an AudioDecodeError
    monkeypatch.setattr(audio, "_audioread_backends", lambda: (RawAudioFile,))
    with pytest.raises(AudioDecodeError, match="not a readable audio file"):
        load_audio(b"\x00" * 1000, 16000)


# --- real files ------------------------------------------------------------------------------------------------

needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data not found at {SHARED_DATA}")


@needs_shared
def test_real_jfk_flac():
    path = SHARED_DATA / "jfk" / "test" / "jfk.flac"  # 44.1 kHz, 2 channels, 24-bit, 11 s
    assert audio_duration(path) == pytest.approx(11.0)
    y = load_audio(path, 16000)
    assert_audio(y)
    assert abs(len(y) - 11 * 16000) <= 1
    assert 0.01 < np.sqrt(np.mean(y**2)) < 0.5 and np.abs(y).max() <= 1.0


@needs_shared
def test_real_fsdd_wav():
    path = sorted((SHARED_DATA / "fsdd" / "train").glob("*.wav"))[0]  # 8 kHz mono 16-bit
    native, rate = sf.read(path, dtype="float32")
    assert rate == 8000
    np.testing.assert_array_equal(load_audio(path, 8000), native)
    y = load_audio(path, 16000)
    assert_audio(y)
    assert abs(len(y) - 2 * len(native)) <= 1
    assert audio_duration(path) == pytest.approx(len(native) / 8000)


# --- properties ------------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def check_contract(source) -> None:
    """Either finite float32 mono audio or AudioDecodeError; any other exception fails the test."""
    try:
        y = load_audio(source, 16000)
    except AudioDecodeError:
        return
    assert_audio(y)
    assert len(y) > 0


@PROPERTY_SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_escape_the_contract(data):
    check_contract(data)


@functools.cache
def valid_files() -> tuple[bytes, ...]:
    """Small valid files in each container, as starting points for mutation."""
    x = np.stack([sine(8000, seconds=0.2), sine(8000, seconds=0.2, freq=300)], axis=1)
    kinds = [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("WAV", "PCM_U8"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")]
    if MP3_WRITABLE:
        kinds.append(("MP3", "MPEG_LAYER_III"))
    out = []
    for fmt, subtype in kinds:
        buf = io.BytesIO()
        sf.write(buf, x, 8000, format=fmt, subtype=subtype)
        out.append(buf.getvalue())
    return tuple(out)


@st.composite
def corrupted_files(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(valid_files())))
    for _ in range(draw(st.integers(0, 8))):  # overwrite bytes, biased towards the header
        end = draw(st.sampled_from([64, len(data)]))
        data[draw(st.integers(0, min(end, len(data)) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(1, len(data)))])


@PROPERTY_SETTINGS
@given(corrupted_files())
def test_corrupted_real_files_never_escape_the_contract(data):
    check_contract(data)
