#!/usr/bin/env python3
"""Hallucination guard: WER and hallucinated clips with default decoding and with the guards on.

    python scripts/bench_hallucination.py --model offline:whisper-tiny.en \
        --data ../shared/data/fsdd/test --out scripts/results/bench_hallucination_fsdd.json \
        --setting defaults: \
        --setting guarded:temperature=0,0.2,0.4,0.6,0.8,1.0;compression_ratio_threshold=2.4;log_prob_threshold=-1.0;no_speech_threshold=0.6

``--data`` is an audiofolder (``metadata.csv`` with ``file_name`` and a transcript column). Each
``--setting NAME:KEY=VALUE;...`` is one set of :class:`finetune.inference.transcribe.TranscribeOptions`
fields (a comma list is a tuple, numbers are numbers); all settings run on the same clips in one process,
one after the other, so their times compare.

A clip counts as hallucinated when its normalized output holds text with no counterpart in the speech: an
inserted phrase (two or more consecutive words the word alignment with the reference marks as insertions), a
stock phrase Whisper writes over non-speech ("thank you", "thanks for watching", "bye", ...) that the reference
does not hold, or a repetition loop (a word 2-gram occurring twice or more beyond the reference's count, or one
word three times or more beyond it). Misheard words (substitutions: "sven" for "seven", a mangled name) are
recognition errors, counted by WER. The stricter count of clips holding any word not in the reference is
reported beside it (``clips_with_foreign_words``). Each clip's output is kept in the report, so another rule
can be applied without decoding again.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import platform
import time
from collections import Counter
from pathlib import Path

from finetune.data.text import scoring_normalizer
from finetune.evaluation.metrics import asr_metrics
from finetune.inference.transcribe import TranscribeOptions, Transcriber


def parse_setting(spec: str) -> tuple[str, dict]:
    """``name:key=value;key=value`` -> (name, TranscribeOptions keyword arguments)."""
    name, _, body = spec.partition(":")
    options: dict = {}
    for item in filter(None, (part.strip() for part in body.split(";"))):
        key, _, value = item.partition("=")
        options[key.strip()] = _value(value.strip())
    return name, options


def _value(text: str):
    if "," in text:
        return tuple(_value(part) for part in text.split(","))
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


# phrases Whisper writes over silence and noise (its training subtitles' sign-offs), normalized
STOCK_PHRASES = ("thank you", "thanks for watching", "thank you for watching", "see you next time", "subscribe",
                 "bye", "the end")


def hallucinated(output: str, reference: str) -> bool:
    """Whether ``output`` (normalized) holds an inserted phrase, a stock non-speech phrase ``reference`` lacks,
    or repeats itself beyond it."""
    import jiwer

    out, ref = output.split(), reference.split()
    if not out:
        return False
    if ref:
        chunks = jiwer.process_words(reference, output).alignments[0]
        if any(c.type == "insert" and c.hyp_end_idx - c.hyp_start_idx >= 2 for c in chunks):
            return True
    padded_out, padded_ref = f" {' '.join(out)} ", f" {' '.join(ref)} "
    if any(f" {phrase} " in padded_out and f" {phrase} " not in padded_ref for phrase in STOCK_PHRASES):
        return True
    extra_words = Counter(out) - Counter(ref)
    extra_pairs = Counter(itertools.pairwise(out)) - Counter(itertools.pairwise(ref))
    return any(n >= 3 for n in extra_words.values()) or any(n >= 2 for n in extra_pairs.values())


def read_clips(folder: Path, text_column: str) -> list[tuple[Path, str]]:
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = [(folder / row["file_name"], row[text_column]) for row in csv.DictReader(handle)]
    return rows


def run_setting(model: str, clips: list[tuple[Path, str]], options: dict, batch_size: int) -> dict:
    normalize = scoring_normalizer("en")
    transcriber = Transcriber(model, TranscribeOptions(batch_size=batch_size, progress=False, **options))
    started = time.perf_counter()
    results = list(transcriber([path for path, _ in clips]))
    seconds = time.perf_counter() - started
    texts = {result.source: (result.transcript.text if result.transcript else "") for result in results}
    figures = {Path(result.source).name: result.transcript.scores.to_dict()
               for result in results if result.transcript and result.transcript.scores}
    predictions = [texts.get(path, "") for path, _ in clips]
    references = [text for _, text in clips]
    pairs = [(normalize(out), normalize(ref)) for out, ref in zip(predictions, references)]
    flagged = [str(path.name) for (path, _), (out, ref) in zip(clips, pairs) if hallucinated(out, ref)]
    foreign = sum(bool(set(out.split()) - set(ref.split())) for out, ref in pairs)
    scores = asr_metrics(predictions, references)
    return {"options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "clips": len(clips), "wer": round(scores["wer"], 4), "hallucinated_clips": len(flagged),
            "clips_with_foreign_words": foreign,
            "seconds": round(seconds, 2), "seconds_per_clip": round(seconds / len(clips), 4),
            "hallucinated_examples": flagged[:10],
            "outputs": {path.name: out for (path, _), out in zip(clips, predictions)},
            **({"scores": figures} if figures else {})}


def rescore(report_path: Path, data: Path, text_column: str) -> None:
    """Apply this rule again to a saved report's outputs (its ``every`` clips) and rewrite its counts."""
    normalize = scoring_normalizer("en")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    references = {path.name: text for path, text in read_clips(data, text_column)}
    for result in report["results"].values():
        pairs = [(normalize(out), normalize(references[name])) for name, out in result["outputs"].items()]
        flagged = [name for name, (out, ref) in zip(result["outputs"], pairs) if hallucinated(out, ref)]
        result["hallucinated_clips"], result["hallucinated_examples"] = len(flagged), flagged[:10]
        result["clips_with_foreign_words"] = sum(bool(set(o.split()) - set(r.split())) for o, r in pairs)
    report["rule"] = hallucinated.__doc__
    report_path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


