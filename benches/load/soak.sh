#!/usr/bin/env bash
# soak.sh: Fulcrum under mixed traffic, reloads and a flapping backend for DURATION seconds;
# fails if its RSS or open descriptors grow past a bound after warm-up.
#
#   benches/load/soak.sh [DURATION]        # seconds; or env DURATION; default 3600
#
# Starts on 127.0.0.1, random free ports: three nginx backends (b1, b2, b3; b3 is stopped and
# started again by PID), a WebSocket echo and a TCP echo (benches/load/soak_peers.py), and
# Fulcrum (release build) with an http listener (pool b1 b2 b3 with health checks, "/ws" routed
# to the WebSocket echo), a tcp listener to the TCP echo and the admin server. Load, all of it
# running for the whole soak:
#   - HTTP/1.1: h2load --h1, H1_CLIENTS connections at RPS requests/s each, in 10 s rounds;
#   - h2c: h2load, H2_CLIENTS connections x 4 streams at RPS requests/s each, in 10 s rounds;
#   - WebSocket: 2 loops of upgrade + 5 echoed frames + close, one tunnel held open throughout;
#   - TCP: 2 loops of connect + 5 echoed lines + close, one connection held open throughout.
# Every RELOAD_EVERY s the watched config is overwritten with the other of two files (they
# differ in weights and retries) and reloaded, alternately by SIGHUP and POST /api/v1/reload
# (FULCRUM_WATCH=0, so each reload is one of these). Every KILL_EVERY s b3's nginx is stopped
# (SIGTERM to its master PID) and started again KILL_EVERY/2 s later.
#
# Every SAMPLE_EVERY s the Fulcrum process's RSS (VmRSS), open descriptors (/proc/PID/fd) and
# CPU (% of one core over the interval) go to OUT_DIR/soak.tsv; OUT_DIR/soak.png plots RSS and
# descriptors (gnuplot; installed with apt-get when missing and we are root, else skipped).
# Bound: with BASE the first sample at or after WARMUP s and LAST the last sample, exit 1 if
#   LAST.rss_kb > BASE.rss_kb * RSS_FACTOR + RSS_SLACK_KB   or
#   LAST.fds    > BASE.fds    * FD_FACTOR  + FD_SLACK
# or if Fulcrum exits during the soak. Load-generator errors are reported, not failed on
# (MAX_ERRORS >= 0 makes more than that many a failure too).
#
# Knobs (environment): DURATION [3600], WARMUP [min(300, DURATION/3)], SAMPLE_EVERY [10],
# RELOAD_EVERY [10], KILL_EVERY [30], RSS_FACTOR [1.5], RSS_SLACK_KB [8192], FD_FACTOR [1.5],
# FD_SLACK [32], RPS [50], H1_CLIENTS [4], H2_CLIENTS [4], WORKERS [2], MAX_ERRORS [-1],
# OUT_DIR [target/soak], FULCRUM [target/release/fulcrum], PLOT [1], KEEP [0: scratch removed].
# Requires: nginx h2load (nghttp2-client) curl python3 ss (iproute2); gnuplot for the plot.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

DURATION=${1:-${DURATION:-3600}}
WARMUP=${WARMUP:-$(( DURATION / 3 < 300 ? DURATION / 3 : 300 ))}
SAMPLE_EVERY=${SAMPLE_EVERY:-10}
RELOAD_EVERY=${RELOAD_EVERY:-10}
KILL_EVERY=${KILL_EVERY:-30}
RSS_FACTOR=${RSS_FACTOR:-1.5}
RSS_SLACK_KB=${RSS_SLACK_KB:-8192}
FD_FACTOR=${FD_FACTOR:-1.5}
FD_SLACK=${FD_SLACK:-32}
RPS=${RPS:-50}
H1_CLIENTS=${H1_CLIENTS:-4}
H2_CLIENTS=${H2_CLIENTS:-4}
WORKERS=${WORKERS:-2}
MAX_ERRORS=${MAX_ERRORS:--1}
OUT_DIR=${OUT_DIR:-target/soak}
FULCRUM=${FULCRUM:-target/release/fulcrum}
PLOT=${PLOT:-1}
KEEP=${KEEP:-0}
PEERS=$ROOT/benches/load/soak_peers.py

log() { printf '[soak %5ds] %s\n' "$SECONDS" "$*" >&2; }
die() { log "error: $*"; exit 2; }

