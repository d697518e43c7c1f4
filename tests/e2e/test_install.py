"""Issue 13, item 4: `make install` and `make deb` (the library, the command, the README).

Nothing is installed into the real system: `make install` writes into a temporary
DESTDIR, and the package `make deb` builds is only read (dpkg-deb -c, -f, -e). Needs no
lab. Both targets depend on `build`, which does nothing when the library is up to date.
"""
import os
import re
import subprocess
import tempfile

import pytest

from conftest import REPO, VERSION

BUILT = os.path.join(REPO, "target", "release", "liblunar_intercept.so")
# Built where a JDK is (make deps installs one); installed beside the library when built.
JAVA_HOOK = os.path.join(REPO, "target", "release", "lunar-java-hook.jar")
BUILT_COMMAND = os.path.join(REPO, "target", "release", "lunar-intercept")


def sh(argv, **kw):
    r = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    assert r.returncode == 0, "%s failed:\n%s" % (" ".join(argv), r.stdout.decode())
    return r.stdout.decode()


MULTIARCH = subprocess.run(["gcc", "-print-multiarch"], stdout=subprocess.PIPE,
                           universal_newlines=True).stdout.strip()


@pytest.fixture
def need_built():
    for built in (BUILT, BUILT_COMMAND):
        if not os.path.exists(built):
            pytest.fail("not built: %s (make build)" % built)


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("prefix,libdir", [
    ("/usr/local", "usr/local/lib"),
    ("/usr", "usr/lib/" + MULTIARCH),
    ("/opt/lunar", "opt/lunar/lib"),
])
def test_make_install_into_destdir(need_built, prefix, libdir):
    """Exactly the library (the built one, byte for byte, mode 0644) with Node's hook
    beside it (where the library looks for it), the command (0755) and the README; nothing under etc/ (no /etc/ld.so.preload, no configuration file).
    The installed command finds the installed library by itself."""
    with tempfile.TemporaryDirectory(prefix="lunar-install-") as dest:
        sh(["make", "-s", "install", "DESTDIR=" + dest, "PREFIX=" + prefix])
        doc = prefix.lstrip("/") + "/share/doc/liblunar-intercept/README.md"
        command = prefix.lstrip("/") + "/bin/lunar-intercept"
        hooks = [libdir + "/lunar-node-hook.cjs"] + ([libdir + "/lunar-java-hook.jar"]
                                                     if os.path.exists(JAVA_HOOK) else [])
        assert files_under(dest) == sorted([libdir + "/liblunar_intercept.so", doc, command]
                                           + hooks)
        assert os.stat(os.path.join(dest, command)).st_mode & 0o7777 == 0o755
        shown = sh([os.path.join(dest, command), "run", "--", "sh", "-c", 'echo "$LD_PRELOAD"'],
                   env={"PATH": os.environ["PATH"]})
        assert shown.strip() == os.path.realpath(os.path.join(dest, libdir, "liblunar_intercept.so"))
        lib = os.path.join(dest, libdir, "liblunar_intercept.so")
        with open(lib, "rb") as a, open(BUILT, "rb") as b:
            assert a.read() == b.read(), "the installed library is not the built one"
        assert os.stat(lib).st_mode & 0o7777 == 0o644
        with open(os.path.join(dest, doc)) as a, open(os.path.join(REPO, "README.md")) as b:
            assert a.read() == b.read()


def glibc_versions(lib):
    out = sh(["objdump", "-T", lib])
    return {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+[0-9])", out)}


def test_make_deb(need_built):
    """The package holds the library with its language hooks in the multiarch directory
    and the README, its
    control fields are right, libc6's minimum covers every glibc symbol version the
    library imports, and it has no maintainer scripts (nothing writes
    /etc/ld.so.preload on install) and no conffiles."""
    sh(["make", "-s", "deb"])
    arch = sh(["dpkg", "--print-architecture"]).strip()
    deb = os.path.join(REPO, "target", "deb", "liblunar-intercept_%s_%s.deb" % (VERSION, arch))
    assert os.path.exists(deb), os.listdir(os.path.dirname(deb))

    listing = sh(["dpkg-deb", "-c", deb])
    entries = {ln.split()[-1]: ln.split() for ln in listing.splitlines()}
    files = sorted(p for p, cols in entries.items() if not cols[0].startswith("d"))
    hook = ["./usr/lib/%s/lunar-java-hook.jar" % MULTIARCH] if os.path.exists(JAVA_HOOK) else []
    assert files == (["./usr/bin/lunar-intercept",
                      "./usr/lib/%s/liblunar_intercept.so" % MULTIARCH] + hook
                     + ["./usr/lib/%s/lunar-node-hook.cjs" % MULTIARCH,
                        "./usr/share/doc/liblunar-intercept/README.md"]), listing
    for p in files:
        mode = "-rwxr-xr-x" if p.startswith("./usr/bin/") else "-rw-r--r--"
        assert entries[p][0] == mode and entries[p][1] == "root/root", listing
    assert not [p for p in entries if p.startswith("./etc")], listing

    def field(name):
        return sh(["dpkg-deb", "-f", deb, name]).strip()
    assert field("Package") == "liblunar-intercept"
    assert field("Version") == VERSION
    assert field("Architecture") == arch
    assert field("Maintainer") and field("Description")
    m = re.fullmatch(r"libc6 \(>= ([0-9.]+)\)", field("Depends"))
    assert m, field("Depends")
    root = os.path.join(REPO, "target", "deb", "root", "usr")
    needed = max(glibc_versions(os.path.join(root, "lib", MULTIARCH, "liblunar_intercept.so"))
                 | glibc_versions(os.path.join(root, "bin", "lunar-intercept")))
    assert tuple(int(x) for x in m.group(1).split(".")) == needed, (m.group(1), needed)

    with tempfile.TemporaryDirectory(prefix="lunar-deb-") as ctl:
        sh(["dpkg-deb", "-e", deb, ctl])
        assert sorted(os.listdir(ctl)) == ["control"], os.listdir(ctl)
