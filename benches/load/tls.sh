#!/usr/bin/env bash
# tls.sh: TLS termination, Fulcrum beside nginx and haproxy, same certificate, same backends,
# same clients, one run.
#
# One ECDSA P-256 certificate (made here with openssl, CN/SAN bench.test and 127.0.0.1), two
# nginx backends on 127.0.0.1 (`return 200`, ~100-byte body), and in front of them, one worker
# each, TLS 1.2 + 1.3, ALPN h2 + http/1.1, session tickets and a session cache on:
#   fulcrum   target/release/fulcrum, workers = 1, [listener.tls]
#   nginx     listen ssl http2, ssl_session_cache shared:SSL:10m, upstream keepalive 64
#   haproxy   bind ssl crt alpn h2,http/1.1, nbthread 1, http-reuse always
# Measured per target, REPS rounds interleaved, medians printed as markdown with the ratios
# Fulcrum/nginx and Fulcrum/haproxy:
#   full/s, full_us        full handshakes per second (`openssl s_time -new`: TLS 1.3, a new
#                          connection and handshake each, no request) and the proxy's CPU µs
#                          per handshake
#   resumed/s, resumed_us  the same with `openssl s_time -reuse` (session resumption)
#   keepalive_h2_us/_h1_us proxy CPU µs per request at a fixed rate over TLS keep-alive
#                          connections (h2load, RATE req/s over RATE_CONNS connections)
#   idle_kib_per_conn      proxy RSS growth per idle TLS connection, over IDLE connections
#                          that completed a handshake and sent nothing (a Python ssl client)
# On a 2-core machine the client (openssl) saturates its core before a proxy does, so the
# handshake rates mostly measure the client; the CPU per handshake separates the proxies.
#
# Requires: nginx haproxy openssl h2load (nghttp2-client) python3 curl taskset ps awk ss
#   apt-get install -y nginx haproxy openssl nghttp2-client python3 curl
#
# Knobs (environment, defaults in brackets):
#   DURATION [5]   seconds per s_time run         REPS [3]   rounds, interleaved
#   RATE [2000]    keep-alive req/s (total)       RATE_CONNS [16]  RATE_DURATION [5]
#   IDLE [2000]    idle TLS connections
#   PIN [1]        proxies on PROXY_CPU [1], clients and backends on CLIENT_CPU [0]; 0: no pinning
#   TARGETS ["fulcrum nginx haproxy"]  FULCRUM [target/release/fulcrum]  KEEP [0] keep scratch dir
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-5} REPS=${REPS:-3} RATE=${RATE:-2000} RATE_CONNS=${RATE_CONNS:-16}
RATE_DURATION=${RATE_DURATION:-5} IDLE=${IDLE:-2000} PIN=${PIN:-1} CLIENT_CPU=${CLIENT_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1} KEEP=${KEEP:-0} TARGETS=${TARGETS:-fulcrum nginx haproxy}
FULCRUM=${FULCRUM:-$ROOT/target/release/fulcrum}

