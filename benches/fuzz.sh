#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each (default 600), one after another,
# and stops at the first crash (its input is left in fuzz/artifacts/<target>/).
#
#   benches/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address and friends); on a stable toolchain this script sets RUSTC_BOOTSTRAP=1
# so stable rustc accepts them. Extra libFuzzer flags: FUZZ_ARGS="-rss_limit_mb=4096".
#
# Targets (`cargo fuzz list`): config, proxy_header, region, admin (the admin request handler,
# no network: never a panic, never a 2xx without the token), sni (the ClientHello reader).
# fuzz/seeds/<target>/, where present, holds hand-made starting inputs (real endpoints, real
# ClientHellos); the corpus the run grows is fuzz/corpus/<target>/ (not in git).
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi

if ! rustc --version | grep -q nightly; then
    echo "fuzz.sh: stable toolchain ($(rustc --version)): running cargo fuzz with RUSTC_BOOTSTRAP=1"
fi
export RUSTC_BOOTSTRAP=1

echo "fuzz.sh: ${#targets[@]} target(s), ${seconds}s each: ${targets[*]}"
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    echo "== $t (${seconds}s)"
    # shellcheck disable=SC2086
    seeds=()
    if [ -d "fuzz/seeds/$t" ]; then seeds=("fuzz/seeds/$t"); fi
    cargo fuzz run "$t" "fuzz/corpus/$t" "${seeds[@]}" -- -max_total_time="$seconds" -print_final_stats=1 ${FUZZ_ARGS:-}
done
echo "fuzz.sh: every target ran ${seconds}s without a crash"