if [[ ! $DURATION =~ ^[0-9]+$ ]] || (( DURATION == 0 )); then die "DURATION must be a positive integer (seconds)"; fi
(( WARMUP < DURATION )) || die "WARMUP ($WARMUP) must be below DURATION ($DURATION)"
for tool in nginx h2load curl python3 ss awk; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y nginx nghttp2-client curl python3 iproute2)"
done
if [[ ! -x $FULCRUM ]]; then
    log "building $FULCRUM"; cargo build --release || die "cargo build --release failed"
fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/soak.XXXXXX")

# ------------------------------------------------------------------ processes
declare -a PIDS=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}" ${B3_PID:+"$B3_PID"}; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}" ${B3_PID:+"$B3_PID"}; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
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
        USED+=("$p"); echo "$p"; return
    done
    die "no free port"
}
wait_port() {   # port pid name
    local i
    for (( i = 0; i < 100; i++ )); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { cat "$T/$3.out" >&2 || true; die "$3 exited during start"; }
        sleep 0.1
    done
    die "$3 does not listen on 127.0.0.1:$1"
}

# Ports are chosen in this shell (not in $(...) subshells) so USED keeps them.
pick() { local -n var=$1; var=$(free_port); USED+=("$var"); }
pick B1; pick B2; pick B3; pick WS_PORT; pick ECHO_PORT; pick HTTP_PORT; pick TCP_PORT; pick ADMIN_PORT
ADMIN=127.0.0.1:$ADMIN_PORT

# ------------------------------------------------------------------ configs
nginx_conf() {   # name port
    local d=$T/$1
    mkdir -p "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fcgi; uwsgi_temp_path $d/tmp/uwsgi; scgi_temp_path $d/tmp/scgi;
    server {
        listen 127.0.0.1:$2;
        default_type text/plain;
        add_header X-Backend $1;
        location /healthz { return 200 "ok\n"; }
        location / { return 200 "soak $1 ok, a body of about a hundred bytes .........................\n"; }
    }
}
EOF
}
for b in b1 b2 b3; do
    port=$B1; [[ $b == b2 ]] && port=$B2; [[ $b == b3 ]] && port=$B3
    nginx_conf "$b" "$port"
done

fulcrum_conf() {   # weight-of-b2 retries
    cat <<EOF
[global]
workers = $WORKERS
access_log = "off"
admin = "$ADMIN"
shutdown_grace = "2s"

[[listener]]
name = "web"
bind = "127.0.0.1:$HTTP_PORT"
pool = "web"

[[listener.route]]
path_prefix = "/ws"
pool = "ws"

[[listener]]
name = "echo"
bind = "127.0.0.1:$TCP_PORT"
protocol = "tcp"
pool = "echo"

[[pool]]
name = "web"
balance = "round_robin"
retries = $2
backends = [
  { address = "127.0.0.1:$B1" },
  { address = "127.0.0.1:$B2", weight = $1 },
  { address = "127.0.0.1:$B3" },
]

[pool.health]
kind = "http"
path = "/healthz"
interval = "1s"
timeout = "500ms"
fall = 2
rise = 2

[[pool]]
name = "ws"
backends = [{ address = "127.0.0.1:$WS_PORT" }]

[[pool]]
name = "echo"
backends = [{ address = "127.0.0.1:$ECHO_PORT" }]
EOF
}
fulcrum_conf 1 2 >"$T/a.toml"
fulcrum_conf 2 3 >"$T/b.toml"
cp "$T/a.toml" "$T/fulcrum.toml"
for f in a b; do "$FULCRUM" check -c "$T/$f.toml" >/dev/null || die "fulcrum check rejected $T/$f.toml"; done

# ------------------------------------------------------------------ start
start() {   # name command... (exec'd in the background, so $! is the program's PID)
    local name=$1; shift
    "$@" >>"$T/$name.out" 2>&1 &
    LAST_PID=$!
}
for b in b1 b2; do
    start "$b" nginx -p "$T/$b/" -c "$T/$b/nginx.conf" -e "$T/$b/error.log"; PIDS+=("$LAST_PID")
done
B3_PID=""
start_b3() { start b3 nginx -p "$T/b3/" -c "$T/b3/nginx.conf" -e "$T/b3/error.log"; B3_PID=$LAST_PID; }
start_b3
start ws python3 "$PEERS" ws-server "$WS_PORT"; PIDS+=("$LAST_PID"); WS_PID=$LAST_PID
start echo python3 "$PEERS" tcp-echo "$ECHO_PORT"; PIDS+=("$LAST_PID"); ECHO_PID=$LAST_PID
wait_port "$B1" "${PIDS[0]}" b1; wait_port "$B2" "${PIDS[1]}" b2; wait_port "$B3" "$B3_PID" b3
wait_port "$WS_PORT" "$WS_PID" ws; wait_port "$ECHO_PORT" "$ECHO_PID" echo

