#!/usr/bin/env bash
# Kafka throughput: the job from a 4-partition topic to the results topic, against a plain
# consume → produce passthrough of the same messages (the job's own consumer, producer and
# acknowledgement path, no processing), interleaved in the same session, ROUNDS rounds each.
# Prints every run, the medians and their ratio.
# Usage: scripts/bench-kafka.sh            (EVENTS=1000000 ROUNDS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${EVENTS:-1000000}
rounds=${ROUNDS:-3}
bin=target/release/riskstream
tag="$(date +%s)-$$"

cargo build --release --locked -p riskstream-pipeline
scripts/kafka.sh start >/dev/null

data=.cache/bench/data-$events
if [[ ! -f $data/events.jsonl ]]; then
  "$bin" gen --out "$data" --events "$events" --seed 9
fi
input=bench-events-$tag
"$bin" produce --quiet --topic "$input" --partitions 4 --input "$data/events.jsonl"

config() { # group results-topic
  cat <<TOML
[source]
kind = "kafka"
[sink]
kind = "kafka"
[dead_letter]
kind = "kafka"
[graph]
kind = "memory"
path = "$data/graph.jsonl"
[kafka]
group_id = "$1"
input_topics = ["$input"]
results_topic = "$2"
dead_letter_topic = "$2-dead"
create_topics = true
partitions = 4
TOML
}

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
job=()
pass=()
for r in $(seq "$rounds"); do
  config "bench-job-$r-$tag" "bench-results-job-$r-$tag" >"$dir/job.toml"
  "$bin" run --quiet --config "$dir/job.toml" --max-events "$events" \
    --summary-json "$dir/summary.json" 2>"$dir/job.log" || { cat "$dir/job.log"; exit 1; }
  rate=$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["events_per_second"]))' "$dir/summary.json")
  job+=("$rate")
  echo "round $r: job         $rate events/s"

  config "bench-pass-$r-$tag" "bench-results-pass-$r-$tag" >"$dir/pass.toml"
  "$bin" passthrough --config "$dir/pass.toml" --max-events "$events" 2>"$dir/pass.log" \
    || { cat "$dir/pass.log"; exit 1; }
  rate=$(awk '/throughput/ {print $2}' "$dir/pass.log")
  pass+=("$rate")
  echo "round $r: passthrough $rate events/s"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mj=$(median "${job[@]}")
mp=$(median "${pass[@]}")
echo "median job         $mj events/s"
echo "median passthrough $mp events/s"
awk -v j="$mj" -v p="$mp" 'BEGIN {printf "ratio job / passthrough %.3f\n", j / p}'
