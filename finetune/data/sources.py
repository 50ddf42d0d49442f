"""Where rows come from: an audiofolder directory, a CSV/JSONL manifest, or a Hub dataset.

Every source is read through ``datasets`` (so rows are memory-mapped Arrow tables and later ``map``
calls are cached by fingerprint), but audio is never decoded here: ``datasets`` 5 decodes through
torchcodec, which does not load beside a CPU-only torch. Local sources keep the audio column as an
absolute path string; Hub sources keep it as an ``Audio(decode=False)`` dict of bytes and path.
Decoding is the job of :mod:`finetune.data.audio`.
"""

from __future__ import annotations

import csv
import difflib
import itertools
import math
import os
import re
import unicodedata
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets

MANIFEST_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
METADATA_NAMES = ("metadata.csv", "metadata.jsonl")
SPLIT_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")  # <dir>/<split>.jsonl and the like
AUDIO_COLUMN_CANDIDATES = ("audio", "file_name", "path", "audio_filepath", "file", "filename")
TEXT_COLUMN_CANDIDATES = ("text", "transcript", "sentence", "transcription", "normalized_text")


# a Hub dataset id: "name" or "owner/name" (what datasets.load_dataset looks up on the Hub)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
# past this many entries a folder is not searched for names close to a mistyped one
_MAX_SUGGESTION_ENTRIES = 5000

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
    other_splits: Sequence[str] = (),
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of ``name``.

    ``name`` is an audiofolder directory (``<dir>/<split>/metadata.csv``, or one ``<dir>/metadata.csv``
    for a source read as one split only), a directory of split files (``<dir>/<split>.jsonl``, .csv,
    .tsv), a manifest file (.csv/.tsv/.json/.jsonl, paths relative to the file), or anything else
    ``datasets.load_dataset`` accepts (a Hub id). ``other_splits`` are the splits the same run also reads
    from ``name``: a root ``metadata.csv`` would serve them all the same rows, so it is then refused.
    A name that looks like a local path but does not exist is an error naming it (with close names
    that do exist), not a Hub lookup.
    """
    path = resolve_sample(name) if name.startswith(SAMPLE_PREFIX) else Path(name).expanduser()
    if path.is_dir():
        return _load_directory(path, split, other_splits=other_splits, streaming=streaming, cache_dir=cache_dir,
                               audio_column=audio_column)
    if path.is_file():
        if path.suffix.lower() not in MANIFEST_SUFFIXES:
            raise DataSourceError(f"{path}: not a dataset folder or a manifest file "
                                  f"({', '.join(sorted(MANIFEST_SUFFIXES))})")
        return _load_manifest(path, streaming=streaming, cache_dir=cache_dir, audio_column=audio_column)
    if path.suffix.lower() in MANIFEST_SUFFIXES:
        raise DataSourceError(f"manifest not found: {missing_path_message(name)}")
    if looks_like_local_path(name):
        raise DataSourceError(f"data source not found: {missing_path_message(name)}")
    return _load_hub(name, split, config_name=config_name, streaming=streaming, cache_dir=cache_dir)


def looks_like_local_path(name: str) -> bool:
    """``./data``, ``../x``, ``/abs``, ``~/x``, ``a\\b`` and ``a/b/c``: not a Hub id (``name`` or ``owner/name``)."""
    if "://" in name:
        return False  # a URL (hf://, https://) is for datasets to resolve
    if name.startswith((".", "/", "~")) or "\\" in name:
        return True
    return ("/" in name or os.sep in name) and not _HUB_ID.fullmatch(name)


def missing_path_message(name: str) -> str:
    """``no such file or folder: <name>``, with the names closest to its first missing part (difflib)."""
    path = Path(name).expanduser()
    ancestor = next((p for p in path.parents if p.is_dir()), None)
    message = f"no such file or folder: {name}"
    if ancestor is None:
        return message
    missing = path.relative_to(ancestor).parts
    try:
        entries = [p.name for p in itertools.islice(ancestor.iterdir(), _MAX_SUGGESTION_ENTRIES + 1)]
    except OSError:
        return message
    if len(entries) > _MAX_SUGGESTION_ENTRIES:
        return message
    if not missing[0].startswith("."):
        entries = [e for e in entries if not e.startswith(".")]
    close = difflib.get_close_matches(missing[0], entries, n=3, cutoff=0.6)
    if close:
        shown = [str(Path(ancestor, candidate, *missing[1:])) for candidate in close]
        return f"{message}; did you mean {' or '.join(shown)}?"
    if str(ancestor) not in ("", ".") and entries and len(entries) <= 12:
        return f"{message} ({ancestor} holds: {', '.join(sorted(entries))})"
    return message


def _load_directory(path: Path, split: str, *, other_splits: Sequence[str] = (),
                    **kwargs) -> datasets.Dataset | datasets.IterableDataset:
    for metadata_name in METADATA_NAMES:
        if (path / split / metadata_name).is_file():
            return _load_manifest(path / split / metadata_name, **kwargs)
    for suffix in SPLIT_FILE_SUFFIXES:
        if (path / f"{split}{suffix}").is_file():
            return _load_manifest(path / f"{split}{suffix}", **kwargs)
    root = next((path / name for name in METADATA_NAMES if (path / name).is_file()), None)
    if root is not None:
        _check_root_metadata(path, root, split, other_splits)
        return _load_manifest(root, **kwargs)
    available = sorted(p.name for p in path.iterdir() if p.is_dir() or p.suffix in MANIFEST_SUFFIXES)
    raise DataSourceError(
        f"{path}: no split {split!r} found (looked for {split}/metadata.csv, {split}.jsonl/.csv/.tsv and "
        "metadata.csv); "
        f"present: {', '.join(available) or 'nothing'}"
    )


def _check_root_metadata(path: Path, root: Path, split: str, other_splits: Sequence[str]) -> None:
    """A root metadata file is one split's rows: refuse it when it would stand for several splits."""
    folders = sorted(p.name for p in path.iterdir()
                     if p.is_dir() and any((p / name).is_file() for name in METADATA_NAMES))
    if folders:
        raise DataSourceError(
            f"{path}: split {split!r} has no folder ({path / split / METADATA_NAMES[0]} does not exist) and "
            f"{root.name} at the root is not read as a split beside the split folders ({', '.join(folders)}): "
            f"it may hold every split's rows. Make {path / split / METADATA_NAMES[0]}, or point "
            "eval_dataset_name at a manifest file of this split"
        )
    others = [s for s in dict.fromkeys(other_splits) if s != split]
    if others:
        splits = [split, *others]
        made = " and ".join(str(path / s / METADATA_NAMES[0]) for s in splits)
        raise DataSourceError(
            f"{path}: no folder for split {split!r} (nor for {', '.join(map(repr, others))}): the one {root.name} "
            f"at its root would be read for every split, so {' and '.join(map(repr, splits))} would be the same "
            f"rows and the results would be scored on the training rows. Make {made} (one folder per split), "
            "or give each split its own manifest file (dataset_name: train.csv, eval_dataset_name: test.csv), "
            "or set eval_split_name: null to train without evaluating"
        )


