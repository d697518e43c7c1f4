"""Argument parsing shared by the Python clients (stdlib only)."""
import argparse


def parse(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("method")
    ap.add_argument("url")
    ap.add_argument("--data-file")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--chunked", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    a.headers = []
    for h in a.header:
        k, _, v = h.partition(":")
        a.headers.append((k.strip(), v.strip()))
    a.body = None
    if a.data_file:
        with open(a.data_file, "rb") as f:
            a.body = f.read()
    return a


def chunks(data, size=65536):
    for i in range(0, len(data), size):
        yield data[i:i + size]
