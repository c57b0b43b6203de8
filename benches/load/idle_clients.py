#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections to HOST:PORT, sends one GET on each and reads its
response (Content-Length framed), then holds them all idle. Prints "held N" once every
connection has had its response, then waits until stdin closes (or a signal) and exits.

    idle_clients.py HOST PORT N
"""
import asyncio
import os
import sys


async def one(host, port, held):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    held.append((reader, writer))


async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    held = []
    batch = int(os.environ.get("BATCH", "100"))
    for start in range(0, n, batch):
        await asyncio.gather(*(one(host, port, held) for _ in range(start, min(n, start + batch))))
    print(f"held {len(held)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for _, writer in held:
        writer.close()


asyncio.run(main())
