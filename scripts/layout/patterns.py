"""scripts/layout/profile.sh: callgrind profiles -> hot-code.txt.

    patterns.py LIB PROFILE...

Prints one linker-script section pattern per function of LIB that ran (`pattern`), in
the order of the profiles and within one by cost. A line `[https]` comes before the
first function of the first profile named *https*: build.rs ends http's code there.
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


lib, profiles = os.path.realpath(sys.argv[1]), sys.argv[2:]
nm = subprocess.run(["nm", "--defined-only", lib], capture_output=True, text=True, check=True)
symbols = [line.split()[-1] for line in nm.stdout.splitlines() if line.strip()]
instances = collections.Counter(unhashed(s.split(".")[0]) for s in set(symbols))
seen, out = set(), []
for profile in profiles:
    if "https" in os.path.basename(profile) and "[https]" not in out:
        out.append("[https]")
    text = subprocess.run(["callgrind_annotate", "--threshold=100", profile],
                          capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        m = re.search(r"\?\?\?:(\S+) \[(.*)\]$", line)
        if not m or os.path.realpath(m.group(2)) != lib:
            continue
        found = pattern(m.group(1), instances)
        if found and found not in seen:
            seen.add(found)
            out.append(found)
print("\n".join(out))
