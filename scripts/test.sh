#!/usr/bin/env bash
# Runs every check and test of riskstream on a fresh machine: formatting, lints, unit and
# end-to-end tests. Installs what it needs first (a Rust toolchain with rustfmt and clippy).
# Usage: scripts/test.sh            (from anywhere; it works in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  log "installing Rust (rustup, stable)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# Two cores: build once in the test profile, with dependencies optimised so the
# end-to-end tests run the job at a realistic speed.
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test"
cargo test --workspace --locked

log "all checks passed"
