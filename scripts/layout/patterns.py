"""scripts/layout/profile.sh: callgrind profiles -> hot-code.txt.

    patterns.py LIB PROFILE...

Prints one linker-script section pattern per Rust function of LIB that ran, in the order
of the profiles and within one by cost: its mangled name with what changes between builds
and toolchains wildcarded (legacy mangling's trailing hash, v0's crate disambiguators, the
`.1226`-style suffix LTO gives a local copy, numbered anew by each build). A line
`[https]` comes before the first function of the first profile named *https*: build.rs
ends http's code there. C functions are left to build.rs's own rules.
"""
import os
import re
import subprocess
import sys

lib, profiles = os.path.realpath(sys.argv[1]), sys.argv[2:]
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
        name = re.sub(r"(\.llvm)?\.\d+$", "", m.group(1))
        if name.startswith("_ZN"):
            pattern = re.sub(r"17h[0-9a-f]{16}E$", "", name) + "*"
        elif name.startswith("_R"):
            pattern = re.sub(r"Cs[0-9A-Za-z]+_", "*", name) + "*"
        else:
            continue
        pattern = ".text.*" + pattern.lstrip("*")
        if pattern not in seen:
            seen.add(pattern)
            out.append(pattern)
print("\n".join(out))