FULCRUM_WATCH=0 start fulcrum "$FULCRUM" run -c "$T/fulcrum.toml"
FPID=$LAST_PID; PIDS=("$FPID" "${PIDS[@]}")   # Fulcrum first: stopped before its backends
wait_port "$HTTP_PORT" "$FPID" fulcrum; wait_port "$TCP_PORT" "$FPID" fulcrum; wait_port "$ADMIN_PORT" "$FPID" fulcrum
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$HTTP_PORT/")
[[ $code == 200 ]] || die "Fulcrum answers $code on 127.0.0.1:$HTTP_PORT"
log "Fulcrum PID $FPID: http 127.0.0.1:$HTTP_PORT, tcp 127.0.0.1:$TCP_PORT, admin $ADMIN; backends $B1 $B2 $B3 (b3 flaps), ws $WS_PORT, echo $ECHO_PORT"
log "soak of ${DURATION}s, warm-up ${WARMUP}s, output in $OUT_DIR"

# ------------------------------------------------------------------ load
END=$(( SECONDS + DURATION ))
h2load_loop() {   # name extra-args...: 10 s rounds until END; one summary line per round
    local name=$1 left hp=""; shift
    trap '[[ -n $hp ]] && kill -TERM "$hp" 2>/dev/null; exit 0' TERM
    while (( (left = END - SECONDS) > 1 )); do
        (( left > 10 )) && left=10
        h2load "$@" -D "$left" "http://127.0.0.1:$HTTP_PORT/" >"$T/$name.round" 2>&1 & hp=$!
        wait "$hp" || true
        hp=""
        awk -v t="$SECONDS" '/^requests:/ { r = $0 } /^status codes:/ { s = $0 } END { print t "\t" r "\t" s }' \
            "$T/$name.round" >>"$T/$name.rounds"
        grep -i 'error\|fail' "$T/$name.round" | grep -v '^requests:' | head -3 >>"$T/$name.errlog" || true
    done
}
declare -a LOAD=()
h2load_loop h1 --h1 -c "$H1_CLIENTS" --rps "$RPS" & LOAD+=($!)
h2load_loop h2 -c "$H2_CLIENTS" -m 4 --rps "$RPS" & LOAD+=($!)
start wsc python3 "$PEERS" ws-client "127.0.0.1:$HTTP_PORT" "$T/ws.counts"; LOAD+=("$LAST_PID")
start tcpc python3 "$PEERS" tcp-client "127.0.0.1:$TCP_PORT" "$T/tcp.counts"; LOAD+=("$LAST_PID")
PIDS=("${LOAD[@]}" "${PIDS[@]}")   # stopped first at exit

