"""Direct spoken-intent recognition against the cascade (ASR -> text intent model), on one spoken test set.

    python scripts/compare_spoken_intent.py --direct outputs/spoken-intent-snips \
        --asr outputs/whisper-spoken-snips --intent outputs/intent-snips --data outputs/spoken_snips \
        [--zero-shot-asr offline:whisper-tiny.en] [--limit 200] [--threads 1]

- direct: an audio classifier (configs/spoken_intent_snips.yaml) maps audio to an intent; no transcript.
- cascade: ``SpokenCommandPipeline`` (finetune.inference.slu) transcribes, then classifies the transcript.
  ``--zero-shot-asr`` adds the same cascade with another recognizer (e.g. tiny.en before fine-tuning).

Every approach sees the same decoded 16 kHz clips (audio decoding is not timed) and answers one clip
at a time (batch 1) in this process, under the same ``--threads`` torch threads; ``--warmup`` calls
before the timed pass are left out, and the approaches take turns clip by clip (on a shared machine,
load from other jobs then falls on all of them alike). Scores come from ``finetune.evaluation.metrics`` (the intent before any
out-of-scope rule, as ``finetune slu-evaluate`` scores it). Size is the parameter count and the bytes
of the files ``from_pretrained`` needs (weights, configs, tokenizer/processor files) of every model
an approach loads. Writes a JSON file (default scripts/results/spoken_intent.json), prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLING_RATE = 16000
# what from_pretrained reads from a model dir; results, plots and training state are not needed to run it
MODEL_FILE_PATTERNS = ("*.safetensors", "config.json", "generation_config.json", "preprocessor_config.json",
                       "processor_config.json", "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json",
                       "added_tokens.json", "normalizer.json")


@dataclass
class Approach:
    """One way to get an intent from a 16 kHz clip, with what it costs to ship."""

    name: str
    predict: Callable[[np.ndarray], str]
    model_dirs: list[str]
    parameters: int
    max_seconds: float | None  # longest clip it accepts (Whisper's context); None: any


def direct_approach(model_dir: str, name: str = "direct") -> Approach:
    """A saved audio classifier behind ``pipeline("audio-classification")``."""
    from transformers import pipeline

    from finetune.models.audio_classifier import max_clip_seconds
    from finetune.models.registry import resolve_model_path

    path = resolve_model_path(model_dir)
    classify = pipeline("audio-classification", model=path, device="cpu", model_kwargs={"use_safetensors": True})

    def predict(clip: np.ndarray) -> str:
        return classify({"raw": clip, "sampling_rate": SAMPLING_RATE}, top_k=1)[0]["label"]

    return Approach(name, predict, [path], _parameters(classify.model), max_clip_seconds(classify.feature_extractor))


def cascade_approach(asr_model: str, intent_model: str, name: str = "cascade") -> Approach:
    """``SpokenCommandPipeline`` (greedy decoding, batch 1): transcript first, then its intent."""
    from finetune.inference.slu import SpokenCommandPipeline
    from finetune.models.registry import resolve_model_path

    paths = [resolve_model_path(asr_model), resolve_model_path(intent_model)]
    slu = SpokenCommandPipeline.from_pretrained(*paths, device="cpu", batch_size=1)

    def predict(clip: np.ndarray) -> str:
        return slu(clip)[0]["top_intent"]

    parameters = _parameters(slu.asr.model) + _parameters(slu.classifier.model)
    return Approach(name, predict, paths, parameters, slu.max_seconds)


def compare(approaches: Sequence[Approach], clips: Sequence[np.ndarray], gold: Sequence[str], *,
            warmup: int = 3) -> dict[str, dict[str, Any]]:
    """Score every approach on the same clips. After ``warmup`` untimed calls each, the approaches take
    turns clip by clip, so that load from other processes on a shared machine falls on all of them alike."""
    names = [a.name for a in approaches]
    if len(set(names)) != len(names):
        raise ValueError(f"approach names must differ, got {names}")
    if len(clips) != len(gold) or not clips:
        raise ValueError(f"{len(clips)} clips for {len(gold)} gold intents; need one intent a clip, and clips")
    for approach in approaches:
        for clip in clips[:warmup]:
            approach.predict(clip)
    predictions: dict[str, list[str]] = {name: [] for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for done, clip in enumerate(clips, start=1):
        for approach in approaches:
            started = time.perf_counter()
            predictions[approach.name].append(approach.predict(clip))
            seconds[approach.name].append(time.perf_counter() - started)
        if done % 100 == 0:
            print(f"{done}/{len(clips)} clips", file=sys.stderr, flush=True)
    return {a.name: summarize(a, predictions[a.name], seconds[a.name], gold) for a in approaches}


def summarize(approach: Approach, predictions: list[str], seconds: list[float], gold: Sequence[str]
              ) -> dict[str, Any]:
    """Accuracy, macro-F1 (finetune.evaluation.metrics), latency per utterance and size of one approach."""
    from finetune.evaluation.metrics import classification_metrics

    scores = classification_metrics(predictions, list(gold))
    return {
        "models": approach.model_dirs,
        "num_samples": len(predictions),
        "accuracy": scores["accuracy"],
        "f1_macro": scores["f1_macro"],
        "latency_ms": {"mean": round(1000 * statistics.fmean(seconds), 2),
                       "median": round(1000 * statistics.median(seconds), 2),
                       "p90": round(1000 * float(np.percentile(seconds, 90)), 2)},
        "parameters": approach.parameters,
        "disk_bytes": sum(model_files_bytes(d) for d in approach.model_dirs),
        "per_class": scores["per_class"],
        "predictions": predictions,
    }


def model_files_bytes(model_dir: str | os.PathLike) -> int:
    """Bytes of the files a model dir needs to be loaded (see MODEL_FILE_PATTERNS)."""
    folder = Path(model_dir)
    files = {p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    if not any(p.suffix == ".safetensors" for p in files):
        raise FileNotFoundError(f"{model_dir}: no *.safetensors weights")
    return sum(p.stat().st_size for p in files)


def spread(count: int, limit: int | None) -> list[int]:
    """``limit`` row indices spread evenly over ``count`` rows (test sets are often sorted by intent)."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted({int(i) for i in np.linspace(0, count - 1, num=limit)})


