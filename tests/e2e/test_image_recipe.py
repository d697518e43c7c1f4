"""Issue 13, item 5: the image recipe of the README ("Baking it into an image"), tested.

The library is installed with `make install DESTDIR=<tmp> PREFIX=/usr/local`; a preload
file naming it is bind-mounted over /etc/ld.so.preload and a configuration file naming
the lab's proxy by name (proxy.lunar.test:8000) over /etc/lunar/interceptor.conf, both
root-owned 0644 as the Dockerfile lines make them. This happens in a private mount
namespace (inside the lab's network namespace), on an overlay of /etc whose upper layer
is a temporary directory (test_config_file.py's OVERLAY_ETC, which also keeps the lab's
/etc/hosts visible): the real /etc is never written. No program gets LD_PRELOAD or any
LUNAR_* variable. Every run has a control run in the same namespaces without the
preload file (the configuration file stays), so each assertion can fail:
(a) everyday programs behave exactly as without the library, and it says nothing;
(b) curl, wget and Python started with `env -i` go through the proxy (direct without);
(c) a program started as systemd starts a service (cleared environment, own session,
    no terminal) goes through the proxy too.
"""
import json
import os
import subprocess

import pytest

from conftest import REPO, assert_direct, assert_ok, assert_proxied, describe, one_echo
from test_config_file import OVERLAY_ETC, etc_dir  # noqa: F401 (fixture)
from test_safety_process import API_IP, setuid_dir  # noqa: F401 (fixture)

API = API_IP + ":80"
INSTALLED = "/usr/local/lib/liblunar_intercept.so"
CONF = "LUNAR_PROXY_HOST=proxy.lunar.test:8000\n"

# $1 the temporary directory, $2 yes/no: bind the preload file, the rest the program.
# The preload file comes last, so that the set-up's own commands run without it.
IMAGE_SCRIPT = r'''
d=$1; preload=$2; shift 2
''' + OVERLAY_ETC + r'''
mkdir -p /etc/lunar && : > /etc/lunar/interceptor.conf
mount --bind "$d/image/interceptor.conf" /etc/lunar/interceptor.conf
if [ "$preload" = yes ]; then
    : > /etc/ld.so.preload
    mount --bind "$d/image/ld.so.preload" /etc/ld.so.preload
fi
exec "$@"
'''


@pytest.fixture
def image(lab, etc_dir):  # noqa: F811
    """etc_dir with the library installed under root/ by `make install` (the lab's
    library: `-o build` builds nothing) and image/ holding the two files."""
    dest = os.path.join(etc_dir, "root")
    r = subprocess.run(["make", "-s", "-o", "build", "install", "DESTDIR=" + dest,
                        "PREFIX=/usr/local", "LIB=" + lab.lib], cwd=REPO,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert r.returncode == 0, r.stdout.decode()
    img = os.path.join(etc_dir, "image")
    os.mkdir(img, 0o755)
    for name, text in (("ld.so.preload", dest + INSTALLED + "\n"),
                       ("interceptor.conf", CONF)):
        with open(os.path.join(img, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(img, name), 0o644)
    lab.start_haproxy()
    return etc_dir


def in_image(lab, d, cmd, preload=True, timeout=30):
    """cmd under the recipe (or, preload=False, the control: no preload file), with the
    lab's sanitized environment: no LD_PRELOAD, no LUNAR_* variable."""
    argv = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-ec",
            IMAGE_SCRIPT, "sh", d, "yes" if preload else "no"] + list(cmd)
    return lab.run(argv, preload=False, proxy=False, timeout=timeout)


def lib_lines(res):
    return [ln for ln in res.text_err.splitlines() if "lunar" in ln.lower()]


def test_the_preload_file_loads_the_installed_library(lab, image):
    """The recipe is in effect: a process maps the installed library; the control does not."""
    grep = ["grep", "-c", image + "/root" + INSTALLED, "/proc/self/maps"]
    res = in_image(lab, image, grep)
    assert res.rc == 0 and int(res.out) >= 1, describe(res)
    control = in_image(lab, image, grep, preload=False)
    assert control.rc == 1 and control.out == b"0\n", describe(control)


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]

EVERYDAY = {
    "bash": ["bash", "-c", "echo \"$BASH_VERSION\"; ls /nonexistent; exit 3"],
    "ls": ["ls", "-la", "/usr/bin/env", "/etc/lunar"],
    "cat": ["cat", "/etc/os-release", "/etc/hosts"],
    "sort": ["sort", "-t:", "-k3,3n", "/etc/passwd"],
    "date": ["date", "-u", "+%Y"],
    "python3": ["python3", "-c", "import sys, json; print(json.dumps(sys.version_info[:3]));"
                " print(sorted(k for k in __import__('os').environ if 'LUNAR' in k)); sys.exit(4)"],
    "perl": ["perl", "-e", "print join(',', map { $_ * 2 } 1..5), qq(\\n); warn qq(w\\n); exit 5"],
    "git": ["git", "--version"],
    "make": ["make", "--version"],
    "apt-get": ["apt-get", "--version"],
    "ssh": ["ssh", "-V"],
    # setuid root, run by nobody: secure-execution mode, the library from the preload file
    "su": AS_NOBODY + ["su", "--help"],
    "passwd": AS_NOBODY + ["passwd", "--help"],
}


