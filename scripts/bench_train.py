"""Training throughput of finetune's short-clip path against the transformers-example baseline.

    python scripts/bench_train.py [--data ../shared/data/fsdd] [--steps 60] [--eval-samples 300]

Both variants fine-tune Whisper tiny.en (offline weights) on the same FSDD training clips with the same
hyperparameters (AdamW, lr, warmup, batch 8, fp32, same seed and step count, the whole training split
shuffled by the Trainer's seeded sampler: FSDD's files are sorted by digit), each in its own process
so that peak memory is its own, on the same machine in one run:

- baseline: what the transformers speech-recognition example does: log-mel features computed up front
  and padded to Whisper's 30 seconds, a plain padding collator, Seq2SeqTrainer, no length grouping.
- finetune: `finetune train` with `encoder_context_seconds: 2` (the recommended path for short clips).
- finetune-lora: the same with LoRA adapters (peft) on the attention projections, merged after training.
- finetune-30s: finetune at the full 30 s window (its collator computes features per batch).
- finetune-dynamic: `dynamic_encoder_context: true`: each batch at its longest clip rounded up to 1 s,
  batches grouped by duration; the saved model keeps the full window (`--zero-shot` scores the base model
  on the test split first).

On longer clips (e.g. ``--data ../shared/data/speechocean762 --variants finetune-30s,finetune-dynamic``)
the fixed 2 s variants do not apply.

--variants picks which run (results merge into --out, so variants can be run one at a time); --device cuda
with --bf16 measures a GPU (peak GPU memory is then reported beside peak RSS).

Each is then scored on the test split (greedy, WER after Whisper's English normalization). Prints a
table and the throughput ratio; writes JSON to --out.
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


def run_baseline(args: argparse.Namespace, output_dir: Path) -> dict:
    """The example-script way: 30-second padded features precomputed, default sampler."""
    import numpy as np
    import torch
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperForConditionalGeneration, WhisperProcessor

    from finetune.config import DataArguments
    from finetune.data.speech import load_speech_split
    from finetune.evaluation.metrics import asr_metrics
    from finetune.models.registry import resolve_model_path

    path = resolve_model_path(args.model)
    model = WhisperForConditionalGeneration.from_pretrained(path)
    processor = WhisperProcessor.from_pretrained(path)
    data_args = DataArguments(dataset_name=args.data, text_column_name="transcript")
    train, _ = load_speech_split(data_args, "train", sampling_rate=16000)  # all of it: FSDD is sorted by digit
    test, _ = load_speech_split(data_args, "test", sampling_rate=16000, max_samples=args.eval_samples)

    def features(batch: dict) -> dict:
        extracted = processor.feature_extractor(list(batch["audio"]), sampling_rate=16000)
        labels = processor.tokenizer([" " + t for t in batch["text"]]).input_ids
        return {"input_features": extracted.input_features, "labels": labels}

    keep = ["input_features", "labels", "duration", "text"]
    train = train.map(features, batched=True, remove_columns=[c for c in train.column_names if c not in keep])
    test = test.map(features, batched=True, remove_columns=[c for c in test.column_names if c not in keep])

    def collate(rows: list[dict]) -> dict:
        feats = torch.tensor(np.stack([r["input_features"] for r in rows]), dtype=torch.float32)
        longest = max(len(r["labels"]) for r in rows)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, : len(r["labels"])] = torch.tensor(r["labels"])
        if (labels[:, 0] == model.config.decoder_start_token_id).all():
            labels = labels[:, 1:]
        return {"input_features": feats, "labels": labels}  # (text/duration columns are not model inputs)

    training_args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=16,
        learning_rate=args.lr, warmup_steps=10, max_steps=args.steps, weight_decay=0.01, seed=42,
        save_strategy="no", report_to="none", logging_steps=10, predict_with_generate=True,
        generation_max_length=args.generation_max_length, remove_unused_columns=False, **_device_settings(args),
    )
    trainer = Seq2SeqTrainer(model=model, args=training_args, train_dataset=train, data_collator=collate)
    started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    output = trainer.predict(test)
    eval_seconds = time.perf_counter() - started
    pad = processor.tokenizer.pad_token_id
    predictions = processor.tokenizer.batch_decode(np.where(output.predictions < 0, pad, output.predictions),
                                                   skip_special_tokens=True)
    metrics = asr_metrics(predictions, list(test["text"]))
    audio_seconds = float(np.mean(train["duration"])) * args.steps * args.batch_size
    return _summary(train_seconds, eval_seconds, audio_seconds, args, metrics, len(predictions))


def _device_settings(args: argparse.Namespace) -> dict:
    """TrainingArguments that place the run: CPU, or the GPU in bf16 when asked."""
    if args.device == "cpu":
        return {"use_cpu": True}
    return {"bf16": args.bf16, "dataloader_num_workers": args.workers}


def run_finetune(args: argparse.Namespace, output_dir: Path, extra: dict | None = None) -> dict:
    """finetune's own recipe with the short encoder context, through its public entry point."""
    import finetune

    settings = {
        **_device_settings(args),
        "task": "asr_seq2seq", "encoder_context_seconds": 2, "evaluate_before_training": False,
        "dataset_name": args.data, "text_column_name": args.text_column, "max_duration_in_seconds": args.max_duration,
        "on_bad_rows": "skip",  # FSDD's 2 training clips over 2 s (the baseline's 30 s holds them)
        "max_eval_samples": args.eval_samples,
        "output_dir": str(output_dir / "run"), "per_device_train_batch_size": args.batch_size,
        "per_device_eval_batch_size": 16, "learning_rate": args.lr, "warmup_steps": 10, "max_steps": args.steps,
        "weight_decay": 0.01, "seed": 42, "save_strategy": "no", "logging_steps": 10,
        "model_name_or_path": args.model, "generation_max_length": args.generation_max_length,
    }
    finetune.train({**settings, **(extra or {})})
    run = output_dir / "run"
    state = json.loads((run / "trainer_state.json").read_text())
    train_seconds = next(h["train_runtime"] for h in state["log_history"] if "train_runtime" in h)
    results = json.loads((run / "eval_results.json").read_text())
    from finetune.config import DataArguments
    from finetune.data.speech import load_speech_split

    longest = (extra or {}).get("max_duration_in_seconds", settings["max_duration_in_seconds"])
    train, _ = load_speech_split(DataArguments(dataset_name=args.data, text_column_name=args.text_column,
                                               max_duration_in_seconds=longest, on_bad_rows="skip"), "train",
                                 sampling_rate=16000)
    audio_seconds = sum(train["duration"]) / len(train) * args.steps * args.batch_size  # expected, shuffled
    metrics = {k: results[k] for k in ("wer", "cer", "wer_raw", "cer_raw")}
    summary = _summary(train_seconds, results["runtime_s"], audio_seconds, args, metrics, results["num_samples"])
    if "zero_shot" in results:
        summary["zero_shot_wer"] = results["zero_shot"]["wer"]
    return summary


