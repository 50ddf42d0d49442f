"""Transcribe recordings of any length with a saved ASR model, through transformers' own pipeline.

Why the pipeline: what users deploy is ``pipeline("automatic-speech-recognition", model=DIR)``, so
transcribing through it here means the CLI and the user's own code give the same text. What this module
adds around it:

- audio decoding through :func:`finetune.data.audio.load_audio` (any format, rate or channel count); the
  pipeline always gets 16 kHz mono float32, since it cannot resample without torchaudio;
- long recordings, two ways (``long_form``):

  * ``chunked``: cut into windows of ``chunk_length_s`` overlapping by ``stride_length_s`` on each side,
    decoded in parallel batches and stitched by the pipeline (Whisper: token-sequence merging; CTC:
    logits trimming). The only way for CTC models; for Whisper, fastest on a GPU with large batches.
  * ``sequential`` (Whisper only): OpenAI's algorithm, as transformers' ``generate`` implements it: decode
    one window, move to the last predicted timestamp, repeat. Nothing is decoded twice and segments never
    straddle a seam. On the joined 4.8-minute test recording with tiny.en on CPU it had a lower WER (4.9%
    vs 8.8%) and ran faster (real-time factor 0.61 vs 0.90) than chunking, and chunked decoding *with*
    timestamps duplicated text at the seams (29% WER), so ``auto`` picks sequential for Whisper unless a
    chunk length or stride is given;
- segment or word timestamps, grouped into subtitle-sized segments when only words are known;
- a long file is streamed: :class:`StreamedAudio` decodes and resamples it block by block and holds only
  the samples of the windows being cut, so memory does not grow with the file's length. Chunked decoding
  cuts its windows from the stream; sequential decoding hands generate a placeholder for the whole
  recording's features and computes each window's frames when generate cuts it
  (:mod:`finetune.inference.streaming`: bit-identical to the whole-file features, so the same text);
- a file that cannot be decoded is reported and skipped; the rest of the batch goes on;
- a progress bar counting windows, the unit of work, so one long file shows progress too.

Example::

    from finetune.inference.transcribe import TranscribeOptions, transcribe
    for result in transcribe("outputs/whisper", ["talk.mp3", "clips/"], TranscribeOptions(timestamps="segment")):
        print(result.source, result.error or result.transcript.text)
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetune.data.audio import AudioDecodeError, load_audio
from finetune.data.collators import padded_samples
from finetune.inference import streaming
from finetune.inference.formats import Segment, Transcript
from finetune.inference.pauses import NoPauseError, Piece, VadOptions, join_texts, keep_speech, split_at_pauses
from finetune.inference.quantize import QUANTIZE_MODES, quantize_for_cpu
from finetune.inference.scores import TranscriptScorer
from finetune.models import dynamic_context
from finetune.models.decoding_defaults import check_decoding_values, saved_decoding, with_scored_temperature
from finetune.models.generate_notices import missing_end_timestamp_handled
from finetune.models.whisper import checked_language
from finetune.models.whisper_generate import keep_token_ids_integer

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".au", ".webm", ".wma"}
)
TIMESTAMP_MODES = ("none", "segment", "word")
LONG_FORM_MODES = ("auto", "chunked", "sequential", "pauses")
CONTEXT_MODES = ("auto", "dynamic", "full")
FULL_WINDOW_S = 30.0  # a stock Whisper's window
DEFAULT_CTC_CHUNK_S = 20.0  # CTC models have no fixed window; 20 s keeps attention memory modest
# Grouping word timestamps into subtitle cues: break at a pause, a sentence end, or a full cue.
CUE_PAUSE_S = 0.8
CUE_MAX_S = 7.0
CUE_MAX_CHARS = 84
STREAM_MIN_S = 120.0  # files longer than this are streamed; shorter ones are decoded whole
STREAM_BLOCK_S = 10.0  # seconds of the file read (and resampled) at a time when streaming
DECODING_TASKS = ("transcribe", "translate")
DECODING_OPTIONS = ("language", "task", "initial_prompt", "hotwords", "condition_on_previous_text", "temperature",
                    "compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold")


@dataclass
class TranscribeOptions:
    """How to decode. ``None`` chunk/stride mean: the model's own window, and a sixth of it as stride.

    ``long_form="auto"``: chunked for CTC models, and for Whisper when a chunk length or stride is given;
    for a Whisper trained at a short or dynamic context, ``pauses`` (a recording longer than the window is
    cut at pauses, :mod:`finetune.inference.pauses`: such models do not predict the timestamps sequential
    decoding steers by); sequential for other Whisper models (see the module docstring for why).
    """

    long_form: str = "auto"
    # Whisper's encoder length: "auto" runs each batch at its own length if the model was trained for it
    # (finetune.models.dynamic_context), "full" always at the model's window, "dynamic" forces the former
    context: str = "auto"
    # drop what Silero VAD calls non-speech before decoding, as faster-whisper's vad_filter (Whisper only):
    # a silent file gives an empty transcript; implies long_form="pauses"
    vad: bool = False
    vad_options: VadOptions = field(default_factory=VadOptions)
    chunk_length_s: float | None = None
    stride_length_s: float | None = None
    batch_size: int = 8
    timestamps: str = "none"
    device: str | None = None  # "cpu", "cuda", "cuda:1"; None: cuda when available
    progress: bool | None = None  # None: only on a terminal
    threads: int | None = None  # torch CPU threads; fewer than cores helps on a busy machine
    quantize: str = "none"  # "int8": dynamic int8 Linear layers for CPU decoding (see finetune.inference.quantize)
    num_beams: int | None = None  # None: the pipeline's default for Whisper (5, as OpenAI's); 1: greedy
    # clips that fit one window: at most this many new tokens a second of audio (+10), so a model caught in a
    # repetition loop stops early instead of running to 448 tokens; fast speech is ~5 Whisper tokens/s
    max_tokens_per_second: float | None = 10.0
    # decoding controls as faster-whisper / openai-whisper name them (Whisper only), passed to generate
    language: str | None = None  # "en", "english"...; None: the model's own (or detected, multilingual)
    task: str = "transcribe"  # or "translate" (to English; multilingual models)
    initial_prompt: str | None = None  # text the first window is conditioned on (spelling, style)
    hotwords: str | None = None  # hint words put into the prompt (before initial_prompt)
    condition_on_previous_text: bool | None = None  # sequential long-form: each window sees the previous text
    temperature: float | tuple[float, ...] | None = None  # a tuple: fall back; None: as the model was saved, or 0
    compression_ratio_threshold: float | None = None  # gzip ratio above which a window is a failure
    log_prob_threshold: float | None = None  # average log-probability below which a window is a failure
    no_speech_threshold: float | None = None  # no-speech probability above which (with low logprob) = silence
    scores: bool = False  # Whisper: language, avg_logprob, no_speech_prob, compression_ratio, word probabilities

    def __post_init__(self) -> None:
        if self.long_form not in LONG_FORM_MODES:
            raise ValueError(f"long_form must be one of {', '.join(LONG_FORM_MODES)}, got {self.long_form!r}")
        if self.context not in CONTEXT_MODES:
            raise ValueError(f"context must be one of {', '.join(CONTEXT_MODES)}, got {self.context!r}")
        if self.timestamps not in TIMESTAMP_MODES:
            raise ValueError(f"timestamps must be one of {', '.join(TIMESTAMP_MODES)}, got {self.timestamps!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.chunk_length_s is not None and self.chunk_length_s <= 0:
            raise ValueError(f"chunk_length_s must be positive, got {self.chunk_length_s}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.max_tokens_per_second is not None and self.max_tokens_per_second <= 0:
            raise ValueError(f"max_tokens_per_second must be positive (or None), got {self.max_tokens_per_second}")
        if self.num_beams is not None and self.num_beams < 1:
            raise ValueError(f"num_beams must be at least 1, got {self.num_beams}")
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}")
        if self.stride_length_s is not None and self.stride_length_s < 0:
            raise ValueError(f"stride_length_s must be >= 0, got {self.stride_length_s}")
        self._check_decoding()

    def _check_decoding(self) -> None:
        if self.task not in DECODING_TASKS:
            raise ValueError(f"task must be one of {', '.join(DECODING_TASKS)}, got {self.task!r}")
        if self.language is not None and not str(self.language).strip():
            raise ValueError("language must be a language code or name such as 'en' or 'english', got ''")
        check_decoding_values(self.temperature, self.compression_ratio_threshold, self.log_prob_threshold,
                              self.no_speech_threshold)
        if isinstance(self.temperature, (tuple, list)):
            self.temperature = tuple(float(t) for t in self.temperature)

    def decoding_set(self) -> list[str]:
        """The decoding controls given a non-default value (names as in this dataclass)."""
        defaults = TranscribeOptions.__dataclass_fields__
        return [name for name in DECODING_OPTIONS if getattr(self, name) != defaults[name].default]


@dataclass
class TranscriptionResult:
    """One input file: its transcript, or why it could not be transcribed."""

    source: Path
    transcript: Transcript | None = None
    error: str | None = None


@dataclass
class RunStats:
    """Totals over one call, for the summary line and the real-time factor."""

    files: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    chunks: int = 0  # windows decoded (sequential mode: encoder passes, one per window step and recording)
    started: float = field(default_factory=time.perf_counter)

    @property
    def real_time_factor(self) -> float:
        """Processing time over audio time: 0.1 means ten times faster than real time."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan")


