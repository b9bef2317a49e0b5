#!/usr/bin/env bash
# Starts and stops a real Apache Kafka broker (KRaft, one node acting as broker and
# controller) on 127.0.0.1 for the integration tests. The broker jars are pinned in
# scripts/services/kafka/pom.xml, fetched with Maven and kept with the data under
# .cache/services/kafka/ (git-ignored).
#
# Usage: scripts/kafka.sh start|stop|status
#        scripts/kafka.sh tool <main-class> [args...]   runs a Kafka tool from the same jars,
#          e.g. tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
# Environment: KAFKA_PORT (default 9092; the controller listens on KAFKA_PORT+1),
#              KAFKA_HEAP_OPTS (default -Xms256m -Xmx512m), KAFKA_START_TIMEOUT (seconds, 90).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/services/lib.sh
. scripts/services/lib.sh

port=${KAFKA_PORT:-9092}
controller_port=$((port + 1))
heap=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
home=.cache/services/kafka
lib=$home/lib
data=$home/data
pidfile=$home/kafka.pid
log=$home/kafka.log
main=kafka.Kafka

# Runs a main class from the broker's jars with quiet (warnings only) logging.
tool() {
  java -Dlog4j.configuration="file:$PWD/$home/tools-log4j.properties" -cp "$lib/*" "$@"
}

cluster_answers() {
  tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$port" --list
}

write_config() {
  cat >"$home/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$PWD/$data
num.partitions=1
# Generated events carry timestamps of their own calendar, often long past: keep every
# message whatever its age, so that tests and demos never lose data to retention.
log.retention.ms=-1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$home/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  cat >"$home/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
}

start() {
  if pid_running "$pidfile" "$main"; then
    say "Kafka is already running (pid $(<"$pidfile")) on 127.0.0.1:$port"
    return 0
  fi
  need_tools java
  require_free_port "$port" KAFKA_PORT
  require_free_port "$controller_port" KAFKA_PORT
  mkdir -p "$home"
  fetch_jars scripts/services/kafka/pom.xml "$lib"
  write_config
  if [[ ! -f $data/meta.properties ]]; then
    say "formatting KRaft storage in $data"
    tool kafka.tools.StorageTool format --ignore-formatted \
      -t "$(tool kafka.tools.StorageTool random-uuid)" -c "$home/server.properties"
  fi
  say "starting Kafka on 127.0.0.1:$port (controller :$controller_port), log in $log"
  # shellcheck disable=SC2086 # the heap options are several words on purpose
  nohup java $heap -Dlog4j.configuration="file:$PWD/$home/log4j.properties" \
    -cp "$lib/*" "$main" "$home/server.properties" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  wait_ready "${KAFKA_START_TIMEOUT:-90}" "$pidfile" "$main" "$log" port_open "$port"
  wait_ready "${KAFKA_START_TIMEOUT:-90}" "$pidfile" "$main" "$log" cluster_answers
  say "Kafka is ready on 127.0.0.1:$port"
}

case ${1:-} in
  start) start ;;
  stop) stop_pid "$pidfile" "$main" 30 Kafka ;;
  status) report_status "$pidfile" "$main" Kafka "$port" ;;
  tool)
    shift
    [[ $# -ge 1 ]] || die "usage: scripts/kafka.sh tool <main-class> [args...]"
    [[ -f $lib/.complete ]] || die "Kafka's jars are not fetched yet; run scripts/kafka.sh start"
    tool "$@"
    ;;
  *) die "usage: scripts/kafka.sh start|stop|status|tool <main-class> [args...]" ;;
esac
