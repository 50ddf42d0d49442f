"""Write no-speech clips (silence, noise, hum, clicks) with an empty transcript: training data against
text invented over silence.

    python scripts/make_no_speech_clips.py --out outputs/no_speech/fsdd_no_speech \
        --split train=60 --split test=40 --seed 0 --with finetune/samples/fsdd

Writes an audiofolder that ``finetune`` reads as it is: ``<out>/<split>/metadata.csv`` (file_name,
transcript, kind, duration; transcript empty) beside 16 kHz mono 16-bit wav files. Trained with
``allow_empty_transcripts: true`` such clips teach a recognizer to answer non-speech with nothing.

Kinds (cycled, so every split holds each about equally often; durations uniform in 0.5-3 s, like FSDD):

- ``silence``: digital silence, every sample 0;
- ``room_noise``: pink or brown noise, RMS -50..-35 dBFS (a quiet room, a mic's self noise);
- ``white_noise``: white noise, RMS -40..-25 dBFS (hiss);
- ``hum``: mains hum, 50 or 60 Hz with harmonics 2-5, RMS -45..-25 dBFS;
- ``clicks``: 1-6 clicks or short noise bursts (peak -20..-6 dBFS) over a -65 dBFS floor.

Each split is drawn from its own stream of ``--seed`` and the split's name: the same command writes the
same files, and train and test clips are different draws. ``--with DIR`` also copies DIR's rows of each
split (its audio files and metadata.csv, which must have ``file_name`` and ``transcript``) into the output,
so the result is one audiofolder with speech and no-speech rows mixed; its rows get kind ``speech`` and
its other columns are kept (empty for the no-speech rows).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLING_RATE = 16_000
KINDS = ("silence", "room_noise", "white_noise", "hum", "clicks")
DURATION_RANGE = (0.5, 3.0)  # seconds, like FSDD's spoken digits
# RMS in dBFS (full scale = a sine of amplitude 1 is -3 dBFS; here 0 dBFS is RMS 1.0)
LEVELS_DBFS = {"room_noise": (-50.0, -35.0), "white_noise": (-40.0, -25.0), "hum": (-45.0, -25.0)}
CLICK_PEAK_DBFS = (-20.0, -6.0)
CLICK_FLOOR_DBFS = -65.0
METADATA_COLUMNS = ("file_name", "transcript", "kind", "duration")
TEXT_COLUMN = "transcript"


@dataclass(frozen=True)
class Clip:
    """One no-speech clip: its file name, kind and samples (float32 in [-1, 1])."""

    file_name: str
    kind: str
    audio: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLING_RATE


def split_rng(seed: int, split: str) -> np.random.Generator:
    """A stream per (seed, split name): adding a split never changes another, train and test differ."""
    digest = hashlib.sha256(split.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def db_to_amplitude(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dBFS (RMS 1.0 = 0 dBFS); -inf for digital silence."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def scale_to_dbfs(audio: np.ndarray, db: float) -> np.ndarray:
    """``audio`` scaled so its RMS is ``db`` dBFS."""
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64)))
    return (audio * (db_to_amplitude(db) / rms)).astype(np.float32)


def colored_noise(rng: np.random.Generator, count: int, exponent: float) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent (1: pink, 2: brown), shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(count))
    freqs = np.fft.rfftfreq(count)
    freqs[0] = freqs[1] if count > 1 else 1.0  # no infinite DC gain
    shaped = np.fft.irfft(spectrum / freqs ** (exponent / 2.0), n=count)
    return shaped - shaped.mean()


def room_noise(rng: np.random.Generator, count: int) -> np.ndarray:
    exponent = 1.0 if rng.random() < 0.5 else 2.0
    return scale_to_dbfs(colored_noise(rng, count, exponent), float(rng.uniform(*LEVELS_DBFS["room_noise"])))


def white_noise(rng: np.random.Generator, count: int) -> np.ndarray:
    return scale_to_dbfs(rng.standard_normal(count), float(rng.uniform(*LEVELS_DBFS["white_noise"])))


def hum(rng: np.random.Generator, count: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and harmonics 2-5 at falling, random amplitudes and phases."""
    mains = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(count) / SAMPLING_RATE
    wave = np.zeros(count)
    for harmonic in range(1, 6):
        amplitude = rng.uniform(0.3, 1.0) / harmonic
        wave += amplitude * np.sin(2 * np.pi * mains * harmonic * t + rng.uniform(0, 2 * np.pi))
    return scale_to_dbfs(wave, float(rng.uniform(*LEVELS_DBFS["hum"])))