def load_clips(data: str, split: str, *, max_seconds: float | None, limit: int | None,
               label_column: str, on_bad_rows: str) -> tuple[list[np.ndarray], list[str], int]:
    """Decoded 16 kHz clips and gold intents of ``split``; clips longer than ``max_seconds`` are bad rows."""
    from finetune.config import DataArguments
    from finetune.data.speech import load_speech_split

    args = DataArguments(dataset_name=data, eval_split_name=split, label_column_name=label_column,
                         on_bad_rows=on_bad_rows)
    if max_seconds is not None:
        args.max_duration_in_seconds = max_seconds
    dataset, report = load_speech_split(args, split, sampling_rate=SAMPLING_RATE, needs_text=False,
                                        needs_label=True)
    dataset = dataset.select(spread(len(dataset), limit))
    clips = [np.asarray(a, dtype=np.float32) for a in dataset["audio"]]
    return clips, list(dataset["label"]), len(report.bad) if report is not None else 0


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| approach | models | intent accuracy | macro-F1 | latency per utterance (mean / median, ms) "
             "| parameters | on-disk size |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        models = " + ".join(f"`{_short(m)}`" for m in r["models"])
        lines.append(f"| {name} | {models} | {r['accuracy']:.1%} | {100 * r['f1_macro']:.1f}% | "
                     f"{r['latency_ms']['mean']:.0f} / {r['latency_ms']['median']:.0f} | "
                     f"{r['parameters'] / 1e6:.1f} M | {r['disk_bytes'] / 1e6:.0f} MB |")
    return "\n".join(lines)


def _parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _short(path: str) -> str:
    """A model dir under the repo relative to it; any other (e.g. the offline cache) by its folder name."""
    resolved = Path(path).resolve()
    return os.path.relpath(resolved, ROOT) if resolved.is_relative_to(ROOT) else resolved.name


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direct", required=True, help="saved audio classifier (audio -> intent)")
    parser.add_argument("--asr", required=True, help="cascade recognizer (Whisper dir or offline: alias)")
    parser.add_argument("--intent", required=True, help="cascade text intent model dir")
    parser.add_argument("--zero-shot-asr", help="also score the cascade with this recognizer, e.g. "
                                                "offline:whisper-tiny.en")
    parser.add_argument("--data", default=str(ROOT / "outputs" / "spoken_snips"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--label-column", default="intent")
    parser.add_argument("--on-bad-rows", default="skip", choices=("skip", "fail"))
    parser.add_argument("--limit", type=int, help="score only this many clips, spread over the split")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, the same for every approach")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per approach before timing")
    parser.add_argument("--out", default=str(ROOT / "scripts" / "results" / "spoken_intent.json"))
    args = parser.parse_args(argv)

    import torch

    from finetune.outputs import write_json

    torch.set_num_threads(args.threads)
    approaches = [direct_approach(args.direct), cascade_approach(args.asr, args.intent)]
    if args.zero_shot_asr:
        approaches.append(cascade_approach(args.zero_shot_asr, args.intent, name="cascade, zero-shot ASR"))
    limits = [a.max_seconds for a in approaches if a.max_seconds is not None]
    clips, gold, skipped = load_clips(args.data, args.split, max_seconds=min(limits) if limits else None,
                                      limit=args.limit, label_column=args.label_column, on_bad_rows=args.on_bad_rows)
    results = compare(approaches, clips, gold, warmup=args.warmup)
    payload = {
        "dataset": args.data, "split": args.split, "num_samples": len(clips), "skipped_rows": skipped,
        "threads": args.threads, "batch_size": 1, "warmup_calls": args.warmup,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}",
        "approaches": {name: {k: v for k, v in r.items() if k != "predictions"} for name, r in results.items()},
    }
    write_json(args.out, payload)
    print(markdown_table(results))
    print(f"\n{len(clips)} clips of {args.data} [{args.split}] ({skipped} skipped), batch 1, "
          f"{args.threads} thread(s); written to {args.out}")
    return payload


if __name__ == "__main__":
    main()
