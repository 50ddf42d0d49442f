#!/usr/bin/env bash
# bf16 training throughput on one GPU: finetune's short-clip paths against the transformers-example baseline.
#
#   bash scripts/bench_train_gpu.sh WHISPER_DIR [BATCH] [STEPS]
#
# WHISPER_DIR is tiny.en (or any Whisper) without or with weights; without them, random weights of the same
# architecture are made first (speed and memory do not depend on the values; WER is then meaningless).
# Uses the shipped FSDD sample so that it runs where ../shared is absent. Writes scripts/results/.
set -euo pipefail
model=${1:?WHISPER_DIR}; batch=${2:-16}; steps=${3:-200}
if [ ! -f "$model/model.safetensors" ]; then
  python3 scripts/make_random_whisper.py "$model" /tmp/whisper-random && model=/tmp/whisper-random
fi
python3 scripts/bench_train.py --model "$model" --data finetune/samples/fsdd --device cuda --bf16 \
  --steps "$steps" --batch-size "$batch" --eval-samples 60 --threads 4 --workers 2 \
  --variants baseline,finetune,finetune-lora --out "scripts/results/bench_train_gpu_b${batch}.json"
