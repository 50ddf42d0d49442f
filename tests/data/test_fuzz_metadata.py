"""Fuzzing the data layer with arbitrary metadata files: a clean dataset or a named error, nothing else."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetune.config import DataArguments
from finetune.data.report import BadDataError
from finetune.data.sources import DataSourceError
from finetune.data.speech import load_speech_split
from tests.helpers import tone

import soundfile as sf

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
