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

RIG=callgrind
# shellcheck source=benches/load/proxy_rig.sh
. benches/load/proxy_rig.sh

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