die() { echo "tls.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
for tool in nginx haproxy openssl h2load python3 curl ps awk ss; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y nginx haproxy openssl nghttp2-client python3 curl)"
done
[[ $PIN == 1 ]] && { command -v taskset >/dev/null || die "missing taskset; or PIN=0"; }
[[ $PIN == 1 ]] && (( CLIENT_CPU >= $(nproc) || PROXY_CPU >= $(nproc) )) && die "not enough CPUs to pin; PIN=0"
if [[ " $TARGETS " == *" fulcrum "* && ! -x $FULCRUM ]]; then
    log "building $FULCRUM"; (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/tls-bench.XXXXXX")
RUNS=$T/runs.tsv   # target metric rep value

declare -a ROOTS=(); declare -A PID_OF=() PORT_OF=()
pin() { if [[ $PIN == 1 ]]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
start() {   # name cpu command...
    local name=$1 cpu=$2; shift 2
    if [[ $PIN == 1 ]]; then taskset -c "$cpu" "$@" >"$T/$name.out" 2>&1 &
    else "$@" >"$T/$name.out" 2>&1 &
    fi
    PID_OF[$name]=$!; ROOTS+=("$!")
}
tree() {    # PID and all its descendants
    ps -e -o pid=,ppid= | awk -v r="$1" '{ par[$1] = $2 } END { k[r] = 1
        do { g = 0; for (p in par) if (!(p in k) && (par[p] in k)) { k[p] = 1; g = 1 } } while (g)
        for (p in k) print p }'
}
cpu_ticks() {   # user+system ticks of a process tree
    local p s sum=0
    for p in $(tree "$1"); do
        { s=$(<"/proc/$p/stat"); } 2>/dev/null || continue; s=${s##*) }; set -- $s
        sum=$(( sum + ${12} + ${13} ))
    done
    echo "$sum"
}
rss_kb() { local p; for p in $(tree "$1"); do awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }
HZ=$(getconf CLK_TCK)

cleanup() {
    local rc=$? p v
    trap - EXIT INT TERM
    local -a victims=()
    for p in "${ROOTS[@]}"; do for v in $(tree "$p"); do victims+=("$v"); done; done
    for v in "${victims[@]}"; do kill -TERM "$v" 2>/dev/null; done
    sleep 0.5
    for v in "${victims[@]}"; do kill -0 "$v" 2>/dev/null && kill -KILL "$v" 2>/dev/null; done
    wait 2>/dev/null
    if [[ $KEEP == 1 ]]; then log "scratch kept in $T"; else rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -a USED=()
free_port() {   # a random free loopback port, not handed out before
    local p i
    for (( i = 0; i < 500; i++ )); do
        p=$(( 20000 + RANDOM % 40000 ))
        [[ " ${USED[*]} " == *" $p "* ]] && continue
        ss -Htln "sport = :$p" | grep -q . && continue
        echo "$p"; return
    done
    die "no free port"
}

# ------------------------------------------------------------------ certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=bench.test -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" \
    -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null || die "openssl req failed"
cat "$T/cert.pem" "$T/key.pem" >"$T/haproxy.pem"

# ------------------------------------------------------------------ backends and proxies
B1=$(free_port); USED+=("$B1"); B2=$(free_port); USED+=("$B2")
BODY=$(printf 'fulcrum-bench-%085d' 0)
nginx_conf() {   # dir body-of-http-block
    mkdir -p "$1/tmp"
    cat >"$1/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fcgi; uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi;
$2
}
NGINX
}
for b in b1 b2; do
    port=$B1; [[ $b == b2 ]] && port=$B2
    nginx_conf "$T/$b" "    server { listen 127.0.0.1:$port; default_type text/plain;
        location / { return 200 \"$BODY\n\"; } }"
    start "$b" "$CLIENT_CPU" nginx -p "$T/$b/" -c "$T/$b/nginx.conf" -e "$T/$b/error.log"
done

declare -A CMD=()
for t in $TARGETS; do
    port=$(free_port); USED+=("$port"); PORT_OF[$t]=$port
    case $t in
    nginx)
        nginx_conf "$T/nginx" "    upstream pool { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 64; }
    server {
        listen 127.0.0.1:$port ssl http2;
        ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
        location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }"
        CMD[$t]="nginx -p $T/nginx/ -c $T/nginx/nginx.conf -e $T/nginx/error.log" ;;
    haproxy)
        cat >"$T/haproxy.cfg" <<HAPROXY
global
    nbthread 1
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 120s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$port ssl crt $T/haproxy.pem alpn h2,http/1.1
    default_backend pool
backend pool
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
HAPROXY
        CMD[$t]="haproxy -db -f $T/haproxy.cfg" ;;
    fulcrum)
        cat >"$T/fulcrum.toml" <<FULCRUM
[global]
workers = 1
access_log = "off"
admin = ""
client_idle_timeout = "120s"
[[listener]]
name = "bench"
bind = "127.0.0.1:$port"
pool = "b"
[listener.tls]
certs = [{ cert = "$T/cert.pem", key = "$T/key.pem" }]
[[pool]]
name = "b"
backends = [{ address = "127.0.0.1:$B1" }, { address = "127.0.0.1:$B2" }]
FULCRUM
        "$FULCRUM" check -c "$T/fulcrum.toml" >/dev/null || die "fulcrum check rejected $T/fulcrum.toml"
        CMD[$t]="env FULCRUM_WATCH=0 $FULCRUM run -c $T/fulcrum.toml" ;;
    *) die "unknown target $t (known: fulcrum nginx haproxy)" ;;
    esac
done

wait_https() {   # port
    local i
    for (( i = 0; i < 300; i++ )); do
        curl -sk -o /dev/null "https://127.0.0.1:$1/" && return 0; sleep 0.1
    done
    return 1
}
s_time() {   # port -new|-reuse -> connections per real second
    pin "$CLIENT_CPU" openssl s_time -connect "127.0.0.1:$1" "$2" -time "$DURATION" 2>/dev/null |
        awk '/connections in [0-9.]+ real seconds/ { n = $1; s = $4 } END { if (s > 0) printf "%.0f\n", n / s; else print 0 }'
}

# shellcheck disable=SC2086  # CMD is a word list
for t in $TARGETS; do start "$t" "$PROXY_CPU" ${CMD[$t]}; done
for t in $TARGETS; do wait_https "${PORT_OF[$t]}" || die "$t does not answer HTTPS (see $T/$t.out)"; done

