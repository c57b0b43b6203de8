#!/usr/bin/env bash
# The .deb, end to end: built by cargo-deb from the release binary already built (no second
# build), installed with dpkg, and checked: the binary runs, the packaged config validates,
# it is a conffile, and the installed unit passes `systemd-analyze verify`. Then purged.
# Needs: cargo-deb, dpkg, systemd (for systemd-analyze), `cargo build --release` done.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -x target/release/fulcrum ]] || { echo "target/release/fulcrum missing: cargo build --release first" >&2; exit 1; }
started=$SECONDS

cargo deb --no-build --strip
deb=$(ls -t target/debian/fulcrum_*.deb | head -n 1)
dpkg-deb --info "$deb"
dpkg-deb --contents "$deb"

# README, "Install from the .deb":
dpkg -i target/debian/fulcrum_*.deb
fulcrum --version
fulcrum check -c /etc/fulcrum/fulcrum.toml

dpkg-query -W --showformat='${Conffiles}\n' fulcrum | grep -q '/etc/fulcrum/fulcrum.toml'
unit=$(dpkg -L fulcrum | grep '/systemd/system/fulcrum.service$')
systemd-analyze verify "$unit"
grep -q '^NotifyAccess=all' "$unit"

dpkg --purge fulcrum
echo "deb test: ok in $((SECONDS - started)) s ($(du -h "$deb" | cut -f1) package)"