def find_audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for audio suffixes; sorted within a folder.

    A named file is taken whatever its suffix (decoding decides); a path that does not exist is an error
    up front, since it is a typo rather than a bad recording.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item).expanduser()
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not inside:
                raise FileNotFoundError(f"{path}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) inside")
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))


class Transcriber:
    """A loaded ASR pipeline plus the options to run it with; reuse it across calls."""

    def __init__(self, model: str | Path, options: TranscribeOptions | None = None) -> None:
        from finetune.models.registry import resolve_model_path

        self.options = options or TranscribeOptions()
        self.model_path = resolve_model_path(str(model))
        if self.options.threads is not None:
            import torch

            torch.set_num_threads(self.options.threads)
        self.pipe = _load_pipeline(self.model_path, self.options.device)
        self.pipe.model = quantize_for_cpu(self.pipe.model, self.options.quantize)
        if self.pipe.type == "seq2seq_whisper":
            keep_token_ids_integer(self.pipe.model)
        _StreamingPreprocess.install(self.pipe)
        self.sampling_rate = int(self.pipe.feature_extractor.sampling_rate)
        self.is_whisper = self.pipe.type == "seq2seq_whisper"
        self.dynamic_step = self._dynamic_step()
        if self.dynamic_step is not None:
            dynamic_context.enable_dynamic_context(self.pipe.model, self.dynamic_step)
        self.long_form = self._long_form()
        self.chunk_length_s, self.stride_length_s = self._window()
        self.decoding = decoding_kwargs(self.pipe, self.options, self.model_path)
        if self.long_form == "sequential":
            streaming.install(self.pipe.model)
        self.scorer = self._scorer()
        if self.options.timestamps == "word" and self.is_whisper:
            if not getattr(self.pipe.model.generation_config, "alignment_heads", None):
                raise ValueError(
                    f"{self.model_path}: word timestamps need 'alignment_heads' in generation_config.json "
                    "(the cross-attention heads that follow the audio); use timestamps=segment instead"
                )

    def _scorer(self) -> TranscriptScorer | None:
        """What fills in confidence figures, when asked for and the model is a Whisper (CTC models have none)."""
        if not (self.options.scores and self.is_whisper):
            return None
        language = self.decoding.get("language") or (
            _language_code(self.options.language) if self.options.language is not None else None)
        return TranscriptScorer(self.pipe, language=language, task=self.options.task,
                                prompt_ids=self.decoding.get("prompt_ids"), step_seconds=self.dynamic_step,
                                batch_size=self.options.batch_size)

    def _scored(self, transcript: Transcript, audio: Any, windows: list[Segment] | None = None,
                timed: list[Segment] | None = None) -> Transcript:
        """``transcript`` with its scores filled in (when asked for); ``windows``: the stretches it was
        decoded in, when known (pieces cut at pauses); ``timed``: the pipeline's timestamped chunks."""
        if self.scorer is not None:
            self.scorer.score(transcript, audio, windows, timed)
        return transcript

    def _dynamic_step(self) -> float | None:
        """The step a Whisper runs at dynamic context with here, or None (its full window)."""
        mode = self.options.context
        if not self.is_whisper:
            if mode == "dynamic":
                raise ValueError(f"{self.model_path}: context=dynamic is for Whisper models (a CTC model already "
                                 "runs on each input's own length)")
            return None
        trained = dynamic_context.trained_step_seconds(self.pipe.model.config)
        if mode == "full":
            return None
        if mode == "dynamic":
            if self.context_s < FULL_WINDOW_S:
                raise ValueError(f"{self.model_path}: its encoder window was cut to {self.context_s:g} s for good; "
                                 "context=dynamic is for models that keep the full 30 s")
            if trained is None:
                logger.warning("%s was not trained for dynamic context: a stock Whisper run on a shortened "
                               "context tends to repeat itself", self.model_path)
            return trained or dynamic_context.DEFAULT_STEP_SECONDS
        return trained

    def _long_form(self) -> str:
        mode = self.options.long_form
        if self.options.vad:
            if not self.is_whisper:
                raise ValueError(f"{self.model_path}: vad is for Whisper models (a CTC model emits nothing for "
                                 "silence)")
            if mode not in ("auto", "pauses"):
                raise ValueError(f"vad decodes the speech it finds piece by piece: long_form={mode} cannot be "
                                 "used with it (leave long_form=auto)")
            return "pauses"
        if not self.is_whisper:
            if mode in ("sequential", "pauses"):
                raise ValueError(f"{self.model_path}: {mode} long-form decoding is for Whisper models; "
                                 "use long_form=chunked")
            return "chunked"
        if mode == "auto":
            if self.options.chunk_length_s is not None or self.options.stride_length_s is not None:
                return "chunked"
            short_trained = self.context_s < FULL_WINDOW_S or self.dynamic_step is not None
            return "pauses" if short_trained else "sequential"
        return mode

    @property
    def context_s(self) -> float | None:
        """Seconds Whisper's encoder sees at once (None for CTC models, which take any length)."""
        return float(self.pipe.feature_extractor.chunk_length) if self.is_whisper else None

    def _window(self) -> tuple[float, float]:
        """Chunk and stride in seconds, checked against what the model can see at once."""
        context = self.context_s
        chunk = self.options.chunk_length_s or context or DEFAULT_CTC_CHUNK_S
        if context is not None and chunk > context + 1e-6:
            raise ValueError(
                f"chunk_length_s={chunk:g} is longer than the model's {context:g}-second window "
                f"({self.model_path}); use at most {context:g}"
            )
        stride = chunk / 6 if self.options.stride_length_s is None else self.options.stride_length_s
        if 2 * stride >= chunk:
            raise ValueError(f"stride_length_s={stride:g} must be less than half of chunk_length_s={chunk:g}")
        return chunk, stride

    def __call__(self, paths: Sequence[str | Path], stats: RunStats | None = None) -> Iterator[TranscriptionResult]:
        """Yield one result per file, in order; bad files come back with ``error`` set."""
        stats = stats if stats is not None else RunStats()
        files = find_audio_files(paths)
        bar = self._progress_bar(files)
        counter = self._count_windows(bar, stats)
        try:
            with missing_end_timestamp_handled():  # _timed_chunks gives such a segment its end
                if self.long_form == "pauses":
                    yield from self._decode_in_pieces(files, stats)
                elif self.long_form == "sequential":
                    for group, longest in self._sequential_groups(files):
                        yield from self._decode(group, stats, len(group), self._call_kwargs(one_window_s=longest))
                else:
                    yield from self._decode(files, stats, self.options.batch_size, self._call_kwargs())
        finally:
            counter.remove()
            if bar is not None:
                bar.close()
            stats.wall_seconds = time.perf_counter() - stats.started

    def _sequential_groups(self, files: list[Path]) -> Iterator[tuple[list[Path], float | None]]:
        """Runs of up to batch_size files that fit one window, and each longer file alone (with the
        longest duration in a group that fits one window, None for a longer file).

        The pipeline's batching pads features along the wrong axis when their lengths differ, and a
        recording longer than the window keeps its full length in sequential mode, so it goes alone.
        """
        from finetune.data.audio import audio_duration

        group: list[Path] = []
        longest = 0.0
        for path in files:
            try:
                duration = audio_duration(path)
            except (AudioDecodeError, TypeError):
                duration = 0.0  # decoding will fail and report it; it changes no batch shape
            if duration > self.context_s - 0.05:
                if group:
                    yield group, longest
                    group, longest = [], 0.0
                yield [path], None
                continue
            group.append(path)
            longest = max(longest, duration)
            if len(group) == self.options.batch_size:
                yield group, longest
                group, longest = [], 0.0
        if group:
            yield group, longest

    def _decode(self, files: list[Path], stats: RunStats, batch_size: int,
                call_kwargs: dict[str, Any]) -> Iterator[TranscriptionResult]:
        """Stream ``files`` through the pipeline in order; audio is decoded lazily, one file at a time."""
        pending: deque[tuple[Path, float, Any]] = deque()  # path, seconds, its audio (kept to score it)
        failures: deque[TranscriptionResult] = deque()  # bad files, reported in their place in the order
        order: deque[Path] = deque(files)

        def inputs() -> Iterator[dict[str, Any]]:
            for path in files:
                try:
                    audio = self._load(path)
                except AudioDecodeError as error:
                    failures.append(TranscriptionResult(path, error=str(error)))
                    continue
                pending.append((path, len(audio) / self.sampling_rate, audio if self.scorer else None))
                yield {"raw": audio, "sampling_rate": self.sampling_rate}

        for output in self.pipe(inputs(), batch_size=batch_size, **call_kwargs):
            path, duration, audio = pending.popleft()
            yield from self._flush(order, failures, stats, until=path)
            order.popleft()
            stats.files += 1
            stats.audio_seconds += duration
            stats.wall_seconds = time.perf_counter() - stats.started
            transcript = self._scored(self._transcript(path, output, duration), audio,
                                      timed=_timed_chunks(output.get("chunks") or [], duration))
            yield TranscriptionResult(path, transcript=transcript)
        yield from self._flush(order, failures, stats, until=None)

    def _decode_in_pieces(self, files: list[Path], stats: RunStats) -> Iterator[TranscriptionResult]:
        """``long_form="pauses"``: each file as pieces that fit the window (the whole file when it fits,
        else cut at pauses), batches of pieces decoded at their own length, the texts joined per file.

        A file whose speech runs longer than the window without a pause is reported with why and skipped,
        as an unreadable one is: never transcribed in part.
        """
        window = dynamic_context.serving_window_seconds(self.pipe.model.config, self.context_s)
        queue: list[tuple[int, Piece, np.ndarray]] = []  # (file number, piece, its samples), not yet decoded
        parts: dict[int, list[tuple[Piece, dict[str, Any]]]] = {}
        left: dict[int, int] = {}  # pieces of each file still to decode
        order: deque[tuple[int, Path, float, str | None]] = deque()  # file number, path, duration, error
        audios: dict[int, np.ndarray] = {}  # files waiting for their pieces, kept to score them

        def finished() -> Iterator[TranscriptionResult]:
            while order and (order[0][3] is not None or left[order[0][0]] == 0):
                number, path, duration, error = order.popleft()
                if error is not None:
                    stats.failed += 1
                    logger.error("skipped %s", error)
                    yield TranscriptionResult(path, error=error)
                    continue
                stats.files += 1
                stats.audio_seconds += duration
                stats.wall_seconds = time.perf_counter() - stats.started
                pieces = parts.pop(number, [])
                rate = self.sampling_rate
                windows = [Segment(piece.start_s(rate), piece.end_s(rate), " ".join(str(output.get("text", "")).split()))
                           for piece, output in pieces]
                transcript = self._scored(self._joined(path, pieces, duration), audios.pop(number, None), windows)
                yield TranscriptionResult(path, transcript=transcript)

        for number, path in enumerate(files):
            try:
                audio = load_audio(path, self.sampling_rate)
                duration = len(audio) / self.sampling_rate
                pieces = ([Piece(0, len(audio))] if duration <= window
                          else split_at_pauses(audio, self.sampling_rate, window, source=str(path)))
                if self.options.vad:
                    pieces = keep_speech(audio, pieces, self.options.vad_options, self.sampling_rate)
            except (AudioDecodeError, NoPauseError) as error:
                order.append((number, path, 0.0, str(error)))
                yield from finished()
                continue
            order.append((number, path, duration, None))
            if self.scorer is not None:
                audios[number] = audio
            left[number] = len(pieces)
            queue.extend((number, piece, piece.cut(audio)) for piece in pieces)
            while len(queue) >= self.options.batch_size:
                self._decode_pieces(queue[:self.options.batch_size], parts, left)
                del queue[:self.options.batch_size]
            yield from finished()
        if queue:
            self._decode_pieces(queue, parts, left)
        yield from finished()

    def _decode_pieces(self, batch: list[tuple[int, Piece, np.ndarray]],
                       parts: dict[int, list[tuple[Piece, dict[str, Any]]]], left: dict[int, int]) -> None:
        """One batch of pieces, padded to its longest (rounded up to the step at dynamic context)."""
        longest = max(len(samples) for _, _, samples in batch)
        preprocess = self.pipe.preprocess
        if self.dynamic_step is not None:
            preprocess.pad_to_samples = padded_samples(longest, self.dynamic_step, self.sampling_rate,
                                                       self.pipe.feature_extractor.n_samples)
        kwargs = self._call_kwargs(one_window_s=longest / self.sampling_rate)
        if self.options.timestamps == "word":
            kwargs["return_timestamps"] = "word"
        try:
            outputs = list(self.pipe([{"raw": samples, "sampling_rate": self.sampling_rate}
                                      for _, _, samples in batch], batch_size=len(batch), **kwargs))
        finally:
            preprocess.pad_to_samples = None
        for (number, piece, _), output in zip(batch, outputs):
            parts.setdefault(number, []).append((piece, output))
            left[number] -= 1

    def _joined(self, path: Path, parts: list[tuple[Piece, dict[str, Any]]], duration: float) -> Transcript:
        """One file's transcript from its pieces: texts joined, each piece a segment (its words offset by
        where the piece starts)."""
        rate = self.sampling_rate
        text = join_texts([str(output.get("text", "")) for _, output in parts])
        transcript = Transcript(source=str(path), text=" ".join(text.split()), duration=duration)
        if self.options.timestamps == "segment":
            transcript.segments = [Segment(piece.start_s(rate), piece.end_s(rate), " ".join(output["text"].split()))
                                   for piece, output in parts if str(output.get("text", "")).strip()]
        elif self.options.timestamps == "word":
            words = []
            for piece, output in parts:
                for word in _timed_chunks(output.get("chunks") or [], piece.duration_s(rate)):
                    words.append(Segment(word.start + piece.start_s(rate), word.end + piece.start_s(rate), word.text))
            transcript.words = words
            transcript.segments = group_words(words)
        return transcript

    def _load(self, path: Path) -> np.ndarray | StreamedAudio:
        """The whole recording, or, for a long file libsndfile reads, a stream (sequential decoding: if
        the feature extractor's frames can be computed window by window)."""
        streams = self.long_form == "chunked" or streaming.StreamedFeatures.supports(self.pipe.feature_extractor)
        if streams and StreamedAudio.can_stream(path, min_seconds=STREAM_MIN_S):
            return StreamedAudio(path, self.sampling_rate)
        return load_audio(path, self.sampling_rate)

    @staticmethod
    def _flush(order: deque[Path], failures: deque[TranscriptionResult], stats: RunStats,
               until: Path | None) -> Iterator[TranscriptionResult]:
        """Yield the failed files that come before ``until`` in the input order (all, if None)."""
        while order and order[0] != until:
            failed = failures.popleft()
            order.popleft()
            stats.failed += 1
            logger.error("skipped %s", failed.error)
            yield failed

    def _call_kwargs(self, one_window_s: float | None = None) -> dict[str, Any]:
        """Pipeline arguments for one call; ``one_window_s``: the group fits one window, its longest clip."""
        kwargs = self._window_kwargs(one_window_s)
        generate: dict[str, Any] = {}
        if self.is_whisper and self.options.num_beams is not None:
            generate["num_beams"] = self.options.num_beams
        if self.is_whisper and one_window_s is not None and self.options.max_tokens_per_second is not None:
            # as max_length (the saved generation config sets it; max_new_tokens beside it warns every call):
            # + 10 tokens of slack + up to 4 prefix tokens (start, language, task, no-timestamps)
            budget = math.ceil(one_window_s * self.options.max_tokens_per_second) + 10 + 4
            generate["max_length"] = min(budget, self.pipe.model.config.max_target_positions)
        for key, value in self.decoding.items():
            if key == "condition_on_prev_tokens" and not (self.long_form == "sequential" and one_window_s is None):
                continue  # transformers conditions on previous text only when walking a long input
            generate[key] = value
        if generate:
            kwargs["generate_kwargs"] = generate
        return kwargs

    def _window_kwargs(self, one_window_s: float | None) -> dict[str, Any]:
        mode = self.options.timestamps
        if self.long_form == "pauses":
            return {}  # every piece fits one window; word timestamps are asked for per batch
        if self.long_form == "sequential" and one_window_s is not None and mode == "none":
            # clips that fit one window: plain decoding, no timestamp tokens to predict (faster, and a
            # model fine-tuned without timestamps is decoded the way it was trained)
            return {}
        if self.long_form == "sequential":
            # generate() walks a long input window by window, steered by the timestamps it predicts
            return {"return_timestamps": "word" if mode == "word" else True}
        kwargs: dict[str, Any] = {"chunk_length_s": self.chunk_length_s, "stride_length_s": self.stride_length_s}
        if self.is_whisper:
            kwargs["ignore_warning"] = True  # the pipeline's note that chunking is "experimental"
        if mode == "segment":
            # Whisper predicts segment timestamps; CTC only knows words, grouped into segments below
            kwargs["return_timestamps"] = True if self.is_whisper else "word"
        elif mode == "word":
            kwargs["return_timestamps"] = "word"
        return kwargs

    def _transcript(self, path: Path, output: dict[str, Any], duration: float) -> Transcript:
        text = " ".join(str(output.get("text", "")).split())
        chunks = _timed_chunks(output.get("chunks") or [], duration)
        transcript = Transcript(source=str(path), text=text, duration=duration)
        if self.options.timestamps == "word":
            transcript.words = chunks
            transcript.segments = group_words(chunks)
        elif self.options.timestamps == "segment":
            transcript.segments = chunks if self.is_whisper else group_words(chunks)
        return transcript

    def windows(self, num_samples: int) -> int:
        """How many windows ``num_samples`` takes: exact for chunked decoding (mirrors the pipeline's
        chunk_iter); for sequential decoding the least it can take (each step moves at most one window)."""
        if self.long_form in ("sequential", "pauses"):
            return max(1, math.ceil(num_samples / (self.context_s * self.sampling_rate)))
        align = getattr(self.pipe.model.config, "inputs_to_logits_ratio", 1)
        rate = self.sampling_rate
        chunk = int(round(self.chunk_length_s * rate / align) * align)
        stride = int(round(self.stride_length_s * rate / align) * align)
        step = chunk - 2 * stride
        if num_samples <= chunk:
            return 1
        return 1 + math.ceil((num_samples - chunk) / step)

    def _progress_bar(self, files: list[Path]):
        """A bar over decoding windows; its total comes from file headers (no decoding needed)."""
        from tqdm.auto import tqdm

        from finetune.data.audio import audio_duration

        if self.options.progress is False:
            return None
        total = 0
        for path in files:
            try:
                total += self.windows(int(audio_duration(path) * self.sampling_rate))
            except (AudioDecodeError, TypeError):
                continue
        if self.options.progress is None and total <= self.options.batch_size:
            return None  # one batch: nothing to watch
        # progress=None: draw only on a terminal (tqdm's disable=None); True: always
        disable = None if self.options.progress is None else False
        return tqdm(total=total, unit="window", desc="transcribing", disable=disable)

    def _count_windows(self, bar, stats: RunStats) -> _WindowCounter | _EncoderCounter:
        if self.long_form == "sequential":
            return _EncoderCounter(self.pipe, bar, stats)
        return _WindowCounter(self.pipe, bar, stats)