for (( rep = 1; rep <= REPS; rep++ )); do
    for t in $TARGETS; do
        port=${PORT_OF[$t]} pid=${PID_OF[$t]}
        for mode in new reuse; do
            c0=$(cpu_ticks "$pid"); t0=$(date +%s.%N)
            rate=$(s_time "$port" "-$mode")
            c1=$(cpu_ticks "$pid"); t1=$(date +%s.%N)
            n=$(awk -v r="$rate" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", r * (b - a) }')
            us=$(awk -v c=$(( c1 - c0 )) -v n="$n" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", c / hz * 1e6 / n; else print "nan" }')
            name=full; [[ $mode == reuse ]] && name=resumed
            printf '%s\t%s/s\t%s\t%s\n%s\t%s_us\t%s\t%s\n' "$t" "$name" "$rep" "$rate" "$t" "$name" "$rep" "$us" >>"$RUNS"
            log "$t rep $rep: $name $rate/s, $us µs proxy CPU each"
        done
        for proto in h2 h1; do
            flag=""; [[ $proto == h1 ]] && flag="--h1"
            per=$(( RATE / RATE_CONNS )); (( per < 1 )) && per=1
            c0=$(cpu_ticks "$pid")
            out=$T/h2load.$t.$proto.$rep.out
            pin "$CLIENT_CPU" h2load $flag -t1 -c "$RATE_CONNS" --rps "$per" -D "$RATE_DURATION" "https://127.0.0.1:$port/" >"$out" 2>&1
            c1=$(cpu_ticks "$pid")
            done_n=$(awk '/^requests:/ { print $8 }' "$out")   # succeeded
            us=$(awk -v c=$(( c1 - c0 )) -v n="${done_n:-0}" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", c / hz * 1e6 / n; else print "nan" }')
            printf '%s\tkeepalive_%s_us\t%s\t%s\n' "$t" "$proto" "$rep" "$us" >>"$RUNS"
            log "$t rep $rep: keep-alive $proto $us µs proxy CPU per request ($done_n requests)"
        done
    done
done

# Idle connections: once per target (memory needs no rounds).
for t in $TARGETS; do
    port=${PORT_OF[$t]} pid=${PID_OF[$t]}
    before=$(rss_kb "$pid")
    fifo=$T/idle.$t; mkfifo "$fifo"
    pin "$CLIENT_CPU" python3 -c '
import socket, ssl, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    held.append(ctx.wrap_socket(s, server_hostname="bench.test"))
print(len(held), flush=True)
time.sleep(10)
' "$port" "$IDLE" >"$fifo" &
    py=$!
    read -r opened <"$fifo"
    sleep 1
    after=$(rss_kb "$pid")
    kill "$py" 2>/dev/null; wait "$py" 2>/dev/null; rm -f "$fifo"
    per=$(awk -v a="$after" -v b="$before" -v n="${opened:-0}" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / n; else print "nan" }')
    printf '%s\tidle_kib_per_conn\t1\t%s\n' "$t" "$per" >>"$RUNS"
    log "$t: ${opened:-0} idle TLS connections: RSS $before -> $after KiB ($per KiB each)"
    sleep 2
done

# ------------------------------------------------------------------ report
echo
echo "TLS termination, one worker each, ECDSA P-256; medians of $REPS rounds (idle: one run of $IDLE)"
echo
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
has_fulcrum=0; [[ " $TARGETS " == *" fulcrum "* ]] && has_fulcrum=1
printf '| metric |'; for t in $TARGETS; do printf ' %s |' "$t"; done
if (( has_fulcrum )); then for t in $TARGETS; do [[ $t != fulcrum ]] && printf ' fulcrum/%s |' "$t"; done; fi
echo
printf '|---|'; for t in $TARGETS; do printf -- '---|'; done
if (( has_fulcrum )); then for t in $TARGETS; do [[ $t != fulcrum ]] && printf -- '---|'; done; fi
echo
for m in full/s full_us resumed/s resumed_us keepalive_h2_us keepalive_h1_us idle_kib_per_conn; do
    declare -A MED=()
    printf '| %s |' "$m"
    for t in $TARGETS; do
        MED[$t]=$(awk -F'\t' -v t="$t" -v m="$m" '$1 == t && $2 == m { print $4 }' "$RUNS" | median)
        printf ' %s |' "${MED[$t]}"
    done
    if (( has_fulcrum )); then
        for t in $TARGETS; do
            [[ $t == fulcrum ]] && continue
            awk -v a="${MED[fulcrum]}" -v b="${MED[$t]}" 'BEGIN { if (b + 0 > 0) printf " %.2f |", a / b; else printf " - |" }'
        done
    fi
    echo
    unset MED
done
