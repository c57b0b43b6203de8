#!/usr/bin/env bash
# idle.sh: memory per idle keep-alive client connection (issue 17), Fulcrum (its HTTP/1
# engine) beside nginx and haproxy, same backend, one run.
#
# For each target: start it (one worker / thread) in front of one nginx backend, send one
# request, read its RSS (VmRSS of the process tree), open N keep-alive connections that each
# make one request and then stay idle (benches/load/idle_clients.py), read the RSS again while
# they are held, close them. Prints RSS before, while held, and the difference per connection.
#
# Requires: nginx haproxy curl python3.   apt-get install -y nginx haproxy curl
#
# Knobs: N [8000] connections; TARGETS ["fulcrum nginx haproxy"];
#   FULCRUM [target/release/fulcrum] (built if missing); FULCRUM_ENV [] environment for Fulcrum
#   (e.g. "MIMALLOC_PURGE_DECOMMITS=1": mimalloc otherwise frees with MADV_FREE, and the RSS of
#   a burst stays counted until the kernel reclaims it); SETTLE [2] seconds before reading
#   the held RSS; BATCH [100] connections opened (and served) at a time; KEEP [0] keeps the
#   scratch directory.
# The fd limit is raised to 20000 (the harness machine's per-process limit): N client sockets
# plus the proxy's must fit in it (Fulcrum charges each client connection 2 descriptors of its
# budget, 90% of the limit: 9,000 at most).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-8000} SETTLE=${SETTLE:-2} KEEP=${KEEP:-0}
TARGETS=${TARGETS:-fulcrum nginx haproxy}
FULCRUM=${FULCRUM:-$ROOT/target/release/fulcrum}

die() { echo "idle.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
for tool in nginx haproxy curl python3 ps awk; do
    command -v "$tool" >/dev/null || die "missing $tool"
done
ulimit -n 20000 2>/dev/null || log "cannot raise the fd limit: $(ulimit -n)"
if [[ " $TARGETS " == *" fulcrum"* && ! -x $FULCRUM ]]; then
    log "building $FULCRUM"; (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/idle.XXXXXX")
declare -a ROOTS=()
cleanup() { local p; for p in "${ROOTS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null
    [[ $KEEP == 1 ]] && log "kept $T" || rm -rf "$T"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tree() { ps -e -o pid=,ppid= | awk -v r="$1" '{ par[$1] = $2 } END { k[r] = 1
    do { g = 0; for (p in par) if (!(p in k) && (par[p] in k)) { k[p] = 1; g = 1 } } while (g)
    for (p in k) print p }'; }
rss_kb() { local p; for p in $(tree "$1"); do awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }
wait_port() { local i; for i in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; return 1; }

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
nginx_conf "$T/backend" "    server { listen 127.0.0.1:$B; location / { return 200 \"idle-bench\n\"; } }"
nginx -p "$T/backend/" -c "$T/backend/nginx.conf" -e "$T/backend/error.log" >"$T/backend.out" 2>&1 &
ROOTS+=("$!")
wait_port "$B" || die "backend did not start"

echo "| target | RSS before (KiB) | RSS with $N idle (KiB) | added (MiB) | per connection (KB) |"
echo "|---|---:|---:|---:|---:|"
for t in $TARGETS; do
    port=$(free_port)
    case $t in
    nginx)
        nginx_conf "$T/nginx" "    upstream pool { server 127.0.0.1:$B; keepalive 64; }
    server { listen 127.0.0.1:$port; location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
        cmd=(nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" -e "$T/nginx/error.log") ;;
    haproxy)
        cat >"$T/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 9500
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 60s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:$port
    default_backend pool
backend pool
    server b1 127.0.0.1:$B
CONF
        cmd=(haproxy -db -f "$T/haproxy.cfg") ;;
    fulcrum)
        cat >"$T/$t.toml" <<CONF
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
        cmd=(env ${FULCRUM_ENV:-} "$FULCRUM" run -c "$T/$t.toml") ;;
    *) die "unknown target $t" ;;
    esac
    "${cmd[@]}" >"$T/$t.out" 2>&1 &
    pid=$!
    wait_port "$port" || { log "$t did not start: $(tail -3 "$T/$t.out")"; kill "$pid"; continue; }
    for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
    sleep 1
    before=$(rss_kb "$pid")
    exec 3> >(python3 "$ROOT/benches/load/idle_clients.py" 127.0.0.1 "$port" "$N" >"$T/$t.clients" 2>&1)
    for _ in $(seq 600); do grep -q '^held' "$T/$t.clients" 2>/dev/null && break; sleep 0.1; done
    if ! grep -q "^held $N" "$T/$t.clients"; then
        log "$t: the clients did not all get through: $(tail -3 "$T/$t.clients")"
    fi
    sleep "$SETTLE"
    held=$(rss_kb "$pid")
    exec 3>&-
    awk -v t="$t" -v b="$before" -v h="$held" -v n="$N" 'BEGIN {
        printf "| %s | %d | %d | %.1f | %.2f |\n", t, b, h, (h - b) / 1024, (h - b) * 1.024 / n }'
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    sleep 1
done
