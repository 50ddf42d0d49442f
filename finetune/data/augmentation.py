"""Speed and noise augmentation of training clips, drawn anew each time a clip is batched.

Speed perturbation is Kaldi's and ESPnet's: the clip is resampled as if it had been recorded at
``factor`` times the model's rate, so tempo and pitch change together and a factor of 1.1 gives a
clip 1/1.1 as long. Noise is mixed in at a signal-to-noise ratio drawn per clip: a random stretch of a
real recording from ``noise_dir`` (looped where shorter than the clip), else generated white or pink
Gaussian noise.

Why in the collator and not in a ``datasets`` transform: a ``with_transform`` split runs its transform
on every row whenever one column is read (``dataset["duration"]``, which duration batching and length
grouping read before each epoch), which would decode and perturb the whole split. Instead the training
rows carry an ``augment`` mark (:func:`mark_for_augmentation`) and :class:`AugmentingCollator` perturbs
the marked rows of each batch before the task's own collator pads them; evaluation rows have no mark and
pass through untouched, even through the same Trainer. Features, padding and dynamic context are then
computed from the perturbed audio, so a batch pads to its real longest clip.

Seeding: each batch draws a seed from numpy's global generator, which the Trainer seeds with ``seed``
(``set_seed``) and PyTorch reseeds in every dataloader worker from the seeded torch generator; a run and
its rerun draw the same perturbations, another seed draws others, and each epoch draws new ones. A
resumed run restores numpy's state from the checkpoint.

    speed_perturbation: [0.9, 1.0, 1.1]
    noise_probability: 0.5
    noise_snr_db: [5, 20]
    noise_dir: data/noise        # optional: wav/flac/ogg/mp3 recordings (searched recursively)
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soxr

from finetune.config import check_choices
from finetune.data.audio import AudioDecodeError, audio_duration, load_audio

logger = logging.getLogger(__name__)

AUGMENT_COLUMN = "augment"  # True on training rows: the only rows AugmentingCollator perturbs
NOISE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".w64"})
SPEED_RANGE = (0.5, 2.0)  # factors outside it are a typo (percent: 90, 110), not an augmentation
_NOISE_CACHE_FILES = 64  # decoded noise recordings kept per process


@dataclass
class AugmentationArguments:
    """Speed and noise perturbation of the training clips (never of evaluation clips)."""

    speed_perturbation: list[float] | None = field(
        default=None,
        metadata={"help": "Training only: speed factors such as [0.9, 1.0, 1.1]; each time a clip is batched it "
                          "is resampled by one of them drawn at random (Kaldi/ESPnet speed perturbation: tempo and "
                          "pitch change together, 1.1 is faster and shorter). Factors that would make a clip "
                          "longer than max_duration_in_seconds are not drawn for it. null: off."},
    )
    noise_probability: float = field(
        default=0.0,
        metadata={"help": "Training only: share of batched clips that get noise mixed in (0: off, 1: every clip)."},
    )
    noise_snr_db: list[float] = field(
        default_factory=lambda: [5.0, 20.0],
        metadata={"help": "[min, max] signal-to-noise ratio in dB of the added noise, drawn uniformly per clip."},
    )
    noise_dir: str | None = field(
        default=None,
        metadata={"help": "Folder of noise recordings (wav, flac, ogg, mp3...; searched recursively), read at the "
                          "model's rate; each noisy clip gets a random stretch of one. null: generated noise "
                          "(noise_color)."},
    )
    noise_color: Literal["white", "pink"] = field(
        default="white",
        metadata={"help": "Generated noise when no noise_dir is given: white (flat spectrum) or pink (1/f, "
                          "closer to room and street noise)."},
    )

    def __post_init__(self) -> None:
        check_choices(self)
        self.speed_perturbation = _speed_factors(self.speed_perturbation)
        self.noise_probability = _probability(self.noise_probability)
        self.noise_snr_db = _snr_range(self.noise_snr_db)
        if self.noise_dir is not None:
            noise_files(self.noise_dir)  # refused now, before any model loads, if it holds no audio
            if self.noise_probability == 0:
                raise ValueError(f"noise_dir is {self.noise_dir!r} but noise_probability is 0, so no noise would be "
                                 "added: set noise_probability (e.g. 0.5), or remove noise_dir")

    @property
    def enabled(self) -> bool:
        speed = self.speed_perturbation is not None and any(f != 1.0 for f in self.speed_perturbation)
        return speed or self.noise_probability > 0


def _speed_factors(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"speed_perturbation must be a list of speed factors such as [0.9, 1.0, 1.1] (or null: "
                         f"off), got {value!r}")
    factors = [_number(f, "speed_perturbation", value) for f in value]
    low, high = SPEED_RANGE
    bad = [f for f in factors if not low <= f <= high]
    if bad:
        raise ValueError(f"speed_perturbation factors must be between {low} and {high} (1.0: unchanged; e.g. "
                         f"[0.9, 1.0, 1.1]), got {bad[0]:g} in {value!r}")
    return factors


def _probability(value: Any) -> float:
    probability = _number(value, "noise_probability", value)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"noise_probability must be between 0 and 1, got {value!r}")
    return probability


def _snr_range(value: Any) -> list[float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"noise_snr_db must be [min, max] in dB, e.g. [5, 20], got {value!r}")
    low, high = (_number(v, "noise_snr_db", value) for v in value)
    if low > high:
        raise ValueError(f"noise_snr_db must be [min, max] with min <= max, got {value!r}")
    return [low, high]


def _number(item: Any, key: str, whole: Any) -> float:
    try:
        number = float(item) if not isinstance(item, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{key} must hold finite numbers, got {item!r} in {whole!r}")
    return number


def noise_files(folder: str | Path) -> tuple[str, ...]:
    """The audio files under ``folder`` (recursively, sorted so that draws do not depend on the file system)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ValueError(f"noise_dir {str(folder)!r} is not a folder")
    found = tuple(sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES and p.is_file()))
    if not found:
        raise ValueError(f"noise_dir {str(folder)!r} holds no audio files ({', '.join(sorted(NOISE_SUFFIXES))})")
    return found