def _advance(bar, stats: RunStats, count: int) -> None:
    stats.chunks += count
    if bar is not None:
        bar.update(min(count, max(bar.total - bar.n, 0)) if bar.total else count)


class _WindowCounter:
    """Chunked decoding: wraps ``pipe.forward`` (one call per batch of windows) to count windows.

    Counting here rather than at the encoder: Whisper's generate may run the encoder twice for one
    batch (its timestamp decoding does), which would over-count.
    """

    def __init__(self, pipe, bar, stats: RunStats) -> None:
        self.pipe, self.bar, self.stats = pipe, bar, stats
        self.original = pipe.forward
        pipe.forward = self

    def __call__(self, model_inputs: dict[str, Any], **forward_params: Any) -> Any:
        output = self.original(model_inputs, **forward_params)
        batch = next((model_inputs[k] for k in ("input_features", "input_values") if k in model_inputs), None)
        _advance(self.bar, self.stats, int(batch.shape[0]) if batch is not None and batch.ndim >= 2 else 1)
        return output

    def remove(self) -> None:
        self.pipe.forward = self.original


class _EncoderCounter:
    """Sequential decoding: one forward call holds a whole recording, so count encoder passes (one
    per window step and active recording), capped at the bar's total."""

    def __init__(self, pipe, bar, stats: RunStats) -> None:
        self.bar, self.stats = bar, stats
        self.handle = pipe.model.get_encoder().register_forward_hook(self, with_kwargs=True)

    def __call__(self, _module, args, kwargs, _output) -> None:
        features = next((t for t in (*args, *kwargs.values()) if getattr(t, "ndim", 0) == 3), None)
        _advance(self.bar, self.stats, int(features.shape[0]) if features is not None else 1)

    def remove(self) -> None:
        self.handle.remove()


