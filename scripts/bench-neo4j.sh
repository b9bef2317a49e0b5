#!/usr/bin/env bash
# Neo4j enrichment figures, on a private Neo4j server (port $BENCH_NEO4J_PORT, default 7689,
# data in .cache/services/neo4j-bench) so the shared test server keeps its data:
#   1. uncached batched look-ups per second (graph/examples/neo4j_lookups.rs);
#   2. the cache warm-up: the answers for the whole graph in two queries;
#   3. the job, file → file on a generated (Zipf-skewed) stream, with Neo4j + a warmed cache
#      and Neo4j + a cold cache against the in-memory graph, interleaved, ROUNDS rounds each:
#      throughput, cache hit ratio, per-batch graph wait p99, events scored without graph
#      features, and the throughput ratio of the medians.
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
cat >"$dir/cold.toml" <<TOML
[graph]
kind = "neo4j"
uri = "$uri"
cache_warm_up = false
TOML
field() { python3 -c 'import json,sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[k] if v is not None else None
print(v if not isinstance(v, float) else round(v, 3))' "$1" "$2"; }
mem=()
neo=()
cold=()
for r in $(seq "$rounds"); do
  started=$(date +%s.%N)
  "$bin" run --quiet --input "$data/events.jsonl" --graph "$data/graph.jsonl" \
    --output "$dir/memory.jsonl" --dead-letter "$dir/dead.jsonl" \
    --summary-json "$dir/memory.json" 2>"$dir/memory.log" || { cat "$dir/memory.log"; exit 1; }
  rate=$(field "$dir/memory.json" events_per_second)
  mem+=("${rate%.*}")
  wall=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
  echo "round $r: memory           ${rate%.*} events/s (process wall ${wall} s, graph load included)," \
    "graph wait p99 $(field "$dir/memory.json" graph_wait_ms.p99) ms"

  for kind in neo4j cold; do
    started=$(date +%s.%N)
    "$bin" run --quiet --config "$dir/$kind.toml" --input "$data/events.jsonl" \
      --output "$dir/$kind.jsonl" --dead-letter "$dir/dead.jsonl" \
      --summary-json "$dir/$kind.json" 2>"$dir/$kind.log" || { cat "$dir/$kind.log"; exit 1; }
    wall=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
    rate=$(field "$dir/$kind.json" events_per_second)
    if [[ $kind == neo4j ]]; then neo+=("${rate%.*}"); label="neo4j+warm cache"; else cold+=("${rate%.*}"); label="neo4j+cold cache"; fi
    echo "round $r: $label ${rate%.*} events/s (process wall ${wall} s, warm-up included)," \
      "graph wait p99 $(field "$dir/$kind.json" graph_wait_ms.p99) ms, max $(field "$dir/$kind.json" graph_wait_ms.max) ms," \
      "hit ratio $(field "$dir/$kind.json" graph_cache.hit_ratio), preloaded $(field "$dir/$kind.json" graph_cache.preloaded)," \
      "unavailable $(field "$dir/$kind.json" graph_unavailable) of $events"
  done
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mm=$(median "${mem[@]}")
mn=$(median "${neo[@]}")
mc=$(median "${cold[@]}")
echo "median memory           $mm events/s"
echo "median neo4j+warm cache $mn events/s"
echo "median neo4j+cold cache $mc events/s"
awk -v n="$mn" -v m="$mm" 'BEGIN {printf "ratio neo4j+warm cache / memory %.3f\n", n / m}'
awk -v n="$mc" -v m="$mm" 'BEGIN {printf "ratio neo4j+cold cache / memory %.3f\n", n / m}'
