#!/usr/bin/python3
"""Common client interface, Python asyncio streams (non-blocking socket, epoll):
a small HTTP/1.1 client, one connection for all --repeat requests; --chunked sends
the body chunked."""
import asyncio
import os
import sys
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


async def read_response(reader, method):
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before the response")
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    if 100 <= status < 200:
        return await read_response(reader, method)
    if method == "HEAD" or status in (204, 304):
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            n = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if n == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                break
            parts.append(await reader.readexactly(n))
            await reader.readline()
        return status, headers, b"".join(parts)
    if "content-length" in headers:
        return status, headers, await reader.readexactly(int(headers["content-length"]))
    return status, headers, await reader.read()


async def main():
    a = common.parse(sys.argv[1:])
    u = urlsplit(a.url)
    host = u.hostname
    port = u.port or 80
    hosthdr = ("[%s]" % host if ":" in host else host) + ("" if port == 80 else ":%d" % port)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    reader, writer = await asyncio.open_connection(host, port)
    rc = 0
    for _ in range(a.repeat):
        head = ["%s %s HTTP/1.1" % (a.method, path), "Host: " + hosthdr]
        head += ["%s: %s" % kv for kv in a.headers]
        if a.body is not None:
            head.append("Transfer-Encoding: chunked" if a.chunked else "Content-Length: %d" % len(a.body))
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if a.body is not None:
            if a.chunked:
                for c in common.chunks(a.body):
                    writer.write(b"%x\r\n%s\r\n" % (len(c), c))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(a.body)
        await writer.drain()
        status, headers, body = await asyncio.wait_for(read_response(reader, a.method), 30)
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        if not 200 <= status < 300:
            sys.stderr.write("status %d\n" % status)
            rc = 1
    writer.close()
    await writer.wait_closed()
    return rc


sys.exit(asyncio.run(main()))
