#!/usr/bin/env bash
# syscalls.sh: system calls per proxied request (issue 17), Fulcrum and nginx as the proxy,
# counted by `strace -c` at a fixed rate. Kernel time is ~80% of every proxy's CPU here, so a
# call a proxy makes for nothing (a read that finds nothing, a probe) costs more than most of
# its user-space work; this shows them by name.
#
# Two nginx backends (one worker each) on 127.0.0.1; each target runs alone (one worker),
# is warmed, then strace counts its calls while h2load --h1 sends N requests on C connections
# at RATE requests/s per connection. Prints, per target, each call made at least once per
# hundred requests, per request, with its failures (EAGAIN and the like).
#
#   benches/load/syscalls.sh
#   C=64 RATE=200 benches/load/syscalls.sh
#
# Knobs: C [16], RATE [1000] requests/s per connection, N [20000], TARGETS ["fulcrum nginx"],
# FULCRUM [target/release/fulcrum] (built if missing), KEEP [0] keeps the scratch directory.
# strace slows the proxy, so calls batch more than without it (epoll_wait counts are low);
# the reads and writes per request are what to compare.
# Requires: strace nginx h2load curl.  apt-get install -y strace nginx nghttp2-client curl
set -euo pipefail

cd "$(dirname "$0")/../.."
C="${C:-16}"
RATE="${RATE:-1000}"
N="${N:-20000}"
TARGETS="${TARGETS:-fulcrum nginx}"
FULCRUM="${FULCRUM:-target/release/fulcrum}"
for tool in strace nginx h2load curl python3; do
    command -v "$tool" >/dev/null || {
        echo "syscalls.sh: missing $tool (apt-get install -y strace nginx nghttp2-client curl)" >&2
        exit 1
    }
done
[[ -x "$FULCRUM" ]] || cargo build --release

T=$(mktemp -d /tmp/fulcrum-syscalls.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ "${KEEP:-0}" == 1 ]] && echo "kept: $T" || rm -rf "$T"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_ready() { # port
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "syscalls.sh: nothing answers on port $1" >&2
    exit 1
}

B1=$(free_port)
B2=$(free_port)
for port in "$B1" "$B2"; do
    mkdir -p "$T/b$port"
    cat >"$T/b$port/nginx.conf" <<EOF
worker_processes 1;
pid $T/b$port/nginx.pid;
error_log $T/b$port/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$port; location / { return 200 "hello\n"; } }
}
EOF
    nginx -p "$T/b$port/" -c "$T/b$port/nginx.conf" -e "$T/b$port/error.log" -g 'daemon off;' &
    PIDS+=($!)
    wait_ready "$port"
done

PORT=$(free_port)
cat >"$T/fulcrum.toml" <<EOF
[global]
workers = 1
access_log = "off"
admin = ""

[[listener]]
name = "web"
bind = "127.0.0.1:$PORT"
pool = "web"

[[pool]]
name = "web"
backends = [ { address = "127.0.0.1:$B1" }, { address = "127.0.0.1:$B2" } ]
EOF
mkdir -p "$T/nginx"
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    upstream pool {
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$PORT;
        location / {
            proxy_pass http://pool;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

# Calls per request of TARGET over N requests at the fixed rate, one line per call.
count() { # target
    local pid tracer done
    case "$1" in
        fulcrum) "$FULCRUM" run -c "$T/fulcrum.toml" >"$T/$1.log" 2>&1 & ;;
        nginx) nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/$1.log" 2>&1 & ;;
        *) echo "syscalls.sh: unknown target $1" >&2; exit 1 ;;
    esac
    pid=$!
    wait_ready "$PORT"
    # Warm: upstream connections open, buffers and tasks made.
    h2load --h1 -n 2000 -c "$C" "http://127.0.0.1:$PORT/" >/dev/null
    strace -c -f -p "$pid" -o "$T/$1.strace" 2>/dev/null &
    tracer=$!
    sleep 0.5
    done=$(h2load --h1 -n "$N" -c "$C" --rps "$RATE" "http://127.0.0.1:$PORT/" |
        awk '/status codes:/ {print $3}')
    kill -INT "$tracer"
    wait "$tracer" || true
    if [[ "$1" == nginx ]]; then kill -QUIT "$pid"; else kill -INT "$pid"; fi
    wait "$pid" || true
    [[ "$done" == "$N" ]] || { echo "syscalls.sh: $1: $done of $N requests got 2xx" >&2; exit 1; }
    # strace -c: "% time  seconds  usecs/call  calls  [errors]  syscall".
    awk -v n="$N" -v t="$1" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
            name = $NF; calls = $4; errors = (NF == 6) ? $5 : 0
            if (calls * 100 >= n) printf "%s: %-14s %5.2f per request (%.2f failed)\n", t, name, calls / n, errors / n
            if (name != "epoll_wait" && name != "futex") total += calls
        }
        END { printf "%s: %-14s %5.2f per request (epoll_wait and futex left out)\n", t, "all", total / n }
    ' "$T/$1.strace"
}

echo "# system calls per proxied request (strace -c; h2load --h1 -c $C at $RATE req/s per connection, N=$N)"
for target in $TARGETS; do
    count "$target"
done
