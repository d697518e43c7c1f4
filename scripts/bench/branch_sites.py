#!/usr/bin/env python3
"""Taken branch sites per request: make bench's measure of what a request's code costs on
a CPU whose branch predictor the kernel's work between two requests has emptied.

Usage: branch_sites.py SHORT.cg SHORT_REQUESTS LONG.cg LONG_REQUESTS

Both files are callgrind's (--dump-instr=yes --collect-jumps=yes) of the same program
run for a short and a long time. A site is a jump taken or a call made at one address;
it counts when the long run took it at least once per two requests more than the short
run did, so that start-up (the dynamic loader's loops, the library's set-up) cancels
out. Prints the number of such sites, all objects of the process together.

Why this and not instructions or simulated cache misses: on our 2-core VM a chain of N
taken jumps added to a C preload's per-request path cost ~4 ns per jump of user CPU
whether the jumps were 64 bytes apart or packed, and as much in address order as
shuffled, while 24 KiB of straight code cost nothing visible: a taken branch the
predictor has forgotten stalls the front end; bytes fetched in a line do not.
"""

import re
import sys
from collections import Counter

MARKER = re.compile(r"(c?ob|c?fn|c?fl|fi|fe|cfi|jfi|jfl)=\((\d+)\)(?: (.*))?")


def position(token, previous):
    """A callgrind position: absolute, relative (+n/-n) or unchanged (*)."""
    if token == "*":
        return previous
    if token[0] in "+-":
        step = int(token[1:], 16) if token[1:].startswith("0x") else int(token[1:])
        return previous + step if token[0] == "+" else previous - step
    return int(token, 16) if token.startswith("0x") else int(token)


def walk(path):
    """The lines of a callgrind file that carry an instruction address, in order: yields
    (object, address, jump, costs). `jump` is (kind, times, target) when the line is the
    source of a jump ("jump", "jcnd") or call ("calls") written just before it, else
    None; `costs` are the line's event counts (a call's line: the callee's inclusive
    cost, not the instruction's own)."""
    objects = {}
    obj = None
    last = 0
    columns = 1  # position columns ("positions: instr line" makes two)
    jump = None
    with open(path) as lines:
        for raw in lines:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            if raw.startswith("positions:"):
                columns = len(raw.split()) - 1
                continue
            marker = MARKER.match(raw)
            if marker:
                kind, index, name = marker.groups()
                if kind in ("ob", "cob") and name:
                    objects[index] = name
                if kind == "ob":
                    obj = objects.get(index)
                continue
            if raw.startswith(("jump=", "jcnd=", "calls=")):
                kind, rest = raw.split("=", 1)
                fields = rest.split()
                jump = (kind, int(fields[0].split("/")[0]), position(fields[1], last))
                continue
            if raw[0].isdigit() or raw[0] in "+-*":
                fields = raw.split()
                last = position(fields[0], last)
                yield obj, last, jump, [int(c) for c in fields[columns:]]
                jump = None


def taken_sites(path):
    """Counter of (object, address of the jump or call, target) -> times taken."""
    sites = Counter()
    for obj, address, jump, _ in walk(path):
        if jump and obj and "vgpreload" not in obj:
            _, taken, target = jump
            sites[(obj, address, target)] += taken
    return sites


def main():
    short, short_requests, long, long_requests = sys.argv[1:5]
    requests = int(long_requests) - int(short_requests)
    if requests <= 0:
        sys.exit("the long run made no more requests than the short one")
    before, after = taken_sites(short), taken_sites(long)
    print(sum(1 for site, taken in after.items() if 2 * (taken - before[site]) >= requests))


if __name__ == "__main__":
    main()
