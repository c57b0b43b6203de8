#!/usr/bin/env bash
# compare.sh: Fulcrum beside nginx and haproxy, same backends, same load, one run.
#
# Starts two nginx backends on 127.0.0.1 (`return 200`, ~100-byte body, X-Backend
# header, one worker each, no access log), then in front of them, with equivalent
# settings (one worker / thread, round robin, pooled keep-alive upstream connections):
#   fulcrum     target/release/fulcrum, workers = 1, per-core current-thread runtime
#   fulcrum-mt  the same with FULCRUM_RUNTIME=shared (one multi-thread runtime)
#   nginx       upstream + keepalive 64, proxy_http_version 1.1, Connection ""
#   haproxy     mode http, balance roundrobin, http-reuse always, nbthread 1
# Phase 1 (saturation): wrk -t1 -cCONNS for DURATION s, REPS rounds interleaved.
# Phase 2 (fixed rate): h2load --h1 --rps, open loop, at RATE req/s (default: half
# the slowest target's median saturation rate). On a 2-core machine saturation
# throughput barely separates proxies (client, backends and proxy all saturate
# together); CPU microseconds per request and p99 at a fixed rate do.
# Prints medians as markdown, with the ratios Fulcrum/nginx and Fulcrum/haproxy.
#
# Requires: nginx haproxy wrk curl taskset (util-linux) ps (procps); h2load
# (nghttp2-client) for phase 2:  apt-get install -y nginx haproxy wrk nghttp2-client curl
#
# Knobs (environment, defaults in brackets):
#   DURATION [10]  seconds per saturation run     CONNS [64]  wrk connections
#   REPS [3]       rounds, interleaved             WARMUP [2]  unrecorded seconds per target
#   RATE [auto]    phase-2 req/s; 0 skips phase 2  RATE_CONNS [16]  RATE_DURATION [5]
#   PIN [1]        proxies on PROXY_CPU [1], client and backends on CLIENT_CPU [0]; 0: no pinning
#   TARGETS ["fulcrum fulcrum-mt nginx haproxy"]  any subset, in that order or another
#   FULCRUM [target/release/fulcrum]  binary; built with `cargo build --release` if missing
#   KEEP [0]       1 keeps the scratch directory (configs, logs, raw outputs)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${DURATION:-10} CONNS=${CONNS:-64} REPS=${REPS:-3} WARMUP=${WARMUP:-2}
RATE=${RATE:-auto} RATE_CONNS=${RATE_CONNS:-16} RATE_DURATION=${RATE_DURATION:-5}
PIN=${PIN:-1} CLIENT_CPU=${CLIENT_CPU:-0} PROXY_CPU=${PROXY_CPU:-1} KEEP=${KEEP:-0}
TARGETS=${TARGETS:-fulcrum fulcrum-mt nginx haproxy}
FULCRUM=${FULCRUM:-$ROOT/target/release/fulcrum}

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

for tool in nginx haproxy wrk curl ps awk ss; do
    command -v "$tool" >/dev/null || die "missing $tool (apt-get install -y nginx haproxy wrk nghttp2-client curl)"
done
[[ $PIN == 1 ]] && { command -v taskset >/dev/null || die "missing taskset; or PIN=0"; }
[[ $PIN == 1 ]] && (( CLIENT_CPU >= $(nproc) || PROXY_CPU >= $(nproc) )) && die "not enough CPUs to pin; PIN=0"
HAVE_H2LOAD=1; command -v h2load >/dev/null || { HAVE_H2LOAD=0; log "no h2load: fixed-rate phase skipped"; }
if [[ " $TARGETS " == *" fulcrum"* && ! -x $FULCRUM ]]; then
    log "building $FULCRUM"; (cd "$ROOT" && cargo build --release) || die "cargo build --release failed"
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/compare.XXXXXX")
RUNS=$T/runs.tsv   # target kind rep rps p99_us cpu_s us_per_req rss_kb errors

