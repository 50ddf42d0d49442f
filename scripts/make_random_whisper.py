"""A Whisper with random weights but a real model's architecture, tokenizer and processor.

    python scripts/make_random_whisper.py SOURCE_DIR TARGET_DIR

For throughput benchmarks on machines that cannot hold or fetch the real weights (the GPU benchmark
machine takes 64 MiB of files; tiny.en's weights are 151 MB): speed and memory do not depend on the
weight values. SOURCE_DIR needs config.json plus the tokenizer/processor files, not the weights.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    WhisperForConditionalGeneration(WhisperConfig.from_pretrained(args.source)).save_pretrained(args.target)
    for path in args.source.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy(path, args.target / path.name)
    print(f"random-weight Whisper at {args.target}")


if __name__ == "__main__":
    main()
