"""Join the spoken-digit clips shipped in the package into two recordings with pauses, and their transcripts.

    python scripts/make_digit_recordings.py --output-dir outputs/digits [--seed 0]

Why: splitting at pauses (:mod:`finetune.inference.pauses`) for models with a short window needs real
recordings longer than the window, with real pauses between words and a known transcript. The clips are
the FSDD test sample under ``finetune/samples/fsdd/test`` (one spoken digit each, six speakers).

Writes, at 16 kHz mono FLAC:

- ``ten_digits.flac``: "one two three four five six seven eight nine zero", one speaker, 0.2 s of silence
  after each clip (about 5 s);
- ``digits_minute.flac``: at least a minute of digits, every clip in a seeded order (again and again if
  needed), each followed by a seeded pause of 0.2 to 0.6 s;
- ``ten_digits.txt`` / ``digits_minute.txt``: the reference transcripts, and ``metadata.csv``
  (file_name,transcript), so the folder reads as an audiofolder test split.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from finetune.data.audio import load_audio

SAMPLING_RATE = 16_000
CLIPS = REPO / "finetune" / "samples" / "fsdd" / "test"
DIGIT_ORDER = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero")


@dataclass(frozen=True)
class Clip:
    path: Path
    transcript: str
    speaker: str


@dataclass(frozen=True)
class Recording:
    """Joined samples, the transcript, and each clip's sample range ``[start, end)`` in the recording."""

    audio: np.ndarray
    transcript: str
    spans: list[tuple[int, int]]

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLING_RATE


def read_clips(clip_dir: Path = CLIPS) -> list[Clip]:
    """Every clip listed in ``clip_dir/metadata.csv`` (file_name, transcript, speaker), in file order."""
    metadata = clip_dir / "metadata.csv"
    if not metadata.is_file():
        raise FileNotFoundError(f"{metadata} not found: the FSDD sample clips with their metadata.csv are needed")
    with metadata.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"file_name", "transcript", "speaker"} - set(rows[0] if rows else ())
    if missing:
        raise ValueError(f"{metadata}: no rows, or missing column(s) {sorted(missing)}")
    return [Clip(clip_dir / row["file_name"], row["transcript"].strip(), row["speaker"]) for row in rows]


def join(clips: list[Clip], pauses_s: list[float]) -> Recording:
    """``clips`` one after another, clip ``i`` followed by ``pauses_s[i]`` seconds of silence."""
    parts, spans, cursor = [], [], 0
    for clip, pause in zip(clips, pauses_s, strict=True):
        audio = load_audio(clip.path, SAMPLING_RATE)
        spans.append((cursor, cursor + audio.size))
        silence = np.zeros(round(pause * SAMPLING_RATE), dtype=np.float32)
        parts += [audio, silence]
        cursor += audio.size + silence.size
    return Recording(np.concatenate(parts), " ".join(clip.transcript for clip in clips), spans)


def ten_digits(clip_dir: Path = CLIPS, speaker: str = "theo", pause_s: float = 0.2) -> Recording:
    """The ten digits in DIGIT_ORDER by ``speaker`` (another speaker for a digit ``speaker`` lacks)."""
    clips = read_clips(clip_dir)
    chosen = []
    for word in DIGIT_ORDER:
        candidates = sorted((c for c in clips if c.transcript == word), key=lambda c: (c.speaker != speaker,
                                                                                      c.path.name))
        if not candidates:
            raise ValueError(f"{clip_dir / 'metadata.csv'}: no clip of the digit {word!r}")
        chosen.append(candidates[0])
    return join(chosen, [pause_s] * len(chosen))


def digits_minute(clip_dir: Path = CLIPS, seed: int = 0, min_seconds: float = 60.0,
                  pause_range_s: tuple[float, float] = (0.2, 0.6)) -> Recording:
    """At least ``min_seconds`` of clips, each round a seeded shuffle of all of them, seeded pauses between."""
    clips = read_clips(clip_dir)
    rng = np.random.default_rng(seed)
    durations = {c.path: sf.info(c.path).duration for c in clips}
    chosen, pauses, total = [], [], 0.0
    while total < min_seconds:
        for index in rng.permutation(len(clips)):
            clip, pause = clips[index], float(rng.uniform(*pause_range_s))
            chosen.append(clip)
            pauses.append(pause)
            total += durations[clip.path] + pause
            if total >= min_seconds:
                break
    return join(chosen, pauses)


def build_digit_recordings(output_dir: Path, clip_dir: Path = CLIPS, seed: int = 0) -> dict[str, Path]:
    """Write both recordings, their transcripts and metadata.csv under ``output_dir``; return their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    rows = []
    for name, recording in (("ten_digits", ten_digits(clip_dir)), ("digits_minute", digits_minute(clip_dir, seed))):
        audio_path = output_dir / f"{name}.flac"
        sf.write(audio_path, recording.audio, SAMPLING_RATE, format="FLAC", subtype="PCM_16")
        (output_dir / f"{name}.txt").write_text(recording.transcript + "\n", encoding="utf-8")
        written[name] = audio_path
        rows.append((audio_path.name, recording.transcript))
    metadata = output_dir / "metadata.csv"
    with metadata.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file_name", "transcript"))
        writer.writerows(rows)
    written["metadata"] = metadata
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--clips", type=Path, default=CLIPS, help="folder of FSDD clips with metadata.csv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the minute recording's order and pauses")
    args = parser.parse_args()
    for path in build_digit_recordings(args.output_dir, args.clips, args.seed).values():
        detail = f"{sf.info(path).duration:.1f} s" if path.suffix == ".flac" else "file_name,transcript"
        print(f"wrote {path} ({detail})")


if __name__ == "__main__":
    main()