def _summary(train_seconds: float, eval_seconds: float, audio_seconds: float, args, metrics: dict, n: int) -> dict:
    samples = args.steps * args.batch_size
    return {
        "train_seconds": round(train_seconds, 2),
        "seconds_per_step": round(train_seconds / args.steps, 3),
        "samples_per_second": round(samples / train_seconds, 3),
        "audio_seconds_per_second": round(audio_seconds / train_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **_peak_gpu_memory(),
        "eval_seconds_per_clip": round(eval_seconds / max(n, 1), 4),
        "eval_clips": n,
        **{k: round(v, 4) for k, v in metrics.items()},
    }


def _peak_gpu_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "gpu": torch.cuda.get_device_name()}


RUNNERS = {
    "baseline": run_baseline,
    "finetune": run_finetune,
    "finetune-lora": lambda args, out: run_finetune(args, out, {"lora_r": 16, "lora_alpha": 32,
                                                                  "learning_rate": args.lr * 10}),
    # finetune's own collator and trainer at the full 30 s: what dynamic context is measured against
    "finetune-30s": lambda args, out: run_finetune(args, out, {"encoder_context_seconds": None,
                                                                 "max_duration_in_seconds": 30}),
    # each batch at its longest clip rounded up to 1 s, batches grouped by duration; zero-shot WER first
    "finetune-dynamic": lambda args, out: run_finetune(args, out, {
        "encoder_context_seconds": None, "dynamic_encoder_context": True, "max_duration_in_seconds": 30,
        "evaluate_before_training": args.zero_shot}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "fsdd"))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--eval-samples", type=int, default=300)
    parser.add_argument("--generation-max-length", type=int, default=32)
    parser.add_argument("--model", default="offline:whisper-tiny.en")
    parser.add_argument("--variants", default="baseline,finetune,finetune-lora",
                        help="also: finetune-30s (finetune at the full window), finetune-dynamic")
    parser.add_argument("--max-duration", type=float, default=2.0,
                        help="longest training clip for the fixed 2 s variants (finetune, finetune-lora)")
    parser.add_argument("--zero-shot", action="store_true", help="finetune-dynamic scores the base model first")
    parser.add_argument("--text-column", default="transcript", help="the transcript column (finetune variants)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="dataloader workers on --device cuda")
    parser.add_argument("--out", default=str(ROOT / "scripts" / "results" / "bench_train.json"))
    parser.add_argument("--variant", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.variant:  # child process: one variant, result to a file
        import torch

        torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            result = RUNNERS[args.variant](args, Path(tmp))
        Path(args.result_file).write_text(json.dumps(result))
        return

    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    settings = {k: getattr(args, k) for k in ("data", "steps", "batch_size", "lr", "eval_samples", "threads",
                                               "device", "bf16", "model", "workers")}
    results = previous.get("results", {}) if previous.get("settings") == settings else {}
    for variant in args.variants.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            result_file = handle.name
        command = [sys.executable, __file__, "--variant", variant, "--result-file", result_file,
                   "--data", args.data, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                   "--lr", str(args.lr), "--eval-samples", str(args.eval_samples),
                   "--generation-max-length", str(args.generation_max_length), "--model", args.model,
                   "--threads", str(args.threads), "--device", args.device, "--workers", str(args.workers),
                   "--max-duration", str(args.max_duration), "--text-column", args.text_column]
        command += ["--bf16"] if args.bf16 else []
        command += ["--zero-shot"] if args.zero_shot else []
        print(f"running {variant} ...", flush=True)
        subprocess.run(command, check=True, cwd=ROOT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.threads)})
        results[variant] = json.loads(Path(result_file).read_text())
        os.unlink(result_file)
        _write(out, args, settings, results)  # after every variant: a later failure loses nothing
    _print_table(_write(out, args, settings, results), results)


