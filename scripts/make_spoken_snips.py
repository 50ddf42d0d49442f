#!/usr/bin/env python3
"""Speak the SNIPS intent queries with espeak-ng: a spoken test (and training) set for the SLU cascade.

    python scripts/make_spoken_snips.py --data ../shared/data/snips --out outputs/spoken_snips \
        --split test=700 --split train=2000

Reads ``<data>/<split>.jsonl`` (``text``, ``intent``) and writes an audiofolder that ``finetune`` reads
as it is: ``<out>/<split>/metadata.csv`` (file_name, text, intent, voice, speed, duration) beside
16 kHz mono 16-bit wav files. Each utterance gets a voice and a speaking rate drawn with a fixed seed
from ``--voices`` x ``--speeds``, so the set is reproducible and mixes accents, pitches and rates.
``split=N`` keeps a seeded random subset of N rows (in their original order); ``split`` alone keeps all.

espeak-ng comes from the distribution's packages (Debian/Ubuntu: ``apt-get install espeak-ng``).
It is a formant synthesizer: robotic, but real speech audio that a recognizer has to decode, which is
what the cascade's error-propagation figures need.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# English voices of espeak-ng 1.51 (accent + voice variant), all shipped in the Debian package.
DEFAULT_VOICES = (
    "en-us",
    "en-us+f3",
    "en-gb",
    "en-gb+f2",
    "en-gb-scotland+m3",
    "en-029+f4",
    "en-us-nyc+m2",
    "en-gb-x-rp+f1",
)
DEFAULT_SPEEDS = (140, 165, 190)  # words per minute; espeak-ng's default is 175
METADATA_COLUMNS = ("file_name", "text", "intent", "voice", "speed", "duration")


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed on an utterance; the message names the row and voice."""


@dataclass(frozen=True)
class Utterance:
    row: int
    text: str
    intent: str
    voice: str
    speed: int


def read_queries(path: Path) -> list[tuple[str, str]]:
    """(text, intent) pairs of a JSONL file; a bad line is an error naming the file and line."""
    if not path.is_file():
        raise SynthesisError(f"{path}: not found (expected <data>/<split>.jsonl with text and intent)")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SynthesisError(f"{path}:{number}: not JSON ({error})") from None
            text, intent = str(record.get("text") or "").strip(), str(record.get("intent") or "").strip()
            if not text or not intent:
                raise SynthesisError(f"{path}:{number}: needs non-empty 'text' and 'intent', got {record}")
            rows.append((text, intent))
    return rows


def plan(rows: list[tuple[str, str]], count: int | None, voices: list[str], speeds: list[int],
         seed: int | str) -> list[Utterance]:
    """Pick the subset and give each utterance its voice and speed, reproducibly."""
    rng = random.Random(seed)
    keep = range(len(rows)) if count is None or count >= len(rows) else sorted(rng.sample(range(len(rows)), count))
    return [Utterance(row=i, text=rows[i][0], intent=rows[i][1], voice=rng.choice(voices), speed=rng.choice(speeds))
            for i in keep]


def espeak_binary() -> str:
    found = shutil.which("espeak-ng")
    if not found:
        raise SynthesisError("espeak-ng not found on PATH; install it (Debian/Ubuntu: apt-get install espeak-ng)")
    return found


def synthesize(binary: str, utterance: Utterance, sampling_rate: int) -> np.ndarray:
    """Speak one utterance; returns mono float32 samples at ``sampling_rate``."""
    # text goes through stdin: a query starting with '-' must not be read as an option
    done = subprocess.run([binary, "-v", utterance.voice, "-s", str(utterance.speed), "--stdout"],
                          input=utterance.text.encode("utf-8"), capture_output=True, timeout=60)
    if done.returncode != 0 or not done.stdout:
        raise SynthesisError(f"row {utterance.row} (voice {utterance.voice}): espeak-ng failed: "
                             f"{done.stderr.decode(errors='replace').strip() or 'no audio'}")
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != sampling_rate:
        samples = soxr.resample(samples, rate, sampling_rate).astype(np.float32)
    if samples.size == 0 or float(np.abs(samples).max()) == 0.0:
        raise SynthesisError(f"row {utterance.row} (voice {utterance.voice}): espeak-ng produced silence "
                             f"for {utterance.text!r}")
    return samples


def write_split(out: Path, split: str, utterances: list[Utterance], *, sampling_rate: int, workers: int) -> Path:
    """Synthesize every utterance of a split, then write its metadata.csv (last, atomically)."""
    binary = espeak_binary()
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)

    def one(utterance: Utterance) -> dict[str, object]:
        samples = synthesize(binary, utterance, sampling_rate)
        name = f"{split}_{utterance.row:05d}.wav"
        sf.write(folder / name, samples, sampling_rate, subtype="PCM_16")
        return {"file_name": name, "text": utterance.text, "intent": utterance.intent, "voice": utterance.voice,
                "speed": utterance.speed, "duration": round(len(samples) / sampling_rate, 3)}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        records = list(pool.map(one, utterances))
    metadata = folder / "metadata.csv"
    tmp = folder / ".metadata.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=METADATA_COLUMNS)
        writer.writeheader()
        writer.writerows(records)
    os.replace(tmp, metadata)
    return metadata


def parse_split(value: str) -> tuple[str, int | None]:
    name, sep, count = value.partition("=")
    if not name or (sep and not count.isdigit()):
        raise argparse.ArgumentTypeError(f"--split expects NAME or NAME=COUNT, got {value!r}")
    return name, int(count) if sep else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with <split>.jsonl (text, intent)")
    parser.add_argument("--out", type=Path, required=True, help="audiofolder to write")
    parser.add_argument("--split", type=parse_split, action="append", required=True,
                        help="NAME or NAME=COUNT (seeded random subset); repeat for several splits")
    parser.add_argument("--voices", nargs="+", default=list(DEFAULT_VOICES), help="espeak-ng voices (lang+variant)")
    parser.add_argument("--speeds", nargs="+", type=int, default=list(DEFAULT_SPEEDS), help="words per minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampling-rate", type=int, default=16000)
    parser.add_argument("--workers", type=int, default=2, help="espeak-ng processes at a time")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for split, count in args.split:
            rows = read_queries(args.data / f"{split}.jsonl")
            # each split its own seed stream, so adding a split never changes another one's voices
            utterances = plan(rows, count, args.voices, args.speeds, f"{args.seed}:{split}")
            metadata = write_split(args.out, split, utterances, sampling_rate=args.sampling_rate,
                                   workers=args.workers)
            print(f"{split}: {len(utterances)} utterances -> {metadata}")
    except SynthesisError as error:
        print(f"make_spoken_snips: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
