#!/usr/bin/env bash
# Runs every check and test of riskstream on a fresh machine: formatting, lints, unit and
# end-to-end tests, and the integration tests against a real Kafka broker and a real Neo4j
# server. Installs what it needs first (a Rust toolchain with rustfmt and clippy, the
# OpenSSL headers the Kafka client builds against, Chromium for the replay report test),
# starts both services on loopback (jars from Maven Central, cached in .cache/services) and
# stops them again at the end, also when a test fails.
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

if ! pkg-config --exists openssl 2>/dev/null; then
  log "installing the OpenSSL headers (libssl-dev, pkg-config) for the Kafka client"
  sudo_if_needed() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
  sudo_if_needed apt-get update -qq
  sudo_if_needed apt-get install -y -qq libssl-dev pkg-config
fi

log "Chromium for the replay report test"
scripts/install-chromium.sh

# Two cores: build once in the test profile, with dependencies optimised so the
# end-to-end tests run the job at a realistic speed.
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# A one-off build gains nothing from incremental state, which costs gigabytes of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# The build and the services' data need room; warn plainly up front, since a full disk
# otherwise shows up only as a write error in the middle of a compile.
need_kb=$((5 * 1024 * 1024))
free_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [[ -n $free_kb && $free_kb -lt $need_kb ]]; then
  printf 'warning: only %s MiB free on this disk; the build and tests need about 4 GiB.\n' \
    "$((free_kb / 1024))" >&2
  printf '         If the build fails with "No space left on device", free some space\n' >&2
  printf '         (cargo clean, old clones) and run scripts/test.sh again.\n' >&2
fi
log "disk: $((free_kb / 1024 / 1024)) GiB free"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building the riskstream binary the integration tests drive"
cargo build --workspace --locked --bins

stop_services() {
  log "stopping the test services"
  scripts/kafka.sh stop || true
  scripts/neo4j.sh stop || true
}
trap stop_services EXIT
log "starting Kafka on loopback"
scripts/kafka.sh start
log "starting Neo4j on loopback"
scripts/neo4j.sh start

log "cargo test"
cargo test --workspace --locked

log "latency benchmark, quick form (figures printed, not asserted)"
target/debug/riskstream bench --kafka --latency --quick --data target/bench-quick

log "all checks passed"
