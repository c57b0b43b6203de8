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

RIG=syscalls
# shellcheck source=benches/load/proxy_rig.sh
. benches/load/proxy_rig.sh

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