def same_source(a: str | None, b: str | None) -> bool:
    """Whether two data source names point at the same local folder or file (or are the same Hub id)."""
    if not a or not b:
        return False
    if a == b:
        return True
    try:
        return _as_path(a).resolve() == _as_path(b).resolve()
    except (OSError, DataSourceError):
        return False


def _as_path(name: str) -> Path:
    return resolve_sample(name) if name.startswith(SAMPLE_PREFIX) else Path(name).expanduser()


def splits_read_beside(args: Any, source: str, split: str) -> tuple[str, ...]:
    """The other split a training run reads from ``source`` when it reads ``split`` from it.

    The training split is read first (``args.train_split_name`` from ``args.dataset_name``), and the
    evaluation split from ``eval_dataset_name or dataset_name``: when both come from ``source``, reading
    the training split names the evaluation split. Any other read (``finetune evaluate``, where the split
    is ``eval_split_name``) is of one split only.
    """
    eval_split = getattr(args, "eval_split_name", None)
    if split != args.train_split_name or not eval_split or eval_split == split:
        return ()
    eval_source = args.eval_dataset_name or args.dataset_name
    if same_source(source, args.dataset_name) and same_source(source, eval_source):
        return (eval_split,)
    return ()


def _load_manifest(
    manifest: Path, *, streaming: bool, cache_dir: str | None, audio_column: str | None
) -> datasets.Dataset | datasets.IterableDataset:
    builder = MANIFEST_SUFFIXES[manifest.suffix.lower()]
    options = {"delimiter": "\t"} if manifest.suffix.lower() == ".tsv" else {}
    if manifest.stat().st_size == 0:
        raise DataSourceError(f"{manifest}: the file is empty")
    if builder == "csv":
        # keep every column as text: ids such as "007" or labels like "1" must not become numbers
        header = _csv_header(manifest, options)
        options["features"] = datasets.Features({name: datasets.Value("string") for name in header})
        options["keep_default_na"] = False
        # a byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name; spaces after a
        # delimiter ("file_name, text") are not part of a name or a cell either; and a row with a trailing
        # delimiter must not turn the first column into pandas' index (shifting every row's cells)
        options.update(encoding="utf-8-sig", skipinitialspace=True, column_names=header, header=0, index_col=False)
    try:
        with warnings.catch_warnings():  # extra cells were checked to be empty: pandas drops nothing of value
            warnings.filterwarnings("ignore", message="Length of header or names does not match")
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
    """The column names (stripped); refuses a header that does not name every column, and a row with more
    (non-empty) cells than the header names: their cells would be dropped, or shifted onto other columns."""
    delimiter = options.get("delimiter", ",")
    try:
        with manifest.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=delimiter, skipinitialspace=True)
            header = [name.strip() for name in next(reader, [])]
            has_rows = False
            for row in reader:
                if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
                    raise DataSourceError(
                        f"{manifest}: line {reader.line_num} has {len(row)} cells but the header names "
                        f"{len(header)} columns ({', '.join(header)}); quote a cell that holds "
                        f"{'a tab' if delimiter == chr(9) else 'the delimiter ' + repr(delimiter)}"
                    )
                has_rows = has_rows or any(cell.strip() for cell in row)
    except UnicodeDecodeError as error:
        raise DataSourceError(f"{manifest}: not UTF-8 text ({error})") from None
    except csv.Error as error:
        raise DataSourceError(f"{manifest}: not valid CSV ({error})") from None
    if not header or any(not name for name in header):
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
        raise DataSourceError(f"cannot load dataset {name!r} split {split!r}: {_root_cause(error)}"
                              f"{_local_hint(name)}") from None
    features = dataset.features or {}
    for column, feature in features.items():
        if isinstance(feature, datasets.Audio):
            dataset = dataset.cast_column(column, datasets.Audio(decode=False))
    return dataset