class StreamedAudio:
    """A recording as 1-D float32 mono samples at ``sampling_rate``, decoded window by window.

    Sliced with increasing starts (``audio[a:b]``, as the pipeline cuts windows), it reads the file
    ``block_seconds`` at a time, downmixes and resamples each block with soxr's stream resampler
    (bit-identical to resampling the whole file at once) and keeps only the samples from the last
    slice's start on, so memory stays at about one window plus one block whatever the file's length.
    A first pass at construction counts the samples and checks them as :func:`load_audio` does
    (finite, not empty), so a bad file fails before decoding starts and ``len`` is exact.
    """

    def __init__(self, path: str | Path, sampling_rate: int, *, block_seconds: float = STREAM_BLOCK_S) -> None:
        import soundfile as sf

        self.path, self.sampling_rate = Path(path), int(sampling_rate)
        try:
            info = sf.info(str(self.path))
        except Exception as error:  # libsndfile's wrapper raises assorted types
            raise AudioDecodeError(str(path), f"not a readable audio file: {error}") from error
        self.file_rate, self.subtype = int(info.samplerate), info.subtype
        self.block_frames = max(1, int(block_seconds * self.file_rate))
        self._length = sum(len(block) for block in self._blocks())
        if not self._length:
            raise AudioDecodeError(str(path), "no audio samples")
        self.shape = (self._length,)
        self._restart()

    @staticmethod
    def can_stream(path: str | Path, *, min_seconds: float = 0.0) -> bool:
        """Whether libsndfile reads ``path`` (the audioread fallback decodes whole) and it is long enough."""
        import soundfile as sf

        try:
            info = sf.info(str(path))
        except Exception:
            return False
        return info.samplerate > 0 and info.frames / info.samplerate >= min_seconds

    def __len__(self) -> int:
        return self._length

    @property
    def size(self) -> int:
        return self._length

    def __getitem__(self, index: slice) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("StreamedAudio is read by contiguous slices (audio[start:stop])")
        start, stop, _ = index.indices(self._length)
        if start < self._start:  # an earlier window again: read from the beginning
            self._restart()
        self._drop_before(start)
        while self._start + len(self._buffer) < stop:
            block = next(self._stream, None)
            if block is None:
                break
            self._buffer = np.concatenate([self._buffer, block])
            self._drop_before(start)
        return self._buffer[max(start - self._start, 0):max(stop - self._start, 0)].copy()

    def _drop_before(self, start: int) -> None:
        cut = min(max(start - self._start, 0), len(self._buffer))
        self._buffer = self._buffer[cut:]
        self._start += cut

    def _restart(self) -> None:
        self._stream = self._blocks()
        self._buffer = np.zeros(0, dtype=np.float32)
        self._start = 0

    def _blocks(self) -> Iterator[np.ndarray]:
        """The file's samples at ``sampling_rate``, one block at a time."""
        import soundfile as sf
        import soxr

        label = str(self.path)
        resampler = (soxr.ResampleStream(self.file_rate, self.sampling_rate, 1, dtype="float32", quality="HQ")
                     if self.file_rate != self.sampling_rate else None)
        clip = self.subtype not in ("FLOAT", "DOUBLE")  # as load_audio: float files keep their range
        try:
            with sf.SoundFile(label) as handle:
                while True:
                    data = handle.read(self.block_frames, dtype="float32", always_2d=True)
                    last = len(data) < self.block_frames
                    if not np.isfinite(data).all():
                        raise AudioDecodeError(label, "contains NaN/Inf samples")
                    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
                    mono = np.ascontiguousarray(mono, dtype=np.float32)
                    if resampler is not None:
                        mono = resampler.resample_chunk(mono, last=last).astype(np.float32, copy=False)
                    if clip:
                        np.clip(mono, -1.0, 1.0, out=mono)
                    if len(mono):
                        yield mono
                    if last:
                        return
        except AudioDecodeError:
            raise
        except Exception as error:
            raise AudioDecodeError(label, f"not a readable audio file: {type(error).__name__}: {error}") from error


