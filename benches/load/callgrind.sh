#!/usr/bin/env bash
# callgrind.sh: user-space instructions per proxied request (issue 17), Fulcrum and nginx as the
# proxy, counted by valgrind's callgrind: deterministic enough to show steps of 1%, where
# timing on a shared 2-core machine moves by 5-10%.
#
# Two nginx backends (one worker each) on 127.0.0.1; each target runs alone under callgrind
# (one worker), h2load --h1 sends N and then 2N requests on C connections, and the marginal
# count (the 2N run minus the N run, divided by N) cancels start-up. Prints one line per target.
#
#   benches/load/callgrind.sh                  # C=1 (one connection at a time: the steadiest)
#   C=16 N=20000 benches/load/callgrind.sh     # requests batched per wake-up, as under load
#
# Knobs: C [1], N [10000], TARGETS ["fulcrum nginx"], FULCRUM [target/release/fulcrum] (built
# if missing), KEEP [0] keeps the scratch directory with the callgrind outputs (read them with
# callgrind_annotate --inclusive=yes FILE).
# Requires: valgrind nginx h2load curl.  apt-get install -y valgrind nginx nghttp2-client curl
set -euo pipefail

cd "$(dirname "$0")/../.."
C="${C:-1}"
N="${N:-10000}"
TARGETS="${TARGETS:-fulcrum nginx}"
FULCRUM="${FULCRUM:-target/release/fulcrum}"
for tool in valgrind callgrind_annotate nginx h2load curl; do
    command -v "$tool" >/dev/null || {
        echo "callgrind.sh: missing $tool (apt-get install -y valgrind nginx nghttp2-client curl)" >&2
        exit 1
    }
done
[[ -x "$FULCRUM" ]] || cargo build --release

T=$(mktemp -d /tmp/fulcrum-callgrind.XXXXXX)
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
    echo "callgrind.sh: nothing answers on port $1" >&2
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

# Total instructions of one run of TARGET under callgrind with REQUESTS requests.
count() { # target requests
    local out="$T/$1.$2.callgrind" pid
    case "$1" in
        fulcrum) valgrind --tool=callgrind --callgrind-out-file="$out" \
            "$FULCRUM" run -c "$T/fulcrum.toml" >"$T/$1.$2.log" 2>&1 & ;;
        nginx) valgrind --tool=callgrind --callgrind-out-file="$out" \
            nginx -p "$T/nginx/" -c "$T/nginx/nginx.conf" >"$T/$1.$2.log" 2>&1 & ;;
        *) echo "callgrind.sh: unknown target $1" >&2; exit 1 ;;
    esac
    pid=$!
    wait_ready "$PORT"
    local done
    done=$(h2load --h1 -n "$2" -c "$C" "http://127.0.0.1:$PORT/" | awk '/status codes:/ {print $3}')
    if [[ "$1" == nginx ]]; then kill -QUIT "$pid"; else kill -INT "$pid"; fi
    wait "$pid" || true
    [[ "$done" == "$2" ]] || { echo "callgrind.sh: $1: $done of $2 requests got 2xx" >&2; exit 1; }
    callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

echo "# user-space instructions per proxied request (callgrind; h2load --h1 -c $C; (2N - N) / N, N=$N)"
for target in $TARGETS; do
    one=$(count "$target" "$N")
    two=$(count "$target" $((2 * N)))
    echo "$target: $(((two - one) / N)) instructions per request"
done
