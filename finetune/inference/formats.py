"""Writers for transcripts: plain text, JSON, SubRip (.srt) and WebVTT (.vtt).

A transcript is a :class:`Transcript`: the full text plus optional timed segments (and, when asked for,
timed words). Subtitles need times, so SRT/VTT refuse a transcript without segments rather than
inventing a single cue that spans the whole file.

Example::

    t = Transcript(source="talk.flac", text="Hello there.", duration=1.6,
                   segments=[Segment(0.0, 1.6, "Hello there.")])
    write_transcript(t, Path("out/talk"), ["txt", "srt"])  # out/talk.txt, out/talk.srt
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from finetune.outputs import write_text

FORMATS = ("txt", "json", "srt", "vtt")
TIMED_FORMATS = frozenset({"srt", "vtt"})


@dataclass
class Scores:
    """How sure the model is of a stretch of text (:mod:`finetune.inference.scores` computes them):
    faster-whisper's ``avg_logprob``, ``no_speech_prob`` and ``compression_ratio``; ``tokens`` scored;
    ``words``: (word, probability) in order."""

    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    tokens: int = 0
    words: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, float]:
        return {"avg_logprob": round(self.avg_logprob, 4), "no_speech_prob": round(self.no_speech_prob, 4),
                "compression_ratio": round(self.compression_ratio, 4)}


@dataclass
class Segment:
    """A stretch of speech: start/end in seconds from the start of the recording. A timed word is a
    segment too, with its ``probability`` once scored; a segment's own ``scores`` are set once scored."""

    start: float
    end: float
    text: str
    probability: float | None = None
    scores: Scores | None = None

    def to_dict(self) -> dict:
        data: dict = {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}
        if self.probability is not None:
            data["probability"] = self.probability
        if self.scores is not None:
            data.update(self.scores.to_dict())
        return data


@dataclass
class Transcript:
    """What one recording became; ``words`` is filled only when word timestamps were asked for; language
    and scores only when the transcript was scored (JSON output, or ``TranscribeOptions.scores``)."""

    source: str
    text: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Segment] = field(default_factory=list)
    language: str | None = None
    language_probability: float | None = None  # set when the language was detected, not given
    scores: Scores | None = None

    def to_dict(self) -> dict:
        data: dict = {"source": self.source, "text": self.text, "duration": round(self.duration, 3)}
        if self.language is not None:
            data["language"] = self.language
            data["language_probability"] = (None if self.language_probability is None
                                            else round(self.language_probability, 4))
        if self.scores is not None:
            data.update(self.scores.to_dict())
            data["word_probabilities"] = [{"word": word, "probability": p} for word, p in self.scores.words]
        data["segments"] = [s.to_dict() for s in self.segments]
        if self.words:
            data["words"] = [w.to_dict() for w in self.words]
        return data


def parse_formats(spec: str | Iterable[str]) -> list[str]:
    """``"txt,srt"`` or ``["txt", "srt"]`` or ``"all"`` -> a checked, de-duplicated list."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [item.strip().lower().lstrip(".") for item in items if item.strip()]
    if names == ["all"]:
        return list(FORMATS)
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(f"unknown output format(s) {unknown or spec!r}; choose from {', '.join(FORMATS)} or all")
    return list(dict.fromkeys(names))


def timestamp(seconds: float, *, separator: str = ",", hours: bool = True) -> str:
    """``3725.5`` -> ``01:02:05,500`` (SRT) or ``01:02:05.500`` (VTT); never negative."""
    millis = max(0, int(round(seconds * 1000)))
    h, rest = divmod(millis, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    head = f"{h:02d}:" if hours or h else ""
    return f"{head}{m:02d}:{s:02d}{separator}{ms:03d}"


def to_text(transcript: Transcript) -> str:
    return transcript.text.strip() + "\n"


def to_json(transcript: Transcript) -> str:
    return json.dumps(transcript.to_dict(), indent=2, ensure_ascii=False) + "\n"


def to_srt(transcript: Transcript) -> str:
    """Numbered cues ``1``, ``2``, ... with ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` times."""
    cues = []
    for number, segment in enumerate(_cues(transcript), start=1):
        span = f"{timestamp(segment.start)} --> {timestamp(segment.end)}"
        cues.append(f"{number}\n{span}\n{segment.text}\n")
    return "\n".join(cues)


def to_vtt(transcript: Transcript) -> str:
    """``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times (no numbers needed)."""
    cues = [f"{timestamp(s.start, separator='.')} --> {timestamp(s.end, separator='.')}\n{s.text}\n"
            for s in _cues(transcript)]
    return "WEBVTT\n\n" + "\n".join(cues)


def _cues(transcript: Transcript) -> list[Segment]:
    """Segments fit for subtitles: text stripped, empty ones dropped, end never before start."""
    if not transcript.segments and transcript.text.strip():  # nothing said: an empty subtitle file
        raise ValueError(f"{transcript.source}: subtitles need timestamps; transcribe with timestamps on")
    cues = []
    for segment in transcript.segments:
        text = " ".join(segment.text.split())
        if text:
            cues.append(Segment(segment.start, max(segment.end, segment.start), text.replace("-->", "->")))
    return cues


RENDERERS = {"txt": to_text, "json": to_json, "srt": to_srt, "vtt": to_vtt}


def write_transcript(transcript: Transcript, stem: Path, formats: Iterable[str]) -> list[Path]:
    """Write ``<stem>.<format>`` for each format (atomically, UTF-8); return the paths written."""
    written = []
    stem.parent.mkdir(parents=True, exist_ok=True)
    for name in formats:
        path = stem.parent / f"{stem.name}.{name}"
        write_text(path, RENDERERS[name](transcript))
        written.append(path)
    return written
