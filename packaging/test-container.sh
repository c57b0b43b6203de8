#!/usr/bin/env bash
# The container image, end to end, with podman and no registry:
# 1. a runtime base made here: the release binary's shared libraries (ldd: libc, libm,
#    libgcc_s and the loader), /etc/passwd and /tmp, imported with `podman import`;
# 2. the image: packaging/Containerfile, target `prebuilt` (target/release/fulcrum);
# 3. a container on the host network in front of a backend on the host: it serves, reloads
#    on `podman kill -s HUP` (the file watcher is off, so only the signal can do it), answers
#    its HEALTHCHECK, and `podman stop` lets a slow in-flight request finish (/ready says 503
#    meanwhile) and exits 0.
# The README's "Run the container" lines appear here verbatim (tests/it/packaging.rs checks).
# Needs: podman, runc, curl, python3, and `cargo build --release` done. About 40 s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN=target/release/fulcrum
BASE=localhost/fulcrum-base:local
NAME=fulcrum
started=$SECONDS
[[ -x $BIN ]] || { echo "$BIN missing: cargo build --release first" >&2; exit 1; }

# Limits no higher than this machine's (runc cannot raise them).
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
[[ $nofile == unlimited || $nofile -gt 1048576 ]] && nofile=1048576
[[ $nproc == unlimited || $nproc -gt 4096 ]] && nproc=4096
ULIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
# Every podman call here runs with runc and cgroupfs, and `run` with those limits: the
# README's commands below then run verbatim.
podman() {
    local global=(--runtime runc --cgroup-manager cgroupfs)
    if [[ $1 == run ]]; then
        shift
        command podman "${global[@]}" run "${ULIMITS[@]}" "$@"
    else
        command podman "${global[@]}" "$@"
    fi
}

work=$(mktemp -d)
chmod 755 "$work"
backend_pid=""
cleanup() {
    podman rm -f "$NAME" >/dev/null 2>&1 || true
    [[ -n $backend_pid ]] && kill "$backend_pid" 2>/dev/null || true
    # The README's Containerfile build finds the base under Debian's name (no registry here).
    podman untag "$BASE" docker.io/library/debian:bookworm-slim >/dev/null 2>&1 || true
    rm -rf "$work" etc
}
trap cleanup EXIT

# ---- 1. the runtime base
rootfs=$work/rootfs
mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/usr/bin"
chmod 1777 "$rootfs/tmp"
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/usr/sbin/nologin' >"$rootfs/etc/passwd"
echo 'nonroot:x:65532:' >"$rootfs/etc/group"
tar -C "$rootfs" -c . | podman import - "$BASE" >/dev/null

# ---- 2. the image, as the README builds it; its default base is Debian's name for ours
podman tag "$BASE" docker.io/library/debian:bookworm-slim
podman build --format docker -f packaging/Containerfile --target prebuilt -t localhost/fulcrum .

# ---- 3. a backend on the host: GET / answers its name; /slow takes 3 s (and says it began)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port); admin=$(free_port); port_a=$(free_port); port_b=$(free_port)
python3 - "$port_a" "$port_b" "$work/slow-began" <<'PY' &
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
marker = sys.argv[3]
def serve(port, name):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/slow":
                open(marker, "w").close()
                time.sleep(3)
            body = (name + "\n").encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
threading.Thread(target=serve, args=(int(sys.argv[2]), "b"), daemon=True).start()
serve(int(sys.argv[1]), "a")
PY
backend_pid=$!

[[ ! -e etc ]] || { echo "./etc exists: the README's commands would use it" >&2; exit 1; }
mkdir -p etc && cp packaging/fulcrum.toml etc/fulcrum.toml
config() {
    cat >etc/fulcrum.toml <<TOML
[global]
admin = "127.0.0.1:$admin"
access_log = "stdout"
shutdown_grace = "10s"

[[listener]]
name = "web"
bind = "127.0.0.1:$port"
pool = "web"

[[pool]]
name = "web"
backends = [{ address = "127.0.0.1:$1" }]
TOML
    chmod 644 etc/fulcrum.toml
}
config "$port_a"
chmod 755 etc

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
    local until=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS > until)); then
            echo "timed out waiting for $what" >&2
            podman logs "$NAME" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}
answers() { [[ $(curl -sf "http://127.0.0.1:$port/") == "$1" ]]; }

# The file watcher off: only the SIGHUP below can reload.
export FULCRUM_WATCH=0
podman run -d --name fulcrum --network host --stop-timeout 40 -e FULCRUM_WATCH -v "$PWD/etc:/etc/fulcrum:ro" localhost/fulcrum
wait_for 20 "the container to serve backend a" answers a
[[ $(curl -s "http://127.0.0.1:$admin/ready") == ready ]]
podman healthcheck run fulcrum
[[ $(podman inspect fulcrum --format '{{.Config.User}}') == 65532:65532 ]]

# Reload on SIGHUP: backend b from now on.
config "$port_b"
podman kill -s HUP fulcrum
wait_for 10 "the reload to backend b" answers b

# podman stop (SIGTERM) with a request in flight: it finishes, /ready is 503 meanwhile, exit 0.
curl -s "http://127.0.0.1:$port/slow" >"$work/slow.out" &
slow=$!
wait_for 10 "the slow request at the backend" test -e "$work/slow-began"
podman stop fulcrum &
stopping=$!
ready_503() { [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/ready") == 503 ]]; }
wait_for 5 "/ready 503 while draining" ready_503
wait "$slow"
wait "$stopping"
[[ $(cat "$work/slow.out") == b ]] || { echo "in-flight request lost: $(cat "$work/slow.out")" >&2; exit 1; }
code=$(podman inspect fulcrum --format '{{.State.ExitCode}}')
[[ $code == 0 ]] || { echo "exit code $code" >&2; podman logs fulcrum >&2; exit 1; }
echo "container test: ok in $((SECONDS - started)) s"
