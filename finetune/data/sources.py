"""Where rows come from: an audiofolder directory, a CSV/JSONL manifest, or a Hub dataset.

Every source is read through ``datasets`` (so rows are memory-mapped Arrow tables and later ``map``
calls are cached by fingerprint), but audio is never decoded here: ``datasets`` 5 decodes through
torchcodec, which does not load beside a CPU-only torch. Local sources keep the audio column as an
absolute path string; Hub sources keep it as an ``Audio(decode=False)`` dict of bytes and path.
Decoding is the job of :mod:`finetune.data.audio`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import datasets

MANIFEST_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
AUDIO_COLUMN_CANDIDATES = ("audio", "file_name", "path", "audio_filepath", "file", "filename")
TEXT_COLUMN_CANDIDATES = ("text", "transcript", "sentence", "transcription", "normalized_text")


SAMPLE_PREFIX = "sample:"
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


class DataSourceError(ValueError):
    """A data source that cannot be read; the message names the source, split or column."""


def resolve_sample(name: str) -> Path:
    """``sample:fsdd`` -> the small real dataset shipped inside the package (works from any folder)."""
    path = SAMPLES_DIR / name[len(SAMPLE_PREFIX) :]
    if not path.is_dir():
        known = sorted(p.name for p in SAMPLES_DIR.iterdir() if p.is_dir()) if SAMPLES_DIR.is_dir() else []
        raise DataSourceError(f"unknown sample {name!r}; shipped samples: {', '.join(known) or 'none'}")
    return path


def load_source(
    name: str,
    split: str,
    *,
    config_name: str | None = None,
    streaming: bool = False,
    cache_dir: str | None = None,
    audio_column: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of ``name``.

    ``name`` is an audiofolder directory (``<dir>/<split>/metadata.csv`` or ``<dir>/metadata.csv``),
    a text directory (``<dir>/<split>.jsonl``), a manifest file (.csv/.tsv/.json/.jsonl, paths
    relative to the file), or anything else ``datasets.load_dataset`` accepts (a Hub id).
    """
    path = resolve_sample(name) if name.startswith(SAMPLE_PREFIX) else Path(name).expanduser()
    if path.is_dir():
        return _load_directory(path, split, streaming=streaming, cache_dir=cache_dir, audio_column=audio_column)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        if not path.is_file():
            raise DataSourceError(f"manifest not found: {path}")
        return _load_manifest(path, streaming=streaming, cache_dir=cache_dir, audio_column=audio_column)
    if name.startswith((".", "/", "~")) or "\\" in name:
        raise DataSourceError(f"data source not found: {name}")
    return _load_hub(name, split, config_name=config_name, streaming=streaming, cache_dir=cache_dir)


def _load_directory(path: Path, split: str, **kwargs) -> datasets.Dataset | datasets.IterableDataset:
    for base in (path / split, path):
        for metadata_name in METADATA_NAMES:
            if (base / metadata_name).is_file():
                return _load_manifest(base / metadata_name, **kwargs)
    for suffix in (".jsonl", ".json", ".csv"):
        if (path / f"{split}{suffix}").is_file():
            return _load_manifest(path / f"{split}{suffix}", **kwargs)
    available = sorted(p.name for p in path.iterdir() if p.is_dir() or p.suffix in MANIFEST_SUFFIXES)
    raise DataSourceError(
        f"{path}: no split {split!r} found (looked for {split}/metadata.csv, metadata.csv and {split}.jsonl); "
        f"present: {', '.join(available) or 'nothing'}"
    )