class _StreamingPreprocess:
    """The ASR pipeline's ``preprocess`` taught to read a :class:`StreamedAudio`.

    The pipeline accepts only in-memory arrays. Chunked: this computes the window and stride in samples
    exactly as the pipeline does and hands the stream to transformers' own ``chunk_iter`` (which only
    slices its input), so windows, features and the stitching of their outputs are the pipeline's.
    Sequential (no chunk length): the pipeline's one whole-recording item, with a placeholder for the
    features that :func:`finetune.inference.streaming.install` computes window by window. Every other
    input goes to the original ``preprocess`` unchanged.
    """

    def __init__(self, pipe) -> None:
        self.pipe, self.original = pipe, pipe.preprocess
        # set per batch at dynamic context: pad a one-window input to this many samples, not the window
        self.pad_to_samples: int | None = None

    @classmethod
    def install(cls, pipe) -> None:
        if not isinstance(pipe.preprocess, cls):
            pipe.preprocess = cls(pipe)

    def __call__(self, inputs: Any, chunk_length_s: float = 0, stride_length_s: Any = None, **kwargs: Any):
        audio = inputs.get("raw") if isinstance(inputs, dict) else None
        if self.pad_to_samples and not chunk_length_s and isinstance(audio, np.ndarray):
            yield self._padded(inputs, audio)
            return
        if not isinstance(audio, StreamedAudio):
            yield from self.original(inputs, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s, **kwargs)
            return
        from transformers.pipelines.automatic_speech_recognition import chunk_iter

        extractor = self.pipe.feature_extractor
        if int(inputs["sampling_rate"]) != extractor.sampling_rate:
            raise ValueError(f"a streamed recording must be at the model's {extractor.sampling_rate} Hz")
        extra = {k: v for k, v in inputs.items() if k not in ("raw", "sampling_rate", "path")}
        if not chunk_length_s:
            if self.pipe.type != "seq2seq_whisper" or len(audio) <= extractor.n_samples:
                # one window (or not Whisper): the pipeline computes the features whole, as for any array
                whole = {**inputs, "raw": audio[0:len(audio)]}
                yield from self.original(whole, chunk_length_s=chunk_length_s, stride_length_s=stride_length_s,
                                         **kwargs)
            else:
                yield self._sequential(audio, extra)
            return
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        if isinstance(stride_length_s, (int, float)):
            stride_length_s = [stride_length_s, stride_length_s]
        align = self.pipe._align_to
        rate = extractor.sampling_rate
        chunk_len = int(round(chunk_length_s * rate / align) * align)
        stride_left = int(round(stride_length_s[0] * rate / align) * align)
        stride_right = int(round(stride_length_s[1] * rate / align) * align)
        if chunk_len < stride_left + stride_right:
            raise ValueError("Chunk length must be superior to stride length")
        for item in chunk_iter(audio, extractor, chunk_len, stride_left, stride_right, self.pipe.dtype):
            yield {**item, **extra}

    def _padded(self, inputs: dict[str, Any], audio: np.ndarray) -> dict[str, Any]:
        """What the original preprocess yields for one window, padded to ``pad_to_samples`` instead."""
        extractor = self.pipe.feature_extractor
        if int(inputs["sampling_rate"]) != extractor.sampling_rate or len(audio) > self.pad_to_samples:
            raise ValueError("a piece must be at the model's rate and no longer than its batch's padding")
        processed = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt",
                              return_attention_mask=True, max_length=self.pad_to_samples)
        if self.pipe.dtype is not None:
            processed = processed.to(dtype=self.pipe.dtype)
        extra = {k: v for k, v in inputs.items() if k not in ("raw", "sampling_rate", "path")}
        return {"is_last": True, **processed, **extra}

    def _sequential(self, audio: StreamedAudio, extra: dict[str, Any]) -> dict[str, Any]:
        """What the original preprocess yields for a long recording, with a placeholder for its features."""
        import torch

        features = streaming.StreamedFeatures(audio, self.pipe.feature_extractor)
        placeholder = features.placeholder(dtype=self.pipe.dtype or torch.float32, device=self.pipe.device)
        # the extractor's mask for one unpadded recording: every frame is audio
        mask = torch.ones((1, features.num_frames), dtype=torch.int32)
        return {"is_last": True, "input_features": placeholder, "attention_mask": mask, **extra}


