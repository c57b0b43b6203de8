#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections to HOST:PORT and, on each, sends one GET every
PERIOD_MS milliseconds (each connection's first at a random offset) for SECONDS seconds,
reading each response (Content-Length framed). Prints "done REQUESTS ERRORS" at the end.

    sparse_clients.py HOST PORT N PERIOD_MS SECONDS
"""
import asyncio
import random
import sys


async def one(host, port, period, until, counts):
    reader, writer = await asyncio.open_connection(host, port)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.random() * period)
    while loop.time() < until:
        try:
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
            counts[0] += 1
        except (OSError, asyncio.IncompleteReadError):
            counts[1] += 1
            return
        await asyncio.sleep(period)
    writer.close()


async def main():
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    period, seconds = int(sys.argv[4]) / 1000, float(sys.argv[5])
    counts = [0, 0]
    until = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(one(host, port, period, until, counts) for _ in range(n)))
    print(f"done {counts[0]} {counts[1]}", flush=True)


asyncio.run(main())
