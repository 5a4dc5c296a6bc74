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

# pid_alive NAME: true if our PID file for NAME names a running process (a zombie, killed and
# waiting for its reaper, is not running).
pid_alive() {
    local f="$PID_DIR/$1.pid"
    [[ -s "$f" ]] || return 1
    [[ "$(proc_state "$(cat "$f")")" =~ ^[^ZX]$ ]]
}

# proc_state PID: the process's state letter (R, S, D, Z, ...), empty when there is none.
proc_state() { sed -n 's/^.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true; }

# ours_starting NAME OK_FN: if our NAME daemon (its PID file) is alive but does not answer yet
# (starting, or slow on a loaded machine), wait for OK_FN rather than start a second copy, which
# would fail to bind and overwrite the PID file of the one that runs.
# If it exits meanwhile (it was shutting down), false: the caller starts a new one.
ours_starting() {
    pid_alive "$1" || return 1
    local pid deadline=$((SECONDS + 60))
    pid="$(cat "$PID_DIR/$1.pid")"
    log "$1: ours (pid $pid) is running; waiting for it to answer"
    # OK_FN may carry arguments ("engine_ok 2"): split on purpose.
    # shellcheck disable=SC2086
    until $2 >/dev/null 2>&1; do
        if ! pid_alive "$1"; then
            log "$1: pid $pid exited (it was stopping); starting a new one"
            return 1
        fi
        (( SECONDS < deadline )) || die "$1 (pid $pid) runs but did not answer within 60s (logs: $LOG_DIR)"
        sleep 0.2
    done
}

# answers NAME OK_FN: NAME answers now, or ours is still coming up and answers soon.
# shellcheck disable=SC2086
answers() { $2 >/dev/null 2>&1 || ours_starting "$1" "$2"; }

# private_dirs: RUN_DIR and the directories under it that hold logs, PIDs and secrets exist and
# are 0700 (owner only): logs may quote requests and errors, and everything secret lives here.
private_dirs() {
    mkdir -p "$RUN_DIR" "$PID_DIR" "$LOG_DIR" "$SECRETS_DIR"
    chmod 700 "$RUN_DIR" "$PID_DIR" "$LOG_DIR" "$SECRETS_DIR"
}

# start_daemon NAME [VAR=VALUE...] CMD...: start CMD in its own session with an environment of
# PATH, HOME, LANG and the VAR=VALUE given, nothing else (least privilege: a daemon never sees the
# secrets of the shell that starts it, e.g. a sourced .caas/env); output to logs/NAME.log (0600),
# PID to pids/NAME.pid (`setsid` and `env` exec, so it is the daemon's own).
start_daemon() {
    local name="$1"; shift
    local vars=()
    while (( $# > 0 )) && [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do vars+=("$1"); shift; done
    private_dirs
    (umask 077; : >>"$LOG_DIR/$name.log")
    setsid env -i PATH="$PATH" HOME="${HOME:-/root}" LANG="${LANG:-C.UTF-8}" "${vars[@]}" "$@" \
        >>"$LOG_DIR/$name.log" 2>&1 < /dev/null &
    echo $! > "$PID_DIR/$name.pid"
}

# passed NAME|PREFIX*...: NAME=VALUE for each exported variable named (or, for PREFIX*, each
# whose name starts with PREFIX), one per line, for start_daemon's explicit environment.
passed() {
    local want name
    for want in "$@"; do
        if [[ "$want" == *'*' ]]; then
            while read -r name; do
                [[ "$name" == "${want%'*'}"* ]] && printf '%s=%s\n' "$name" "${!name}"
            done < <(compgen -e)
        elif compgen -e | grep -qx -- "$want"; then
            printf '%s=%s\n' "$want" "${!want}"
        fi
    done
}

# wait_for WHAT SECONDS CMD...: poll CMD every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
    local what="$1" secs="$2"; shift 2
    within "$secs" "$@" || die "$what did not answer within ${secs}s (logs: $LOG_DIR)"
}

# within SECONDS CMD...: poll CMD every 0.2 s; false if it has not succeeded by then.
within() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        (( SECONDS < deadline )) || return 1
        sleep 0.2
    done
}

# random_secret: 24 random characters from [A-Za-z0-9] (safe in URLs, YAML and shell).
random_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 24; }