def transcribe(model: str | Path, paths: Sequence[str | Path], options: TranscribeOptions | None = None,
               stats: RunStats | None = None) -> Iterator[TranscriptionResult]:
    """One-shot helper: load the model and transcribe ``paths`` (files or folders)."""
    yield from Transcriber(model, options)(paths, stats)


def decoding_kwargs(pipe, options: TranscribeOptions, model_path: str) -> dict[str, Any]:
    """``generate`` arguments: the decoding the model was saved with (:mod:`finetune.models.decoding_defaults`),
    with the controls set in ``options`` on top (none of either: an empty dict), checked against the model:
    Whisper only; a language other than English or translation needs a multilingual one."""
    given = options.decoding_set()
    if getattr(pipe, "type", None) != "seq2seq_whisper":
        if given:
            raise ValueError(f"{model_path}: {', '.join(given)} are Whisper decoding options; a CTC model has none")
        return {}
    config = pipe.model.generation_config
    multilingual = bool(getattr(config, "lang_to_id", None)) and getattr(config, "is_multilingual", True) is not False
    generate: dict[str, Any] = saved_decoding(config)  # what the model was saved with; the options below win
    if options.language is not None:
        # a multilingual checkpoint knows the languages it has tokens for; the English-only one, English
        language = checked_language(config, options.language) if multilingual else _language_code(options.language)
        if language != "en" and not multilingual:
            raise ValueError(f"{model_path} is an English-only model: language={options.language!r} cannot be "
                             "used (only English)")
        if multilingual:
            generate["language"] = language
    if options.task == "translate":
        if not multilingual:
            raise ValueError(f"{model_path} is an English-only model: task='translate' needs a multilingual Whisper")
        generate["task"] = "translate"
    prompt = " ".join(t.strip() for t in (options.hotwords, options.initial_prompt) if t and t.strip())
    if prompt:
        generate["prompt_ids"] = pipe.tokenizer.get_prompt_ids(prompt, return_tensors="pt").to(pipe.model.device)
    if options.condition_on_previous_text is not None:
        generate["condition_on_prev_tokens"] = options.condition_on_previous_text
    if options.temperature is not None:
        generate["temperature"] = options.temperature
    for option, name in (("compression_ratio_threshold", "compression_ratio_threshold"),
                         ("log_prob_threshold", "logprob_threshold"), ("no_speech_threshold", "no_speech_threshold")):
        if getattr(options, option) is not None:
            generate[name] = getattr(options, option)
    return with_scored_temperature(generate)


