#!/usr/bin/env bash
# h2.sh: HTTP/2 end to end through Fulcrum, nginx and haproxy, same backend, same load, one run.
#
# An h2c backend (nginx, `listen ... http2`, `return 200`, one worker) behind, in front of it,
# with one worker / thread each and HTTP/2 on both sides:
#   fulcrum   target/release/fulcrum, workers = 1: h2c listener -> [pool] protocol = "h2c"
#   nginx     listen http2 (h2c) -> grpc_pass grpc://backend (nginx's only HTTP/2 upstream: its
#             proxy_pass speaks HTTP/1.x only; grpc_pass relays any HTTP/2 request)
#   haproxy   bind proto h2 -> server proto h2, nbthread 1
# Load: h2load, CONNS connections with STREAMS concurrent streams each (default 4 x 100), for
# DURATION seconds after WARMUP, REPS rounds interleaved. Per target: requests/s, CPU
# microseconds per request (the proxy's user+system time over the run / requests) and p99
# latency (from h2load's per-request log). Prints the medians as markdown.
#
# Requires: nginx haproxy h2load (nghttp2-client) awk ps:
#   apt-get install -y nginx haproxy nghttp2-client
#
# Knobs (environment, defaults in brackets):
#   DURATION [10] CONNS [4] STREAMS [100] REPS [3] WARMUP [2]
#   PIN [1]  proxies on PROXY_CPU [1], client and backend on CLIENT_CPU [0]; 0: no pinning
#   TARGETS ["fulcrum nginx haproxy"]   FULCRUM [target/release/fulcrum] (built if missing)
#   KEEP [0] 1 keeps the scratch directory
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10} CONNS=${CONNS:-4} STREAMS=${STREAMS:-100} REPS=${REPS:-3} WARMUP=${WARMUP:-2}
PIN=${PIN:-1} CLIENT_CPU=${CLIENT_CPU:-0} PROXY_CPU=${PROXY_CPU:-1} KEEP=${KEEP:-0}
TARGETS=${TARGETS:-fulcrum nginx haproxy}
FULCRUM=${FULCRUM:-$ROOT/target/release/fulcrum}

die() { echo "h2.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
for tool in nginx haproxy h2load awk ps; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y nginx haproxy nghttp2-client)"
done
[[ $PIN == 1 ]] && { command -v taskset >/dev/null || die "missing taskset; or PIN=0"; }
if [[ " $TARGETS " == *" fulcrum "* && ! -x $FULCRUM ]]; then
    log "building $FULCRUM"; (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/h2.XXXXXX")
declare -a PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; [[ $KEEP == 1 ]] && log "kept $T" || rm -rf "$T"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
run_on() { local cpu=$1; shift; if [[ $PIN == 1 ]]; then taskset -c "$cpu" "$@"; else "$@"; fi; }
start() {   # name cpu command... (exec'd: the PID is the program's)
    local name=$1 cpu=$2; shift 2
    if [[ $PIN == 1 ]]; then taskset -c "$cpu" "$@" >"$T/$name.out" 2>&1 &
    else "$@" >"$T/$name.out" 2>&1 &
    fi
    PIDS+=("$!"); eval "PID_$name=$!"
}
tree() {    # PID and all its descendants (nginx's master and worker)
    ps -e -o pid=,ppid= | awk -v r="$1" '{ par[$1] = $2 } END { k[r] = 1
        do { g = 0; for (p in par) if (!(p in k) && (par[p] in k)) { k[p] = 1; g = 1 } } while (g)
        for (p in k) print p }'
}
cpu_ticks() {   # user+system ticks of a process tree
    local sum=0 p s
    for p in $(tree "$1"); do
        { s=$(<"/proc/$p/stat"); } 2>/dev/null || continue; s=${s##*) }; set -- $s
        sum=$(( sum + ${12} + ${13} ))
    done
    echo "$sum"
}
wait_port() { local i; for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; die "nothing on port $1"; }

BACKEND=$(free_port)
mkdir -p "$T/nginx-backend" "$T/nginx-front"
cat >"$T/nginx-backend/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $T/nginx-backend/pid; error_log $T/nginx-backend/error.log;
events { worker_connections 4096; }
http { access_log off; http2_max_concurrent_streams 1000; keepalive_requests 100000000;
  server { listen 127.0.0.1:$BACKEND http2; location / { return 200 "hello over h2\n"; } } }
CONF
start backend "$CLIENT_CPU" nginx -p "$T/nginx-backend" -c "$T/nginx-backend/nginx.conf"
wait_port "$BACKEND"

declare -A PORT=()
for target in $TARGETS; do
    port=$(free_port); PORT[$target]=$port
    case $target in
    fulcrum)
        cat >"$T/fulcrum.toml" <<CONF