# random_key: 32 random bytes as 64 hex digits (the scheduler's CAAS_SECRETS_KEY).
random_key() { head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n'; }

# secret NAME [GENERATOR]: print the generated secret NAME, creating it on first use with
# GENERATOR (default random_secret); never committed.
secret() {
    local f="$SECRETS_DIR/$1" generate="${2:-random_secret}"
    if [[ ! -s "$f" ]]; then
        private_dirs
        (umask 077; "$generate" > "$f")
    fi
    cat "$f"
}

# apt_install PKG...: install Debian packages (as root), logging to logs/apt.log.
apt_install() {
    (( $# == 0 )) && return 0
    [[ $EUID -eq 0 ]] || die "missing packages: $*; run as root or: sudo apt-get install $*"
    mkdir -p "$LOG_DIR"
    log "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >>"$LOG_DIR/apt.log" 2>&1 || die "apt-get update failed (see $LOG_DIR/apt.log)"
    apt-get install -y -q --no-install-recommends "$@" >>"$LOG_DIR/apt.log" 2>&1 \
        || die "apt-get install $* failed (see $LOG_DIR/apt.log)"
}

# Where the engine takes tenant networks from: /24s, so hundreds of tenants fit (512 here).
: "${CAAS_DOCKER_ADDRESS_POOL:=base=10.210.0.0/15,size=24}"

# start_dockerd: reuse the engine at CAAS_DOCKER_SOCK, or start ours with its data under RUN_DIR;
# then the host firewall that keeps tenants' containers off this machine (scripts/firewall).
# Ours gets /24 tenant networks and no traffic between containers on its default bridge.
start_dockerd() {
    if answers dockerd docker_ok; then
        log "dockerd: reusing the engine at $CAAS_DOCKER_SOCK"
    else
        log "dockerd: starting (data in $RUN_DIR/docker)"
        mkdir -p "$RUN_DIR/docker"
        start_daemon dockerd dockerd \
            --host "unix://$CAAS_DOCKER_SOCK" \
            --data-root "$RUN_DIR/docker" \
            --pidfile "$RUN_DIR/dockerd-internal.pid" \
            --insecure-registry "$CAAS_REGISTRY_ADDR" \
            --default-address-pool "$CAAS_DOCKER_ADDRESS_POOL" \
            --icc=false \
            --userland-proxy=true
        wait_for dockerd 60 docker_ok
    fi
    "$CAAS_ROOT/scripts/firewall" up
}

# overprivileged NAME VAR...: our NAME daemon (its PID file) runs with one of VAR in its
# environment: an older scripts/up started it with more than it may hold.
overprivileged() {
    local name="$1" pid v; shift
    pid_alive "$name" || return 1
    pid="$(cat "$PID_DIR/$name.pid")"
    for v in "$@"; do
        tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -q "^$v=" && return 0
    done
    return 1
}

# stop_ours NAME: stop our NAME daemon by its PID file and wait until it is gone.
stop_ours() {
    local pid
    pid="$(cat "$PID_DIR/$1.pid")"
    kill "$pid" 2>/dev/null || true
    wait_for "$1 (pid $pid) to stop" 30 bash -c "! kill -0 $pid"
}

# scheduler_env: the scheduler's environment (for start_daemon), from the sourced .caas/env:
# its flags and the secrets it uses (operator token, database, ZooKeeper writer and the
# gateways' reader it grants READ to, registry pull credential, hook and gateway tokens, secrets
# keys); not ZooKeeper's super credential nor the MySQL admin URL.
scheduler_env() {
    passed 'CAAS_*' RUST_LOG | grep -Ev '^(CAAS_ZK_SUPER_AUTH|CAAS_MYSQL_ADMIN_URL|CAAS_SCHEDULER_LISTEN)=' || true
    echo "CAAS_SCHEDULER_LISTEN=${CAAS_SCHEDULER_LISTEN:-127.0.0.1:7070}"
}

# gateway_env: the gateway's environment (for start_daemon). Least privilege: the
# internet-facing gateway gets its own flags (CAAS_GATEWAY_*: listen addresses, limits, TLS
# files, its demand token), ZooKeeper's address and read-only credential, the domain and the
# admin API's address, nothing else of the sourced env (scripts/check-privileges proves it on the
# running process). Demand reports (scale to zero) go to the admin API with the gateway's own
# token, and only when there is one.
gateway_env() {
    passed 'CAAS_GATEWAY_*' CAAS_ZK CAAS_ZK_CHROOT CAAS_ZK_READ_AUTH CAAS_ZK_SESSION_TIMEOUT_MS \
        CAAS_DOMAIN CAAS_LOG_FORMAT RUST_LOG \
        | grep -Ev '^CAAS_GATEWAY_(TOKEN|LISTEN|ADMIN_LISTEN)=' || true
    echo "CAAS_GATEWAY_LISTEN=${CAAS_GATEWAY_LISTEN:-127.0.0.1:8080}"
    echo "CAAS_GATEWAY_ADMIN_LISTEN=${CAAS_GATEWAY_ADMIN_LISTEN:-127.0.0.1:9090}"
    if [[ -n "${CAAS_GATEWAY_TOKEN:-}" ]]; then
        echo "CAAS_API=http://${CAAS_SCHEDULER_LISTEN:-127.0.0.1:7070}"
        echo "CAAS_GATEWAY_TOKEN=$CAAS_GATEWAY_TOKEN"
    fi
}

# http_status URL: the HTTP status code of a GET (000 if nothing answers).
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null || true; }

zk_ok() { [[ "$(echo ruok | nc -w 2 127.0.0.1 "$CAAS_ZK_PORT" 2>/dev/null)" == imok ]]; }
docker_ok() { docker -H "unix://$CAAS_DOCKER_SOCK" info >/dev/null 2>&1; }
# The registry answers, and asks for credentials (a registry without auth is not ours to reuse).
registry_ok() { [[ "$(http_status "http://$CAAS_REGISTRY_ADDR/v2/")" == 401 ]]; }
mysql_root() { mariadb --protocol=socket --socket="$MYSQL_SOCK" -uroot "$@"; }
mysql_ok() { mysql_root -e 'select 1' >/dev/null 2>&1; }

# MariaDB's durability: innodb_flush_log_at_trx_commit. scripts/up runs it at 1 (every commit
# flushed to disk) unless CAAS_MYSQL_FLUSH says otherwise; a benchmark that wants 2 (flushed about
# once a second: up to a second of commits lost in a power cut) opts out for its own run only.

# mysql_flush: the setting of our MariaDB now ("unknown" when it cannot be read).
mysql_flush() {
    local v
    v="$(mysql_root -N -B -e 'SELECT @@GLOBAL.innodb_flush_log_at_trx_commit' 2>/dev/null)" || v=""
    echo "${v:-unknown}"
}

MYSQL_FLUSH_RESTORE=""
MYSQL_FLUSH_LINE=""
# bench_mysql_flush: for benchmarks that write to MariaDB. With BENCH_MYSQL_FLUSH=0|1|2, sets
# innodb_flush_log_at_trx_commit for the run (bench_mysql_restore, on EXIT unless the script
# calls it from its own EXIT trap, puts the previous value back). Sets MYSQL_FLUSH_LINE, the
# setting the figures are measured with, for the benchmark to print next to them. Call it in the
# script itself, not in a pipeline or $(...), so the restore happens.
bench_mysql_flush() {
    local want="${BENCH_MYSQL_FLUSH:-}" was
    was="$(mysql_flush)"
    if [[ -n "$want" && "$want" != "$was" ]]; then
        [[ "$want" =~ ^[012]$ ]] || die "BENCH_MYSQL_FLUSH must be 0, 1 or 2, not $want"
        [[ "$was" =~ ^[012]$ ]] || die "cannot read innodb_flush_log_at_trx_commit of the MariaDB at $MYSQL_SOCK (BENCH_MYSQL_FLUSH needs ours)"
        mysql_root -e "SET GLOBAL innodb_flush_log_at_trx_commit = $want" \
            || die "cannot set innodb_flush_log_at_trx_commit"
        MYSQL_FLUSH_RESTORE="$was"
        trap bench_mysql_restore EXIT
    fi
    local now note
    now="$(mysql_flush)"
    case "$now" in
        1) note="durable: every commit flushed" ;;
        unknown) note="not readable from $MYSQL_SOCK" ;;
        *) note="NOT durable: benchmark opt-out (BENCH_MYSQL_FLUSH=$now); the platform runs 1" ;;
    esac
    MYSQL_FLUSH_LINE="mysql: innodb_flush_log_at_trx_commit=$now ($note)"
}

# bench_mysql_restore: put back what bench_mysql_flush changed (nothing if it changed nothing).
bench_mysql_restore() {
    [[ -n "$MYSQL_FLUSH_RESTORE" ]] || return 0
    mysql_root -e "SET GLOBAL innodb_flush_log_at_trx_commit = $MYSQL_FLUSH_RESTORE" \
        || warn "could not restore innodb_flush_log_at_trx_commit=$MYSQL_FLUSH_RESTORE"
    MYSQL_FLUSH_RESTORE=""
}
