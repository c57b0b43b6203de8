#!/usr/bin/env bash
# fd_budget.sh: the descriptor budget, checked by hand (an in-process test cannot lower the
# descriptor limit of the test binary). Fulcrum runs under `ulimit -n LIMIT` (soft and hard);
# CLIENTS connections are opened and held all at once, then each sends one GET, so every
# accepted client needs an upstream connection at the same moment. Printed: how many got 200,
# how many a 5xx (before the budget: 502, "Too many open files" on connect), how many were
# closed at accept (the budget), and Fulcrum's log lines about it.
#
# Measured with the defaults (LIMIT 4096: reserve 1,024, budget 3,072, 2 per HTTP client):
# 1,536 answered 200, none a 5xx, 1,464 closed at accept. Before the budget: 1,073 answered
# 200 and 1,927 got 502 ("connect failed: Too many open files"), and the config watcher
# could no longer read the file.
#
# Requires: python3. Knobs: LIMIT [4096], CLIENTS [3000], ports BACKEND_PORT [19511],
# FULCRUM_PORT [19512], FULCRUM [target/debug/fulcrum] (built with cargo build if missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

LIMIT=${LIMIT:-4096}
CLIENTS=${CLIENTS:-3000}
FULCRUM=${FULCRUM:-target/debug/fulcrum}
[[ -x $FULCRUM ]] || cargo build --bin fulcrum
BACKEND_PORT=${BACKEND_PORT:-19511} FULCRUM_PORT=${FULCRUM_PORT:-19512}
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

cat >"$TMP/backend.py" <<'PY'
import asyncio, sys
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
            await writer.drain()
    except Exception:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
cat >"$TMP/clients.py" <<'PY'
import asyncio, collections, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
async def one(opened, go):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return "connect failed"
    opened.append(1)
    await go.wait()
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: fd\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 30)
    except (OSError, asyncio.TimeoutError):
        return "closed at accept"
    finally:
        writer.close()
    if not line:
        return "closed at accept"
    return "answered " + line.split()[1].decode()
async def main():
    opened, go = [], asyncio.Event()
    tasks = [asyncio.create_task(one(opened, go)) for _ in range(n)]
    while len(opened) + sum(t.done() for t in tasks) < n:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)  # let Fulcrum accept (or refuse) all of them
    go.set()
    results = collections.Counter(await asyncio.gather(*tasks))
    for outcome, count in sorted(results.items()):
        print(f"{count:6} {outcome}")
asyncio.run(main())
PY

python3 "$TMP/backend.py" "$BACKEND_PORT" & PIDS+=($!)
cat >"$TMP/fulcrum.toml" <<TOML
[global]
workers = 1
access_log = "off"
admin = ""
[[listener]]
name = "web"
bind = "127.0.0.1:$FULCRUM_PORT"
protocol = "http"
pool = "b"
[[pool]]
name = "b"
retries = 0
backends = [{ address = "127.0.0.1:$BACKEND_PORT" }]
TOML
(ulimit -n "$LIMIT"; exec "$FULCRUM" run -c "$TMP/fulcrum.toml") 2>"$TMP/fulcrum.log" & PIDS+=($!)
for _ in $(seq 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $FULCRUM_PORT), 0.1)" 2>/dev/null && break
  sleep 0.1
done

echo "ulimit -n $LIMIT, $CLIENTS clients held open, then one GET each:"
(ulimit -n $((CLIENTS + 1024)); python3 "$TMP/clients.py" "$FULCRUM_PORT" "$CLIENTS")
echo "fulcrum's log:"
grep -E "descriptor|local resource|Too many open files" "$TMP/fulcrum.log" | sed "s/\x1b\[[0-9;]*m//g" | cut -c1-220 | head -5 || true