[global]
workers = 1
access_log = "off"
admin = ""
[[listener]]
name = "h2"
bind = "127.0.0.1:$port"
pool = "b"
[[pool]]
name = "b"
protocol = "h2c"
backends = [{ address = "127.0.0.1:$BACKEND" }]
CONF
        start fulcrum "$PROXY_CPU" "$FULCRUM" run -c "$T/fulcrum.toml" ;;
    nginx)
        cat >"$T/nginx-front/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $T/nginx-front/pid; error_log $T/nginx-front/error.log;
events { worker_connections 4096; }
http { access_log off; http2_max_concurrent_streams 1000; keepalive_requests 100000000;
  upstream b { server 127.0.0.1:$BACKEND; keepalive 64; keepalive_requests 100000000; }
  server { listen 127.0.0.1:$port http2; location / { grpc_pass grpc://b; } } }
CONF
        start nginx "$PROXY_CPU" nginx -p "$T/nginx-front" -c "$T/nginx-front/nginx.conf" ;;
    haproxy)
        cat >"$T/haproxy.cfg" <<CONF
global
    nbthread 1
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend f
    bind 127.0.0.1:$port proto h2
    default_backend b
backend b
    http-reuse always
    server s1 127.0.0.1:$BACKEND proto h2
CONF
        start haproxy "$PROXY_CPU" haproxy -f "$T/haproxy.cfg" ;;
    *) die "unknown target $target" ;;
    esac
    wait_port "$port"
done

RUNS=$T/runs.tsv
for rep in $(seq "$REPS"); do
    for target in $TARGETS; do
        url="http://127.0.0.1:${PORT[$target]}/"
        run_on "$CLIENT_CPU" h2load -c "$CONNS" -m "$STREAMS" -D "$WARMUP" "$url" >/dev/null 2>&1
        eval "pid=\$PID_$target"
        before=$(cpu_ticks "$pid")
        run_on "$CLIENT_CPU" h2load -c "$CONNS" -m "$STREAMS" -D "$DURATION" --log-file="$T/$target.$rep.log" "$url" >"$T/$target.$rep.out" 2>&1
        after=$(cpu_ticks "$pid")
        done_reqs=$(awk '/^requests:/ { print $8 }' "$T/$target.$rep.out")
        failed=$(awk '/^requests:/ { print $10 }' "$T/$target.$rep.out")
        # h2load's log: start time, status, duration in microseconds.
        p99=$(awk '{ print $3 }' "$T/$target.$rep.log" | sort -n | awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; print v[i] / 1000 }')
        hz=$(getconf CLK_TCK)
        us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="${done_reqs:-0}" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "nan" }')
        rps=$(awk -v n="${done_reqs:-0}" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')
        log "$target rep $rep: $rps req/s, $us us CPU/req, p99 $p99 ms, failed ${failed:-?}"
        printf '%s\t%s\t%s\t%s\t%s\n' "$target" "$rps" "$us" "$p99" "${failed:-?}" >>"$RUNS"
    done
done

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "| target (1 worker, h2c both sides, $CONNS x $STREAMS streams) | req/s | CPU us/req | p99 ms |"
echo "|---|---|---|---|"
for target in $TARGETS; do
    rps=$(awk -v t="$target" '$1 == t { print $2 }' "$RUNS" | median)
    us=$(awk -v t="$target" '$1 == t { print $3 }' "$RUNS" | median)
    p99=$(awk -v t="$target" '$1 == t { print $4 }' "$RUNS" | median)
    echo "| $target | $rps | $us | $p99 |"
done