# ------------------------------------------------------------------ soak
TSV=$OUT_DIR/soak.tsv
printf 't_s\trss_kb\tfds\tcpu_pct\treloads\treload_failures\tb3_up\n' >"$TSV"
CLK_TCK=$(getconf CLK_TCK)
ticks() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; read -ra f <<<"$s"; echo $(( f[11] + f[12] )); }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fds() { local a=("/proc/$1/fd/"*); echo "${#a[@]}"; }
RELOADS=0 RELOAD_FAILS=0 B3_UP=1 KILLS=0
last_reload() { curl -s --max-time 2 "http://$ADMIN/api/v1/status" | tr -d ' \n' | grep -o '"last_reload":{[^}]*' || true; }
reload() {
    local src=a ok before
    (( RELOADS % 2 == 0 )) && src=b
    cp "$T/$src.toml" "$T/fulcrum.toml.new" && mv "$T/fulcrum.toml.new" "$T/fulcrum.toml"
    if (( RELOADS % 2 == 0 )); then
        before=$(last_reload)
        kill -HUP "$FPID"
        for _ in $(seq 20); do sleep 0.1; ok=$(last_reload); [[ $ok != "$before" ]] && break; done
        if [[ $ok == "$before" || $ok != *'"ok":true'* ]]; then
            RELOAD_FAILS=$(( RELOAD_FAILS + 1 )); log "SIGHUP reload not confirmed: ${ok:0:200}"
        fi
    else
        ok=$(curl -s -X POST --max-time 5 "http://$ADMIN/api/v1/reload" || true)
        [[ $ok == *'"ok":true'* ]] || { RELOAD_FAILS=$(( RELOAD_FAILS + 1 )); log "API reload failed: ${ok:0:200}"; }
    fi
    RELOADS=$(( RELOADS + 1 ))
}
flap() {
    if (( B3_UP )); then
        kill -TERM "$B3_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$B3_PID" 2>/dev/null || break; sleep 0.1; done
        wait "$B3_PID" 2>/dev/null || true
        B3_PID=""; B3_UP=0; KILLS=$(( KILLS + 1 ))
    else
        start_b3; B3_UP=1
    fi
}
prev_ticks=$(ticks "$FPID"); prev_t=$SECONDS
sample() {
    local now t cpu
    now=$(ticks "$FPID"); t=$SECONDS
    cpu=$(awk -v d=$(( now - prev_ticks )) -v hz="$CLK_TCK" -v dt=$(( t - prev_t )) 'BEGIN { printf "%.1f", (dt > 0 ? 100 * d / hz / dt : 0) }')
    prev_ticks=$now; prev_t=$t
    printf '%d\t%d\t%d\t%s\t%d\t%d\t%d\n' "$(( DURATION - (END - t) ))" "$(rss_kb "$FPID")" "$(fds "$FPID")" \
        "$cpu" "$RELOADS" "$RELOAD_FAILS" "$B3_UP" >>"$TSV"
}
sample
START=$(( END - DURATION )); FAILED=""
next=1
while (( SECONDS < END )); do
    # one tick per second; each action on its own period from the start
    while (( SECONDS - START < next )); do sleep 0.2; done
    el=$next; next=$(( next + 1 ))
    kill -0 "$FPID" 2>/dev/null || { FAILED="Fulcrum (PID $FPID) exited during the soak"; break; }
    (( el % RELOAD_EVERY == 0 )) && reload
    (( el % KILL_EVERY == 0 )) && flap
    (( el % KILL_EVERY == KILL_EVERY / 2 && B3_UP == 0 )) && flap
    (( el % SAMPLE_EVERY == 0 )) && sample
    (( el % 60 == 0 )) && log "$(tail -1 "$TSV" | awk -F'\t' '{ printf "t=%ss rss=%.1f MiB fds=%s cpu=%s%% reloads=%s", $1, $2 / 1024, $3, $4, $5 }')"
done
curl -s --max-time 2 "http://$ADMIN/metrics" >"$OUT_DIR/metrics.txt" || true

# ------------------------------------------------------------------ verdict
# Stop the load first so its counters are final.
for p in "${LOAD[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${LOAD[@]}"; do wait "$p" 2>/dev/null || true; done
sum_rounds() {   # file: total succeeded failed errored
    [[ -f $1 ]] || { echo "0 0 0 0"; return; }
    awk -F'\t' '{ n = split($2, w, /[ ,]+/); for (i = 1; i < n; i++) { if (w[i+1] == "total") t += w[i];
        if (w[i+1] == "succeeded") s += w[i]; if (w[i+1] == "failed") f += w[i]; if (w[i+1] == "errored") e += w[i] } }
        END { print t + 0, s + 0, f + 0, e + 0 }' "$1"
}
read -r h1t h1s h1f h1e <<<"$(sum_rounds "$T/h1.rounds")"
read -r h2t h2s h2f h2e <<<"$(sum_rounds "$T/h2.rounds")"
non2xx() { [[ -f $1 ]] && awk -F'\t' '{ n = split($3, w, /[ ,]+/); for (i = 1; i < n; i++) if (w[i+1] ~ /^[345]xx$/) x += w[i] } END { print x + 0 }' "$1" || echo 0; }
h1x=$(non2xx "$T/h1.rounds"); h2x=$(non2xx "$T/h2.rounds")
cnt() { awk -v k="$2" '$1 == k { sub(/^[^ ]+ /, ""); print; f = 1 } END { if (!f) print (k == "last_error" ? "-" : 0) }' "$1" 2>/dev/null || echo 0; }
wso=$(cnt "$T/ws.counts" ok); wse=$(cnt "$T/ws.counts" errors); wsl=$(cnt "$T/ws.counts" last_error)
tco=$(cnt "$T/tcp.counts" ok); tce=$(cnt "$T/tcp.counts" errors); tcl=$(cnt "$T/tcp.counts" last_error)
ERRORS=$(( h1f + h1e + h2f + h2e + h1x + h2x + wse + tce ))

