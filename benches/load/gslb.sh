#!/usr/bin/env bash
# GeoDNS on one core: Fulcrum's [gslb] responder against dnsmasq answering a static A record,
# in the same run, each server pinned to the same core with taskset, dnsperf on the others.
#
# Fulcrum computes the querier's region (dnsperf sends from 127.1.0.1, in region "east") and
# the health of the record's pool for every query; dnsmasq answers one `--address` record.
# Two runs per server: saturation (dnsperf's qps; no -Q) and a fixed rate (RATE qps, -v) whose
# per-query latencies give the p50/p99 of the answer path at a load both servers can carry.
#
#   benches/load/gslb.sh                  # builds the release binary if missing
#   DURATION=20 RATE=20000 CORE=1 benches/load/gslb.sh
#
# Needs dnsperf and dnsmasq (Debian: apt-get install dnsperf dnsmasq-base).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
RATE=${RATE:-20000}
CORE=${CORE:-1}
CLIENT_CORES=${CLIENT_CORES:-0}
CLIENTS=${CLIENTS:-4}
FULCRUM_PORT=${FULCRUM_PORT:-15353}
DNSMASQ_PORT=${DNSMASQ_PORT:-15354}
BIN=${FULCRUM_BIN:-target/release/fulcrum}

for tool in dnsperf dnsmasq taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install dnsperf dnsmasq-base)" >&2; exit 1; }
done
[ -x "$BIN" ] || cargo build --release --bin fulcrum

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

cat >"$tmp/fulcrum.toml" <<EOF
[global]
workers = 1
access_log = "off"
admin = ""

[[listener]]
name = "web"
bind = "127.0.0.1:0"
pool = "web"

[[pool]]
name = "web"
backends = [
  { address = "127.0.0.1:1", region = "east" },
  { address = "127.0.0.1:2", region = "west" },
]
region_split = { east = 50, west = 50 }

[[region]]
name = "east"
cidrs = ["127.1.0.0/16"]
failover = ["west"]
vips = ["203.0.113.10"]

[[region]]
name = "west"
cidrs = ["127.2.0.0/16"]
failover = ["east"]
vips = ["198.51.100.10"]

[gslb]
bind = "127.0.0.1:$FULCRUM_PORT"
zone = "example.com"
records = [{ name = "www.example.com", pools = ["web"] }]
EOF
echo "www.example.com A" >"$tmp/queries"

FULCRUM_LOG=warn taskset -c "$CORE" "$BIN" run -c "$tmp/fulcrum.toml" &
pids+=($!)
taskset -c "$CORE" dnsmasq --no-daemon --keep-in-foreground --port="$DNSMASQ_PORT" \
  --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --pid-file= \
  --log-facility=/dev/null --address=/www.example.com/203.0.113.10 &
pids+=($!)

# Ready: both answer.
for _ in $(seq 100); do
  if dig +short +time=1 +tries=1 -p "$FULCRUM_PORT" @127.0.0.1 www.example.com | grep -q . &&
    dig +short +time=1 +tries=1 -p "$DNSMASQ_PORT" @127.0.0.1 www.example.com | grep -q .; then
    break
  fi
  sleep 0.1
done

perf() { # name port extra-args...
  local name=$1 port=$2; shift 2
  taskset -c "$CLIENT_CORES" dnsperf -s 127.0.0.1 -p "$port" -a 127.1.0.1 -d "$tmp/queries" \
    -l "$DURATION" -c "$CLIENTS" -q 200 "$@"
}

percentiles() { # verbose dnsperf output on stdin -> "p50 p99" in microseconds
  awk '$1 == ">" { print $NF * 1000000 }' | sort -n | awk '
    { v[NR] = $1 }
    END { if (NR == 0) { print "- -"; exit }
          printf "%.0f %.0f\n", v[int(NR * 0.50) + 1], v[int(NR * 0.99) + 1] }'
}

cpu_ticks() { # pid -> user and system clock ticks of the process (all its threads)
  awk '{ print $14, $15 }' "/proc/$1/stat"
}

hz=$(getconf CLK_TCK)
printf '%-8s %12s %8s %12s %10s %10s %10s\n' server "max qps" lost "cpu us/q" "user us/q" "p50 us" "p99 us"
for server in fulcrum dnsmasq; do
  port=$FULCRUM_PORT pid=${pids[0]}
  [ "$server" = dnsmasq ] && port=$DNSMASQ_PORT pid=${pids[1]}
  read -r u0 s0 < <(cpu_ticks "$pid")
  sat=$(perf "$server" "$port")
  read -r u1 s1 < <(cpu_ticks "$pid")
  qps=$(awk '/Queries per second/ { print $4 }' <<<"$sat")
  lost=$(awk '/Queries lost/ { print $3 }' <<<"$sat")
  done_q=$(awk '/Queries completed/ { print $3 }' <<<"$sat")
  # The server's CPU time over the saturation run, per answered query: this separates the
  # servers even where the one dnsperf client, not the server, sets the rate.
  read -r cpu user < <(awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v q="$done_q" -v hz="$hz" \
    'BEGIN { printf "%.2f %.2f\n", (u + s) / hz / q * 1e6, u / hz / q * 1e6 }')
  read -r p50 p99 < <(perf "$server" "$port" -Q "$RATE" -v | percentiles)
  printf '%-8s %12s %8s %12s %10s %10s %10s\n' "$server" "$qps" "$lost" "$cpu" "$user" "$p50" "$p99"
done
