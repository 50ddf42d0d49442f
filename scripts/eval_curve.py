"""Print a run's learning curve (training loss and every evaluation) from its trainer_state.json.

    python scripts/eval_curve.py outputs/ctc-fsdd [--metrics wer cer_raw]

A Markdown table, for notes and issues: the same numbers training_curve.png draws.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def curve(run_dir: Path, metrics: list[str]) -> str:
    history = json.loads((run_dir / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
    losses = {h["step"]: h["loss"] for h in history if "loss" in h}
    rows = ["| epoch | step | last training loss | " + " | ".join(f"eval {m}" for m in metrics) + " |",
            "|---|---|---|" + "---|" * len(metrics)]
    for entry in history:
        if not any(f"eval_{m}" in entry for m in metrics):
            continue
        step = entry["step"]
        seen = [s for s in losses if s <= step]
        loss = f"{losses[max(seen)]:.3f}" if seen else "-"
        values = " | ".join(f"{entry[f'eval_{m}']:.4f}" if f"eval_{m}" in entry else "-" for m in metrics)
        rows.append(f"| {entry.get('epoch', 0):.2f} | {step} | {loss} | {values} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--metrics", nargs="+", default=["wer", "cer_raw", "loss"])
    args = parser.parse_args()
    print(curve(args.run_dir, args.metrics))
    results = args.run_dir / "eval_results.json"
    if results.is_file():
        final = json.loads(results.read_text(encoding="utf-8"))
        print("\nfinal:", {k: v for k, v in final.items() if not isinstance(v, (dict, list))})


if __name__ == "__main__":
    main()
