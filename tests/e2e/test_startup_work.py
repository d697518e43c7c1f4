"""Issue 10, point 4: what every process of an image pays at start for loading the library
(build.rs: the unwinder linked statically, lazy binding, std's libc calls through
trampolines bound at their first call, no C start-up files; one code-and-data segment).

The dynamic linker's own count decides: with the library preloaded, a `/bin/true` start
makes no more symbol relocations than with an empty shared object (built here by the C
compiler, with its C start-up files). Needs no lab."""
import os
import re
import subprocess

import pytest

from conftest import REPO

BUILT = os.path.join(REPO, "target", "release", "liblunar_intercept.so")


@pytest.fixture
def lib():
    if not os.path.exists(BUILT):
        pytest.fail("not built: %s (make build)" % BUILT)
    return BUILT


def readelf(*args):
    r = subprocess.run(["readelf", "-W"] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True)
    assert r.returncode == 0, r.stdout
    return r.stdout


def load_segments(lib):
    """readelf -l's LOAD lines, split: Type Offset VirtAddr PhysAddr FileSiz MemSiz Flg Align."""
    return [line.split() for line in readelf("-l", lib).splitlines()
            if line.split()[:1] == ["LOAD"]]


def loader_statistics(preload):
    """ld.so's statistics of one `/bin/true` start: {"number of relocations": n, ...}."""
    r = subprocess.run(["/bin/true"], env={"LD_PRELOAD": preload, "LD_DEBUG": "statistics"},
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    stats = {}
    for line in r.stderr.splitlines():
        m = re.match(r"\s*\d+:\s+(.*?):\s+(\d+)\s*$", line)
        if m:
            stats.setdefault(m.group(1).strip(), int(m.group(2)))
    assert "number of relocations" in stats, r.stderr
    return stats


def test_the_library_needs_only_libc(lib):
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", readelf("-d", lib))
    assert set(needed) <= {"libc.so.6", "ld-linux-x86-64.so.2"}, needed


def test_nothing_is_bound_at_load(lib):
    dynamic = readelf("-d", lib)
    assert not re.search(r"\(FLAGS(_1)?\).*\bNOW\b", dynamic), dynamic
    assert "(BIND_NOW)" not in dynamic, dynamic
    # Every relocation of .rela.dyn is applied without a lookup: relative to the library's
    # own address, or the TLS module number. Functions (.rela.plt) are bound at first call.
    section = None
    looked_up = []
    for line in readelf("-r", lib).splitlines():
        m = re.match(r"Relocation section '(\S+)'", line)
        if m:
            section = m.group(1)
            continue
        fields = line.split()
        if len(fields) >= 3 and fields[2].startswith("R_X86_64_"):
            kind = fields[2]
            if section == ".rela.plt":
                assert kind == "R_X86_64_JUMP_SLOT", line
            elif kind not in ("R_X86_64_RELATIVE", "R_X86_64_DTPMOD64") or len(fields) > 4:
                looked_up.append(line.strip())
    assert not looked_up, "relocations that look a symbol up at every process start " \
        "(a libc function std calls that build.rs's STD_IMPORTS lacks?):\n" + "\n".join(looked_up)


def test_a_start_makes_no_more_symbol_relocations_than_with_an_empty_object(lib, tmp_path):
    empty = str(tmp_path / "empty.so")
    subprocess.run(["cc", "-shared", "-o", empty, "-x", "c", "/dev/null"], check=True)
    with_empty = loader_statistics(empty)
    with_lib = loader_statistics(lib)
    assert with_lib["number of relocations"] <= with_empty["number of relocations"], \
        (with_lib, with_empty)


def test_code_and_read_only_data_are_one_mapping(lib):
    loads = load_segments(lib)
    flags = [" ".join(f[6:-1]) for f in loads]
    assert flags == ["R E", "RW", "RW"], flags
    # Only the writable data is writable, only the code segment executable.
    assert all("E" not in f for f in flags[1:]), flags
    # The writable data the dynamic linker writes at load (the PLT's GOT, which it reads
    # then writes, and the zero fill after it) is one page, the segment's last: one
    # copy-on-write fault per process, the zeroing's, not a read fault then a write fault.
    # readelf -S: [Nr] Name Type Address Off Size ...
    sections = dict((m.group(1), (int(m.group(2), 16), int(m.group(3), 16))) for m in (
        re.search(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        for line in readelf("-S", lib).splitlines()) if m)
    address, _ = sections[".got.plt"]
    segment_end = int(loads[2][2], 16) + int(loads[2][5], 16)
    assert address // 4096 == (segment_end - 1) // 4096, \
        "the PLT's GOT is not in the writable data's last page: %s, segment end %#x" % (
            sections[".got.plt"], segment_end)
    assert int(loads[2][5], 16) > int(loads[2][4], 16), \
        "no zero fill after the PLT's GOT: the dynamic linker reads its page before writing it"


def mapping_calls(preload):
    """The memory-mapping system calls of one `/bin/true` start (strace)."""
    r = subprocess.run(["strace", "-f", "-e", "trace=mmap,munmap,mprotect", "-o", "/dev/stderr",
                        "env", "-i", "LD_PRELOAD=" + preload, "/bin/true"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    calls = r.stderr.splitlines()
    # From the exec of /bin/true on (env's own start is the same in both runs).
    execs = [i for i, line in enumerate(calls) if "+++" in line or "execve" in line]
    return [line for line in calls[execs[-1] if execs else 0:] if re.search(r"\bm(map|unmap|protect)\(", line)]


def test_loading_makes_no_more_mappings_than_an_empty_object(lib, tmp_path):
    """The segments are page-aligned (a 64 KiB alignment makes the dynamic linker reserve
    more and unmap the excess) and the .bss is file contents (one beyond the file's pages
    is a zero-fill mapping of its own): build.rs's layout."""
    loads = load_segments(lib)
    for load in loads:
        filesz, memsz, align = (int(x, 16) for x in (load[4], load[5], load[-1]))
        assert align <= 4096, load
        assert memsz <= -(-filesz // 4096) * 4096, ("a .bss beyond the file's pages", load)
    empty = str(tmp_path / "empty.so")
    subprocess.run(["cc", "-shared", "-o", empty, "-x", "c", "/dev/null"], check=True)
    with_empty, with_lib = mapping_calls(empty), mapping_calls(lib)
    assert len(with_lib) <= len(with_empty), "\n".join(with_lib)
