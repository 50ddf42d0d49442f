"""CPU speed and WER of dynamic encoder context: a context-tuned Whisper served at each batch's own length
against the stock model at 30 s, through transformers, CTranslate2, faster-whisper and pipeline().

    python scripts/bench_dynamic_context.py --base offline:whisper-tiny.en --tuned outputs/tiny-en-context-tuned \
        [--clips N] [--threads 1] [--batch-sizes 1,16] [--rows base-30s,tuned-dynamic,...] \
        [--out scripts/results/bench_dynamic_context.json]

--tuned is a Whisper tuned for dynamic context (``finetune train configs/context_tuning_tiny_en.yaml``),
marked so in its config.json (finetune.models.dynamic_context); --base is the model it was tuned from.
Clips: the real English sentences of the test splits of ../shared/data/{librispeech_sample,ljspeech_sample,jfk}
(38 clips, 1.8-11.7 s), taken in turn from each folder (``--clips N``: the first N of that order, so a few clips
still come from every set); ``--clips-dir`` (repeatable) names other audiofolders (metadata.csv with
``file_name,transcript``). Rows, all greedy, every one timed on all the clips after an untimed warm-up on the first:

- base-30s: finetune's Transcriber on --base at its full 30 s window: the baseline every ratio is against.
- base-dynamic: the same model forced to a trimmed context (stock tiny.en then tends to loop: that is the point).
- tuned-30s / tuned-dynamic: the tuned model at 30 s, and as served (``context="auto"``: its own length).
- tuned-dynamic-int8: the same with dynamic int8 Linear layers (``quantize="int8"``).
- faster-whisper-int8 / faster-whisper-int8-beam5: faster-whisper's ``transcribe`` (always 30 s) on --base
  exported with export_ct2 (the same weights as base-30s), int8, beam 1 / its default beam 5, one clip at a
  time; its other defaults kept (temperature fallback included), ``vad_filter=False``, no timestamps.
- ct2-tuned-dynamic-int8 / ct2-tuned-30s-int8: finetune's CT2Transcriber on --tuned exported with export_ct2,
  int8, at trimmed length (the folder's marker) / at 30 s.
- pipeline-tuned-30s: stock ``transformers.pipeline("automatic-speech-recognition")`` on --tuned, one clip at a
  time: what a user gets from the saved folder without finetune (30 s).

Every row runs at batch 1; the Transcriber and CT2 rows also at each of --batch-sizes (clips batched in the
order above, not sorted by length: a batch runs at its longest clip). Each (row, batch size) runs in its own
child process, one after the other, with --threads CPU threads (torch, OMP, CTranslate2), so its peak RSS is
its own and only one timed job runs at a time. The Transcriber rows are given the files (decoding them is part
of their time: a few ms a clip); the others are given the samples decoded by finetune.data.audio.load_audio.

Reported per row: seconds per clip, real-time factor (seconds / audio seconds), peak RSS, corpus WER after
Whisper's English normalization on both sides (``wer_raw``: as written), ``loops``: clips whose output looks
like a repetition loop (some word 3-gram occurs at least 3 times in the normalized text; real sentences here
never do), and against base-30s at the same batch size ``speedup_vs_base_30s`` (its s/clip over the row's) and
``wer_vs_base_30s_points``. ``same_text``: of the tuned model's clips, how many give the same normalized text
from pipeline-tuned-30s and from tuned-dynamic (batch 1), and the WER of the latter against the former.

The JSON (--out) is written after every row, so a later failure loses nothing; rows already in it with the
same settings are kept (so --rows can add or rerun a few). Prints a markdown table at the end.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_CLIP_DIRS = [SHARED_DATA / name / "test" for name in ("librispeech_sample", "ljspeech_sample", "jfk")]
TUNE_COMMAND = "finetune train configs/context_tuning_tiny_en.yaml"
BASELINE = "base-30s"
RATE = 16000
LOOP_NGRAM, LOOP_TIMES = 3, 3  # a word 3-gram occurring 3 times or more: a repetition loop

# engine: transformers (finetune's Transcriber), ct2 (CT2Transcriber), faster-whisper, pipeline (stock)
ROWS: dict[str, dict] = {
    "base-30s": {"engine": "transformers", "model": "base", "context": "full"},
    "base-dynamic": {"engine": "transformers", "model": "base", "context": "dynamic"},
    "tuned-30s": {"engine": "transformers", "model": "tuned", "context": "full"},
    "tuned-dynamic": {"engine": "transformers", "model": "tuned", "context": "auto"},
    "tuned-dynamic-int8": {"engine": "transformers", "model": "tuned", "context": "auto", "quantize": "int8"},
    "faster-whisper-int8": {"engine": "faster-whisper", "model": "base", "beam_size": 1},
    "faster-whisper-int8-beam5": {"engine": "faster-whisper", "model": "base"},  # its default: 5 beams
    "ct2-tuned-dynamic-int8": {"engine": "ct2", "model": "tuned", "context": "auto"},
    "ct2-tuned-30s-int8": {"engine": "ct2", "model": "tuned", "context": "full"},
    "pipeline-tuned-30s": {"engine": "pipeline", "model": "tuned"},
}
BATCHED_ENGINES = ("transformers", "ct2")
NEEDS = {"ct2": ("ctranslate2",), "faster-whisper": ("ctranslate2", "faster_whisper")}  # optional packages


def clip_list(folders: list[Path], count: int | None) -> list[dict]:
    """``{"path", "reference"}`` for each clip, taken in turn from each folder; the first ``count``."""
    per_folder = []
    for folder in folders:
        rows = list(csv.DictReader((folder / "metadata.csv").open(encoding="utf-8")))
        per_folder.append([{"path": str(folder / r["file_name"]),
                            "reference": r.get("transcript") or r.get("text") or ""} for r in rows])
    clips = [rows[i] for i in range(max(map(len, per_folder), default=0)) for rows in per_folder if i < len(rows)]
    return clips[:count] if count else clips


def looks_like_loop(text: str, n: int = LOOP_NGRAM, times: int = LOOP_TIMES) -> bool:
    """Whether some word ``n``-gram occurs ``times`` times or more (overlapping) in ``text``."""
    words = text.split()
    counts = Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return bool(counts) and max(counts.values()) >= times


def run_row(spec: dict) -> dict:
    """One (row, batch size) on all clips: the timed texts and their scores."""
    import torch

    from finetune.data.audio import load_audio

    threads, batch = spec["threads"], spec["batch_size"]
    torch.set_num_threads(threads)
    row = ROWS[spec["row"]]
    paths = [c["path"] for c in spec["clips"]]
    audios = [load_audio(p, RATE) for p in paths]
    engine = row["engine"]
    if engine == "transformers":
        from finetune.inference.transcribe import (
            RunStats,
            TranscribeOptions,
            Transcriber,
        )

        transcriber = Transcriber(spec["model_dir"], TranscribeOptions(
            context=row["context"], num_beams=1, batch_size=batch, quantize=row.get("quantize", "none"),
            threads=threads, device="cpu", progress=False))

        def transcribe_all(items: list[str]) -> list[str]:
            results = list(transcriber(items, RunStats()))
            failed = [r.error for r in results if r.error]
            if failed:
                raise RuntimeError(f"{spec['row']}: {failed[0]}")
            return [r.transcript.text for r in results]

        transcribe_all(paths[:1])  # warm-up
        started = time.perf_counter()
        texts = transcribe_all(paths)
    elif engine == "ct2":
        from finetune.inference.ct2_decode import CT2Transcriber

        transcriber = CT2Transcriber(spec["model_dir"], context=row["context"], compute_type="int8",
                                     intra_threads=threads, beam_size=1)
        transcriber.transcribe_batch(audios[:1])
        started = time.perf_counter()
        texts = [text for i in range(0, len(audios), batch) for text in transcriber.transcribe_batch(audios[i:i + batch])]
    elif engine == "faster-whisper":
        from faster_whisper import WhisperModel

        model = WhisperModel(spec["model_dir"], device="cpu", compute_type="int8", cpu_threads=threads)
        beams = {"beam_size": row["beam_size"]} if "beam_size" in row else {}

        def transcribe_one(audio) -> str:
            segments, _ = model.transcribe(audio, language="en", vad_filter=False, without_timestamps=True, **beams)
            return " ".join(s.text.strip() for s in segments)

        transcribe_one(audios[0])
        started = time.perf_counter()
        texts = [transcribe_one(a) for a in audios]
    else:
        from transformers import pipeline

        asr = pipeline("automatic-speech-recognition", model=spec["model_dir"], device="cpu")

        def transcribe_one(audio) -> str:
            return asr({"raw": audio, "sampling_rate": RATE}, generate_kwargs={"num_beams": 1})["text"]

        transcribe_one(audios[0])
        started = time.perf_counter()
        texts = [transcribe_one(a) for a in audios]
    seconds = time.perf_counter() - started
    return {**score(texts, [c["reference"] for c in spec["clips"]], seconds, sum(map(len, audios)) / RATE),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "texts": [" ".join(t.split()) for t in texts]}


def score(texts: list[str], references: list[str], seconds: float, audio_seconds: float) -> dict:
    from finetune.data.text import get_normalizer
    from finetune.evaluation.metrics import asr_metrics

    normalize = get_normalizer("english")
    metrics = asr_metrics(texts, references, normalizer=normalize)
    return {
        "clips": len(texts),
        "audio_seconds": round(audio_seconds, 2),
        "seconds": round(seconds, 3),
        "seconds_per_clip": round(seconds / len(texts), 4),
        "real_time_factor": round(seconds / audio_seconds, 4),
        "wer": round(metrics["wer"], 4),
        "wer_raw": round(metrics["wer_raw"], 4),
        "loops": sum(looks_like_loop(normalize(t)) for t in texts),
    }


def same_text(results: dict, texts: dict) -> dict | None:
    """pipeline-tuned-30s against tuned-dynamic at batch 1: clips with the same normalized text, and WER."""
    pipe, dynamic = texts.get("pipeline-tuned-30s", {}).get("batch_1"), texts.get("tuned-dynamic", {}).get("batch_1")
    if pipe is None or dynamic is None:
        return None
    from finetune.data.text import get_normalizer
    from finetune.evaluation.metrics import error_rates

    normalize = get_normalizer("english")
    pipe, dynamic = [normalize(t) for t in pipe], [normalize(t) for t in dynamic]
    try:
        wer = round(error_rates(dynamic, pipe)["wer"], 4)
    except ValueError:  # the pipeline gave no words at all (random test weights)
        wer = None
    return {"clips": len(pipe), "same": sum(a == b for a, b in zip(pipe, dynamic)),
            "wer_tuned_dynamic_vs_pipeline": wer}


def machine(threads: int) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = [f"torch {torch.__version__}"]
    for module in ("transformers", "ctranslate2", "faster_whisper"):
        if importlib.util.find_spec(module):
            versions.append(f"{module.replace('_', '-')} {__import__(module).__version__}")
    return (f"{cpu} ({platform.machine()}), {os.cpu_count()} CPU cores ({usable} usable), {threads} threads, "
            + ", ".join(versions))


def _tuned_dir(tuned: str) -> Path:
    path = Path(tuned).resolve()
    if not (path / "config.json").is_file():
        raise SystemExit(f"--tuned {tuned}: no such model directory (no config.json there). Make it with "
                         f"`{TUNE_COMMAND}` (it saves outputs/tiny-en-context-tuned), or pass the folder of a "
                         "Whisper tuned for dynamic context.")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    from finetune.models.dynamic_context import CONFIG_KEY

    if not isinstance(config.get(CONFIG_KEY), dict):
        raise SystemExit(f"--tuned {tuned}: its config.json has no {CONFIG_KEY!r} marker, so it was not tuned for "
                         f"dynamic context and tuned-dynamic would run at 30 s; make one with `{TUNE_COMMAND}`.")
    return path


def _missing(engine: str) -> str | None:
    absent = [m for m in NEEDS.get(engine, ()) if importlib.util.find_spec(m) is None]
    return f"needs {', '.join(m.replace('_', '-') for m in absent)} (pip install)" if absent else None


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="offline:whisper-tiny.en", help="the stock Whisper the tuned one came from")
    parser.add_argument("--tuned", default="outputs/tiny-en-context-tuned", help="Whisper tuned for dynamic context")
    parser.add_argument("--clips", type=int, help="only the first N clips (taken in turn from each folder)")
    parser.add_argument("--clips-dir", action="append", type=Path,
                        help="audiofolder split with metadata.csv (repeatable); default: the three ../shared sets")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-sizes", default="1,16", help="for the Transcriber and CT2 rows (others: 1)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"any of {', '.join(ROWS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "bench_dynamic_context.json")
    parser.add_argument("--in-process", action="store_true",
                        help="run the rows in this process (quick checks: peak RSS is then the largest so far)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a child's spec file: one row, result beside it
    args = parser.parse_args(argv)

    if args.child:
        spec = json.loads(Path(args.child).read_text())
        Path(spec["result_file"]).write_text(json.dumps(run_row(spec)))
        return None

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",") if b.strip()} | {1})
    tuned = _tuned_dir(args.tuned)
    from finetune.models.registry import resolve_model_path

    models = {"base": Path(resolve_model_path(args.base)).resolve(), "tuned": tuned}  # children run in ROOT
    folders = [Path(f).resolve() for f in args.clips_dir or DEFAULT_CLIP_DIRS]
    missing_folders = [str(f) for f in folders if not (f / "metadata.csv").is_file()]
    if missing_folders:
        raise SystemExit(f"no metadata.csv in {', '.join(missing_folders)} (pass --clips-dir)")
    clips = clip_list(folders, args.clips)
    if not clips:
        raise SystemExit("no clips")

    settings = {"base": args.base, "tuned": str(args.tuned), "clip_dirs": [str(f) for f in folders],
                "clips": len(clips), "threads": args.threads}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    keep = previous.get("settings") == settings
    results, texts = (previous.get("results", {}), previous.get("texts", {})) if keep else ({}, {})
    skipped = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false"}
    payload: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-dynamic-") as tmp:
        exports: dict[str, Path] = {}
        for name in rows:
            row = ROWS[name]
            why = _missing(row["engine"])
            if why:
                print(f"skipping {name}: {why}", flush=True)
                skipped[name] = why
                continue
            model_dir = models[row["model"]]
            if row["engine"] in NEEDS:  # a CTranslate2 folder of the same weights, exported once a run
                if row["model"] not in exports:
                    from finetune.convert.ct2_export import export_ct2

                    print(f"exporting {model_dir} to CTranslate2 ...", flush=True)
                    exports[row["model"]] = export_ct2(model_dir, Path(tmp) / f"{row['model']}-ct2")
                model_dir = exports[row["model"]]
            for batch in batch_sizes if row["engine"] in BATCHED_ENGINES else [1]:
                spec = {"row": name, "batch_size": batch, "model_dir": str(model_dir), "threads": args.threads,
                        "clips": clips, "result_file": str(Path(tmp) / f"{name}-{batch}.json")}
                print(f"running {name} (batch {batch}) ...", flush=True)
                if args.in_process:
                    result = run_row(spec)
                else:
                    spec_file = Path(tmp) / f"{name}-{batch}.spec.json"
                    spec_file.write_text(json.dumps(spec))
                    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(spec_file)],
                                   check=True, cwd=ROOT, env=env)
                    result = json.loads(Path(spec["result_file"]).read_text())
                texts.setdefault(name, {})[f"batch_{batch}"] = result.pop("texts")
                results.setdefault(name, {})[f"batch_{batch}"] = result
                payload = _write(args, settings, clips, results, texts, skipped)  # a later failure loses nothing
    payload = _write(args, settings, clips, results, texts, skipped)
    _print_table(payload)
    return payload


def _write(args: argparse.Namespace, settings: dict, clips: list[dict], results: dict, texts: dict,
           skipped: dict) -> dict:
    for by_batch in results.values():
        for batch, r in by_batch.items():
            base = results.get(BASELINE, {}).get(batch)
            if base:
                r["speedup_vs_base_30s"] = round(base["seconds_per_clip"] / r["seconds_per_clip"], 2)
                r["wer_vs_base_30s_points"] = round(100 * (r["wer"] - base["wer"]), 2)
    order = {name: i for i, name in enumerate(ROWS)}
    results = dict(sorted(results.items(), key=lambda item: order.get(item[0], len(order))))
    payload = {
        "machine": machine(args.threads),
        "settings": settings,
        "loop_rule": f"a word {LOOP_NGRAM}-gram occurs at least {LOOP_TIMES} times in the normalized output",
        "results": results,
        "same_text": same_text(results, texts),
        "skipped": skipped,
        "clips": [{"path": c["path"], "reference": c["reference"]} for c in clips],
        "texts": texts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def _print_table(payload: dict) -> None:
    first = next((b for by_batch in payload["results"].values() for b in by_batch.values()), {})
    print(f"\n{payload['machine']}; {first.get('clips', 0)} clips, {first.get('audio_seconds', 0)} s of audio")
    print("| row | batch | s/clip | RTF | WER | loops | peak RSS MB | speed-up vs base-30s | WER vs base-30s (points) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, by_batch in payload["results"].items():
        for batch, r in sorted(by_batch.items(), key=lambda item: int(item[0].split("_")[1])):
            speedup = r.get("speedup_vs_base_30s")
            points = r.get("wer_vs_base_30s_points")
            print(f"| {name} | {batch.split('_')[1]} | {r['seconds_per_clip']} | {r['real_time_factor']} | "
                  f"{r['wer']:.2%} | {r['loops']}/{r['clips']} | {r['peak_rss_mb']} | "
                  f"{'-' if speedup is None else f'{speedup}x'} | {'-' if points is None else f'{points:+}'} |")
    same = payload.get("same_text")
    if same:
        wer = same["wer_tuned_dynamic_vs_pipeline"]
        print(f"\nsame text, pipeline-tuned-30s vs tuned-dynamic (batch 1): {same['same']}/{same['clips']} clips, "
              f"WER between them {'-' if wer is None else f'{wer:.2%}'}")
    for name, why in payload.get("skipped", {}).items():
        print(f"skipped {name}: {why}")


if __name__ == "__main__":
    main()
