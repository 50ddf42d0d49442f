"""scripts/make_no_speech_clips.py: seeded, every kind present at its stated level, and merged with another
audiofolder into one with empty transcripts for the no-speech rows."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.helpers import script_module

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "make_no_speech_clips.py"
FSDD = REPO / "finetune" / "samples" / "fsdd"


@pytest.fixture(scope="module")
def script():
    with script_module(SCRIPT) as module:
        yield module


def read_metadata(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_files_other_seed_or_split_differs(script, tmp_path: Path) -> None:
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert script.main(["--out", str(tmp_path / name), "--split", "train=10", "--split", "test=10",
                            "--seed", str(seed)]) == 0
    assert folder_digest(tmp_path / "a") == folder_digest(tmp_path / "b")
    assert folder_digest(tmp_path / "a") != folder_digest(tmp_path / "c")
    train = [(clip.kind, clip.duration) for clip in script.make_clips("train", 10, 3)]
    test = [(clip.kind, clip.duration) for clip in script.make_clips("test", 10, 3)]
    assert train != test  # test is drawn apart from train
    assert read_metadata(tmp_path / "a" / "train" / "metadata.csv")[0]["duration"] == f"{train[0][1]:.4f}"


def test_kinds_durations_and_format(script, tmp_path: Path) -> None:
    script.main(["--out", str(tmp_path), "--split", "test=20", "--seed", "0"])
    rows = read_metadata(tmp_path / "test" / "metadata.csv")
    assert list(rows[0]) == ["file_name", "transcript", "kind", "duration"]
    assert Counter(row["kind"] for row in rows) == {kind: 4 for kind in script.KINDS}
    assert all(row["transcript"] == "" for row in rows)
    for row in rows:
        info = sf.info(tmp_path / "test" / row["file_name"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert 0.5 <= info.duration <= 3.0 and abs(info.duration - float(row["duration"])) < 1e-3


def test_levels_are_the_stated_ones(script, tmp_path: Path) -> None:
    script.main(["--out", str(tmp_path), "--split", "train=50", "--seed", "1"])
    for row in read_metadata(tmp_path / "train" / "metadata.csv"):
        audio, _ = sf.read(tmp_path / "train" / row["file_name"], dtype="float32")
        level = script.rms_dbfs(audio)
        if row["kind"] == "silence":
            assert not audio.any()
        elif row["kind"] == "clicks":
            peak = 20 * np.log10(np.max(np.abs(audio)))
            assert script.CLICK_PEAK_DBFS[0] - 1 <= peak <= script.CLICK_PEAK_DBFS[1] + 1
            assert np.median(np.abs(audio)) < 10 ** (-50 / 20)  # mostly the very low floor
        else:
            low, high = script.LEVELS_DBFS[row["kind"]]
            assert low - 0.5 <= level <= high + 0.5, (row, level)


def test_hum_is_at_mains_frequency(script) -> None:
    rng = np.random.default_rng(0)
    audio = script.hum(rng, 16000)
    spectrum = np.abs(np.fft.rfft(audio))
    assert int(np.argmax(spectrum)) in (50, 60)  # 1 Hz bins over one second


def test_merged_folder_holds_both_sets(script, tmp_path: Path) -> None:
    out = tmp_path / "merged"
    assert script.main(["--out", str(out), "--split", "test=40", "--seed", "0", "--with", str(FSDD)]) == 0
    rows = read_metadata(out / "test" / "metadata.csv")
    fsdd = read_metadata(FSDD / "test" / "metadata.csv")
    assert len(rows) == len(fsdd) + 40
    speech = [row for row in rows if row["kind"] == "speech"]
    silent = [row for row in rows if row["kind"] != "speech"]
    assert [row["transcript"] for row in speech] == [row["transcript"] for row in fsdd]
    assert all(row["transcript"] for row in speech) and all(row["transcript"] == "" for row in silent)
    assert len(silent) == 40 and all(row["speaker"] == "" for row in silent)
    assert all((out / "test" / row["file_name"]).is_file() for row in rows)
    assert {row["kind"] for row in rows[:10]} & {"speech"} and {row["kind"] for row in rows[:10]} - {"speech"}


def test_refuses_a_non_empty_target_and_a_folder_without_transcripts(script, tmp_path: Path) -> None:
    script.main(["--out", str(tmp_path / "x"), "--split", "test=2"])
    with pytest.raises(SystemExit, match="not empty"):
        script.main(["--out", str(tmp_path / "x"), "--split", "test=2"])
    other = tmp_path / "other" / "test"
    other.mkdir(parents=True)
    (other / "metadata.csv").write_text("file_name,text\na.wav,one\n")
    with pytest.raises(SystemExit, match="no column transcript"):
        script.main(["--out", str(tmp_path / "y"), "--split", "test=2", "--with", str(tmp_path / "other")])