def tune(report_path: Path, data: Path, text_column: str, setting: str) -> list[dict]:
    """Each (no_speech_threshold, log_prob_threshold) pair applied to a saved run's per-clip scores (a run with
    ``scores=true`` at temperature 0, on held-out clips): a clip's text is dropped when its no-speech
    probability is above the first and its average log-probability below the second, the rule
    openai-whisper and faster-whisper apply. Rows sorted fewest hallucinated clips first, then lowest WER."""
    normalize = scoring_normalizer("en")
    result = json.loads(report_path.read_text(encoding="utf-8"))["results"][setting]
    if "scores" not in result:
        raise ValueError(f"{report_path}: setting {setting!r} was run without scores=true; nothing to tune on")
    references = {path.name: text for path, text in read_clips(data, text_column)}
    names = list(result["outputs"])
    rows = []
    for no_speech, log_prob in itertools.product((0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6),
                                                 (-1.0, -0.8, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1, 0.0)):
        kept = []
        for name in names:
            figures = result["scores"].get(name)
            skip = figures is not None and figures["no_speech_prob"] > no_speech and figures["avg_logprob"] < log_prob
            kept.append("" if skip else result["outputs"][name])
        refs = [references[name] for name in names]
        flagged = sum(hallucinated(normalize(out), normalize(ref)) for out, ref in zip(kept, refs))
        rows.append({"no_speech_threshold": no_speech, "log_prob_threshold": log_prob,
                     "wer": round(asr_metrics(kept, refs)["wer"], 4), "hallucinated_clips": flagged,
                     "emptied": sum(not out.strip() for out in kept)})
    return sorted(rows, key=lambda row: (row["hallucinated_clips"], row["wer"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", type=Path, required=True, help="audiofolder with metadata.csv")
    parser.add_argument("--text-column", default="transcript")
    parser.add_argument("--setting", action="append", default=[], help="NAME:KEY=VALUE;KEY=VALUE")
    parser.add_argument("--limit", type=int, default=None, help="first N clips only")
    parser.add_argument("--every", type=int, default=1, help="every N-th clip only (a spread over a sorted set)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rescore", action="store_true", help="re-apply the rule to --out's saved outputs only")
    parser.add_argument("--tune", metavar="SETTING",
                        help="try skip thresholds on --out's saved SETTING (run with scores=true); print the table")
    args = parser.parse_args()
    if args.tune:
        for row in tune(args.out, args.data, args.text_column, args.tune):
            print(json.dumps(row))
        return
    if args.rescore:
        rescore(args.out, args.data, args.text_column)
        return
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    clips = read_clips(args.data, args.text_column)[::args.every][:args.limit]
    import torch

    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    results: dict = {}
    for spec in args.setting:
        name, options = parse_setting(spec)
        results[name] = run_setting(args.model, clips, options, args.batch_size)
        print(name, json.dumps({k: v for k, v in results[name].items()
                                if k not in ("hallucinated_examples", "outputs", "scores")}))
        report = {"machine": machine, "model": args.model, "data": str(args.data), "rule": hallucinated.__doc__,
                  "results": results}
        args.out.parent.mkdir(parents=True, exist_ok=True)  # after each setting: a long run keeps what it did
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

if __name__ == "__main__":
    main()
