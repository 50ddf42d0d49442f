"""Cut a recording into pieces that fit a model's window, at the pauses a voice-activity detector finds.

Why: a Whisper model fine-tuned with a shortened encoder window (2 s, 8 s, ...) sees only that much audio
at a time, and whatever lies past the window is silently dropped. Cutting at fixed times splits words,
which are then lost or garbled on both sides of the seam; overlapping chunks with strides avoid that only
by merging the overlapping text, which needs timestamp tokens or token-sequence merging that short-context
fine-tuned models cannot do. Pauses between words are where a cut loses nothing, so pieces are cut there;
the caller transcribes each piece and joins the texts (:func:`join_texts`).

The detector is Silero VAD (MIT licence) as faster-whisper ships it: a small ONNX model
(``faster_whisper/assets/silero_vad_v6.onnx``) run by onnxruntime on the CPU, offline, that gives one
speech probability per 512-sample frame (32 ms) of 16 kHz audio. Only its per-frame probabilities are
used, and only to choose where to cut: the pieces tile the whole recording, so audio the VAD takes for
silence is transcribed too (Silero can miss whole words in audio unlike its training data, e.g. 8 kHz
telephone audio resampled to 16 kHz, and those words must not be lost). The rules:

- a frame is non-speech when its probability is below :attr:`PauseOptions.threshold`; each run of
  non-speech frames offers a cut point at its middle (in samples). A run longer than half the window offers
  points a quarter window inside each of its ends and evenly between, at most half a window apart, so a
  long silence is cut as often as the window needs;
- greedily from the start of the recording, the next cut is chosen among the points inside the window
  from the current start: a point in a pause (a run at least :attr:`PauseOptions.min_silence_duration_ms`
  long) before one in a shorter dip (a closure inside a word, say), so a word is not cut while a pause is
  in reach; then one in the second half of the window (so pieces are not needlessly short); then the one
  in the longest run; then the later one;
- no cut point inside the window (speech frames longer than the window, with no dip below the threshold)
  raises :class:`NoPauseError`;
- a recording that fits the window whole is one piece, the whole recording, without running the VAD; a
  longer one in which the VAD finds no speech frame at all is no piece (``[]``), so a long silent file is
  not transcribed into hallucinations: the caller reports it as empty.

What is guaranteed: pieces are sorted and contiguous and cover the recording exactly (the first starts at
0, each ends where the next starts, the last ends at its length), each fits the window, and every cut falls
in a frame the VAD scored below the threshold, so never in what it calls speech. What is not: a word the VAD
misses lies in a non-speech run and can be cut where that run is cut (at its middle, or inside a long
silence); it is then transcribed in two halves on both sides of the cut, garbled perhaps, but never dropped.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NoPauseError", "PauseOptions", "Piece", "VadOptions", "join_texts", "keep_speech", "speech_probabilities",
           "split_at_pauses"]

SAMPLING_RATE = 16_000  # the only rate Silero VAD (as faster-whisper ships it) takes
FRAME = 512  # samples per VAD frame at 16 kHz
LEAD_IN_FRAMES = 16  # silence (0.5 s) around the audio while Silero runs: see speech_probabilities


@dataclass(frozen=True)
class Piece:
    """Samples ``[start, end)`` of the recording (16 kHz mono), to transcribe on their own."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"a piece needs 0 <= start < end, got start={self.start}, end={self.end}")

    def start_s(self, rate: int = SAMPLING_RATE) -> float:
        return self.start / rate

    def end_s(self, rate: int = SAMPLING_RATE) -> float:
        return self.end / rate

    def duration_s(self, rate: int = SAMPLING_RATE) -> float:
        return (self.end - self.start) / rate

    def cut(self, audio: np.ndarray) -> np.ndarray:
        """This piece's samples of ``audio`` (a view)."""
        return audio[self.start:self.end]


class NoPauseError(ValueError):
    """Speech longer than the model's window with no pause inside: no cut would keep every word whole."""

    def __init__(self, source: str, duration_s: float, start_s: float, end_s: float, window_s: float) -> None:
        self.source, self.duration_s, self.window_s = str(source), duration_s, window_s
        self.start_s, self.end_s = start_s, end_s
        super().__init__(
            f"{self.source}: {duration_s:.1f} s of audio, and the speech from {start_s:.1f} s to {end_s:.1f} s "
            f"has no pause to cut at, but the model sees at most {window_s:g} s at a time: transcribe it with a "
            f"model with a longer context, or with long_form=sequential if the model predicts timestamps"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.duration_s, self.start_s, self.end_s, self.window_s))


