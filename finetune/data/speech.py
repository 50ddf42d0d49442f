"""Decode, check and cache one split of an audio dataset, for any model family.

One pass decodes every clip to mono float32 at the model's rate and checks it (readable, duration
in range, non-empty transcript or label). The pass is a ``datasets.map`` over an Arrow table, so its
result is cached by fingerprint: a second run with the same data and settings decodes nothing.
What is cached is the waveform, not model features: it is 10-50x smaller than 30-second log-mels and
serves every model family; features are computed per batch by the task's collator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from finetune.config import DataArguments
from finetune.data.audio import AudioDecodeError, load_audio
from finetune.data.report import BadRow, DataReport
from finetune.data.sources import (
    AUDIO_COLUMN_CANDIDATES,
    TEXT_COLUMN_CANDIDATES,
    as_text,
    column_names,
    find_column,
    load_source,
    require_columns,
)
from finetune.data.text import get_normalizer

logger = logging.getLogger(__name__)

PREPARED_FEATURES = datasets.Features(
    {
        "audio": datasets.List(datasets.Value("float32")),
        "duration": datasets.Value("float32"),
        "text": datasets.Value("string"),
        "label": datasets.Value("string"),
        "source_file": datasets.Value("string"),
        "error": datasets.Value("string"),
    }
)


@dataclass(frozen=True)
class SpeechColumns:
    """Which source columns hold the audio, the transcript and the class label (None: not used)."""

    audio: str
    text: str | None
    label: str | None


def resolve_columns(
    dataset: datasets.Dataset | datasets.IterableDataset, args: DataArguments, *, needs_text: bool, needs_label: bool
) -> SpeechColumns:
    columns = column_names(dataset)
    audio = args.audio_column_name or find_column(columns, AUDIO_COLUMN_CANDIDATES, what="audio")
    text = None
    if needs_text:
        text = args.text_column_name or find_column(columns, TEXT_COLUMN_CANDIDATES, what="transcript")
    label = None
    if needs_label:
        label = args.label_column_name or find_column(columns, ("label", "intent", "labels", "class"), what="label")
    require_columns(dataset, [c for c in (audio, text, label) if c], source=args.dataset_name)
    return SpeechColumns(audio=audio, text=text, label=label)


def load_speech_split(
    args: DataArguments,
    split: str,
    *,
    sampling_rate: int,
    needs_text: bool = True,
    needs_label: bool = False,
    source: str | None = None,
    max_samples: int | None = None,
    materialize: bool = False,
) -> tuple[datasets.Dataset | datasets.IterableDataset, DataReport | None]:
    """Load, decode and validate ``split``; drop bad rows and return them in a report.

    Under ``on_bad_rows: fail`` any bad row raises :class:`~finetune.data.report.BadDataError`
    (after the whole split was checked, so the error lists all of them).
    Streaming sources are decoded lazily (bad rows are skipped and logged as they are met), unless
    ``materialize`` is set: evaluation needs a sized split, so its rows are read from the stream first.
    """
    name = source or args.dataset_name
    raw = load_source(
        name,
        split,
        config_name=args.dataset_config_name,
        streaming=args.streaming,
        cache_dir=args.data_cache_dir,
        audio_column=args.audio_column_name,
    )
    if max_samples is not None:
        raw = raw.take(max_samples) if args.streaming else raw.select(range(min(max_samples, len(raw))))
    if args.streaming and materialize:
        raw = datasets.Dataset.from_list(list(raw))
    columns = resolve_columns(raw, args, needs_text=needs_text, needs_label=needs_label)
    kwargs = {
        "columns": columns,
        "sampling_rate": sampling_rate,
        "min_seconds": args.min_duration_in_seconds,
        "max_seconds": args.max_duration_in_seconds,
        "normalization": args.text_normalization,
    }
    if isinstance(raw, datasets.IterableDataset):
        decoded = raw.map(decode_batch, batched=True, fn_kwargs=kwargs, remove_columns=column_names(raw))
        return decoded.filter(_keep_and_log, input_columns=["error", "source_file"]), None
    decoded = raw.map(
        decode_batch,
        batched=True,
        batch_size=64,
        with_indices=True,
        fn_kwargs=kwargs,
        remove_columns=raw.column_names,
        features=PREPARED_FEATURES,
        num_proc=args.preprocessing_num_workers,
        desc=f"decoding {Path(name).name or name} [{split}]",
    )
    errors = decoded["error"]
    sources = decoded["source_file"]
    report = DataReport(
        dataset=name,
        split=split,
        total=len(errors),
        bad=[BadRow(row=i, source=sources[i], reason=e) for i, e in enumerate(errors) if e],
    )
    logger.info(report.summary())
    report.enforce(args.on_bad_rows)
    if report.bad:
        logger.warning("skipping %d bad rows:\n%s", len(report.bad), report.describe_bad_rows(limit=10))
        decoded = decoded.filter(lambda e: not e, input_columns=["error"], desc="dropping bad rows")
    if len(decoded) == 0:
        from finetune.data.report import BadDataError

        raise BadDataError(f"{report.summary()}: no usable rows left in {name} [{split}]")
    return decoded.with_format("numpy", columns=["audio"], output_all_columns=True), report


def decode_batch(
    batch: dict[str, list],
    indices: list[int] | None = None,
    *,
    columns: SpeechColumns,
    sampling_rate: int,
    min_seconds: float,
    max_seconds: float,
    normalization: str,
) -> dict[str, list]:
    """Decode a batch; a bad row gets an ``error`` text and empty audio instead of stopping the pass."""
    normalize = get_normalizer(normalization)
    out: dict[str, list] = {name: [] for name in PREPARED_FEATURES}
    count = len(batch[columns.audio])
    for i in range(count):
        value = batch[columns.audio][i]
        text = normalize(as_text(batch[columns.text][i])) if columns.text else ""
        label = as_text(batch[columns.label][i]).strip() if columns.label else ""
        samples, error = _decode_checked(value, sampling_rate, min_seconds, max_seconds)
        if not error and columns.text and not text:
            error = f"empty transcript in column {columns.text!r}"
        if not error and columns.label and not label:
            error = f"empty label in column {columns.label!r}"
        out["audio"].append(samples if not error else np.zeros(0, dtype=np.float32))
        out["duration"].append(len(samples) / sampling_rate if not error else 0.0)
        out["text"].append(text)
        out["label"].append(label)
        out["source_file"].append(_describe_source(value))
        out["error"].append(error)
    return out


def _decode_checked(value: object, sampling_rate: int, min_seconds: float, max_seconds: float) -> tuple[np.ndarray, str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return np.zeros(0, dtype=np.float32), "no audio file given"
    try:
        samples = load_audio(value, sampling_rate)
    except AudioDecodeError as error:
        return np.zeros(0, dtype=np.float32), error.reason
    seconds = len(samples) / sampling_rate
    if seconds > max_seconds:
        return samples, f"too long ({seconds:.2f} s > max_duration_in_seconds {max_seconds:g})"
    if seconds < min_seconds:
        return samples, f"too short ({seconds:.2f} s < min_duration_in_seconds {min_seconds:g})"
    return samples, ""


def _describe_source(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("path") or "<bytes>")
    return str(value) if value is not None else ""


def _keep_and_log(error: str, source_file: str) -> bool:
    if error:
        logger.warning("skipping %s: %s", source_file, error)
    return not error
