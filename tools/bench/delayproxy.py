#!/usr/bin/env python3
"""A TCP proxy that adds a fixed one-way delay in each direction and counts bytes (tools/bench).

    delayproxy.py --listen 127.0.0.1:5000 --upstream 127.0.0.1:5001 --delay-ms 20 --ctl SOCK

The kernel here has no netem qdisc, so latency is added in user space: every chunk read from one
side is written to the other side `delay` later, in order.  A new connection is not relayed before
one round trip (2 x delay) has passed, standing in for the TCP handshake the client would have made
with a far server.  The proxy terminates TCP, so slow start and loss are not emulated; the rate limit
is an htb class on the listening port (tools/bench/link.sh).

Per direction at most --window bytes are held in the delay line; beyond that the proxy stops reading,
so the sender sees back-pressure as from a link with that much data in flight.

Counters (bytes client->server, server->client, connections, HTTP requests seen at the start of a
read) are served as one JSON object over HTTP on the unix socket --ctl:
    curl -s --unix-socket SOCK http://l/stats
With --reqlog FILE, each request is appended to FILE as it is seen: epoch time, connection number,
request line, Range header (run.sh: BENCH_REQLOG=1, into each run's log dir).
"""
import argparse
import asyncio
import json
import os
import re
import signal
import socket
import time

STATS = {"up_bytes": 0, "down_bytes": 0, "connections": 0, "requests": 0, "active": 0}
REQLOG = None   # --reqlog: one line per request, to see a pull's round trips (not only a daemon's)


async def pump(reader, writer, delay, window, direction, first_at, conn=0):
    """Copies reader -> writer, each chunk delivered `delay` seconds after it was read."""
    q = asyncio.Queue()
    held = 0
    room = asyncio.Event()
    room.set()
    loop = asyncio.get_running_loop()

    async def deliver():
        nonlocal held
        while True:
            due, data = await q.get()
            if data is None:
                break
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
            held -= len(data)
            STATS[direction] += len(data)
            if held < window:
                room.set()
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except OSError:
            pass

    task = asyncio.ensure_future(deliver())
    try:
        if first_at > loop.time():
            await asyncio.sleep(first_at - loop.time())
        while True:
            await room.wait()
            data = await reader.read(65536)
            if not data:
                break
            if direction == "up_bytes" and (data.startswith(b"GET ") or data.startswith(b"HEAD ")):
                STATS["requests"] += 1
                if REQLOG:
                    line = data.split(b"\r\n", 1)[0][:200].decode("latin-1")
                    rng = re.search(rb"\r\nrange: *([^\r]*)", data[:4096], re.I)
                    REQLOG.write("%.6f %d %s%s\n" % (time.time(), conn, line,
                                                      " range=" + rng.group(1).decode("latin-1") if rng else ""))
                    REQLOG.flush()
            held += len(data)
            if held >= window:
                room.clear()
            q.put_nowait((loop.time() + delay, data))
    except (ConnectionError, OSError):
        pass
    finally:
        q.put_nowait((0, None))
    try:
        await task
    except (ConnectionError, OSError):
        pass


async def handle(creader, cwriter, args):
    loop = asyncio.get_running_loop()
    STATS["connections"] += 1
    conn = STATS["connections"]
    STATS["active"] += 1
    start = loop.time() + 2 * args.delay  # the handshake's round trip
    try:
        host, port = args.upstream.rsplit(":", 1)
        ureader, uwriter = await asyncio.open_connection(host, int(port))
    except OSError:
        cwriter.close()
        STATS["active"] -= 1
        return
    for w in (cwriter, uwriter):
        sock = w.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await asyncio.gather(
        pump(creader, uwriter, args.delay, args.window, "up_bytes", start, conn),
        pump(ureader, cwriter, args.delay, args.window, "down_bytes", start))
    for w in (cwriter, uwriter):
        try:
            w.close()
        except OSError:
            pass
    STATS["active"] -= 1


async def ctl(reader, writer):
    try:
        await reader.read(4096)
        body = json.dumps(dict(STATS, time=time.time())).encode()
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        await writer.drain()
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:5000")
    ap.add_argument("--upstream", default="127.0.0.1:5001")
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--window", type=int, default=4 << 20, help="bytes held per direction")
    ap.add_argument("--ctl", required=True, help="unix socket for the counters")
    ap.add_argument("--pidfile")
    ap.add_argument("--reqlog", help="append one line per request: time, connection, request line")
    args = ap.parse_args()
    args.delay = args.delay_ms / 1000.0
    global REQLOG
    if args.reqlog:
        REQLOG = open(args.reqlog, "a")
    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(lambda r, w: handle(r, w, args), host, int(port), backlog=256)
    if os.path.exists(args.ctl):
        os.unlink(args.ctl)
    ctl_server = await asyncio.start_unix_server(ctl, args.ctl)
    if args.pidfile:
        with open(args.pidfile + ".tmp", "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(args.pidfile + ".tmp", args.pidfile)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    await stop.wait()
    server.close()
    ctl_server.close()
    try:
        os.unlink(args.ctl)
    except OSError:
        pass


if __name__ == "__main__":
    asyncio.run(main())
