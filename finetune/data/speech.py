"""Decode, check and cache one split of an audio dataset, for any model family.

One pass decodes every clip to mono float32 at the model's rate and checks it (readable, duration
in range, non-empty transcript or label). The pass is a ``datasets.map`` over an Arrow table, so its
result is cached by fingerprint: a second run with the same data and settings decodes nothing. The
fingerprint covers the metadata and every local audio file's path, size and modification time, so a
clip fixed or re-recorded in place (same name) is decoded again.
What is cached is the waveform, not model features: it is 10-50x smaller than 30-second log-mels and
serves every model family; features are computed per batch by the task's collator.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from collections import Counter
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
    has_visible_text,
    is_text_cell,
    load_source,
    require_columns,
    splits_read_beside,
)
from finetune.data.text import get_normalizer, language_code

logger = logging.getLogger(__name__)

PREPARED_FEATURES = datasets.Features(
    {
        "audio": datasets.List(datasets.Value("float32")),
        "duration": datasets.Value("float32"),
        "text": datasets.Value("string"),
        "label": datasets.Value("string"),
        "language": datasets.Value("string"),  # the row's language code, from language_column_name ("" none)
        "prompt": datasets.Value("string"),  # the row's prompt text, from prompt_column_name ("" none)
        "source_file": datasets.Value("string"),
        "error": datasets.Value("string"),
    }
)


# Bump when decode_batch's checks or output change: caches decoded by an older version are not reused.
DECODE_VERSION = 4


@dataclass(frozen=True)
class SpeechColumns:
    """Which source columns hold the audio, the transcript, the class label and the row's language
    (None: not used)."""

    audio: str
    text: str | None
    label: str | None
    language: str | None = None
    prompt: str | None = None


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
    language, prompt = args.language_column_name, args.prompt_column_name
    require_columns(dataset, [c for c in (audio, text, label, language, prompt) if c], source=args.dataset_name)
    return SpeechColumns(audio=audio, text=text, label=label, language=language, prompt=prompt)


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
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, or None for all rows; got {max_samples!r}")
    raw = load_source(
        name,
        split,
        config_name=args.dataset_config_name,
        streaming=args.streaming,
        cache_dir=args.data_cache_dir,
        audio_column=args.audio_column_name,
        other_splits=splits_read_beside(args, name, split),
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
        "default_language": language_code(args.language) or "",
        "allow_empty": args.allow_empty_transcripts,
    }
    if isinstance(raw, datasets.IterableDataset):
        decoded = raw.map(decode_batch, batched=True, fn_kwargs=kwargs, remove_columns=column_names(raw))
        return decoded.filter(_keep_and_log, input_columns=["error", "source_file"]), None
    paths = _local_paths(raw, columns.audio)
    # the cache key of the decoded split: the metadata (raw's fingerprint), the settings, the decoding's
    # version and each local audio file's identity
    identity = audio_files_identity(paths) if paths is not None and raw.cache_files else ""
    kwargs["cache_key"] = f"v{DECODE_VERSION}:{identity}"
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
        duplicates=_count_repeats(paths) if paths is not None else 0,
    )
    logger.info(report.summary())
    if args.allow_empty_transcripts and columns.text:
        silent = sum(not text and not error for text, error in zip(decoded["text"], errors))
        logger.info("%s [%s]: %d no-speech clips (empty transcripts) kept", name, split, silent)
    if report.duplicates:
        repeated = [path for path, count in Counter(paths).items() if count > 1]
        logger.warning("%s [%s]: %d rows name an audio file an earlier row names too (%s%s); they are kept",
                       name, split, report.duplicates, ", ".join(Path(p).name for p in repeated[:5]),
                       ", ..." if len(repeated) > 5 else "")
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
    default_language: str = "",
    allow_empty: bool = False,
    cache_key: str = "",
) -> dict[str, list]:
    """Decode a batch; a bad row gets an ``error`` text and empty audio instead of stopping the pass.

    ``cache_key`` is not read: ``datasets`` hashes a mapped function by its name, not its code, so the
    decoding's version and the audio files' identity (:func:`audio_files_identity`) are passed to be part
    of the decoded split's cache key.
    """
    normalize = get_normalizer(normalization)
    out: dict[str, list] = {name: [] for name in PREPARED_FEATURES}
    count = len(batch[columns.audio])
    for i in range(count):
        value = batch[columns.audio][i]
        text_cell = batch[columns.text][i] if columns.text else ""
        label_cell = batch[columns.label][i] if columns.label else ""
        text = normalize(as_text(text_cell)) if is_text_cell(text_cell) else ""
        label = as_text(label_cell).strip() if is_text_cell(label_cell) else ""
        samples, error = _decode_checked(value, sampling_rate, min_seconds, max_seconds)
        if not error and not is_text_cell(text_cell):
            error = f"transcript is not a string (column {columns.text!r} holds a {type(text_cell).__name__})"
        elif not error and columns.text and not has_visible_text(text):
            if allow_empty:
                text = ""  # a no-speech example: the model learns to answer it with nothing
            else:
                error = f"empty transcript in column {columns.text!r} (allow_empty_transcripts: true keeps such " \
                        "clips as no-speech examples)"
        if not error and not is_text_cell(label_cell):
            error = f"label is not one value (column {columns.label!r} holds a {type(label_cell).__name__})"
        elif not error and columns.label and not has_visible_text(label):
            error = f"empty label in column {columns.label!r}"
        language, language_error = _row_language(batch, i, columns.language, default_language)
        error = error or language_error
        out["audio"].append(samples if not error else np.zeros(0, dtype=np.float32))
        out["duration"].append(len(samples) / sampling_rate if not error else 0.0)
        out["text"].append(text)
        out["label"].append(label)
        out["language"].append(language)
        prompt_cell = batch[columns.prompt][i] if columns.prompt else ""
        out["prompt"].append(" ".join(as_text(prompt_cell).split()) if is_text_cell(prompt_cell) else "")
        out["source_file"].append(_describe_source(value))
        out["error"].append(error)
    return out


def _row_language(batch: dict[str, list], index: int, column: str | None, default: str) -> tuple[str, str]:
    """(language code, error) of one row: its ``column`` cell as a Whisper language code, ``default``
    where the cell is empty; no column: ("", "")."""
    if column is None:
        return "", ""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    cell = batch[column][index]
    given = as_text(cell).strip() if is_text_cell(cell) else ""
    code = language_code(given) or default
    if not code:
        return "", f"no language: column {column!r} is empty and the config sets no language"
    if code not in LANGUAGES:
        return "", f"unknown language {given!r} in column {column!r} (a code such as 'fr' or a name such as 'french')"
    return code, ""


def _decode_checked(value: object, sampling_rate: int, min_seconds: float,
                    max_seconds: float) -> tuple[np.ndarray, str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return np.zeros(0, dtype=np.float32), "no audio file given"
    if isinstance(value, str):
        value = existing_path(value)
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


def existing_path(path: str) -> str:
    """``path``, or its other Unicode normalization (NFC/NFD) where only that one exists: a file named on
    macOS (NFD) keeps its name when copied, while a metadata file typed elsewhere spells it NFC."""
    if not path or os.path.lexists(path):
        return path
    for form in ("NFC", "NFD"):
        other = unicodedata.normalize(form, path)
        if other != path and os.path.lexists(other):
            return other
    return path


def _local_paths(dataset: datasets.Dataset, column: str) -> list[str] | None:
    """The audio column as paths, for a local source (a Hub source holds bytes or paths into its cache)."""
    feature = (dataset.features or {}).get(column)
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        return None
    return [path or "" for path in dataset[column]]


def audio_files_identity(paths: list[str]) -> str:
    """A digest of each audio file's path, size and mtime_ns, in row order (a missing file as missing).

    It is part of the decoded split's cache key: the metadata alone would keep serving the old samples of
    a clip re-recorded under the same name, and the old error of a broken clip fixed in place. Any change
    decodes the whole split again (the cache is one table per split).
    """
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        try:
            stat = os.stat(existing_path(path)) if path else None
            identity = f"{stat.st_size}:{stat.st_mtime_ns}" if stat else "-"
        except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
            identity = type(error).__name__
        digest.update(f"{path}\0{identity}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _count_repeats(paths: list[str]) -> int:
    """Rows whose audio file an earlier row of the split names too."""
    named = [path for path in paths if path]
    return len(named) - len(set(named))