@dataclass(frozen=True)
class PauseOptions:
    """Where the VAD's probabilities allow a cut, and which place is preferred."""

    # a frame is non-speech, a place a cut may fall, when Silero's probability is below this (Silero's and
    # faster-whisper's default); frames at or above it are speech and are never cut
    threshold: float = 0.5
    # shortest run of non-speech frames that counts as a pause between words: such runs are preferred as
    # cut places over shorter dips, whatever their length. Longer than the silent closure inside a word
    # (the stop in "eight" or "six"), so a cut avoids those while a pause is in reach; short enough that
    # the gaps of fluent speech between words count. Shorter dips are still cut at when nothing better is.
    min_silence_duration_ms: int = 160

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, numbers.Real) or not (
            0.0 < self.threshold < 1.0
        ):
            raise ValueError(f"PauseOptions.threshold must be a probability strictly between 0 and 1, "
                             f"got {self.threshold!r}")
        value = self.min_silence_duration_ms
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"PauseOptions.min_silence_duration_ms must be a whole number of milliseconds >= 0, "
                             f"got {value!r}")


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero's speech probability of each 512-sample frame of 16 kHz ``audio`` (the last one zero-padded).

    Silero is a recurrent model: run cold on speech that starts at the first sample (a short clip cut
    tight, as spoken-digit and command recordings are), it scores that speech low (a spoken "two" of 0.33 s
    peaked at 0.26, under any usual threshold). So it is run on the audio with ``LEAD_IN_FRAMES`` of silence
    before and after, which gives it the context a recording has in the middle (the same word: 0.76), and
    only the audio's own frames are returned.
    """
    try:  # get_vad_model is cached: the model loads once per process
        from faster_whisper.vad import get_vad_model
    except ImportError as error:
        raise ModuleNotFoundError(
            "finding pauses needs Silero VAD from the optional package 'faster-whisper': "
            "pip install faster-whisper (a dependency of finetune: reinstall it with pip install -e .)", name="faster_whisper"
        ) from error
    lead = LEAD_IN_FRAMES * FRAME
    padded = np.pad(audio, (lead, -audio.size % FRAME + lead))
    probabilities = np.asarray(get_vad_model()(padded), dtype=np.float32).reshape(-1)
    return probabilities[LEAD_IN_FRAMES:probabilities.size - LEAD_IN_FRAMES]


def split_at_pauses(audio: np.ndarray, sampling_rate: int, window_seconds: float, *, source: str = "<audio>",
                    options: PauseOptions | None = None) -> list[Piece]:
    """Pieces that tile ``audio`` (1-D, 16 kHz), each at most ``window_seconds`` long, cut at pauses.

    Returns ``[Piece(0, len(audio))]`` when the recording fits the window, and ``[]`` when it is empty or
    longer and the VAD finds no speech in it. Raises :class:`NoPauseError` when a stretch longer than the
    window has no frame the VAD scores below the threshold; ``source`` names the recording in errors.
    """
    options = options or PauseOptions()
    samples = _check(audio, sampling_rate, window_seconds, source)
    window = math.floor(window_seconds * sampling_rate + 1e-6)  # 0.1 * 16000 must not floor to 1599
    if window < 1:
        raise ValueError(f"{source}: window_seconds must be at least one sample, got {window_seconds!r}")
    length = samples.size
    if length == 0:
        return []
    if length <= window:
        return [Piece(0, length)]
    frames = -(-length // FRAME)
    silent = speech_probabilities(samples)[:frames] < options.threshold
    if silent.all():
        return []
    cuts, runs, pause = _cut_points(silent, length, window, options.min_silence_duration_ms * sampling_rate / 1000)
    points = cuts.tolist()
    pieces, start = [], 0
    while length - start > window:
        first, last = np.searchsorted(cuts, [start, start + window], side="right").tolist()
        if first == last:
            end = points[last] if last < len(points) else length
            raise NoPauseError(source, length / sampling_rate, start / sampling_rate, end / sampling_rate,
                               window_seconds)
        middle = start + window / 2
        # a pause before a dip, then the second half of the window, the longest run, the latest point
        best = max(range(first, last), key=lambda i: (pause[i], points[i] > middle, runs[i], points[i]))
        cut = points[best]
        pieces.append(Piece(start, cut))
        start = cut
    pieces.append(Piece(start, length))
    return pieces


@dataclass(frozen=True)
class VadOptions:
    """``vad=True`` in transcription: drop what the VAD calls non-speech before decoding (faster-whisper's
    ``vad_filter``, with its names): Whisper, given silence or noise, tends to invent text."""

    threshold: float = 0.5  # a frame is speech at or above this probability
    speech_pad_ms: int = 400  # audio kept on each side of the first and last speech frame of a piece

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) < 1.0:
            raise ValueError(f"vad threshold must be strictly between 0 and 1, got {self.threshold!r}")
        if isinstance(self.speech_pad_ms, bool) or not isinstance(self.speech_pad_ms, int) or self.speech_pad_ms < 0:
            raise ValueError(f"vad speech_pad_ms must be a whole number of milliseconds >= 0, got {self.speech_pad_ms!r}")


def keep_speech(audio: np.ndarray, pieces: list[Piece], options: VadOptions | None = None,
                sampling_rate: int = SAMPLING_RATE) -> list[Piece]:
    """Each piece trimmed to its speech (first to last speech frame, ``speech_pad_ms`` either side);
    pieces with no speech frame dropped. A silent recording gives ``[]``: nothing to decode."""
    options = options or VadOptions()
    if not pieces:
        return []
    samples = _check(audio, sampling_rate, max(p.duration_s(sampling_rate) for p in pieces), "<audio>")
    speech = np.flatnonzero(speech_probabilities(samples) >= options.threshold)
    pad = options.speech_pad_ms * sampling_rate // 1000
    kept = []
    for piece in pieces:
        inside = speech[(speech * FRAME < piece.end) & ((speech + 1) * FRAME > piece.start)]
        if inside.size == 0:
            continue
        start = max(piece.start, int(inside[0]) * FRAME - pad)
        end = min(piece.end, (int(inside[-1]) + 1) * FRAME + pad)
        kept.append(Piece(start, end))
    return kept


def join_texts(texts: list[str]) -> str:
    """The pieces' transcripts as one text: each stripped, empty ones dropped, joined by single spaces."""
    return " ".join(text.strip() for text in texts if text.strip())


