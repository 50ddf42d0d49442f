"""Decode any common audio file to mono float32 samples at a target sampling rate.

``datasets`` 5 decodes audio through torchcodec, which does not load beside a CPU-only torch, so data
sources keep audio as paths or ``Audio(decode=False)`` dicts and decoding happens here instead:
libsndfile (via soundfile) reads WAV/FLAC/OGG Vorbis/MP3 and most other formats in any sample rate,
channel count and subtype; soxr resamples; channels are averaged. audioread is a fallback only for
formats libsndfile does not recognise, and only when it has a real decoder (e.g. ffmpeg) installed.

Every way an input can be bad (missing, empty, truncated, not audio, NaN/Inf samples, no samples)
surfaces as one exception type, :class:`AudioDecodeError`, so callers can skip or report a bad row
without catching library-specific errors.
"""

from __future__ import annotations

import functools
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

__all__ = ["AudioDecodeError", "audio_duration", "load_audio"]

# Subtypes whose decoded values may legitimately exceed [-1, 1] (float files can carry headroom);
# every other subtype decodes into [-1, 1] and is clipped back there after resampling overshoot.
_FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
_SF_UNRECOGNISED_FORMAT = 1  # libsndfile's SF_ERR_UNRECOGNISED_FORMAT
# A header's frame count is trusted for one up-front allocation only up to this many samples (128 MiB
# of float32); beyond it the file is read in blocks until EOF. A corrupt MP3 Xing header can claim
# billions of frames for a 2 KB file, and soundfile would otherwise allocate all of them at once.
_TRUSTED_HEADER_SAMPLES = 1 << 25
_BLOCK_FRAMES = 1 << 20
# Header sample rates outside this range mean a corrupt header, not audio: resampling a file that
# claims 1 Hz up to 16 kHz would multiply its size 16000-fold.
_MIN_FILE_RATE = 1_000
_MAX_FILE_RATE = 1_536_000