read -r base_t base_rss base_fds last_t last_rss last_fds <<<"$(awk -F'\t' -v w="$WARMUP" 'NR > 1 {
    if (!b && $1 >= w) { b = 1; bt = $1; br = $2; bf = $3 } lt = $1; lr = $2; lf = $3 }
    END { print bt + 0, br + 0, bf + 0, lt + 0, lr + 0, lf + 0 }' "$TSV")"
first=$(awk -F'\t' 'NR == 2 { printf "%d %d", $2, $3 }' "$TSV")
peak=$(awk -F'\t' 'NR > 1 && $2 > r { r = $2 } NR > 1 && $3 > f { f = $3 } END { printf "%d %d", r, f }' "$TSV")
rss_bound=$(awk -v b="$base_rss" -v k="$RSS_FACTOR" -v s="$RSS_SLACK_KB" 'BEGIN { printf "%d", b * k + s }')
fd_bound=$(awk -v b="$base_fds" -v k="$FD_FACTOR" -v s="$FD_SLACK" 'BEGIN { printf "%d", b * k + s }')
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

{
    echo "soak: ${DURATION}s, warm-up ${WARMUP}s, ${RELOADS} reloads (${RELOAD_FAILS} not confirmed), b3 killed ${KILLS} times"
    echo "RSS: start $(mib "${first% *}"), warm-up (t=${base_t}s) $(mib "$base_rss"), end (t=${last_t}s) $(mib "$last_rss"), peak $(mib "${peak% *}"); bound $(mib "$rss_bound")"
    echo "fds: start ${first#* }, warm-up ${base_fds}, end ${last_fds}, peak ${peak#* }; bound ${fd_bound}"
    echo "HTTP/1.1: ${h1t} requests, ${h1s} succeeded, ${h1f} failed, ${h1e} errored, ${h1x} non-2xx"
    echo "h2c:      ${h2t} requests, ${h2s} succeeded, ${h2f} failed, ${h2e} errored, ${h2x} non-2xx"
    echo "WebSocket: ${wso} ok, ${wse} errors (last: ${wsl})"
    echo "TCP:       ${tco} ok, ${tce} errors (last: ${tcl})"
    if [[ -s $T/h1.errlog || -s $T/h2.errlog ]]; then
        echo "h2load error lines:"; cat "$T"/h*.errlog 2>/dev/null | sort | uniq -c | sort -rn | head -5
    fi
} | tee "$OUT_DIR/summary.txt" >&2

(( last_rss > rss_bound )) && FAILED+="${FAILED:+; }RSS grew past the bound ($(mib "$last_rss") > $(mib "$rss_bound"))"
(( last_fds > fd_bound )) && FAILED+="${FAILED:+; }open fds grew past the bound ($last_fds > $fd_bound)"
(( MAX_ERRORS >= 0 && ERRORS > MAX_ERRORS )) && FAILED+="${FAILED:+; }${ERRORS} load errors > MAX_ERRORS=${MAX_ERRORS}"

# ------------------------------------------------------------------ plot
if [[ $PLOT == 1 ]]; then
    if ! command -v gnuplot >/dev/null && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        log "installing gnuplot-nox for the plot"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >"$T/apt.log" 2>&1 || true
    fi
    if command -v gnuplot >/dev/null; then
        gnuplot <<EOF || log "gnuplot failed; no plot"
set terminal pngcairo size 800,400 noenhanced
set output "$OUT_DIR/soak.png"
set title "Fulcrum soak, ${DURATION} s: reloads every ${RELOAD_EVERY} s, a backend killed every ${KILL_EVERY} s"
set xlabel "seconds"
set ylabel "RSS (MiB)"
set y2label "open fds"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set key bottom right
set arrow from $WARMUP, graph 0 to $WARMUP, graph 1 nohead dashtype 2
plot "$TSV" using 1:(\$2/1024) skip 1 with linespoints title "RSS (MiB)", \
     "$TSV" using 1:3 skip 1 axes x1y2 with linespoints title "open fds"
EOF
        [[ -s $OUT_DIR/soak.png ]] && log "plot: $OUT_DIR/soak.png"
    else
        log "no gnuplot (apt-get install -y gnuplot-nox): plot skipped"
    fi
fi
log "samples: $TSV, summary: $OUT_DIR/summary.txt"

if [[ -n $FAILED ]]; then log "FAIL: $FAILED"; exit 1; fi
log "PASS: RSS and fds within bounds after warm-up"
