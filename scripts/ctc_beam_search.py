"""Score a saved CTC model greedily and with beam search + a word n-gram LM built from training text.

    python scripts/ctc_beam_search.py outputs/ctc-fsdd --data ../shared/data/fsdd --lm-order 2

Needs pyctcdecode and kenlm (``pip install pyctcdecode kenlm``; on numpy 2 install pyctcdecode with
``--no-deps`` plus pygtrie). Writes eval_results.json + predictions.jsonl for each decoding under
``<model>/beam-search/`` and prints the two WERs side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from finetune.config import DataArguments
from finetune.data.sources import TEXT_COLUMN_CANDIDATES, find_column, load_source
from finetune.data.text import get_normalizer
from finetune.evaluation.ctc_decoding import CTCDecodingArguments, write_arpa
from finetune.tasks import get_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", required=True, help="the dataset the model was trained on")
    parser.add_argument("--train-split", default="train", help="transcripts the LM is built from")
    parser.add_argument("--split", default="test")
    parser.add_argument("--text-column", default=None)
    parser.add_argument("--text-normalization", default="none", help="as in training")
    parser.add_argument("--lm-order", type=int, default=2)
    parser.add_argument("--lm-alpha", type=float, default=0.5)
    parser.add_argument("--lm-beta", type=float, default=1.0)
    parser.add_argument("--beam-width", type=int, default=32)
    args = parser.parse_args()

    out = args.model_dir / "beam-search"
    train = load_source(args.data, args.train_split)
    column = args.text_column or find_column(train.column_names, TEXT_COLUMN_CANDIDATES, what="transcript")
    normalize = get_normalizer(args.text_normalization)
    lm = write_arpa([normalize(str(t)) for t in train[column]], out / "language_model.arpa", order=args.lm_order)

    figures = {}
    for name, decoding in [
        ("greedy", CTCDecodingArguments()),
        ("beam+lm", CTCDecodingArguments(decoding="beam", lm_path=str(lm), lm_alpha=args.lm_alpha,
                                         lm_beta=args.lm_beta, beam_width=args.beam_width)),
    ]:
        data_args = DataArguments(dataset_name=args.data, eval_split_name=args.split, text_column_name=column,
                                  text_normalization=args.text_normalization)
        payload = get_task("asr_ctc").evaluate(str(args.model_dir), data_args, str(out / name),
                                               groups={CTCDecodingArguments: decoding})
        figures[name] = {k: payload[k] for k in ("wer", "cer_raw", "num_samples", "runtime_s")}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
