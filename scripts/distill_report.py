"""Teacher vs distilled student: WER, CPU decoding speed, parameters and file size, one table.

    python scripts/distill_report.py --name fsdd --teacher outputs/quickstart \
        --student outputs/distill-fsdd-2layer --student outputs/distill-fsdd-1layer \
        --eval ../shared/data/fsdd:test --speed ../shared/data/fsdd:test --speed-clips 50

Every model is scored the same way (``finetune evaluate``'s scorer: greedy decoding, WER after Whisper's
English normalization) on every ``--eval DATASET:SPLIT``; clips longer than a model's encoder context cannot
be transcribed by it and are counted as skipped, not scored. Decoding speed is measured with the same
settings for every model: one clip at a time (batch 1), greedy, the model's saved generation config, torch
on one thread (``OMP_NUM_THREADS=1``; pin the process with ``taskset`` for stable figures), after two
warm-up clips; the time is ``generate()`` alone (features are computed before the clock starts), and the
models take turns clip by clip so that a busy machine slows them alike.

Results merge into ``--out`` (one entry per ``--name``), and the markdown table of all entries is
written beside it (``.md``), so pairs can be measured one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_source(value: str) -> tuple[str, str]:
    """``DATASET:SPLIT`` -> (dataset, split); the split defaults to test."""
    dataset, _, split = value.rpartition(":")
    if not dataset or "/" in split:
        return value, "test"
    return dataset, split


def model_facts(model_dir: Path) -> dict:
    """Decoder layers, encoder context, parameters and the size of the weights file."""
    from transformers import WhisperConfig

    config = WhisperConfig.from_pretrained(model_dir)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{model_dir}: no model.safetensors")
    from safetensors import safe_open

    with safe_open(weights, framework="pt") as handle:
        parameters = sum(_numel(handle.get_slice(key).get_shape()) for key in handle.keys())
    return {
        "path": str(model_dir),
        "decoder_layers": config.decoder_layers,
        "encoder_layers": config.encoder_layers,
        "context_seconds": config.max_source_positions * 2 // 100,
        "parameters": parameters,
        "file_mb": round(weights.stat().st_size / 1e6, 2),
    }


def _numel(shape) -> int:
    total = 1
    for n in shape:
        total *= int(n)
    return total


def score(model_dir: Path, dataset: str, split: str, work_dir: Path, batch_size: int,
          max_samples: int | None = None) -> dict:
    """WER/CER with the Whisper recipe's scorer; over-long clips are skipped and counted."""
    import finetune

    payload = finetune.evaluate(model_dir, dataset, split=split, output_dir=work_dir, batch_size=batch_size,
                                on_bad_rows="skip", max_eval_samples=max_samples)
    keep = ("wer", "cer", "wer_raw", "cer_raw", "num_samples", "skipped_rows")
    return {k: payload[k] for k in keep if k in payload} | {"predictions": str(work_dir / "predictions.jsonl")}


def decode_speeds(model_dirs: dict[str, Path], dataset: str, split: str, clips: int) -> dict[str, dict]:
    """Seconds per clip of greedy ``generate()`` at batch 1, per model, on the same ``clips`` clips.

    The models take turns clip by clip (the order alternating), so a load change on a shared machine
    slows all of them alike instead of whichever happened to run then.
    """
    import torch

    from finetune.config import DataArguments, ModelArguments
    from finetune.data.speech import load_speech_split
    from finetune.models.whisper import context_seconds, load_whisper

    loaded = {label: load_whisper(ModelArguments(model_name_or_path=str(path))) for label, path in model_dirs.items()}
    context = min(context_seconds(processor) for _, processor in loaded.values())
    data_args = DataArguments(dataset_name=dataset, on_bad_rows="skip", max_duration_in_seconds=float(context))
    rows, _ = load_speech_split(data_args, split, sampling_rate=16000, max_samples=None, materialize=True)
    audio = rows["audio"][: clips + 2]
    times: dict[str, list[float]] = {label: [] for label in loaded}
    tokens: dict[str, list[int]] = {label: [] for label in loaded}
    labels = list(loaded)
    with torch.inference_mode():
        for i, samples in enumerate(audio):
            for label in labels if i % 2 == 0 else labels[::-1]:
                model, processor = loaded[label]
                extractor = processor.feature_extractor
                features = extractor(samples, sampling_rate=16000, return_tensors="pt").input_features
                started = time.perf_counter()
                out = model.eval().generate(features)
                elapsed = time.perf_counter() - started
                if i >= 2:  # the first two clips warm up
                    times[label].append(elapsed)
                    tokens[label].append(int(out.shape[-1]))
    return {label: {
        "clips": len(times[label]),
        "s_per_clip": round(statistics.mean(times[label]), 4),
        "median_s_per_clip": round(statistics.median(times[label]), 4),
        "text_tokens_per_clip": round(statistics.mean(tokens[label]), 2),  # generate() returns text tokens
        "torch_threads": torch.get_num_threads(),
    } for label in labels}


