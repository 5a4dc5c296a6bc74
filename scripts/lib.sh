# shellcheck shell=bash
# Shared by the caas scripts: paths, logging, PID files and waiting. Sourced, never run.

set -euo pipefail

CAAS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Everything the scripts create at run time lives here (git-ignored): data, logs, PIDs, secrets.
RUN_DIR="${CAAS_RUN_DIR:-$CAAS_ROOT/.caas}"
PID_DIR="$RUN_DIR/pids"
LOG_DIR="$RUN_DIR/logs"
SECRETS_DIR="$RUN_DIR/secrets"
ENV_FILE="$RUN_DIR/env"

# Default addresses from the brief. All of them can be overridden from the environment.
: "${CAAS_ZK_PORT:=2181}"
: "${CAAS_MYSQL_PORT:=3306}"
: "${CAAS_REGISTRY_ADDR:=127.0.0.1:5000}"
: "${CAAS_DOCKER_SOCK:=/var/run/docker.sock}"
MYSQL_SOCK="$RUN_DIR/mysql.sock"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# pid_alive NAME: true if our PID file for NAME names a running process.
pid_alive() {
    local f="$PID_DIR/$1.pid"
    [[ -s "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
}

# start_daemon NAME CMD...: start CMD in its own session, output to logs/NAME.log, PID to pids/NAME.pid.
start_daemon() {
    local name="$1"; shift
    mkdir -p "$PID_DIR" "$LOG_DIR"
    setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
    echo $! > "$PID_DIR/$name.pid"
}

# wait_for WHAT SECONDS CMD...: poll CMD every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
    local what="$1" secs="$2"; shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if (( SECONDS >= deadline )); then
            die "$what did not answer within ${secs}s (logs: $LOG_DIR)"
        fi
        sleep 0.2
    done
}

# secret NAME: print the generated secret NAME, creating it on first use (never committed).
secret() {
    local f="$SECRETS_DIR/$1"
    if [[ ! -s "$f" ]]; then
        mkdir -p "$SECRETS_DIR"; chmod 700 "$SECRETS_DIR"
        (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24 > "$f")
    fi
    cat "$f"
}

zk_ok() { [[ "$(echo ruok | nc -w 2 127.0.0.1 "$CAAS_ZK_PORT" 2>/dev/null)" == imok ]]; }
docker_ok() { docker -H "unix://$CAAS_DOCKER_SOCK" info >/dev/null 2>&1; }
registry_ok() { curl -fsS "http://$CAAS_REGISTRY_ADDR/v2/" >/dev/null 2>&1; }
mysql_root() { mariadb --protocol=socket --socket="$MYSQL_SOCK" -uroot "$@"; }
mysql_ok() { mysql_root -e 'select 1' >/dev/null 2>&1; }
