#!/usr/bin/env bash
# Starts and stops a real Neo4j Community server on 127.0.0.1 for the integration tests. The
# server runs embedded in a tiny Java main (scripts/services/neo4j/Server.java) whose jars are
# pinned in scripts/services/neo4j/pom.xml, fetched with Maven and kept with the data under
# .cache/services/neo4j/ (git-ignored).
#
# Usage: scripts/neo4j.sh start|stop|status
# Bolt:  bolt://127.0.0.1:$NEO4J_PORT, user neo4j, password $NEO4J_PASSWORD (authentication on).
# Environment: NEO4J_PORT (default 7687), NEO4J_PASSWORD (default riskstream-test; applied at
#              every start), NEO4J_HEAP_OPTS (default -Xms256m -Xmx1g),
#              NEO4J_START_TIMEOUT (seconds, default 120),
#              NEO4J_HOME (default .cache/services/neo4j: data, log and pid file; a second
#              server on another NEO4J_PORT needs its own, the jars stay shared).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services/lib.sh
. scripts/services/lib.sh

port=${NEO4J_PORT:-7687}
heap=${NEO4J_HEAP_OPTS:--Xms256m -Xmx1g}
home=${NEO4J_HOME:-.cache/services/neo4j}
lib=.cache/services/neo4j/lib
pidfile=$home/neo4j.pid
log=$home/neo4j.log
main=scripts/services/neo4j/Server.java
export NEO4J_PASSWORD=${NEO4J_PASSWORD:-riskstream-test}

# Neo4j reaches into JDK internals for its page cache and networking.
opens=(
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
)

started() {
  port_open "$port" && grep -q '^Neo4j started' "$log"
}

start() {
  if pid_running "$pidfile" "$main"; then
    say "Neo4j is already running (pid $(<"$pidfile")) on 127.0.0.1:$port"
    return 0
  fi
  need_tools java
  require_free_port "$port" NEO4J_PORT
  mkdir -p "$home" "$(dirname "$lib")"
  fetch_jars scripts/services/neo4j/pom.xml "$lib"
  say "starting Neo4j with Bolt on 127.0.0.1:$port, log in $log"
  # shellcheck disable=SC2086 # the heap options are several words on purpose
  nohup java $heap "${opens[@]}" -cp "$lib/*" "$main" "$home" "$home/data" "$port" \
    >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_ready "${NEO4J_START_TIMEOUT:-120}" "$pidfile" "$main" "$log" started
  say "Neo4j is ready: bolt://127.0.0.1:$port, user neo4j"
}

case ${1:-} in
  start) start ;;
  stop) stop_pid "$pidfile" "$main" 60 Neo4j ;;
  status) report_status "$pidfile" "$main" Neo4j "$port" ;;
  *) die "usage: scripts/neo4j.sh start|stop|status" ;;
esac