# ------------------------------------------------------------------ processes
declare -a ROOTS=(); declare -A PID_OF=() PORT_OF=()
pin() { if [[ $PIN == 1 ]]; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
start() {   # name cpu command... (exec'd, so the PID is the program's)
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
starttime() { local s; { s=$(<"/proc/$1/stat"); } 2>/dev/null || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
cpu_ticks() {   # user+system ticks of a process tree, all threads
    local p s sum=0
    for p in $(tree "$1"); do
        { s=$(<"/proc/$p/stat"); } 2>/dev/null || continue; s=${s##*) }; set -- $s
        sum=$(( sum + ${12} + ${13} ))
    done
    echo "$sum"
}
reset_hwm() { local p; for p in $(tree "$1"); do echo 5 2>/dev/null >"/proc/$p/clear_refs"; done; }
hwm_kb() { local p; for p in $(tree "$1"); do awk '/^VmHWM:/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }

cleanup() {
    local rc=$? p v i left
    trap - EXIT INT TERM
    local -a victims=()   # pid:starttime, so a recycled PID is never hit
    for p in "${ROOTS[@]}"; do victims+=("$p:$(starttime "$p")"); done
    for p in "${ROOTS[@]}"; do for v in $(tree "$p"); do [[ $v != "$p" ]] && victims+=("$v:$(starttime "$v")"); done; done
    for p in "${ROOTS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for (( i = 0; i < 50; i++ )); do
        left=0
        for v in "${victims[@]}"; do [[ $(starttime "${v%%:*}" 2>/dev/null) == "${v#*:}" ]] && left=1; done
        (( left )) || break; sleep 0.1
    done
    # masters first (ROOTS come first in victims), so none respawns a killed worker
    for v in "${victims[@]}"; do [[ $(starttime "${v%%:*}" 2>/dev/null) == "${v#*:}" ]] && kill -KILL "${v%%:*}" 2>/dev/null; done
    wait 2>/dev/null
    if [[ $KEEP == 1 ]]; then log "scratch kept in $T"; else rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -a USED=()
free_port() {   # a random free loopback port, not handed out before
    local p
    for (( i = 0; i < 500; i++ )); do
        p=$(( 20000 + RANDOM % 40000 ))
        [[ " ${USED[*]} " == *" $p "* ]] && continue
        ss -Htln "sport = :$p" | grep -q . && continue
        USED+=("$p"); echo "$p"; return
    done
    die "no free port"
}
B1=$(free_port); USED+=("$B1"); B2=$(free_port); USED+=("$B2")

# ------------------------------------------------------------------ configs
BODY=$(printf 'fulcrum-bench-%085d' 0)   # 99 bytes + "\n"
nginx_conf() {   # dir listen-port body-of-http-block
    mkdir -p "$1/tmp"
    cat >"$1/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fcgi; uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi;
$3
}
EOF
}
for b in b1 b2; do
    port=$B1; [[ $b == b2 ]] && port=$B2
    nginx_conf "$T/$b" "$port" "    server {
        listen 127.0.0.1:$port;
        default_type text/plain;
        add_header X-Backend $b;
        location / { return 200 \"$BODY\n\"; }
    }"
done

declare -A CMD=()
for t in $TARGETS; do
    port=$(free_port); USED+=("$port"); PORT_OF[$t]=$port
    case $t in
    nginx)
        nginx_conf "$T/nginx" "$port" "    upstream pool {
        server 127.0.0.1:$B1; server 127.0.0.1:$B2;
        keepalive 64; keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }"
        CMD[$t]="nginx -p $T/nginx/ -c $T/nginx/nginx.conf -e $T/nginx/error.log" ;;
    haproxy)
        cat >"$T/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8192
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$port
    default_backend pool
backend pool
    balance roundrobin
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
EOF
        CMD[$t]="haproxy -db -f $T/haproxy.cfg" ;;
    fulcrum | fulcrum-mt)
        cat >"$T/$t.toml" <<EOF
[global]
workers = 1
access_log = "off"
[[listener]]
name = "bench"
bind = "127.0.0.1:$port"
pool = "b"
[[pool]]
name = "b"
balance = "round_robin"
backends = [{ address = "127.0.0.1:$B1" }, { address = "127.0.0.1:$B2" }]
EOF
        "$FULCRUM" check -c "$T/$t.toml" >/dev/null || die "fulcrum check rejected $T/$t.toml"
        rt="-u FULCRUM_RUNTIME"; [[ $t == fulcrum-mt ]] && rt="FULCRUM_RUNTIME=shared"
        CMD[$t]="env $rt $FULCRUM run -c $T/$t.toml" ;;
    *) die "unknown target $t (known: fulcrum fulcrum-mt nginx haproxy)" ;;
    esac
done

