"""espeak-ng synthesis shared by the make_spoken_*.py scripts: one utterance to 16 kHz mono float32, and a
whole split to an audiofolder (wav files + metadata.csv), so every spoken set is made the same way.

Not run on its own: ``scripts/make_spoken_snips.py`` and ``scripts/make_spoken_digits.py`` import it.
espeak-ng comes from the distribution's packages (Debian/Ubuntu: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class SynthesisError(RuntimeError):
    """espeak-ng is missing or failed on an utterance; the message names the row and voice."""


@dataclass(frozen=True)
class SpeechJob:
    """One wav file to speak: its name in the split folder, the text, how to say it, and extra csv columns."""

    file_name: str
    text: str
    voice: str
    speed: int
    label: str  # names the utterance in errors, e.g. "row 12"
    columns: Mapping[str, object] = field(default_factory=dict)


def espeak_binary() -> str:
    """The espeak-ng executable, or a SynthesisError that says how to install it."""
    found = shutil.which("espeak-ng")
    if not found:
        raise SynthesisError("espeak-ng not found on PATH; install it (Debian/Ubuntu: apt-get install espeak-ng)")
    return found


def synthesize(binary: str, text: str, *, voice: str, speed: int, sampling_rate: int, label: str) -> np.ndarray:
    """Speak one utterance; returns mono float32 samples at ``sampling_rate``."""
    # text goes through stdin: a text starting with '-' must not be read as an option
    done = subprocess.run([binary, "-v", voice, "-s", str(speed), "--stdout"], check=False,
                          input=text.encode("utf-8"), capture_output=True, timeout=60)
    if done.returncode != 0 or not done.stdout:
        raise SynthesisError(f"{label} (voice {voice}): espeak-ng failed: "
                             f"{done.stderr.decode(errors='replace').strip() or 'no audio'}")
    samples, rate = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if rate != sampling_rate:
        samples = soxr.resample(samples, rate, sampling_rate).astype(np.float32)
    if samples.size == 0 or float(np.abs(samples).max()) == 0.0:
        raise SynthesisError(f"{label} (voice {voice}): espeak-ng produced silence for {text!r}")
    return samples


def write_split_jobs(folder: Path, jobs: Sequence[SpeechJob], columns: Sequence[str], *, sampling_rate: int,
                workers: int) -> Path:
    """Speak every job into ``folder`` as 16-bit wav, then write its metadata.csv (last, atomically, so a
    folder with a metadata.csv is complete). Rows keep the jobs' order; ``duration`` is in seconds."""
    binary = espeak_binary()
    folder.mkdir(parents=True, exist_ok=True)

    def one(job: SpeechJob) -> dict[str, object]:
        samples = synthesize(binary, job.text, voice=job.voice, speed=job.speed, sampling_rate=sampling_rate,
                             label=job.label)
        sf.write(folder / job.file_name, samples, sampling_rate, subtype="PCM_16")
        return {"file_name": job.file_name, "text": job.text, **job.columns, "voice": job.voice,
                "speed": job.speed, "duration": round(len(samples) / sampling_rate, 3)}

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        records = list(pool.map(one, jobs))
    metadata = folder / "metadata.csv"
    tmp = folder / ".metadata.csv.tmp"
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(records)
    os.replace(tmp, metadata)
    return metadata
