"""scripts/bench_dynamic_context.py: clips taken in turn from each set, the loop rule, a clear refusal without a
tuned model, and a whole run on tiny random Whispers (every row's timing, WER and ratios in the JSON)."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from tests.helpers import script_module, whisper_stopping_early

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_dynamic_context.py"
FSDD = Path(__file__).resolve().parents[2] / "finetune" / "samples" / "fsdd" / "test"
TORCH_ROWS = ["base-30s", "base-dynamic", "tuned-dynamic", "pipeline-tuned-30s"]
CT2_ROWS = ["ct2-tuned-dynamic-int8", "faster-whisper-int8"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def script():
    with script_module(SCRIPT) as module:
        yield module


@pytest.fixture(scope="module")
def models(tiny_whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random Whisper that stops after a few tokens as the base, and a copy marked as tuned."""
    base = whisper_stopping_early(tiny_whisper_dir, tmp_path_factory.mktemp("base"), max_length=6)
    tuned = whisper_stopping_early(base, tmp_path_factory.mktemp("tuned"), max_length=6)
    config = json.loads((tuned / "config.json").read_text())
    config["finetune_dynamic_context"] = {"step_seconds": 1.0}
    (tuned / "config.json").write_text(json.dumps(config))
    return {"base": base, "tuned": tuned}


def _folder(root: Path, name: str, count: int) -> Path:
    folder = root / name
    folder.mkdir()
    with (folder / "metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "transcript"])
        writer.writerows([f"{name}{i}.wav", f"{name} {i}"] for i in range(count))
    return folder


def test_clips_are_taken_in_turn_from_each_set(script, tmp_path: Path) -> None:
    folders = [_folder(tmp_path, "a", 1), _folder(tmp_path, "b", 3), _folder(tmp_path, "c", 2)]
    assert [Path(c["path"]).name for c in script.clip_list(folders, None)] == [
        "a0.wav", "b0.wav", "c0.wav", "b1.wav", "c1.wav", "b2.wav"]
    first = script.clip_list(folders, 3)
    assert [c["reference"] for c in first] == ["a 0", "b 0", "c 0"]


def test_loop_rule_flags_a_repeated_three_gram(script) -> None:
    assert script.looks_like_loop("and so and so and so and so")
    assert script.looks_like_loop("the the the the the")  # overlapping: "the the the" three times
    assert not script.looks_like_loop("ask not what your country can do for you ask what you can do for your country")
    assert not script.looks_like_loop("")


def test_missing_tuned_model_says_how_to_make_it(script, models, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="finetune train configs/context_tuning_tiny_en.yaml"):
        script.main(["--base", str(models["base"]), "--tuned", str(tmp_path / "nowhere"), "--out",
                     str(tmp_path / "out.json")])
    with pytest.raises(SystemExit, match="marker"):  # a stock Whisper is not a tuned one
        script.main(["--base", str(models["base"]), "--tuned", str(models["base"]), "--out",
                     str(tmp_path / "out.json")])


def _run(script, models, out: Path, rows: list[str], *extra: str) -> dict:
    return script.main(["--base", str(models["base"]), "--tuned", str(models["tuned"]), "--clips-dir", str(FSDD),
                        "--clips", "2", "--batch-sizes", "1", "--threads", "1", "--rows", ",".join(rows),
                        "--out", str(out), *extra])


def _check_rows(payload: dict, rows: list[str]) -> None:
    for name in rows:
        r = payload["results"][name]["batch_1"]
        assert r["clips"] == 2 and r["audio_seconds"] > 0
        for key in ("seconds_per_clip", "real_time_factor", "wer", "wer_raw", "speedup_vs_base_30s",
                    "wer_vs_base_30s_points", "peak_rss_mb"):
            assert isinstance(r[key], (int, float)), (name, key)
        assert r["seconds_per_clip"] > 0 and r["speedup_vs_base_30s"] > 0 and 0 <= r["loops"] <= 2
        assert len(payload["texts"][name]["batch_1"]) == 2


def test_run_on_tiny_models_writes_every_row_with_ratios_against_base_30s(script, models, tmp_path: Path,
                                                                          capsys) -> None:
    out = tmp_path / "bench.json"
    payload = _run(script, models, out, TORCH_ROWS, "--in-process")

    assert json.loads(out.read_text()) == json.loads(json.dumps(payload))
    _check_rows(payload, TORCH_ROWS)
    assert payload["results"]["base-30s"]["batch_1"]["speedup_vs_base_30s"] == 1.0
    assert payload["results"]["base-30s"]["batch_1"]["wer_vs_base_30s_points"] == 0.0
    same = payload["same_text"]
    assert same["clips"] == 2 and 0 <= same["same"] <= 2
    assert payload["settings"]["clips"] == 2 and "torch" in payload["machine"] and "1 threads" in payload["machine"]
    assert [Path(c["path"]).name for c in payload["clips"]] == ["0_george_0.flac", "0_jackson_0.flac"]
    table = capsys.readouterr().out
    assert "| base-30s | 1 |" in table and "| pipeline-tuned-30s | 1 |" in table and "same text" in table

    # a row run in its own process (the default) joins the rows already there, with the same settings
    payload = _run(script, models, out, ["tuned-30s"])
    _check_rows(payload, [*TORCH_ROWS, "tuned-30s"])


@pytest.mark.skipif(not (importlib.util.find_spec("ctranslate2") and importlib.util.find_spec("faster_whisper")),
                    reason="ctranslate2 and faster-whisper are optional")
def test_ctranslate2_rows_on_tiny_models(script, models, tmp_path: Path) -> None:
    payload = _run(script, models, tmp_path / "bench.json", ["base-30s", *CT2_ROWS], "--in-process")
    _check_rows(payload, ["base-30s", *CT2_ROWS])
    assert payload["skipped"] == {}
