# proxy_rig.sh: sourced by callgrind.sh and syscalls.sh, the rig both measure one proxy on:
# a scratch directory $T (removed on exit unless KEEP=1; every PID in PIDS is stopped), two
# nginx backends (one worker each) on free ports $B1 and $B2, a free proxy port $PORT, and
# the configs of both proxies in front of them: $T/fulcrum.toml (one worker, no access log, no
# admin) and $T/nginx/nginx.conf (one worker, upstream keep-alive). Also `free_port` and
# `wait_ready PORT`. Needs $RIG (the sourcing script's name, for messages and $T).
# shellcheck shell=bash

T=$(mktemp -d "/tmp/fulcrum-$RIG.XXXXXX")
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
    echo "$RIG.sh: nothing answers on port $1" >&2
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
