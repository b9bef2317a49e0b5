# shellcheck shell=bash
# Shell helpers shared by scripts/kafka.sh and scripts/neo4j.sh: fetching pinned jars with
# Maven, and starting, waiting for and stopping one background Java process per service.
# Sourced, not run. Every service keeps its files under .cache/services/<name>/.

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Fails early, with the fix, when a tool the services need is not installed.
need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 ||
      die "'$tool' is not installed; install a Java 17 JDK and Maven, then retry"
  done
}

# Copies the runtime jars of <pom> into <lib> once. A stamp file marks a complete copy, so an
# interrupted download is redone, and editing the pom (a new pinned version) refreshes it.
fetch_jars() {
  local pom=$1 lib=$2
  if [[ -f $lib/.complete && $lib/.complete -nt $pom ]]; then
    return 0
  fi
  local mvn_log=$lib.maven.log
  need_tools mvn
  say "fetching jars for $pom into $lib (first run downloads from Maven Central)"
  rm -rf "$lib"
  # Quiet Maven still prints stray colour codes, so its output is kept for failures only.
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DoutputDirectory="$PWD/$lib" \
    >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    die "Maven could not fetch the jars of $pom (output above, also in $mvn_log)"
  fi
  touch "$lib/.complete"
}

# True when the process named in <pidfile> is alive and still runs <main> (so a pid reused by
# an unrelated process after a crash is not mistaken for the service).
pid_running() {
  local pidfile=$1 main=$2 pid
  [[ -f $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null &&
    ps -p "$pid" -o args= 2>/dev/null | grep -qF -- "$main"
}

# True when something accepts TCP connections on 127.0.0.1:<port>.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Fails when another program already listens on <port>, which would make the service fail
# to bind and leave only a confusing log behind.
require_free_port() {
  local port=$1 variable=$2
  ! port_open "$port" ||
    die "port $port is already in use by another program; stop it or set $variable"
}

# Runs <check...> every second until it succeeds. Fails with the log tail when the process
# in <pidfile> dies or <timeout> seconds pass; a process too slow to start is stopped, so a
# failed start never leaves a half-ready service behind.
wait_ready() {
  local timeout=$1 pidfile=$2 main=$3 log=$4
  shift 4
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! pid_running "$pidfile" "$main"; then
      rm -f "$pidfile"
      tail -n 40 "$log" >&2 || true
      die "the service exited while starting; its log ($log) ends as shown above"
    fi
    if ((SECONDS >= deadline)); then
      stop_pid "$pidfile" "$main" 10 "the unready service"
      tail -n 40 "$log" >&2 || true
      die "the service was not ready after ${timeout}s; its log ($log) ends as shown above"
    fi
    sleep 1
  done
}

# Stops the process in <pidfile>: SIGTERM, then SIGKILL after <timeout> seconds. Doing nothing
# when it is not running makes stop idempotent.
stop_pid() {
  local pidfile=$1 main=$2 timeout=$3 name=$4 pid
  if ! pid_running "$pidfile" "$main"; then
    say "$name is not running"
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      say "$name did not stop within ${timeout}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 1
  done
  rm -f "$pidfile"
  say "$name stopped"
}

# report_status PIDFILE MAIN NAME PORT: says whether the service runs; exit 1 when not.
report_status() {
  if pid_running "$1" "$2"; then
    say "$3 is running (pid $(<"$1")) on 127.0.0.1:$4"
  else
    say "$3 is not running"
    exit 1
  fi
}