# ---------------------------------------------------------------------------------------- the perturbations


def change_speed(samples: np.ndarray, factor: float, sampling_rate: int) -> np.ndarray:
    """``samples`` played ``factor`` times as fast: resampled from ``factor * rate`` to ``rate``
    (``len / factor`` samples; pitch moves with tempo, as sox's ``speed`` effect)."""
    if factor == 1.0:
        return samples
    resampled = np.asarray(soxr.resample(samples, sampling_rate * factor, sampling_rate, quality="HQ"),
                           dtype=np.float32)
    return resampled if resampled.size else samples  # a few samples can round down to none


def mix_at_snr(samples: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``samples + noise`` with the noise scaled so that signal power / noise power is ``snr_db``.
    Silent clips and silent noise come back unchanged: no scale gives them a ratio."""
    signal_power = float(np.mean(np.square(samples, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if signal_power == 0.0 or noise_power == 0.0:
        return samples
    scale = math.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (samples + scale * noise).astype(np.float32)


def generated_noise(length: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise: white (flat spectrum) or pink (power falling as 1/f, shaped in the frequency domain)."""
    white = rng.standard_normal(length)
    if color == "white" or length < 2:
        return white.astype(np.float32)
    spectrum = np.fft.rfft(white)
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0  # DC: removed below
    spectrum /= np.sqrt(frequencies)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n=length).astype(np.float32)


@functools.lru_cache(maxsize=_NOISE_CACHE_FILES)
def _load_noise(path: str, sampling_rate: int) -> np.ndarray:
    try:
        return load_audio(path, sampling_rate)
    except AudioDecodeError as error:
        raise AudioDecodeError(error.source, f"{error.reason} (a noise_dir recording)") from None