def _write(out: Path, args: argparse.Namespace, settings: dict, results: dict) -> dict:
    baseline = results.get("baseline")
    for r in results.values():
        if baseline:
            r["throughput_vs_baseline"] = round(r["samples_per_second"] / baseline["samples_per_second"], 2)
            r["wer_vs_baseline_points"] = round(100 * (r["wer"] - baseline["wer"]), 2)
    payload = {"machine": _machine(args), "settings": settings, "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    return payload


def _print_table(payload: dict, results: dict) -> None:
    print(f"\n{payload['machine']}")
    print("| variant | s/step | samples/s | audio s/s | peak RSS MB | peak GPU MB | eval s/clip | WER | throughput vs baseline |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds_per_step']} | {r['samples_per_second']} | {r['audio_seconds_per_second']} | "
              f"{r['peak_rss_mb']} | {r.get('peak_gpu_memory_mb', '-')} | {r['eval_seconds_per_clip']} | "
              f"{r['wer']:.2%} | {r.get('throughput_vs_baseline', '-')}x |")


def _machine(args: argparse.Namespace) -> str:
    import torch

    where = f"{platform.machine()}, {os.cpu_count()} CPU cores, {args.threads} torch threads"
    if args.device == "cuda" and torch.cuda.is_available():
        where = f"{torch.cuda.get_device_name()} ({'bf16' if args.bf16 else 'fp32'}), " + where
    return where + f", torch {torch.__version__}"


if __name__ == "__main__":
    main()
