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
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # espeak_synth sits beside this file, which is not a package
    sys.path.insert(0, HERE)

from espeak_synth import SpeechJob, SynthesisError, write_split_jobs

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


def write_split(out: Path, split: str, utterances: list[Utterance], *, sampling_rate: int, workers: int) -> Path:
    """Synthesize every utterance of a split into ``<out>/<split>``, then write its metadata.csv."""
    jobs = [SpeechJob(file_name=f"{split}_{u.row:05d}.wav", text=u.text, voice=u.voice, speed=u.speed,
                      label=f"row {u.row}", columns={"intent": u.intent}) for u in utterances]
    return write_split_jobs(out / split, jobs, METADATA_COLUMNS, sampling_rate=sampling_rate, workers=workers)


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
