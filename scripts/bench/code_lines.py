#!/usr/bin/env python3
"""Code lines per request: make bench's measure of what a request costs a program that runs
much code of its own between two requests (Python: ~2M instructions per request).

Usage: code_lines.py SHORT.cg SHORT_REQUESTS LONG.cg LONG_REQUESTS OBJECT

Both files are callgrind's (--dump-instr=yes) of the same program run for a short and a
long time. Counts the instructions of the object whose path ends with OBJECT (the
preloaded library) that the long run executed at least once per two requests more than the
short run did, and the 64-byte lines they lie in. Prints "LINES INSTRUCTIONS".

Why lines: between two of Python's requests its own work evicts our code from the caches,
so each request fetches every line it runs again. Through the library, a Python https
request took ~15 µs more than through the C floor (c-tests/bench/floor_divert.c) with the
same system calls and fewer instructions; it ran ~450 lines of the library against ~20 of
the floor, at ~30-40 ns a line (branch_sites.py is the measure for a client that stays
warm, such as wrk).
"""

import sys
from collections import Counter

from branch_sites import walk


def executions(path, suffix):
    """Times each instruction address of the object ending with `suffix` ran."""
    counts = Counter()
    for obj, address, jump, costs in walk(path):
        own_cost = not (jump and jump[0] == "calls")  # not a callee's inclusive cost
        if own_cost and costs and obj and obj.endswith(suffix):
            counts[address] += costs[0]
    return counts


def main():
    short, short_requests, long, long_requests, suffix = sys.argv[1:6]
    requests = int(long_requests) - int(short_requests)
    if requests <= 0:
        sys.exit("the long run made no more requests than the short one")
    before, after = executions(short, suffix), executions(long, suffix)
    run = [address for address, n in after.items() if 2 * (n - before[address]) >= requests]
    print(len({address >> 6 for address in run}), len(run))


if __name__ == "__main__":
    main()
