#!/usr/bin/env bash
# tcp.sh: layer-4 throughput, Fulcrum (splice, and the copy fallback) beside haproxy mode tcp
# and a direct connection, one run each, with the proxy's CPU seconds.
#
# A sink (examples/tcp_bench.rs) discards what it receives and acknowledges each connection's
# EOF; the sender measures from its first byte to the last acknowledgement. Two loads: one
# connection carrying TOTAL_MIB, and CONNS parallel connections sharing TOTAL_MIB. Proxies run
# with one worker / thread (workers = 1, nbthread 1); CPU seconds are utime + stime of the
# proxy process over the run, from /proc.
#
# Requires: haproxy, bc. Knobs: TOTAL_MIB [1024], CONNS [64], ports SINK_PORT [19501],
# FULCRUM_PORT [19502], HAPROXY_PORT [19503], FULCRUM [target/release/fulcrum],
# BENCH [target/release/examples/tcp_bench] (built with cargo build --release if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

TOTAL_MIB=${TOTAL_MIB:-1024}
CONNS=${CONNS:-64}
FULCRUM=${FULCRUM:-target/release/fulcrum}
BENCH=${BENCH:-target/release/examples/tcp_bench}
[[ -x $FULCRUM && -x $BENCH ]] || cargo build --release --bin fulcrum --example tcp_bench

SINK_PORT=${SINK_PORT:-19501} FULCRUM_PORT=${FULCRUM_PORT:-19502} HAPROXY_PORT=${HAPROXY_PORT:-19503}
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

"$BENCH" sink "127.0.0.1:$SINK_PORT" & PIDS+=($!)

cat >"$TMP/fulcrum.toml" <<TOML
[global]
workers = 1
access_log = "off"
[[listener]]
name = "tcp"
bind = "127.0.0.1:$FULCRUM_PORT"
protocol = "tcp"
pool = "sink"
[[pool]]
name = "sink"
backends = [{ address = "127.0.0.1:$SINK_PORT" }]
TOML
cat >"$TMP/haproxy.cfg" <<CFG
global
    nbthread 1
defaults
    mode tcp
    timeout connect 1s
    timeout client 60s
    timeout server 60s
listen tcp
    bind 127.0.0.1:$HAPROXY_PORT
    server sink 127.0.0.1:$SINK_PORT
CFG

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# run NAME PORT PID: both loads, with the CPU seconds PID spent on each ("-" without PID).
run() {
    local name=$1 port=$2 pid=${3:-} before after out
    for conns in 1 "$CONNS"; do
        [[ -n $pid ]] && before=$(cpu_seconds "$pid")
        out=$("$BENCH" send "127.0.0.1:$port" "$TOTAL_MIB" "$conns")
        local cpu="-"
        [[ -n $pid ]] && after=$(cpu_seconds "$pid") && cpu=$(echo "$after - $before" | bc)
        echo "| $name | $conns | ${out%% MiB/s*} | $cpu |"
    done
}

start_fulcrum() {
    env "$@" "$FULCRUM" run -c "$TMP/fulcrum.toml" >"$TMP/fulcrum.log" 2>&1 & FPID=$!
    PIDS+=("$FPID")
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$FULCRUM_PORT") 2>/dev/null && break; sleep 0.05; done
}

echo "| path | connections | MiB/s | proxy CPU s |"
echo "|---|---:|---:|---:|"
run direct "$SINK_PORT"
start_fulcrum FULCRUM_TCP_COPY=0
run "Fulcrum (splice)" "$FULCRUM_PORT" "$FPID"
kill "$FPID"; wait "$FPID" 2>/dev/null || true
start_fulcrum FULCRUM_TCP_COPY=1
run "Fulcrum (copy)" "$FULCRUM_PORT" "$FPID"
kill "$FPID"; wait "$FPID" 2>/dev/null || true
haproxy -f "$TMP/haproxy.cfg" -db >"$TMP/haproxy.log" 2>&1 & HPID=$!
PIDS+=("$HPID")
sleep 0.3
run "haproxy $(haproxy -v | awk 'NR==1 {print $3}') mode tcp" "$HAPROXY_PORT" "$HPID"