def _local_hint(name: str) -> str:
    """For a Hub id that failed: what the name would be as a local path, when that looks meant
    ("outputs/spoken_snips" under an existing ./outputs, or "fssd" beside ./fsdd)."""
    message = missing_path_message(name)
    if "did you mean" in message or ("/" in name and Path(name.split("/")[0]).is_dir()):
        return f"; nor is it a local folder: {message}"
    return ""


def column_names(dataset: datasets.Dataset | datasets.IterableDataset) -> list[str]:
    """Column names, peeking at the first row of a stream whose features are not known up front."""
    if dataset.column_names is not None:
        return list(dataset.column_names)
    first = next(iter(dataset), None)
    return list(first) if first else []


def find_column(columns: list[str], candidates: tuple[str, ...], *, required: bool = True,
                what: str = "") -> str | None:
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
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""  # a missing cell (JSON null, a NaN that pandas or pyarrow made of one)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # pyarrow reads a JSON column of 1 and 2.5 as floats: 1 stays "1", not "1.0"
    return str(value)


def is_text_cell(value: object) -> bool:
    """Whether a transcript or label cell is one scalar value (a JSON list or object is not text)."""
    return not isinstance(value, (list, tuple, dict, set))


_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})


def has_visible_text(text: str) -> bool:
    """Whether ``text`` holds anything but spaces, control and format characters (a zero-width space or a
    stray byte-order mark alone is an empty transcript)."""
    return any(unicodedata.category(char) not in _INVISIBLE_CATEGORIES for char in text)
