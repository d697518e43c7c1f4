#!/usr/bin/python3
"""Requests on one keep-alive connection, then what the process has mapped of a library.
usage: py_residency.py URL N LIBRARY REPORT
stdout: each response body. REPORT (a file): one JSON line per mapping of LIBRARY in
/proc/self/maps, in address order: {"perm", "offset", "pages", "resident"} (resident:
pages present in this process, from /proc/self/pagemap)."""
import json
import os
import struct
import sys

import requests

url, count, library, report = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
session = requests.Session()
for _ in range(count):
    r = session.get(url, timeout=30)
    r.raise_for_status()
    sys.stdout.write(r.text.strip() + "\n")

real = os.path.realpath(library)
mappings = []
with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
    for line in maps:
        fields = line.split()
        if len(fields) < 6 or fields[5] != real:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        pagemap.seek(start // 4096 * 8)
        entries = pagemap.read((end - start) // 4096 * 8)
        present = sum(struct.unpack_from("<Q", entries, i * 8)[0] >> 63
                      for i in range((end - start) // 4096))
        mappings.append({"perm": fields[1], "offset": int(fields[2], 16),
                         "pages": (end - start) // 4096, "resident": present})
with open(report, "w") as out:
    out.write("".join(json.dumps(m) + "\n" for m in mappings))
