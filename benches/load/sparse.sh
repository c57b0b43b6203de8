#!/usr/bin/env bash
# sparse.sh: CPU per request for keep-alive clients that send a request now and then (issue
# 17's parked idle connections): each of N connections sends one GET every PERIOD ms. With
# PERIOD above the engine's 250 ms grace, every request wakes a parked connection (a spawn);
# below it, the connection stays on its task. Fulcrum beside nginx, same backend, one run.
#
#   benches/load/sparse.sh                     # N=400, PERIODS="100 500", DURATION=10
#
# Prints per target and period: requests, errors, proxy CPU seconds (utime+stime from
# /proc), and CPU us per request. The client is Python (asyncio): keep N / PERIOD within
# what one core of it sends (a few thousand requests a second).
# Requires: nginx curl python3.   apt-get install -y nginx curl
# Knobs: N [400], PERIODS ["100 500"], DURATION [10] seconds, TARGETS ["fulcrum nginx"],
#   FULCRUM [target/release/fulcrum] (built if missing), KEEP [0].
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-400} PERIODS=${PERIODS:-100 500} DURATION=${DURATION:-10} KEEP=${KEEP:-0}
TARGETS=${TARGETS:-fulcrum nginx}
FULCRUM=${FULCRUM:-$ROOT/target/release/fulcrum}
die() { echo "sparse.sh: $*" >&2; exit 1; }
for tool in nginx curl python3; do command -v "$tool" >/dev/null || die "missing $tool"; done
[[ " $TARGETS " != *" fulcrum "* || -x $FULCRUM ]] || (cd "$ROOT" && cargo build --release) || die "build failed"
ulimit -n 20000 2>/dev/null || true

T=$(mktemp -d "${TMPDIR:-/tmp}/sparse.XXXXXX")
declare -a ROOTS=()
cleanup() { local p; for p in "${ROOTS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null
    [[ $KEEP == 1 ]] && echo "# kept $T" >&2 || rm -rf "$T"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { local i; for i in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
nginx_conf() {   # dir body-of-http-block
    mkdir -p "$1/tmp"
    cat >"$1/nginx.conf" <<CONF
daemon off;
worker_processes 1;
worker_rlimit_nofile 20000;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 19000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fcgi; uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi;
$2
}
CONF
}

B=$(free_port)
nginx_conf "$T/backend" "    server { listen 127.0.0.1:$B; location / { return 200 \"sparse-bench\n\"; } }"
nginx -p "$T/backend/" -c "$T/backend/nginx.conf" -e "$T/backend/error.log" >"$T/backend.out" 2>&1 &
ROOTS+=("$!")
wait_port "$B" || die "backend did not start"
HZ=$(getconf CLK_TCK)

echo "| target | period ms | requests | errors | proxy CPU s | CPU us/request |"
echo "|---|---:|---:|---:|---:|---:|"
for t in $TARGETS; do
    for period in $PERIODS; do
        port=$(free_port)
        case $t in
        nginx)
            nginx_conf "$T/nginx" "    upstream pool { server 127.0.0.1:$B; keepalive 64; }
    server { listen 127.0.0.1:$port; location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
            cmd=(nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log") ;;
        fulcrum)
            cat >"$T/fulcrum.toml" <<CONF
[global]
workers = 1
access_log = "off"
client_idle_timeout = "300s"
[[listener]]
name = "bench"
bind = "127.0.0.1:$port"
pool = "b"
[[pool]]
name = "b"
backends = [{ address = "127.0.0.1:$B" }]
CONF
            cmd=("$FULCRUM" run -c "$T/fulcrum.toml") ;;
        *) die "unknown target $t" ;;
        esac
        "${cmd[@]}" >"$T/$t.out" 2>&1 &
        pid=$!
        wait_port "$port" || { echo "# $t did not start" >&2; kill "$pid"; continue; }
        # nginx's worker is a child of its master: count the whole tree's ticks.
        pids=$(pgrep -P "$pid"; echo "$pid")
        t0=0; for p in $pids; do t0=$(( t0 + $(ticks "$p") )); done
        out=$(python3 "$ROOT/benches/load/sparse_clients.py" 127.0.0.1 "$port" "$N" "$period" "$DURATION")
        t1=0; for p in $pids; do t1=$(( t1 + $(ticks "$p") )); done
        read -r _ reqs errs <<<"$out"
        awk -v t="$t" -v p="$period" -v r="$reqs" -v e="$errs" -v d=$(( t1 - t0 )) -v hz="$HZ" 'BEGIN {
            printf "| %s | %d | %d | %d | %.2f | %.1f |\n", t, p, r, e, d / hz, (r > 0 ? d / hz / r * 1e6 : 0) }'
        kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        sleep 1
    done
done