@pytest.mark.parametrize("name", sorted(EVERYDAY))
def test_everyday_programs_are_unchanged(lab, image, name):
    """(a) Same stdout, stderr and exit status with and without the preload file; the
    library prints nothing (no warning from reading the file, no line at all)."""
    cmd = EVERYDAY[name]
    control = in_image(lab, image, cmd, preload=False)
    res = in_image(lab, image, cmd)
    assert control.rc not in (-9, 97), describe(control)  # ran at all (no timeout/no overlay)
    assert (res.rc, res.out, res.err) == (control.rc, control.out, control.err), \
        "differs from the control run\n--- control\n%s\n--- with the library\n%s" % (
            describe(control), describe(res))
    assert lib_lines(res) == [], describe(res)


def fetchers(url):
    py = ("import sys, urllib.request; "
          "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())")
    return {
        "curl": ["/usr/bin/curl", "-sS", "--max-time", "20", url],
        "wget": ["/usr/bin/wget", "-q", "-O", "-", "--tries=1", "--timeout=20", url],
        "python3": ["/usr/bin/python3", "-c", py, url],
    }


@pytest.mark.parametrize("name", ["curl", "wget", "python3"])
def test_a_cleared_environment_is_diverted_by_the_file(lab, image, tag, name):
    """(b) `env -i PROGRAM URL`: through HAProxy (the file's proxy, by name) to the origin;
    without the preload file the same command reaches the origin direct."""
    control = in_image(lab, image, ["env", "-i"] + fetchers("http://api.example.test" + tag
                                                             + "/control")[name], preload=False)
    assert_ok(control)
    assert_direct(one_echo(control), control, origin=API, path=tag + "/control")

    res = in_image(lab, image, ["env", "-i"] + fetchers("http://api.example.test" + tag)[name])
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert lib_lines(res) == [], describe(res)


# A service as systemd starts it: cleared environment, stdin /dev/null, no controlling
# terminal, a session of its own. `setsid --wait` makes the session and passes the exit
# status back. The program reports its session, terminal and environment on stderr;
# its own timeout ends it should the request hang (it is outside lab.run's process
# group, so lab.run's timeout would not reach it).
SERVICE = r'''
import json, os, sys, urllib.request
tty = True
try:
    os.close(os.open("/dev/tty", os.O_RDONLY))
except OSError:
    tty = False
sys.stderr.write(json.dumps({"session_leader": os.getsid(0) == os.getpid(), "tty": tty,
                             "env": sorted(os.environ)}) + "\n")
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())
'''


def test_a_service_started_like_systemd_is_diverted(lab, image, tag):
    """(c) `env -i setsid --wait python3 …`: its own session, no terminal, nothing in its
    environment but what Python itself adds; diverted through the file's proxy, direct
    without the preload file."""
    def run(path, preload):
        cmd = ["env", "-i", "/usr/bin/setsid", "--wait", "/usr/bin/python3", "-c", SERVICE,
               "http://api.example.test" + path]
        res = in_image(lab, image, cmd, preload=preload)
        assert_ok(res)
        state = json.loads(res.text_err.splitlines()[0])
        assert state["session_leader"] and not state["tty"], describe(res)
        assert set(state["env"]) <= {"LC_CTYPE"}, state  # Python's C-locale coercion
        return res

    control = run(tag + "/control", preload=False)
    assert_direct(one_echo(control), control, origin=API, path=tag + "/control")
    res = run(tag, preload=True)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert res.text_err.count("\n") == 1 and lib_lines(res) == [], describe(res)


def test_a_setuid_program_is_diverted_by_the_file(lab, image, setuid_dir, tag):  # noqa: F811
    """A setuid-root program run by nobody (test_safety_process.py's setuid_fetch) loads
    the library from the preload file and follows the root-owned file: through the
    proxy. Without the preload file it is not loaded and goes direct."""
    cmd = AS_NOBODY + [os.path.join(setuid_dir, "setuid_fetch"), API_IP, "80"]
    control = in_image(lab, image, cmd + [tag + "/control"], preload=False)
    assert "at_secure=1 preloaded=0" in control.text_err, describe(control)
    assert_ok(control)
    assert_direct(json.loads(control.out), control, origin=API, path=tag + "/control")

    res = in_image(lab, image, cmd + [tag])
    assert "at_secure=1 preloaded=1" in res.text_err, describe(res)
    assert_ok(res)
    assert_proxied(json.loads(res.out), res, API_IP, origin=API, path=tag)  # Host: the IP
