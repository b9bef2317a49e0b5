#!/usr/bin/env bash
# Kafka throughput: the job from a 4-partition topic to the results topic, against a plain
# consume → produce passthrough of the same messages (the job's own consumer, producer and
# acknowledgement path, no processing), interleaved in the same session. Builds the release
# binary, starts the local broker if it is not running, and runs `riskstream bench --kafka`,
# which prints every run, the medians and their ratio.
# Usage: scripts/bench-kafka.sh [--property KEY=VALUE ...]   (EVENTS=1000000 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p riskstream-pipeline
scripts/kafka.sh start >/dev/null
exec target/release/riskstream bench --kafka --events "${EVENTS:-1000000}" \
  --rounds "${ROUNDS:-3}" --data .cache/bench "$@"
