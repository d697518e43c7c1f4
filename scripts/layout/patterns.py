"""scripts/layout/profile.sh: callgrind profiles -> hot-code.txt.

    patterns.py LIB PROFILE...

Prints one linker-script section pattern per function of LIB that ran (`pattern`), in
groups: what an inert process runs, then the functions http's clients run for every
request (called at least as often as request heads are written), then http's set-up (once per process or
connection), then the same two for https after a line `[https]` (build.rs ends http's
code there); within a group in the order of the profiles, and by cost within one. The
code a request runs is then a few contiguous pages, not spread among set-up code.
"""
import collections
import os
import re
import subprocess
import sys


LEGACY_HASH = re.compile(r"(.*17h)[0-9a-f]{16}E(.*)")


def unhashed(name):
    m = LEGACY_HASH.fullmatch(name)
    return m.group(1) + "?" * 16 + "E" if m else name


def pattern(name, instances):
    """The section pattern of the function `name` (mangled, as it ran). A name that is not
    mangled is one of our C-named entry points (the TLS libraries' functions we stand in
    for; the exported hooks come first anyway, build.rs places them before any pattern).
    Exact up to what changes between builds: legacy mangling's hash, v0's crate
    disambiguators, and the number LTO gives a local copy (`.1226`, `.llvm.4711`: build.rs
    matches those); a clone LLVM made (`.specialized.1`, `.constprop.0`) keeps its suffix,
    so that the copies that did not run stay out of the hot code. The hash stays where it
    tells apart instances of one generic function (`instances`: how many of LIB's
    functions share the name without it), each carrying a different hook's work inlined
    (`tls::off_the_fast_path`: 34 of them), so that only those that ran are hot; it is
    stable as long as the instance's closure is. None for code callgrind has no name for."""
    if name.startswith("_ZN"):
        m = LEGACY_HASH.fullmatch(name)
        if not m:
            return ".text." + name
        if instances.get(unhashed(name.split(".")[0]), 0) > 1:
            base, dot, rest = name.partition(".")
            suffix = dot + rest
        else:
            base, suffix = m.group(1) + "?" * 16 + "E", m.group(2)
    elif name.startswith("_R"):
        base, dot, rest = name.partition(".")
        base, suffix = re.sub(r"Cs[0-9A-Za-z]+_", "*", base), dot + rest
    elif name.startswith("0x"):
        return None  # an address callgrind found no name for
    else:
        return ".text." + name
    suffix = re.sub(r"(\.llvm)?\.\d+$", "", suffix)
    return ".text.*" + (base + suffix).lstrip("*")


# A function runs for every request when it is called at least as often as the request
# heads are written (`RequestStream::emit_head`), and at least this often: set-up runs
# once per process or connection (reading the configuration: a call per variable).
PER_REQUEST_MIN = 10
REQUEST_HEAD = "_ZN15lunar_intercept4http7request13RequestStream9emit_head17h"


def call_counts(profile):
    """Calls to each function (mangled name) in a callgrind profile."""
    names, counts, callee = {}, collections.Counter(), None
    with open(profile) as lines:
        for line in lines:
            m = re.match(r"c?fn=\((\d+)\)(?: (\S+))?", line)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                callee = names.get(m.group(1)) if line.startswith("cfn=") else callee
            elif line.startswith("calls=") and callee:
                counts[callee] += int(line[6:].split()[0])
    return counts


lib, profiles = os.path.realpath(sys.argv[1]), sys.argv[2:]
nm = subprocess.run(["nm", "--defined-only", lib], capture_output=True, text=True, check=True)
symbols = [line.split()[-1] for line in nm.stdout.splitlines() if line.strip()]
instances = collections.Counter(unhashed(s.split(".")[0]) for s in set(symbols))
# Groups in order: what an inert process runs (the load), then http's per-request code,
# http's set-up, then (after `[https]`) the same two for https.
groups = {key: [] for key in ("inert", "http", "http-setup", "https", "https-setup")}
placed = set()
for profile in profiles:
    kind = "https" if "https" in os.path.basename(profile) else "http"
    if "inert" in os.path.basename(profile):
        kind = "inert"
    text = subprocess.run(["callgrind_annotate", "--threshold=100", profile],
                          capture_output=True, text=True, check=True).stdout
    calls = call_counts(profile)
    heads = max((n for name, n in calls.items() if name.startswith(REQUEST_HEAD)), default=0)
    for line in text.splitlines():
        m = re.search(r"\?\?\?:(\S+) \[(.*)\]$", line)
        if not m or os.path.realpath(m.group(2)) != lib:
            continue
        name = m.group(1)
        # callgrind names a function's recursive calls `name'2`: the same code
        found = pattern(re.sub(r"'\d+$", "", name), instances)
        if not found or found in placed:
            continue  # the first profile it ran in places it
        per_request = calls[name] >= max(heads, PER_REQUEST_MIN)
        placed.add(found)
        groups[kind if kind == "inert" or per_request else kind + "-setup"].append(found)
out = []
for key, found in groups.items():
    if key == "https":
        out.append("[https]")
    out.extend(found)
print("\n".join(out))
