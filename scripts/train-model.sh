#!/usr/bin/env bash
# Reproduces the shipped model in models/riskstream-v1: generates a training set (seed 1)
# and a held-out set (seed 2), trains with seed 42 and evaluates on the held-out set, with
# and without graph answers. The graph dropout is train's default (--graph-dropout 0.2).
# About 1.5 minutes on 2 cores after the release build.
# Usage: scripts/train-model.sh [OUT_DIR]   (default models/riskstream-v1)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/riskstream-v1}
data=${DATA_DIR:-out/model-data}
cargo build --release -p riskstream-pipeline
bin=target/release/riskstream
"$bin" gen --out "$data/train" --seed 1 --events 500000 --accounts 10000
"$bin" gen --out "$data/eval" --seed 2 --events 500000 --accounts 10000
"$bin" train --data "$data/train" --eval-data "$data/eval" --out "$out" --seed 42
