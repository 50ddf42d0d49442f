"""Build the small Free Spoken Digit Dataset sample shipped inside the package for the quickstart.

    python scripts/make_quickstart_sample.py [--fsdd ../shared/data/fsdd] [--out finetune/samples/fsdd]

Keeps the dataset's own split: `train` gets takes 5-9 of every digit and speaker (300 clips),
`test` gets take 0 of every digit and speaker from fsdd's test split (60 clips). Audio is stored as
FLAC (lossless, about half the size of the WAVs) at the original 8 kHz.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import soundfile as sf

TAKES = {"train": {5, 6, 7, 8, 9}, "test": {0}}
LICENSE_NOTE = """# Free Spoken Digit Dataset (sample)

A small sample of the Free Spoken Digit Dataset (FSDD): real recordings of the spoken digits 0-9 by
6 speakers, 8 kHz mono, stored here as lossless FLAC. `train` holds takes 5-9 of every digit and
speaker (300 clips); `test` holds take 0 (60 clips), from FSDD's own test takes 0-4.
Columns: file_name, transcript (the English word), label (the digit), speaker, duration (seconds).

Source: github.com/Jakobovski/free-spoken-digit-dataset at commit 26eb9aaf76e81b692f806f9140c2d2777410d7a1.
License: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0),
https://creativecommons.org/licenses/by-sa/4.0/ . Changes: subset selected and converted to FLAC.
Made by scripts/make_quickstart_sample.py.
"""


def build(fsdd: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    for split, takes in TAKES.items():
        rows = list(csv.DictReader((fsdd / split / "metadata.csv").open(encoding="utf-8")))
        chosen = [r for r in rows if int(Path(r["file_name"]).stem.split("_")[-1]) in takes]
        target = out / split
        target.mkdir(parents=True)
        for row in chosen:
            samples, rate = sf.read(fsdd / split / row["file_name"], dtype="int16")
            name = Path(row["file_name"]).with_suffix(".flac").name
            sf.write(target / name, samples, rate, subtype="PCM_16")
            row["file_name"] = name
        with (target / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(chosen[0]))
            writer.writeheader()
            writer.writerows(chosen)
        print(f"{split}: {len(chosen)} clips")
    (out / "SOURCE.md").write_text(LICENSE_NOTE, encoding="utf-8")


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=root.parent / "shared" / "data" / "fsdd")
    parser.add_argument("--out", type=Path, default=root / "finetune" / "samples" / "fsdd")
    args = parser.parse_args()
    build(args.fsdd, args.out)


if __name__ == "__main__":
    main()
