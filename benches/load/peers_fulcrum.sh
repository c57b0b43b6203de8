#!/usr/bin/env bash
# peers_fulcrum.sh: ../shared/bench/peers.sh (direct, nginx, haproxy) with Fulcrum as the third
# proxy, same run.
#
#   benches/load/peers_fulcrum.sh
#
# Any peers.sh knob (REPS, RATE, RESULTS, ...) passes through. Needs target/release/fulcrum
# (built if missing) and peers.sh's tools (nginx haproxy wrk nghttp2-client curl).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers.sh}
[[ -x $PEERS ]] || { echo "peers_fulcrum.sh: no $PEERS" >&2; exit 1; }
FULCRUM=${FULCRUM:-$ROOT/target/release/fulcrum}
[[ -x $FULCRUM ]] || (cd "$ROOT" && cargo build --release)
export FULCRUM
export PROXY_NAME=${PROXY_NAME:-fulcrum} PROXY_PORT=${PROXY_PORT:-18500}
# Runs under bash -c with BENCH_BACKEND1/2, BENCH_PROXY_PORT and BENCH_WORKDIR set by peers.sh.
export PROXY_CMD='cat >"$BENCH_WORKDIR/fulcrum.toml" <<CONF
[global]
workers = 1
access_log = "off"
[[listener]]
name = "bench"
bind = "127.0.0.1:$BENCH_PROXY_PORT"
pool = "b"
[[pool]]
name = "b"
balance = "round_robin"
backends = [{ address = "$BENCH_BACKEND1" }, { address = "$BENCH_BACKEND2" }]
CONF
exec "$FULCRUM" run -c "$BENCH_WORKDIR/fulcrum.toml"'
exec "$PEERS" "$@"
