"""The hallucination rule the bench's figures rest on, and --rescore applying it to saved outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import script_module

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_hallucination.py"


@pytest.fixture(scope="module")
def bench():
    with script_module(SCRIPT) as module:
        yield module


@pytest.mark.parametrize(("output", "reference", "flagged"), [
    ("thank you", "seven", True),  # a stock non-speech phrase over a spoken digit
    ("bye", "five", True),
    ("sven", "seven", False),  # misheard: a recognition error, not a hallucination
    ("seven", "seven", False),
    ("", "seven", False),
    ("add the song to my playlist and subscribe to my channel", "add the song to my playlist", True),  # inserted
    ("play this truck on my classical relaxation playlist", "play this track onto my classical relaxations playlist",
     False),  # substitutions only
    ("come on come on come on come on", "come on", True),  # a loop
    ("thank you for the song", "thank you for the song", False),  # said in the reference
])
def test_the_rule(bench, output: str, reference: str, flagged: bool) -> None:
    assert bench.hallucinated(output, reference) is flagged


def test_rescore_recounts_saved_outputs(bench, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "set"
    data.mkdir()
    (data / "metadata.csv").write_text("file_name,transcript\na.wav,seven\nb.wav,five\n", encoding="utf-8")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"results": {"defaults": {
        "outputs": {"a.wav": "Thank you.", "b.wav": "Five."}, "hallucinated_clips": 99}}}), encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["bench", "--rescore", "--model", "x", "--data", str(data), "--out", str(report)])
    bench.main()
    result = json.loads(report.read_text())["results"]["defaults"]
    assert result["hallucinated_clips"] == 1 and result["hallucinated_examples"] == ["a.wav"]
