#!/usr/bin/env bash
# Build check of the `cuda` feature on a machine without a GPU, so that a change that breaks
# the CUDA path fails the test command. Installs the CUDA 13.0 compiler from PyPI into
# .cache/cuda (once), points candle's build at it and checks the whole workspace with the
# `cuda` feature of the riskstream binary, in its own target folder (target/cuda) so the
# normal build's features are neither unified with it nor rebuilt.
#
# `cargo check`, not `cargo build`: candle enables cudarc's `dynamic-linking`, so linking a
# binary needs libcuda (the driver), libcublas, libcublasLt, libcurand and libnvrtc, which a
# machine without a GPU and without the full toolkit does not have. `check` still runs
# candle-kernels' build script, so every kernel is compiled by nvcc for sm_90, and it
# type-checks every crate and test with the feature on.
# Usage: scripts/cuda-check.sh            (from anywhere; it works in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

cuda_dir=${RISKSTREAM_CUDA_DIR:-$PWD/.cache/cuda}
nvcc_root=$cuda_dir/nvidia/cu13
if [[ ! -x $nvcc_root/bin/nvcc ]]; then
  printf '\n==> installing the CUDA 13.0 compiler into %s\n' "$cuda_dir"
  python3 -m pip install --quiet --no-deps --target "$cuda_dir" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
fi

export CUDA_ROOT=$nvcc_root CUDA_PATH=$nvcc_root CUDA_HOME=$nvcc_root
export PATH=$nvcc_root/bin:$PATH
# There is no GPU to ask: build for Hopper (H100/H200), the GPUs the job is measured on.
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CARGO_TARGET_DIR=${RISKSTREAM_CUDA_TARGET:-$PWD/target/cuda}

printf '\n==> cargo check --features cuda (nvcc %s, compute capability %s)\n' \
  "$("$nvcc_root/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')" "$CUDA_COMPUTE_CAP"
cargo check --locked -p riskstream-pipeline -p riskstream-inference --all-targets --features cuda
