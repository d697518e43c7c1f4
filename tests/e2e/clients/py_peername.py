#!/usr/bin/python3
"""Connect a plain socket to IP:PORT, print what getpeername() reports (one JSON line
on stderr-free stdout), then send a GET and print the response body.
usage: py_peername.py IP PORT HOST PATH"""
import json
import socket
import sys

ip, port, host, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(20)
s.connect((ip, port))
peer = s.getpeername()
print(json.dumps({"peer": "%s:%d" % peer[:2]}), flush=True)
s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
peer2 = s.getpeername() if data else None
s.close()
head, _, body = data.partition(b"\r\n\r\n")
sys.stdout.buffer.write(body)
print(json.dumps({"peer_after": "%s:%d" % peer2[:2] if peer2 else None,
                  "status": head.split(b"\r\n")[0].decode()}), flush=True)
sys.exit(0 if b" 200 " in head.split(b"\r\n")[0] else 1)
