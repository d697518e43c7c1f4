#!/usr/bin/python3
"""Raw-socket HTTP/1.1 client that shows everything the program received: status,
reason and every response header as it arrived (the common clients print bodies
only). Python stdlib only.

usage: py_rawhttp.py METHOD URL [--data-file F] [--header 'K: V']... [--repeat N]
                     [--epoll]

--repeat N   N requests on one connection (keep-alive)
--epoll      non-blocking socket: connect -> EINPROGRESS, wait for writability with
             epoll, SO_ERROR, then non-blocking send/recv driven by epoll (EAGAIN)
             instead of blocking calls

stdout: one JSON line per response {"status", "reason", "version", "headers":
[[k, v]...] (in order, as received), "body_len", "body_sha256", "body_text" (the
body decoded as UTF-8 with replacement, first 4000 characters)}. Exit 0 when every
response was read completely (whatever its status), 2 on an error (on stderr)."""
import errno
import hashlib
import json
import os
import select
import socket
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

DEADLINE = 30.0


class Conn:
    def __init__(self, host, port, nonblock):
        self.nonblock = nonblock
        self.deadline = time.monotonic() + DEADLINE
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        self.s = socket.socket(ai[0], socket.SOCK_STREAM)
        self.buf = b""
        if not nonblock:
            self.s.settimeout(DEADLINE)
            self.s.connect(ai[4])
            return
        self.s.setblocking(False)
        self.ep = select.epoll()
        self.ep.register(self.s.fileno(), 0)
        rc = self.s.connect_ex(ai[4])
        if rc == errno.EINPROGRESS:
            self.wait(select.EPOLLOUT)
            err = self.s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, "connect: " + os.strerror(err))
        elif rc != 0:
            raise OSError(rc, "connect: " + os.strerror(rc))

    def wait(self, events):
        self.ep.modify(self.s.fileno(), events)
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out waiting for events %#x" % events)
            if self.ep.poll(left):
                return

    def send(self, data):
        if not self.nonblock:
            self.s.sendall(data)
            return
        view = memoryview(data)
        while view:
            try:
                n = self.s.send(view)
                view = view[n:]
            except BlockingIOError:
                self.wait(select.EPOLLOUT)

    def recv_more(self):
        while True:
            try:
                d = self.s.recv(65536)
                break
            except BlockingIOError:
                self.wait(select.EPOLLIN | select.EPOLLRDHUP)
        if not d:
            return False
        self.buf += d
        return True

    def read_until(self, sep):
        while sep not in self.buf:
            if not self.recv_more():
                raise ConnectionError("EOF before %r (%d bytes buffered)" % (sep, len(self.buf)))
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self.recv_more():
                raise ConnectionError("EOF %d bytes into a %d-byte body" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self):
        while self.recv_more():
            pass
        out, self.buf = self.buf, b""
        return out


def read_response(c, method):
    while True:
        head = c.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status_s, _, reason = rest.partition(" ")
        status = int(status_s)
        headers = []
        for ln in lines[1:]:
            if ln:
                k, _, v = ln.partition(":")
                headers.append([k.strip(), v.strip()])
        if 100 <= status < 200 and status != 101:
            continue
        break
    hd = {k.lower(): v for k, v in headers}
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in hd.get("transfer-encoding", "").lower():
        parts = []
        while True:
            n = int(c.read_until(b"\r\n").split(b";")[0].strip() or b"0", 16)
            if n == 0:
                while c.read_until(b"\r\n") != b"\r\n":
                    pass
                break
            parts.append(c.read_exact(n))
            c.read_exact(2)
        body = b"".join(parts)
    elif "content-length" in hd:
        body = c.read_exact(int(hd["content-length"]))
    else:
        body = c.read_to_eof()
    return {"status": status, "reason": reason, "version": version, "headers": headers,
            "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_text": body.decode("utf-8", "replace")[:4000]}


def main():
    argv = sys.argv[1:]
    nonblock = "--epoll" in argv
    argv = [x for x in argv if x != "--epoll"]
    a = common.parse(argv)
    u = urlsplit(a.url)
    port = u.port or 80
    host_hdr = u.hostname + ("" if port == 80 else ":%d" % port)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    try:
        c = Conn(u.hostname, port, nonblock)
        for _ in range(a.repeat):
            head = ["%s %s HTTP/1.1" % (a.method, path), "Host: " + host_hdr]
            head += ["%s: %s" % kv for kv in a.headers]
            if a.body is not None:
                head.append("Content-Length: %d" % len(a.body))
            c.send(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (a.body or b""))
            rec = read_response(c, a.method)
            print(json.dumps(rec), flush=True)
        c.s.close()
    except Exception as e:
        sys.stderr.write("py_rawhttp.py: %r\n" % (e,))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