def _short(source: str | None) -> str:
    """``../shared/data/fsdd:test`` -> ``fsdd test``."""
    if not source:
        return ""
    dataset, split = parse_source(source)
    return f"{Path(dataset).name or dataset} {split}"


def markdown(report: dict) -> str:
    lines = []
    for name, entry in report["pairs"].items():
        sources = list(entry["eval_sources"])
        speed = entry.get("speed_source", "")
        head = (["model", "decoder layers", "parameters", "safetensors"]
                + [f"WER {_short(s)}" for s in sources] + [f"s/clip ({_short(speed)}, batch 1)", "speed-up"])
        lines += [f"### {name}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        teacher_speed = entry["models"]["teacher"].get("decode", {}).get("s_per_clip")
        for label, facts in entry["models"].items():
            row = [f"{label} (`{facts['path']}`)", str(facts["decoder_layers"]),
                   f"{facts['parameters'] / 1e6:.1f} M", f"{facts['file_mb']:.0f} MB"]
            for source in sources:
                result = facts["wer"].get(source)
                if not result or not result.get("num_samples"):
                    row.append(f"no clip fits the {facts['context_seconds']} s context")
                else:
                    skipped = result.get("skipped_rows", 0)
                    note = f", {skipped} longer skipped" if skipped else ""
                    row.append(f"{result['wer']:.1%} ({result['num_samples']} clips{note})")
            decode = facts.get("decode")
            row.append(f"{decode['s_per_clip']:.3f}" if decode else "")
            row.append(f"{teacher_speed / decode['s_per_clip']:.2f}x" if decode and teacher_speed else "")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the pair's name in the report (e.g. fsdd)")
    parser.add_argument("--teacher", required=True, type=Path)
    parser.add_argument("--student", required=True, type=Path, action="append", help="repeat for more students")
    parser.add_argument("--eval", action="append", default=[], metavar="DATASET:SPLIT", help="repeatable")
    parser.add_argument("--speed", metavar="DATASET:SPLIT", default=None, help="clips for the decoding-speed test")
    parser.add_argument("--speed-clips", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of WER scoring")
    parser.add_argument("--max-samples", type=int, default=None, help="score only the first N clips of each split")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "outputs" / "distill-report",
                        help="eval_results.json + predictions.jsonl of every scoring go here")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts" / "results" / "distill.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    models = {"teacher": args.teacher} | {
        (f"student {i + 1}" if len(args.student) > 1 else "student"): s for i, s in enumerate(args.student)}
    entry = {"eval_sources": [], "speed_source": args.speed, "models": {}}
    for label, model_dir in models.items():
        facts = model_facts(model_dir) | {"wer": {}}
        for source in args.eval:
            dataset, split = parse_source(source)
            slug = re.sub(r"[^\w.-]+", "-", args.name).strip("-")
            work = args.work_dir / slug / model_dir.name / f"{Path(dataset).name}-{split}"
            try:
                facts["wer"][source] = score(model_dir, dataset, split, work, args.batch_size, args.max_samples)
            except ValueError as error:  # e.g. no clip short enough for this model's context
                facts["wer"][source] = {"num_samples": 0, "error": str(error)}
            print(f"{label} {model_dir} {source}: {facts['wer'][source]}", file=sys.stderr)
        entry["models"][label] = facts
    if args.speed:
        for label, speed in decode_speeds(models, *parse_source(args.speed), args.speed_clips).items():
            entry["models"][label]["decode"] = speed
            print(f"{label} decoding: {speed}", file=sys.stderr)
    entry["eval_sources"] = list(args.eval)

    report = json.loads(args.out.read_text()) if args.out.is_file() else {"pairs": {}}
    report["pairs"][args.name] = entry
    report["machine"] = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                         "torch_threads": torch.get_num_threads(), "cpu_affinity": sorted(os.sched_getaffinity(0))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