def recorded_noise(files: tuple[str, ...], length: int, sampling_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of one random recording from a random start, looped where the recording is shorter."""
    noise = _load_noise(files[int(rng.integers(len(files)))], sampling_rate)
    start = int(rng.integers(len(noise)))
    return np.take(noise, np.arange(start, start + length) % len(noise))


@dataclass(frozen=True)
class Augmenter:
    """Perturbs one training waveform (mono float32 at ``sampling_rate``): speed first, then noise, so the
    noise keeps its own pitch. ``max_samples`` bounds slowed clips (the model's longest input)."""

    options: AugmentationArguments
    sampling_rate: int
    max_samples: int | None = None
    noise_files: tuple[str, ...] = ()

    def perturb(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        factors = self._fitting_factors(len(samples))
        if factors:
            samples = change_speed(samples, float(rng.choice(factors)), self.sampling_rate)
            if self.max_samples is not None:
                samples = samples[: self.max_samples]  # at most a sample of resampling rounding
        if self.options.noise_probability and rng.random() < self.options.noise_probability:
            snr_db = float(rng.uniform(*self.options.noise_snr_db))
            samples = mix_at_snr(samples, self._noise(len(samples), rng), snr_db)
        return samples

    def _fitting_factors(self, length: int) -> list[float]:
        factors = self.options.speed_perturbation or []
        if self.max_samples is None:
            return factors
        return [f for f in factors if length <= self.max_samples * f]

    def _noise(self, length: int, rng: np.random.Generator) -> np.ndarray:
        if self.noise_files:
            return recorded_noise(self.noise_files, length, self.sampling_rate, rng)
        return generated_noise(length, self.options.noise_color, rng)

    def describe(self) -> str:
        parts = []
        if self.options.speed_perturbation:
            parts.append("speed x" + "/".join(f"{f:g}" for f in self.options.speed_perturbation))
        if self.options.noise_probability:
            source = f"{len(self.noise_files)} recordings in {self.options.noise_dir}" if self.noise_files \
                else f"generated {self.options.noise_color} noise"
            low, high = self.options.noise_snr_db
            parts.append(f"noise on {self.options.noise_probability:.0%} of clips at {low:g}-{high:g} dB SNR "
                         f"({source})")
        return ", ".join(parts)


def build_augmenter(options: AugmentationArguments | None, *, sampling_rate: int,
                    max_seconds: float | None = None) -> Augmenter | None:
    """The run's augmenter, or None when the options perturb nothing. Every noise recording's header is
    read now, so an unreadable file fails the run before training rather than hours into it."""
    if options is None or not options.enabled:
        return None
    files = noise_files(options.noise_dir) if options.noise_dir and options.noise_probability else ()
    for path in files:
        if audio_duration(path) <= 0:
            raise AudioDecodeError(path, "no audio samples (a noise_dir recording)")
    max_samples = int(max_seconds * sampling_rate) if max_seconds else None
    augmenter = Augmenter(options, sampling_rate, max_samples=max_samples, noise_files=files)
    logger.info("training clips augmented on the fly: %s", augmenter.describe())
    return augmenter


# ---------------------------------------------------------------------------------------- the training split


def mark_for_augmentation(dataset: Any) -> Any:
    """The training split with an ``augment`` column (True) telling :class:`AugmentingCollator` which rows
    to perturb; a streamed split gets it lazily."""
    if hasattr(dataset, "add_column") and hasattr(dataset, "__len__"):
        return dataset.add_column(AUGMENT_COLUMN, [True] * len(dataset))
    return dataset.map(lambda row: {AUGMENT_COLUMN: True})


@dataclass
class AugmentingCollator:
    """A task's collator, with the marked (training) rows of each batch perturbed first.

    Each batch seeds its own generator from numpy's global one (seeded by the Trainer in the main process
    and in every dataloader worker), so the draws follow the run's ``seed``.
    """

    collator: Callable[[list[dict[str, Any]]], Any]
    augmenter: Augmenter

    def __call__(self, rows: list[dict[str, Any]]) -> Any:
        if not any(row.get(AUGMENT_COLUMN) for row in rows):
            return self.collator([_unmarked(row) for row in rows])
        rng = np.random.default_rng(int(np.random.randint(0, 2**32, dtype=np.int64)))
        return self.collator([self._perturbed(row, rng) for row in rows])

    def _perturbed(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if not row.get(AUGMENT_COLUMN):
            return _unmarked(row)
        return {**_unmarked(row), "audio": self.augmenter.perturb(row["audio"], rng)}


def _unmarked(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != AUGMENT_COLUMN} if AUGMENT_COLUMN in row else row
