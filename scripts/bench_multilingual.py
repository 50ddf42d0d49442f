#!/usr/bin/env python3
"""Multilingual Whisper end to end, without the Hub: a random Whisper with OpenAI's multilingual vocabulary,
trained on French and German digits that espeak-ng speaks, then checked the ways a user would use it.

    python scripts/make_spoken_digits.py --out outputs/spoken_digits_fr_de --languages fr,de \
        --split train=800 --split test=100
    python scripts/bench_multilingual.py --config configs/whisper_multilingual_digits.yaml \
        --out scripts/results/bench_multilingual.json

1. builds the random model where the config's ``model_name_or_path`` points (unless it exists);
2. ``finetune.train``: labels carry each row's language token; then ``finetune.evaluate`` lets the model detect
   the language and scores each row with its language's normalizer (wer_fr, wer_de, language_accuracy);
3. on the test split: ``Transcriber`` with the language detected and with ``language=`` forced per row, and
   ``transformers.pipeline()`` as the card shows it; how often each agrees with ``evaluate``'s predictions, and
   how often detection picks the row's language.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import yaml


def build_model(target: Path, d_model: int, layers: int) -> None:
    from finetune.models.whisper_vocabulary import multilingual_tiktoken_path, save_random_multilingual_whisper

    save_random_multilingual_whisper(target, d_model=d_model, layers=layers, heads=max(2, d_model // 64),
                                     ffn_dim=4 * d_model, tiktoken_path=multilingual_tiktoken_path())


def test_rows(data: Path, split: str) -> list[dict[str, str]]:
    with open(data / split / "metadata.csv", newline="", encoding="utf-8") as handle:
        return [{**row, "path": str(data / split / row["file_name"])} for row in csv.DictReader(handle)]


def transcribe(model: Path, paths: list[str], **options) -> dict[str, tuple[str, str | None]]:
    """path -> (text, language the transcript reports)."""
    from finetune.inference.transcribe import TranscribeOptions, Transcriber

    transcriber = Transcriber(model, TranscribeOptions(progress=False, scores=True, batch_size=16, **options))
    return {str(result.source): (result.transcript.text if result.transcript else "",
                                 result.transcript.language if result.transcript else None)
            for result in transcriber(paths)}


def pipeline_texts(model: Path, paths: list[str]) -> dict[str, str]:
    from transformers import pipeline

    from finetune.data.audio import load_audio

    asr = pipeline("automatic-speech-recognition", model=str(model))
    audio = [{"raw": load_audio(path, 16000), "sampling_rate": 16000} for path in paths]
    return {path: out["text"] for path, out in zip(paths, asr(audio, batch_size=16))}


def agreement(first: dict[str, str], second: dict[str, str]) -> float:
    from finetune.data.text import scoring_normalizer

    normalize = scoring_normalizer("mul")
    return sum(normalize(first[k]).strip() == normalize(second[k]).strip() for k in first) / max(len(first), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true", help="check an already trained output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()

    import finetune

    config = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    config.update(overrides)
    model_dir, run_dir = Path(config["model_name_or_path"]), Path(config["output_dir"])
    data, split = Path(config["dataset_name"]), config.get("eval_split_name", "test")
    if not (model_dir / "config.json").is_file():
        build_model(model_dir, args.d_model, args.layers)
    started = time.perf_counter()
    if not args.skip_train:
        finetune.train(args.config, **overrides)
    train_seconds = time.perf_counter() - started
    trained = json.loads((run_dir / "eval_results.json").read_text(encoding="utf-8"))
    scored = run_dir / f"eval-{split}"  # what `finetune evaluate` gives on the saved model
    results = finetune.evaluate(run_dir, str(data), split=split, output_dir=scored, batch_size=16,
                                language_column_name=config["language_column_name"])

    rows = test_rows(data, split)[:config.get("max_eval_samples")]
    paths = [row["path"] for row in rows]
    predictions = {row["source_file"]: row["prediction"]
                   for row in map(json.loads, (scored / "predictions.jsonl").read_text().splitlines())}
    evaluated = {path: predictions[Path(path).name] for path in paths}
    detected = transcribe(run_dir, paths)
    forced: dict[str, tuple[str, str | None]] = {}
    for language in sorted({row["language"] for row in rows}):
        chosen = [row["path"] for row in rows if row["language"] == language]
        forced.update(transcribe(run_dir, chosen, language=language))
    piped = pipeline_texts(run_dir, paths)
    truth = {row["path"]: row["language"] for row in rows}
    report = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "config": str(args.config), "overrides": overrides,
        "model": {"d_model": args.d_model, "layers": args.layers},
        "train_seconds": round(train_seconds, 1),
        "train_runtime_s": trained.get("train_runtime_s"),
        "eval_at_end_of_training": {k: v for k, v in trained.items() if k.startswith(("wer", "cer"))},
        "evaluate": {k: v for k, v in results.items() if isinstance(v, (int, float))},
        "test_clips": len(rows),
        "transcribe_detected_language_accuracy": sum(detected[p][1] == truth[p] for p in paths) / len(paths),
        "agreement_with_evaluate": {
            "transcribe_detected": agreement(evaluated, {p: detected[p][0] for p in paths}),
            "transcribe_language_forced": agreement(evaluated, {p: forced[p][0] for p in paths}),
            "pipeline": agreement(evaluated, piped),
        },
        "examples": [{"language": truth[p], "reference": row["text"], "evaluate": evaluated[p],
                      "transcribe": detected[p][0], "detected": detected[p][1], "pipeline": piped[p]}
                     for p, row in list(zip(paths, rows))[:6]],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