class AudioDecodeError(ValueError):
    """Audio that cannot be turned into usable samples; one type for every bad-input case.

    ``source`` is the file path, or a label such as ``'<bytes>'`` for in-memory data, and ``reason`` a
    short text, so a data pipeline can log or skip the row. Picklable, so it crosses worker processes.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = str(source)
        self.reason = reason
        super().__init__(f"cannot decode audio {self.source!r}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.reason))


def load_audio(source: str | os.PathLike | bytes | dict, sampling_rate: int) -> np.ndarray:
    """Return 1-D float32 mono samples at ``sampling_rate``.

    ``source`` may be a path, raw bytes, or a ``datasets`` ``Audio(decode=False)`` dict
    ``{"path": ..., "bytes": ...}`` (bytes win when present, as in Hub datasets whose ``path`` is only
    a name inside an archive). Integer and lossy formats come back in [-1, 1]; float files keep
    their range. Raises :class:`AudioDecodeError` for anything that is not decodable, finite audio.
    """
    target_rate = _check_rate(sampling_rate)
    label, payload, hint = _resolve(source)
    data, rate, subtype = _decode(label, payload, hint)

    if data.size == 0:
        raise AudioDecodeError(label, "no audio samples")
    if not np.isfinite(data).all():
        raise AudioDecodeError(label, "contains NaN/Inf samples")

    if data.ndim == 2:
        data = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    data = np.ascontiguousarray(data, dtype=np.float32)

    if rate != target_rate:
        data = soxr.resample(data, rate, target_rate, quality="HQ").astype(np.float32, copy=False)
        if data.size == 0:  # a handful of samples can round down to nothing at a lower rate
            raise AudioDecodeError(label, f"no audio samples at {target_rate} Hz")
    if subtype not in _FLOAT_SUBTYPES:
        np.clip(data, -1.0, 1.0, out=data)
    return data


def audio_duration(source: str | os.PathLike) -> float:
    """Duration in seconds read from the header only, without decoding (cheap filtering by length).

    A header that says zero frames gives ``0.0``. Raises :class:`AudioDecodeError` when the file is
    missing, empty or unreadable.
    """
    label, path, _ = _resolve(source)
    if not isinstance(path, str):
        raise TypeError(f"audio_duration needs a file path, got {type(source).__name__}")
    try:
        info = sf.info(path)
    except sf.LibsndfileError as err:
        if err.code == _SF_UNRECOGNISED_FORMAT and _audioread_backends():
            return _audioread_duration(label, path)
        raise AudioDecodeError(label, _libsndfile_reason(err)) from err
    except Exception as err:  # anything else libsndfile's wrapper raises on hostile headers
        raise AudioDecodeError(label, f"not a readable audio file: {type(err).__name__}: {err}") from err
    _check_file_rate(label, info.samplerate)
    return info.frames / info.samplerate


# --------------------------------------------------------------------------------------------------
# internals


def _check_rate(sampling_rate: int) -> int:
    if isinstance(sampling_rate, bool) or int(sampling_rate) != sampling_rate or sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be a positive integer, got {sampling_rate!r}")
    return int(sampling_rate)


def _check_file_rate(label: str, rate: int) -> None:
    if not _MIN_FILE_RATE <= rate <= _MAX_FILE_RATE:
        raise AudioDecodeError(label, f"implausible sample rate {rate} Hz in header")


def _resolve(source: Any) -> tuple[str, str | bytes, str]:
    """Turn ``source`` into (label for errors, path or bytes, file-name hint for the fallback)."""
    if isinstance(source, dict):
        path = source.get("path")
        data = source.get("bytes")
        if data is not None:
            label = os.fspath(path) if path else "<bytes>"
            return _resolve_bytes(label, data, hint=label)
        if path:
            return _resolve(path)
        raise AudioDecodeError("<dict>", "audio dict has neither 'bytes' nor 'path'")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _resolve_bytes("<bytes>", source, hint="")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not os.path.exists(path):
            raise AudioDecodeError(path, "file not found")
        if not os.path.isfile(path):
            raise AudioDecodeError(path, "not a regular file")
        if os.path.getsize(path) == 0:
            raise AudioDecodeError(path, "file is empty (0 bytes)")
        return path, path, path
    raise TypeError(f"audio source must be a path, bytes or an Audio dict, got {type(source).__name__}")


def _resolve_bytes(label: str, data: Any, hint: str) -> tuple[str, bytes, str]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"audio bytes must be bytes-like, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise AudioDecodeError(label, "file is empty (0 bytes)")
    return label, data, hint


def _decode(label: str, payload: str | bytes, hint: str) -> tuple[np.ndarray, int, str]:
    """Read all frames as float32 (frames,) or (frames, channels); returns (data, rate, subtype)."""
    try:
        with sf.SoundFile(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as f:
            rate, subtype = f.samplerate, f.subtype
            _check_file_rate(label, rate)
            data = _read_all(f)
    except AudioDecodeError:
        raise
    except sf.LibsndfileError as err:
        if err.code == _SF_UNRECOGNISED_FORMAT and _audioread_backends():
            return _decode_with_audioread(label, payload, hint, _audioread_backends())
        raise AudioDecodeError(label, _libsndfile_reason(err)) from err
    except MemoryError as err:  # a corrupt header can claim an absurd frame count
        raise AudioDecodeError(label, "header claims more samples than fit in memory") from err
    except Exception as err:  # libsndfile's wrapper raises assorted types on hostile input
        raise AudioDecodeError(label, f"not a readable audio file: {type(err).__name__}: {err}") from err
    return data, rate, subtype


def _read_all(f: sf.SoundFile) -> np.ndarray:
    """All frames as float32; allocation follows the data actually decoded, not an untrusted header."""
    if 0 <= f.frames * f.channels <= _TRUSTED_HEADER_SAMPLES:
        return f.read(dtype="float32", always_2d=False)
    blocks = []
    while True:
        block = f.read(_BLOCK_FRAMES, dtype="float32", always_2d=False)
        if len(block):
            blocks.append(block)
        if len(block) < _BLOCK_FRAMES:
            break
    if not blocks:
        return np.zeros((0,) if f.channels == 1 else (0, f.channels), dtype=np.float32)
    return np.concatenate(blocks)


def _libsndfile_reason(err: sf.LibsndfileError) -> str:
    detail = (err.error_string or "").strip().rstrip(".") or f"libsndfile error {err.code}"
    return f"not a readable audio file ({detail})"


@functools.cache
def _audioread_backends() -> tuple[type, ...]:
    """audioread backends worth trying after libsndfile gave up.

    Its pure-Python backend only reads PCM WAV/AIFF/AU, which libsndfile already reads, so it is left
    out: without a real decoder (ffmpeg, GStreamer, MAD, Core Audio) there is no fallback at all.
    """
    try:
        with warnings.catch_warnings():  # audioread.rawread imports stdlib modules deprecated in 3.11
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioread
            from audioread.rawread import RawAudioFile
    except ImportError:
        return ()
    return tuple(b for b in audioread.available_backends() if b is not RawAudioFile)


def _decode_with_audioread(
    label: str, payload: str | bytes, hint: str, backends: tuple[type, ...]
) -> tuple[np.ndarray, int, str]:
    """Decode with audioread (16-bit PCM blocks); bytes go through a temporary file it can open."""
    import audioread

    tmp_path = None
    try:
        if isinstance(payload, bytes):
            with tempfile.NamedTemporaryFile(suffix=Path(hint).suffix, delete=False) as tmp:
                tmp.write(payload)
                tmp_path = tmp.name
        path = tmp_path or payload
        with audioread.audio_open(path, backends=list(backends)) as f:
            channels, rate = int(f.channels), int(f.samplerate)
            pcm = b"".join(bytes(block) for block in f)
    except Exception as err:
        raise AudioDecodeError(label, f"not a readable audio file: {type(err).__name__}: {err}") from err
    finally:
        if tmp_path is not None:
            os.unlink(tmp_path)
    _check_file_rate(label, rate)
    if channels <= 0:
        raise AudioDecodeError(label, f"invalid channel count {channels} in header")
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % (2 * channels)], dtype="<i2")
    data = samples.astype(np.float32).reshape(-1, channels) / np.float32(32768.0)
    return data, rate, "PCM_16"


def _audioread_duration(label: str, path: str) -> float:
    import audioread

    try:
        with audioread.audio_open(path, backends=list(_audioread_backends())) as f:
            return float(f.duration)
    except Exception as err:
        raise AudioDecodeError(label, f"not a readable audio file: {type(err).__name__}: {err}") from err