def clicks(rng: np.random.Generator, count: int) -> np.ndarray:
    """A few clicks (1-5 ms decaying impulses) or bursts (10-60 ms of noise) over a very low floor."""
    audio = rng.standard_normal(count) * db_to_amplitude(CLICK_FLOOR_DBFS)
    for _ in range(int(rng.integers(1, 7))):
        seconds = rng.uniform(0.001, 0.005) if rng.random() < 0.5 else rng.uniform(0.010, 0.060)
        length = max(2, min(count, int(seconds * SAMPLING_RATE)))
        start = int(rng.integers(0, count - length + 1))
        envelope = np.exp(-np.linspace(0.0, 6.0, length))
        burst = rng.standard_normal(length) * envelope
        audio[start:start + length] += burst / np.max(np.abs(burst)) * db_to_amplitude(rng.uniform(*CLICK_PEAK_DBFS))
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def silence(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.zeros(count, dtype=np.float32)


GENERATORS = {"silence": silence, "room_noise": room_noise, "white_noise": white_noise, "hum": hum,
              "clicks": clicks}


def make_clips(split: str, count: int, seed: int) -> list[Clip]:
    """``count`` clips of ``split``, kinds cycled (in a seeded order), each of a random 0.5-3 s."""
    rng = split_rng(seed, split)
    order = [KINDS[i] for i in rng.permutation(len(KINDS))]
    clips = []
    for index in range(count):
        kind = order[index % len(order)]
        samples = round(rng.uniform(*DURATION_RANGE) * SAMPLING_RATE)
        audio = GENERATORS[kind](rng, samples).astype(np.float32)
        clips.append(Clip(file_name=f"no_speech_{index:04d}_{kind}.wav", kind=kind, audio=audio))
    return clips


def read_rows(folder: Path, split: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of ``folder``/``split``/metadata.csv, which must name file_name and transcript."""
    path = folder / split / "metadata.csv"
    if not path.is_file():
        raise SystemExit(f"--with {folder}: no {split}/metadata.csv")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)
    missing = [name for name in ("file_name", TEXT_COLUMN) if name not in header]
    if missing:
        raise SystemExit(f"{path}: no column {', '.join(missing)} (has {', '.join(header)})")
    return header, rows


def copy_rows(folder: Path, split: str, target: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Copy ``folder``'s ``split`` audio into ``target``; its header and rows, kind ``speech`` added."""
    header, rows = read_rows(folder, split)
    for row in rows:
        destination = target / row["file_name"]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(folder / split / row["file_name"], destination)
        row.setdefault("kind", "speech")
        if not row["kind"]:
            row["kind"] = "speech"
    return header, rows


def interleave(first: list[dict], second: list[dict]) -> list[dict]:
    """Both lists' rows, ``second``'s spread evenly through ``first``'s (any head of the file holds both)."""
    keyed = [((i + 0.5) / len(first), 0, row) for i, row in enumerate(first)]
    keyed += [((i + 0.5) / len(second), 1, row) for i, row in enumerate(second)]
    return [row for _, _, row in sorted(keyed, key=lambda item: item[:2])]


def write_split(out: Path, split: str, count: int, seed: int, other: Path | None) -> list[dict[str, str]]:
    """Write one split's clips (and ``other``'s rows) and, last, its metadata.csv; the rows written."""
    target = out / split
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"{target} exists and is not empty; choose another --out or remove it")
    target.mkdir(parents=True, exist_ok=True)
    clips = make_clips(split, count, seed)
    for clip in clips:
        sf.write(target / clip.file_name, clip.audio, SAMPLING_RATE, subtype="PCM_16")
    rows = [{"file_name": c.file_name, TEXT_COLUMN: "", "kind": c.kind, "duration": f"{c.duration:.4f}"}
            for c in clips]
    header = list(METADATA_COLUMNS)
    if other is not None:
        other_header, other_rows = copy_rows(other, split, target)
        clash = {row["file_name"] for row in other_rows} & {row["file_name"] for row in rows}
        if clash:
            raise SystemExit(f"--with {other}: file names clash with the no-speech clips: {sorted(clash)[:3]}")
        header = other_header + [name for name in METADATA_COLUMNS if name not in other_header]
        rows = interleave(other_rows, rows)
    write_metadata(target / "metadata.csv", header, rows)
    return rows


def write_metadata(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    """metadata.csv written to a temporary name and renamed: a folder with one is complete."""
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def parse_split(value: str) -> tuple[str, int]:
    name, _, count = value.partition("=")
    if not name or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"expected NAME=COUNT with COUNT >= 1, got {value!r}")
    return name, int(count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="audiofolder to write")
    parser.add_argument("--split", type=parse_split, action="append", required=True,
                        help="NAME=COUNT no-speech clips in split NAME (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--with", dest="other", type=Path, default=None,
                        help="an audiofolder whose rows of the same splits are copied in beside the clips")
    args = parser.parse_args(argv)
    for split, count in args.split:
        rows = write_split(args.out, split, count, args.seed, args.other)
        print(f"{args.out / split}: {count} no-speech clips, {len(rows)} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
