#!/usr/bin/env python3
"""Peers for benches/load/soak.sh, standard library only.

  ws-server PORT            WebSocket echo backend (raw handshake, text/binary echo, close)
  ws-client HOST:PORT OUT   loops: upgrade via /ws, 5 masked frames echoed, close; one more
                            connection held open throughout, pinged every second
  tcp-echo PORT             TCP echo backend
  tcp-client HOST:PORT OUT  loops: connect, 5 lines echoed, close; one connection held open

Clients run until SIGTERM and rewrite OUT ("ok N\\nerrors N\\nlast_error ...") every second.
"""
import base64
import hashlib
import os
import signal
import socket
import struct
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
stop = threading.Event()
counts = {"ok": 0, "errors": 0, "last_error": "-"}
lock = threading.Lock()


def count(ok, err=None):
    with lock:
        if ok:
            counts["ok"] += 1
        else:
            counts["errors"] += 1
            counts["last_error"] = str(err).replace("\n", " ")[:200]


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by peer")
        buf += chunk
    return buf


def read_frame(s):
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    mask = recv_exact(s, 4) if b1 & 0x80 else None
    data = recv_exact(s, n)
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return b0 & 0x0F, data


def frame(opcode, data, masked):
    head = bytes([0x80 | opcode])
    n = len(data)
    mbit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + data
    mask = os.urandom(4)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data))


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        buf += chunk
        if len(buf) > 65536:
            raise ValueError("head too long")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def serve(port, handler):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(512)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def ws_conn(c):
    try:
        head, _ = read_head(c)
        key = ""
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        if not key:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
            return
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
        while True:
            op, data = read_frame(c)
            if op == 8:
                c.sendall(frame(8, data[:2], False))
                return
            if op == 9:
                c.sendall(frame(10, data, False))
            elif op in (1, 2):
                c.sendall(frame(op, data, False))
    except (OSError, ValueError, ConnectionError):
        pass
    finally:
        c.close()


def tcp_conn(c):
    try:
        while True:
            data = c.recv(65536)
            if not data:
                return
            c.sendall(data)
    except OSError:
        pass
    finally:
        c.close()


def ws_open(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (addr, key)).encode())
    head, rest = read_head(s)
    if not head.startswith("HTTP/1.1 101"):
        s.close()
        raise ValueError("no 101: " + head.split("\r\n")[0])
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if want not in head:
        s.close()
        raise ValueError("bad Sec-WebSocket-Accept")
    if rest:
        s.close()
        raise ValueError("unexpected bytes after 101")
    return s


def ws_echo(s, msg):
    s.sendall(frame(1, msg, True))
    op, data = read_frame(s)
    if op != 1 or data != msg:
        raise ValueError("echo mismatch")


def ws_client_loop(addr):
    while not stop.is_set():
        try:
            s = ws_open(addr)
            for i in range(5):
                ws_echo(s, ("frame %d %s" % (i, "x" * (i * 50))).encode())
            s.sendall(frame(8, struct.pack("!H", 1000), True))
            read_frame(s)
            s.close()
            count(True)
        except (OSError, ValueError, ConnectionError) as e:
            count(False, "ws: %r" % e)
            stop.wait(0.2)
        stop.wait(0.05)


def ws_long_lived(addr):
    s = None
    while not stop.is_set():
        try:
            if s is None:
                s = ws_open(addr)
            ws_echo(s, b"long-lived %f" % time.time())
            count(True)
        except (OSError, ValueError, ConnectionError) as e:
            count(False, "ws long-lived: %r" % e)
            if s:
                s.close()
            s = None
        stop.wait(1)


def tcp_client_loop(addr):
    host, port = addr.rsplit(":", 1)
    while not stop.is_set():
        try:
            with socket.create_connection((host, int(port)), timeout=5) as s:
                for i in range(5):
                    msg = b"line %d\n" % i
                    s.sendall(msg)
                    if recv_exact(s, len(msg)) != msg:
                        raise ValueError("tcp echo mismatch")
            count(True)
        except (OSError, ValueError, ConnectionError) as e:
            count(False, "tcp: %r" % e)
            stop.wait(0.2)
        stop.wait(0.05)


def tcp_long_lived(addr):
    host, port = addr.rsplit(":", 1)
    s = None
    while not stop.is_set():
        try:
            if s is None:
                s = socket.create_connection((host, int(port)), timeout=5)
            msg = b"long-lived %f\n" % time.time()
            s.sendall(msg)
            if recv_exact(s, len(msg)) != msg:
                raise ValueError("tcp echo mismatch")
            count(True)
        except (OSError, ValueError, ConnectionError) as e:
            count(False, "tcp long-lived: %r" % e)
            if s:
                s.close()
            s = None
        stop.wait(1)


def write_out(path):
    with lock:
        text = "ok %d\nerrors %d\nlast_error %s\n" % (counts["ok"], counts["errors"],
                                                      counts["last_error"])
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_client(loops, addr, out, workers=2):
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=loops[0], args=(addr,), daemon=True) for _ in range(workers)]
    threads.append(threading.Thread(target=loops[1], args=(addr,), daemon=True))
    for t in threads:
        t.start()
    while not stop.is_set():
        write_out(out)
        stop.wait(1)
    for t in threads:
        t.join(6)
    write_out(out)


def main():
    mode = sys.argv[1]
    if mode == "ws-server":
        serve(int(sys.argv[2]), ws_conn)
    elif mode == "tcp-echo":
        serve(int(sys.argv[2]), tcp_conn)
    elif mode == "ws-client":
        run_client((ws_client_loop, ws_long_lived), sys.argv[2], sys.argv[3])
    elif mode == "tcp-client":
        run_client((tcp_client_loop, tcp_long_lived), sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
