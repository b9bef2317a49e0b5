#!/usr/bin/env bash
# Neo4j enrichment figures, on a private Neo4j server (port $BENCH_NEO4J_PORT, default 7689,
# data in .cache/services/neo4j-bench) so the shared test server keeps its data:
#   1. uncached batched look-ups per second (graph/examples/neo4j_lookups.rs);
#   2. the job, file → file on a generated (Zipf-skewed) stream, with Neo4j + cache against
#      the in-memory graph, interleaved, ROUNDS rounds each: throughput, cache hit ratio,
#      per-batch graph wait p99 and the throughput ratio of the medians.
# Usage: scripts/bench-neo4j.sh            (EVENTS=1000000 ROUNDS=3 BATCH=2000 by default;
#        PROFILE=dev uses the test build, whose own crates are not optimised)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${EVENTS:-1000000}
rounds=${ROUNDS:-3}
batch=${BATCH:-2000}
port=${BENCH_NEO4J_PORT:-7689}
profile=${PROFILE:-release}
out=target/$([[ $profile == dev ]] && echo debug || echo "$profile")
bin=$out/riskstream
export NEO4J_PASSWORD=${NEO4J_PASSWORD:-riskstream-test}
export RISKSTREAM__GRAPH__PASSWORD=$NEO4J_PASSWORD

cargo build --profile "$profile" --locked -p riskstream-pipeline --bin riskstream
cargo build --profile "$profile" --locked -p riskstream-graph --example neo4j_lookups

server() { NEO4J_PORT=$port NEO4J_HOME=.cache/services/neo4j-bench scripts/neo4j.sh "$@"; }
server start >/dev/null
trap 'server stop >/dev/null; rm -rf "${dir:-}"' EXIT
uri=bolt://127.0.0.1:$port

data=.cache/bench/data-$events
if [[ ! -f $data/events.jsonl ]]; then
  "$bin" gen --out "$data" --events "$events" --seed 9
fi
"$bin" graph load --quiet --wipe --uri "$uri" --file "$data/graph.jsonl" 2>&1 | sed 's/^/  /'

"$out/examples/neo4j_lookups" "$data/graph.jsonl" "$uri" "$batch" 20

dir=$(mktemp -d)
cat >"$dir/neo4j.toml" <<TOML
[graph]
kind = "neo4j"
uri = "$uri"
TOML
field() { python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k] if v is not None else None
print(v if not isinstance(v, float) else round(v, 3))' "$1" "$2"; }
mem=()
neo=()
for r in $(seq "$rounds"); do
  "$bin" run --quiet --input "$data/events.jsonl" --graph "$data/graph.jsonl" \
    --output "$dir/memory.jsonl" --dead-letter "$dir/dead.jsonl" \
    --summary-json "$dir/memory.json" 2>"$dir/memory.log" || { cat "$dir/memory.log"; exit 1; }
  rate=$(field "$dir/memory.json" events_per_second)
  mem+=("${rate%.*}")
  echo "round $r: memory       ${rate%.*} events/s, graph wait p99 $(field "$dir/memory.json" graph_wait_ms.p99) ms"

  "$bin" run --quiet --config "$dir/neo4j.toml" --input "$data/events.jsonl" \
    --output "$dir/neo4j.jsonl" --dead-letter "$dir/dead.jsonl" \
    --summary-json "$dir/neo4j.json" 2>"$dir/neo4j.log" || { cat "$dir/neo4j.log"; exit 1; }
  rate=$(field "$dir/neo4j.json" events_per_second)
  neo+=("${rate%.*}")
  echo "round $r: neo4j+cache  ${rate%.*} events/s, graph wait p99 $(field "$dir/neo4j.json" graph_wait_ms.p99) ms," \
    "max $(field "$dir/neo4j.json" graph_wait_ms.max) ms, hit ratio $(field "$dir/neo4j.json" graph_cache.hit_ratio)," \
    "unavailable $(field "$dir/neo4j.json" graph_unavailable) of $events"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mm=$(median "${mem[@]}")
mn=$(median "${neo[@]}")
echo "median memory      $mm events/s"
echo "median neo4j+cache $mn events/s"
awk -v n="$mn" -v m="$mm" 'BEGIN {printf "ratio neo4j+cache / memory %.3f\n", n / m}'