def _load_manifest(
    manifest: Path, *, streaming: bool, cache_dir: str | None, audio_column: str | None
) -> datasets.Dataset | datasets.IterableDataset:
    builder = MANIFEST_SUFFIXES[manifest.suffix.lower()]
    options = {"delimiter": "\t"} if manifest.suffix.lower() == ".tsv" else {}
    if manifest.stat().st_size == 0:
        raise DataSourceError(f"{manifest}: the file is empty")
    if builder == "csv":
        # keep every column as text: ids such as "007" or labels like "1" must not become numbers
        options["features"] = datasets.Features({name: datasets.Value("string") for name in _csv_header(manifest, options)})
        options["keep_default_na"] = False
    try:
        dataset = datasets.load_dataset(
            builder,
            data_files={"data": str(manifest)},
            split="data",
            streaming=streaming,
            cache_dir=cache_dir,
            **options,
        )
    except Exception as error:  # datasets wraps parser errors in several types
        raise DataSourceError(f"{manifest}: cannot be read as {builder}: {_root_cause(error)}") from None
    columns = column_names(dataset)
    column = audio_column or find_column(columns, AUDIO_COLUMN_CANDIDATES, required=False)
    if column is None or column not in columns:
        return dataset  # a text-only manifest (e.g. intents)
    base = str(manifest.parent.resolve())
    options = {} if streaming else {"desc": "resolving audio paths"}
    return dataset.map(_absolute_paths, batched=True, fn_kwargs={"column": column, "base": base}, **options)


def _csv_header(manifest: Path, options: dict) -> list[str]:
    try:
        with manifest.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle, delimiter=options.get("delimiter", ","))
            header = next(reader, [])
            has_rows = any(any(cell.strip() for cell in row) for row in reader)
    except UnicodeDecodeError as error:
        raise DataSourceError(f"{manifest}: not UTF-8 text ({error})") from None
    if not header or any(not name.strip() for name in header):
        raise DataSourceError(f"{manifest}: the first line must name every column, got {header}")
    if len(set(header)) != len(header):
        raise DataSourceError(f"{manifest}: duplicate column names in header {header}")
    if not has_rows:
        raise DataSourceError(f"{manifest}: the dataset is empty (a header and no rows)")
    return header


def _absolute_paths(batch: dict[str, list], column: str, base: str) -> dict[str, list]:
    """Make relative audio paths absolute against the manifest's folder (empty stays empty)."""
    resolved = []
    for value in batch[column]:
        if value is None or str(value).strip() == "":
            resolved.append("")
        else:
            p = Path(str(value))
            resolved.append(str(p if p.is_absolute() else Path(base) / p))
    return {column: resolved}


def _load_hub(
    name: str, split: str, *, config_name: str | None, streaming: bool, cache_dir: str | None
) -> datasets.Dataset | datasets.IterableDataset:
    try:
        dataset = datasets.load_dataset(name, config_name, split=split, streaming=streaming, cache_dir=cache_dir)
    except Exception as error:
        raise DataSourceError(f"cannot load dataset {name!r} split {split!r}: {_root_cause(error)}") from None
    features = dataset.features or {}
    for column, feature in features.items():
        if isinstance(feature, datasets.Audio):
            dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    return dataset


def column_names(dataset: datasets.Dataset | datasets.IterableDataset) -> list[str]:
    """Column names, peeking at the first row of a stream whose features are not known up front."""
    if dataset.column_names is not None:
        return list(dataset.column_names)
    first = next(iter(dataset), None)
    return list(first) if first else []


def find_column(columns: list[str], candidates: tuple[str, ...], *, required: bool = True, what: str = "") -> str | None:
    """Pick the first candidate present in ``columns`` (case-sensitive), or fail listing them."""
    for candidate in candidates:
        if candidate in columns:
            return candidate
    if required:
        raise DataSourceError(
            f"no {what or 'matching'} column found (tried {', '.join(candidates)}); columns are: {', '.join(columns)}"
        )
    return None


def require_columns(dataset: datasets.Dataset | datasets.IterableDataset, columns: list[str], source: str) -> None:
    """Fail early, naming the source, when a configured column is absent."""
    present = column_names(dataset)
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataSourceError(f"{source}: missing column(s) {', '.join(missing)}; columns are: {', '.join(present)}")


def _root_cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def as_text(value: object) -> str:
    """A cell of a transcript or label column as text (bytes decoded, None as empty)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
