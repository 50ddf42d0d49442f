"""Fuzzing the data layer with arbitrary metadata files: a clean dataset or a named error, nothing else;
and rows written by the csv module come back as written."""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
from pathlib import Path

import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune.config import DataArguments
from finetune.data.report import BadDataError
from finetune.data.sources import DataSourceError, has_visible_text
from finetune.data.speech import load_speech_split
from tests.helpers import tone

cell = st.one_of(
    st.sampled_from(["a.wav", "missing.wav", "../a.wav", "", " ", "zero", "Ünïcödé", '"quoted, comma"', "\t"]),
    st.text(max_size=12),
)
csv_text = st.one_of(
    st.lists(st.lists(cell, min_size=1, max_size=4), min_size=0, max_size=6).map(
        lambda rows: "\n".join([",".join(r) for r in rows])
    ),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.sampled_from(["file_name,transcript", "file_name,text,extra", "path", "", "file_name,file_name"]),
       body=csv_text)
def test_any_metadata_gives_a_dataset_or_a_named_error(header: str, body: str) -> None:
    root = Path(tempfile.mkdtemp())
    try:
        split = root / "train"
        split.mkdir()
        sf.write(split / "a.wav", tone(0.2), 16000)
        (split / "metadata.csv").write_text(header + "\n" + body, encoding="utf-8", errors="surrogatepass")
        try:
            dataset, report = load_speech_split(
                DataArguments(dataset_name=str(root), on_bad_rows="skip"), "train", sampling_rate=16000
            )
        except (DataSourceError, BadDataError) as error:
            assert str(error)
        else:
            assert len(dataset) == report.kept and len(dataset) > 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


FILES = {"a.wav": True, "Ünï cödé.wav": True, "missing.wav": False}
transcript = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=15)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.sampled_from(sorted(FILES)), transcript), min_size=1, max_size=5),
       bom=st.booleans(), crlf=st.booleans(), extra_column=st.booleans())
def test_every_written_row_is_read_back_as_written_or_named_bad(rows, bom: bool, crlf: bool,
                                                                extra_column: bool) -> None:
    """Differential: rows written by Python's csv module (any text, quoted where needed, with or without a
    byte-order mark, CRLF and an unused column) come back cell for cell, or as bad rows with the reason."""
    root = Path(tempfile.mkdtemp())
    try:
        split = root / "train"
        split.mkdir()
        for name, exists in FILES.items():
            if exists:
                sf.write(split / name, tone(0.1), 16000)
        buffer = io.StringIO()
        # (csv.writer quotes a cell holding a line break only when the terminator holds that character)
        writer = csv.writer(buffer, lineterminator="\r\n" if crlf else "\n",
                            quoting=csv.QUOTE_MINIMAL if crlf else csv.QUOTE_ALL)
        writer.writerow(["file_name", "transcript", *(["speaker"] if extra_column else [])])
        for name, text in rows:
            writer.writerow([name, text, *(["s1"] if extra_column else [])])
        (split / "metadata.csv").write_bytes(("\ufeff" if bom else "").encode() + buffer.getvalue().encode("utf-8"))

        expected_kept, expected_bad = [], {}
        for i, (name, text) in enumerate(rows):
            collapsed = " ".join(text.split())
            if not FILES[name]:
                expected_bad[i] = "file not found"
            elif not has_visible_text(collapsed):
                expected_bad[i] = ("empty transcript in column 'transcript' (allow_empty_transcripts: true keeps "
                                   "such clips as no-speech examples)")
            else:
                expected_kept.append((name, collapsed))
        args = DataArguments(dataset_name=str(root), on_bad_rows="skip", eval_split_name=None)
        if not expected_kept:
            with pytest.raises(BadDataError, match="no usable rows left"):
                load_speech_split(args, "train", sampling_rate=16000)
            return
        dataset, report = load_speech_split(args, "train", sampling_rate=16000)
        assert [(Path(row["source_file"]).name, row["text"]) for row in dataset] == expected_kept
        assert {b.row: b.reason for b in report.bad} == expected_bad
    finally:
        shutil.rmtree(root, ignore_errors=True)
