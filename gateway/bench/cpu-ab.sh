#!/usr/bin/env bash
# A/B of gateway builds by CPU cost: CPU ns per request of each proxy process (from
# /proc/PID/task/*/schedstat, all threads) for each given `bench_proxy` binary and for nginx
# (1 worker, upstream keep-alive), in the same run, sides rotated each round; a saturated run
# (wrk -t2 -c64) and a paced one (wrk delay() of PACE_MS per connection) per side. Prints one
# line per run. Keep copies of the builds to compare, e.g.
#   cp target/release/examples/bench_proxy /tmp/gw-a   (then change, rebuild, copy to /tmp/gw-b)
#   gateway/bench/cpu-ab.sh /tmp/gw-a /tmp/gw-b
# env: DUR (s, 5), ROUNDS (3), PACE_MS (8), GW_THREADS (1), BACKEND (the bench backend binary).
# Ports 19081-19083 (backends), 19100+ (gateways), 19300 (nginx). Needs wrk and nginx.
set -u
BACKEND=${BACKEND:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/examples/bench_backend}
DUR=${DUR:-5}; ROUNDS=${ROUNDS:-3}; PACE_MS=${PACE_MS:-8}
W=$(mktemp -d /tmp/cpu-ab.XXXXXX)
PIDS=()
cleanup(){ for p in "${PIDS[@]}"; do kill -TERM $p 2>/dev/null; done; for p in "${PIDS[@]}"; do wait $p 2>/dev/null; done; rm -rf "$W"; }
trap cleanup EXIT
"$BACKEND" 127.0.0.1:19081 127.0.0.1:19082 127.0.0.1:19083 >/dev/null 2>&1 & PIDS+=($!)
declare -A PORT PID
i=0
for b in "$@"; do
  port=$((19100+i)); RUST_LOG=warn $b 127.0.0.1:$port 127.0.0.1:$((19200+i)) ${GW_THREADS:-1} 1 127.0.0.1:19081 127.0.0.1:19082 127.0.0.1:19083 >$W/gw$i.log 2>&1 &
  PIDS+=($!); PORT[$b]=$port; PID[$b]=$!; i=$((i+1))
done
cat >$W/nginx.conf <<CONF
worker_processes 1;
error_log $W/err.log warn; pid $W/nginx.pid;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $W/b; proxy_temp_path $W/p; fastcgi_temp_path $W/f; uwsgi_temp_path $W/u; scgi_temp_path $W/s;
 upstream app { server 127.0.0.1:19081; server 127.0.0.1:19082; server 127.0.0.1:19083; keepalive 64; }
 server { listen 127.0.0.1:19300; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
CONF
nginx -p $W -c $W/nginx.conf -g "daemon off;" >/dev/null 2>&1 & NP=$!; PIDS+=($NP)
sleep 1
NW=$(pgrep -P $NP | head -1)
PORT[nginx]=19300; PID[nginx]=$NW
echo "function delay() return $PACE_MS end" > $W/pace.lua
cpu_ns(){ cat /proc/$1/task/*/schedstat | awk '{s+=$1} END {print s}'; }
sides=("$@" nginx)
for s in "${sides[@]}"; do wrk -t1 -c8 -d1s -H "Host: app0.caas.localhost" http://127.0.0.1:${PORT[$s]}/ >/dev/null; done
for r in $(seq $ROUNDS); do
 n=${#sides[@]}
 for k in $(seq 0 $((n-1))); do s=${sides[$(( (k+r) % n ))]}
  for mode in sat pace; do
   args=(-t2 -c64 -d${DUR}s -H "Host: app0.caas.localhost"); [ $mode = pace ] && args+=(-s $W/pace.lua)
   b=$(cpu_ns ${PID[$s]})
   out=$(wrk "${args[@]}" http://127.0.0.1:${PORT[$s]}/)
   a=$(cpu_ns ${PID[$s]})
   reqs=$(awk '/requests in/ {print $1}' <<<"$out"); rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
   err=$(grep -E "Non-2xx|Socket err" <<<"$out" | tr -s ' ')
   printf "%s %s %s rps=%s ns/req=%d %s\n" $r $mode $(basename $s) $rps $(( (a-b)/reqs )) "$err"
  done
 done
done