# ------------------------------------------------------------------ start
ready() {   # name port: wait for a 200
    for (( i = 0; i < 100; i++ )); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2/") == 200 ]] && return 0
        kill -0 "${PID_OF[$1]}" 2>/dev/null || { cat "$T/$1.out" >&2; die "$1 exited during start"; }
        sleep 0.1
    done
    cat "$T/$1.out" >&2; die "$1 gives no 200 on 127.0.0.1:$2"
}
spread() {  # name port: the backend's body, from both backends
    local seen="" h
    for (( i = 0; i < 6; i++ )); do
        h=$(curl -s -D - -o "$T/body" --max-time 2 "http://127.0.0.1:$2/" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-backend" { print $2 }')
        [[ $(<"$T/body") == "$BODY" ]] || die "$1 returned an unexpected body"
        seen+=" $h"
    done
    [[ $seen == *b1* && $seen == *b2* ]] || log "warning: $1 did not use both backends in 6 requests (saw:$seen)"
}
for b in b1 b2; do start "$b" "$CLIENT_CPU" nginx -p "$T/$b/" -c "$T/$b/nginx.conf" -e "$T/$b/error.log"; done
ready b1 "$B1"; ready b2 "$B2"
for t in $TARGETS; do
    # shellcheck disable=SC2086  # CMD holds a word list
    start "$t" "$PROXY_CPU" ${CMD[$t]}
done
for t in $TARGETS; do ready "$t" "${PORT_OF[$t]}"; spread "$t" "${PORT_OF[$t]}"; done

# ------------------------------------------------------------------ measure
cat >"$T/report.lua" <<'EOF'
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format("WRK %d %d %d %d\n", s.requests, s.duration, lat:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
CLK_TCK=$(getconf CLK_TCK)
url() { echo "http://127.0.0.1:${PORT_OF[$1]}/"; }

measure() {   # target kind rep -- client command...
    local t=$1 kind=$2 rep=$3 pid=${PID_OF[$1]} out="$T/$2.$1.$3" c0 c1 n rps p99 err wall
    shift 4
    reset_hwm "$pid"; c0=$(cpu_ticks "$pid")
    pin "$CLIENT_CPU" "$@" >"$out.out" 2>"$out.err"
    c1=$(cpu_ticks "$pid")
    kill -0 "$pid" 2>/dev/null || { cat "$T/$t.out" >&2; die "$t died during the run"; }
    if [[ $kind == sat ]]; then
        read -r _ n wall p99 err < <(grep '^WRK ' "$out.out") || { cat "$out.out" "$out.err" >&2; die "no wrk report for $t"; }
        rps=$(awk -v n="$n" -v w="$wall" 'BEGIN { printf "%.0f", n / (w / 1e6) }')
    else   # h2load log lines: start_us status duration_us; nearest-rank p99 of the 200s
        read -r n err p99 < <(awk -F'\t' '{ print $2, $3 }' "$out.log" | sort -k2,2n | awk '
            { all++; if ($1 == 200) v[++ok] = $2 }
            END { k = int(0.99 * ok + 0.999999); if (k < 1) k = 1; print all + 0, all - ok, (ok ? v[k] : "NA") }')
        rps=$(awk '/^finished in/ { gsub(",", ""); print $4; exit }' "$out.out")
        [[ -n $rps ]] || { cat "$out.out" "$out.err" >&2; die "no h2load summary for $t"; }
    fi
    awk -v t="$t" -v k="$kind" -v r="$rep" -v rps="$rps" -v p99="$p99" -v d=$(( c1 - c0 )) -v hz="$CLK_TCK" \
        -v n="$n" -v rss="$(hwm_kb "$pid")" -v e="$err" 'BEGIN {
        printf "%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%s\t%s\n", t, k, r, rps, p99, d / hz, (n ? d / hz / n * 1e6 : 0), rss, e }' >>"$RUNS"
    log "$(tail -1 "$RUNS" | awk -F'\t' '{ printf "%-10s %-4s rep %s: %8s req/s  p99 %6s us  cpu %5s s  %6s us/req  rss %s KiB  errors %s", $1, $2, $3, $4, $5, $6, $7, $8, $9 }')"
}

started=$(date +%s)
log "scratch $T; targets: $TARGETS; pin=$PIN (proxies cpu $PROXY_CPU, client+backends cpu $CLIENT_CPU)"
for t in $TARGETS; do pin "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$(url "$t")" >/dev/null 2>&1; done
for (( rep = 1; rep <= REPS; rep++ )); do
    for t in $TARGETS; do
        measure "$t" sat "$rep" -- wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$T/report.lua" "$(url "$t")"
        sleep 0.5
    done
done

# medians of column $2 per target of kind $1: "target median" lines
medians() {
    awk -F'\t' -v k="$1" -v c="$2" '$2 == k { v[$1] = v[$1] " " $c }
        END { for (t in v) { n = split(substr(v[t], 2), a, " ")
              for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { x = a[j]; a[j] = a[j-1]; a[j-1] = x }
              print t, (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) } }' "$RUNS"
}
if [[ $HAVE_H2LOAD == 1 && $RATE != 0 ]]; then
    [[ $RATE == auto ]] && RATE=$(medians sat 4 | awk '{ if (m == "" || $2 < m) m = $2 } END { r = int(m / 2000) * 1000; print (r < 1000 ? 1000 : r) }')
    PER_CONN=$(( RATE / RATE_CONNS )); (( PER_CONN >= 1 )) || PER_CONN=1; RATE=$(( PER_CONN * RATE_CONNS ))
    log "fixed rate: $RATE req/s ($RATE_CONNS connections x $PER_CONN req/s)"
    for (( rep = 1; rep <= REPS; rep++ )); do
        for t in $TARGETS; do
            measure "$t" rate "$rep" -- h2load --h1 -t1 -c"$RATE_CONNS" --rps "$PER_CONN" -D "$RATE_DURATION" \
                --log-file "$T/rate.$t.$rep.log" "$(url "$t")"
            sleep 0.5
        done
    done
fi

# ------------------------------------------------------------------ report
# table KIND: medians per target, then Fulcrum/peer ratios (lower is better except req/s)
table() {
    local kind=$1; shift
    local -a cols=("$@")   # column numbers of runs.tsv: 4 rps 5 p99 6 cpu_s 7 us/req 8 rss 9 errors
    local -A med=()
    local c t
    for c in "${cols[@]}"; do while read -r t v; do med[$t.$c]=$v; done < <(medians "$kind" "$c"); done
    local -A title=([4]="req/s" [5]="p99 ms" [6]="proxy CPU s" [7]="CPU us/req" [8]="peak RSS MiB" [9]="errors")
    local head="| target |" rule="|---|"
    for c in "${cols[@]}"; do head+=" ${title[$c]} |"; rule+="---:|"; done
    echo "$head"; echo "$rule"
    fmt() {   # column value
        case $1 in 4) printf '%.0f' "$2" ;; 5) awk -v v="$2" 'BEGIN { printf "%.2f", v / 1000 }' ;;
                   8) awk -v v="$2" 'BEGIN { printf "%.1f", v / 1024 }' ;; *) echo "$2" ;; esac
    }
    for t in $TARGETS; do
        local row="| $t |"
        for c in "${cols[@]}"; do row+=" $(fmt "$c" "${med[$t.$c]:-NA}") |"; done
        echo "$row"
    done
    local f p
    for f in fulcrum fulcrum-mt; do
        [[ " $TARGETS " == *" $f "* ]] || continue
        for p in nginx haproxy; do
            [[ " $TARGETS " == *" $p "* ]] || continue
            local row="| $f / $p |"
            for c in "${cols[@]}"; do
                row+=" $(awk -v a="${med[$f.$c]:-0}" -v b="${med[$p.$c]:-0}" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "-" }') |"
            done
            echo "$row"
        done
    done
}

echo "## Fulcrum vs nginx vs haproxy, $(date -u '+%Y-%m-%d %H:%M UTC'), $(( $(date +%s) - started )) s"
echo
echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), kernel $(uname -r)"
echo "- $(nginx -v 2>&1 | sed 's/^nginx version: //'), haproxy $(haproxy -v | awk 'NR == 1 { print $3 }'), $("$FULCRUM" --version 2>/dev/null || echo fulcrum)"
if [[ $PIN == 1 ]]; then echo "- placement: proxies on CPU $PROXY_CPU (one at a time under load), client + backends on CPU $CLIENT_CPU"
else echo "- placement: unpinned"; fi
echo "- medians of $REPS interleaved runs; ratios are Fulcrum / peer (req/s: higher is better; the rest: lower)"
echo
echo "### Saturation: wrk -t1 -c$CONNS -d${DURATION}s"
echo
table sat 4 5 6 7 8 9
if grep -q $'\trate\t' "$RUNS"; then
    echo
    echo "### Fixed rate (open loop): h2load --h1 -c$RATE_CONNS at $RATE req/s for ${RATE_DURATION}s"
    echo
    table rate 4 5 7 8 9
fi