def _check(audio: np.ndarray, sampling_rate: int, window_seconds: float, source: str) -> np.ndarray:
    if sampling_rate != SAMPLING_RATE:
        raise ValueError(f"{source}: finding pauses needs {SAMPLING_RATE} Hz audio (Silero VAD), got "
                         f"{sampling_rate} Hz: resample first, e.g. finetune.data.audio.load_audio(path, 16000)")
    if isinstance(window_seconds, bool) or not isinstance(window_seconds, numbers.Real) or not (
        math.isfinite(window_seconds) and window_seconds > 0
    ):
        raise ValueError(f"{source}: window_seconds must be a positive number of seconds, got {window_seconds!r}")
    samples = np.asarray(audio)
    if samples.ndim != 1:
        raise ValueError(f"{source}: expected 1-D mono samples, got an array of shape {samples.shape}")
    if samples.dtype.kind not in "fiu":
        raise ValueError(f"{source}: expected numeric samples, got dtype {samples.dtype}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise ValueError(f"{source}: audio contains NaN/Inf samples")
    return samples


def _cut_points(silent: np.ndarray, length: int, window: int,
                min_silence: float) -> tuple[np.ndarray, list[int], list[bool]]:
    """Sorted cut points (samples, strictly inside the recording) in the runs of ``silent`` frames; for each,
    the length of its run (samples) and whether that run is at least ``min_silence`` samples long."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], silent.astype(np.int8), [0]])))
    cuts: list[int] = []
    runs: list[int] = []
    for first, last in zip(edges[::2].tolist(), edges[1::2].tolist()):
        start, end = first * FRAME, min(last * FRAME, length)
        run = end - start
        if run <= window / 2:
            points = [(start + end) // 2]
        else:  # a quarter window inside each end, at most half a window apart
            inner = run - window / 2
            count = math.ceil(inner / (window / 2)) + 1
            points = sorted({round(start + window / 4 + inner * i / (count - 1)) for i in range(count)})
        for point in points:
            if 0 < point < length:
                cuts.append(point)
                runs.append(run)
    return np.asarray(cuts, dtype=np.int64), runs, [run >= min_silence for run in runs]