def _language_code(language: str) -> str:
    """"en", "English", "<|en|>" -> "en" (:func:`finetune.data.text.language_code`); an unknown language is a
    ValueError naming the option."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    from finetune.data.text import language_code

    code = language_code(language)
    if code not in LANGUAGES:
        raise ValueError(f"language={language!r} is not a Whisper language (a code such as 'en', 'fr' or a name such "
                         "as 'english', 'french')")
    return code


def _load_pipeline(model_path: str, device: str | None):
    import torch
    from transformers import pipeline

    from finetune.models.consistency import check_pipeline_tokenizer

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        pipe = pipeline("automatic-speech-recognition", model=model_path, device=device,
                        model_kwargs={"use_safetensors": True})
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{model_path}: cannot load as a speech recognition model: {error}") from error
    check_pipeline_tokenizer(pipe, model_path)  # a folder without its tokenizer files transcribes to ""
    return pipe


def _timed_chunks(chunks: list[dict[str, Any]], duration: float) -> list[Segment]:
    """Pipeline chunks -> segments; a missing end (Whisper's last chunk) ends at the next start or the file end."""
    segments = []
    for index, chunk in enumerate(chunks):
        start, end = chunk.get("timestamp") or (None, None)
        text = " ".join(str(chunk.get("text", "")).split())
        if not text:
            continue
        start = 0.0 if start is None else float(start)
        if end is None:
            following = next((c["timestamp"][0] for c in chunks[index + 1:] if c["timestamp"][0] is not None), None)
            end = following if following is not None else duration
        segments.append(Segment(start=min(start, duration), end=min(max(float(end), start), duration), text=text))
    return segments


def group_words(words: list[Segment]) -> list[Segment]:
    """Join timed words into subtitle cues: break at a pause, after a sentence end, or when a cue is full."""
    cues: list[Segment] = []
    current: list[Segment] = []
    for word in words:
        if current:
            pause = word.start - current[-1].end
            text = " ".join(w.text for w in current)
            full = word.end - current[0].start > CUE_MAX_S or len(text) + len(word.text) + 1 > CUE_MAX_CHARS
            if pause >= CUE_PAUSE_S or full or text.endswith((".", "?", "!")):
                cues.append(Segment(current[0].start, current[-1].end, text))
                current = []
        current.append(word)
    if current:
        cues.append(Segment(current[0].start, current[-1].end, " ".join(w.text for w in current)))
    return cues



def output_stems(files: Sequence[Path], output_dir: Path) -> dict[Path, Path]:
    """``<output_dir>/<file stem>`` for each file; a stem seen before gets ``-2``, ``-3``... appended."""
    stems: dict[Path, Path] = {}
    used: dict[str, int] = {}
    for path in files:
        count = used[path.stem] = used.get(path.stem, 0) + 1
        stems[path] = output_dir / (path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


def transcribe_to(model: str | Path, paths: Sequence[str | Path], options: TranscribeOptions,
                  formats: Sequence[str], output_dir: Path | None, stream: Any = None) -> RunStats:
    """Transcribe and write ``<output_dir>/<stem>.<format>`` per file and format, or, without
    ``output_dir``, print the one format to ``stream`` (stdout). Returns the run's totals."""
    import sys

    from finetune.inference.formats import RENDERERS, TIMED_FORMATS, write_transcript

    stream = stream or sys.stdout
    if output_dir is None and len(formats) != 1:
        raise ValueError("printing to the terminal takes one --format; give --output-dir to write several")
    if TIMED_FORMATS & set(formats) and options.timestamps == "none":
        options.timestamps = "segment"  # subtitles need times
    if "json" in formats:
        options.scores = True  # JSON carries the language and confidence figures (Whisper)
    transcriber = Transcriber(model, options)
    files = find_audio_files(paths)
    stems = output_stems(files, output_dir) if output_dir is not None else {}
    stats = RunStats()
    for result in transcriber(files, stats):
        if result.transcript is None:
            continue
        if output_dir is not None:
            for written in write_transcript(result.transcript, stems[result.source], formats):
                logger.info("wrote %s", written)
        else:
            header = f"==> {result.source} <==\n" if len(files) > 1 else ""
            stream.write(header + RENDERERS[formats[0]](result.transcript))
            stream.flush()
    return stats
