"""Join real clips from ../shared/data into one several-minute recording with its reference transcript.

    python scripts/make_long_recording.py --out outputs/long [--data ../shared/data] [--gap 0.6]

Why: long-form transcription (chunking, stride merging, timestamps) needs a recording far longer than
Whisper's 30-second window, with a known transcript to score it. The clips are the LJ Speech sample
(32 utterances, ~3.7 min, public domain), the LibriSpeech sample (5 utterances, CC BY 4.0) and JFK
(11 s, public domain), decoded to 16 kHz mono and joined with short silences: about 4.5 minutes.

Writes ``<out>/long.flac`` (16 kHz mono), ``<out>/long.txt`` (the reference, clips joined by spaces) and
``<out>/long.json`` (each clip's source file, start/end seconds and transcript, for checking timestamps).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from finetune.data.audio import load_audio  # noqa: E402

SAMPLING_RATE = 16_000
# (folder under the data dir, split): clips in metadata order
SOURCES = (("ljspeech_sample", "test"), ("librispeech_sample", "test"), ("jfk", "test"))


def clips(data: Path) -> list[tuple[Path, str]]:
    """(audio path, transcript) of every clip of SOURCES, in order."""
    found = []
    for folder, split in SOURCES:
        metadata = data / folder / split / "metadata.csv"
        if not metadata.is_file():
            raise FileNotFoundError(f"{metadata} not found: is --data the shared data folder?")
        with metadata.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                found.append((metadata.parent / row["file_name"], row["transcript"].strip()))
    return found


def build(data: Path, out: Path, gap_s: float) -> dict:
    """Write long.flac / long.txt / long.json under ``out``; return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    silence = np.zeros(int(gap_s * SAMPLING_RATE), dtype=np.float32)
    pieces, segments, cursor = [], [], 0
    for path, text in clips(data):
        audio = load_audio(path, SAMPLING_RATE)
        start = cursor / SAMPLING_RATE
        pieces += [audio, silence]
        cursor += audio.size + silence.size
        segments.append({"source": f"{path.parent.parent.name}/{path.name}", "start": round(start, 3),
                         "end": round(start + audio.size / SAMPLING_RATE, 3), "text": text})
    samples = np.concatenate(pieces)
    sf.write(out / "long.flac", samples, SAMPLING_RATE, subtype="PCM_16")
    reference = " ".join(s["text"] for s in segments)
    (out / "long.txt").write_text(reference + "\n", encoding="utf-8")
    summary = {"audio": "long.flac", "duration_s": round(samples.size / SAMPLING_RATE, 3),
               "sampling_rate": SAMPLING_RATE, "gap_s": gap_s, "segments": segments}
    (out / "long.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gap", type=float, default=0.6, help="seconds of silence between clips")
    args = parser.parse_args()
    summary = build(args.data, args.out, args.gap)
    print(f"wrote {args.out / 'long.flac'}: {summary['duration_s']:.1f} s from {len(summary['segments'])} clips")


if __name__ == "__main__":
    main()
