"""Issue 13, items 1 and 2: the configuration file /etc/lunar/interceptor.conf and
LUNAR_INTERCEPTOR_LOG_TARGET.

The real /etc and /dev are never touched. Each run happens in a private mount namespace
(inside the lab's network namespace) where an overlay is mounted over /etc (or /dev)
whose upper layer is a temporary directory of the test's: the files the test put there
(lunar/interceptor.conf, ld.so.preload) appear in /etc with the owner and mode the test
gave them, the real directory is only the read-only lower layer. `ip netns exec` bound
the lab's hosts file over /etc/hosts, which the overlay would hide: the script copies it
into the upper layer first. For syslog, a Unix datagram socket of the test's is bound
over /dev/log the same way.
"""
import os
import re
import shutil
import socket
import tempfile

import pytest

from conftest import assert_direct, assert_ok, assert_proxied, describe, one_echo
from test_safety_process import (  # noqa: F401 (fixtures)
    API_IP, LISTENER_BODY, header, listener, origin_echo, setuid_dir)

API = "203.0.113.10:80"
CONF = "/etc/lunar/interceptor.conf"
LAB_PROXY = "LUNAR_PROXY_HOST=127.0.0.1:8000\n"

# Shell lines (shared with test_image_recipe.py): the overlay of /etc whose upper layer
# is $d/upper, the lab's hosts file copied into it first.
OVERLAY_ETC = r'''
cat /etc/hosts > "$d/upper/hosts"
mount -t overlay lunar-test -o "lowerdir=/etc,upperdir=$d/upper,workdir=$d/work" /etc
[ "$(stat -f -c %T /etc)" = overlayfs ] || exit 97
'''

# $1 the temporary directory, $2 the library, the rest the program and its arguments.
ETC_SCRIPT = r'''
d=$1; lib=$2; shift 2
''' + OVERLAY_ETC + r'''
exec env LD_PRELOAD="$lib" "$@"
'''


@pytest.fixture
def etc_dir(lab, need_lib):
    """A temporary directory with the overlay's upper (holding lunar/) and work dirs."""
    d = tempfile.mkdtemp(prefix="lunar-conf-")
    try:
        os.chmod(d, 0o755)
        for sub in ("upper", "upper/lunar", "work"):
            os.mkdir(os.path.join(d, sub), 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def write_conf(d, text, owner=0, mode=0o644):
    """The file /etc/lunar/interceptor.conf will be in the overlay."""
    path = os.path.join(d, "upper", "lunar", "interceptor.conf")
    with open(path, "w") as f:
        f.write(text)
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    return path


def run_with_etc(lab, d, cmd, env=None, timeout=30):
    """cmd with the library preloaded, the overlaid /etc, and no LUNAR_* variable but
    those of `env`."""
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-ec", ETC_SCRIPT, "sh", d, lab.lib] + list(cmd)
    return lab.run(argv, env=env, preload=False, proxy=False, timeout=timeout)


def curl(tag):
    return ["curl", "-sS", "http://api.example.test" + tag]


def lib_lines(res):
    return [ln for ln in res.text_err.splitlines() if "lunar-intercept" in ln]


# ---- (a)-(c): an ordinary process -------------------------------------------------------

def test_the_file_alone_diverts_a_process(lab, etc_dir, tag):
    """No LUNAR_* variable at all: the file names the proxy and the request goes through
    it. Without the file (control) the same command goes direct."""
    lab.start_haproxy()
    control = run_with_etc(lab, etc_dir, curl(tag + "/control"))
    assert_ok(control)
    assert_direct(one_echo(control), control, origin=API, path=tag + "/control")

    write_conf(etc_dir, "# Lunar\n" + LAB_PROXY)
    res = run_with_etc(lab, etc_dir, curl(tag))
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert lib_lines(res) == [], describe(res)


def test_the_environment_overrides_the_file_key_by_key(lab, etc_dir, tag):
    """The file names the proxy, blocks api.example.test and sets DEBUG. Alone it sends
    the request direct; with LUNAR_BLOCK_LIST in the environment the environment's list
    wins (diverted), while the file's other keys (the proxy, DEBUG) still apply."""
    lab.start_haproxy()
    write_conf(etc_dir, LAB_PROXY + "LUNAR_BLOCK_LIST=api.example.test\n"
               "LUNAR_INTERCEPTOR_LOG_LEVEL=DEBUG\n")
    alone = run_with_etc(lab, etc_dir, curl(tag + "/alone"))
    assert_ok(alone)
    assert_direct(one_echo(alone), alone, origin=API, path=tag + "/alone")
    assert any("-> direct" in ln for ln in lib_lines(alone)), describe(alone)

    res = run_with_etc(lab, etc_dir, curl(tag), env={"LUNAR_BLOCK_LIST": "other.example.test"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert any("-> proxy" in ln for ln in lib_lines(res)), describe(res)


def test_a_bad_line_warns_once_and_the_rest_applies(lab, etc_dir, tag):
    lab.start_haproxy()
    write_conf(etc_dir, "LUNAR_TENANT_ID=acme\nthis is not a setting\n" + LAB_PROXY)
    res = run_with_etc(lab, etc_dir, curl(tag))
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    lines = lib_lines(res)
    assert len(lines) == 1 and CONF + ":2:" in lines[0] and "WARNING" in lines[0], describe(res)


def test_the_variable_names_another_file(lab, etc_dir, tag):
    """LUNAR_INTERCEPTOR_CONFIG replaces the default path (its file alone is read)."""
    lab.start_haproxy()
    write_conf(etc_dir, "LUNAR_PROXY_HOST=127.0.0.1:1\n")
    other = os.path.join(etc_dir, "other.conf")
    with open(other, "w") as f:
        f.write(LAB_PROXY)
    res = run_with_etc(lab, etc_dir, curl(tag), env={"LUNAR_INTERCEPTOR_CONFIG": other})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert lib_lines(res) == [], describe(res)


# ---- (d): a setuid program --------------------------------------------------------------

# $1 the setuid test's directory (its upper/ holds ld.so.preload and lunar/), $2 the
# program's name in it, the rest its arguments; run as nobody.
SETUID_SCRIPT = r'''
d=$1; prog=$2; shift 2
mount -t overlay lunar-test -o "lowerdir=/etc,upperdir=$d/upper,workdir=$d/work" /etc
[ "$(stat -f -c %T /etc)" = overlayfs ] || exit 97
exec setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$d/$prog" "$@"
'''

NOBODY = 65534


def setuid_files(d, conf=None, owner=0, mode=0o644):
    """upper/ld.so.preload naming the fixture's copy of the library, and the file."""
    upper = os.path.join(d, "upper")
    with open(os.path.join(upper, "ld.so.preload"), "w") as f:
        f.write(os.path.join(d, "liblunar_intercept.so") + "\n")
    os.chmod(os.path.join(upper, "ld.so.preload"), 0o644)
    lunar = os.path.join(upper, "lunar")
    shutil.rmtree(lunar, ignore_errors=True)
    if conf is not None:
        os.mkdir(lunar, 0o755)
        write_conf(d, conf, owner, mode)


def run_setuid(lab, d, prog, env, path):
    cmd = ["unshare", "--mount", "--propagation", "private", "--",
           "/bin/sh", "-ec", SETUID_SCRIPT, "sh", d, prog, API_IP, "80", path]
    return lab.run(cmd, env=env, preload=False, proxy=False, timeout=30)


def user_conf(d, listener):
    """A file of nobody's naming nobody's listener."""
    path = os.path.join(d, "user.conf")
    with open(path, "w") as f:
        f.write("".join("%s=%s\n" % kv for kv in listener.env().items()))
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o644)
    return path


def listener_conf(listener):
    return "LUNAR_PROXY_HOST=127.0.0.1:%d\nLUNAR_HANDSHAKE_PORT=%d\n" % (
        listener.traffic_port, listener.handshake_port)


def traffic(listener):
    return [h for k, h in listener.seen() if k == "traffic"]


def test_setuid_program_follows_a_root_owned_file_and_ignores_the_environment(
        lab, setuid_dir, listener, tag):
    """A root-owned 0644 file naming a listener: the setuid program is diverted there,
    although its environment blocks the destination, names another file and sets DEBUG:
    nothing of the environment is read."""
    setuid_files(setuid_dir, listener_conf(listener))
    env = {"LUNAR_BLOCK_LIST": API_IP, "LUNAR_INTERCEPTOR_LOG_LEVEL": "DEBUG",
           "LUNAR_INTERCEPTOR_CONFIG": user_conf(setuid_dir, listener),
           "LUNAR_PROXY_HOST": "127.0.0.1:1"}
    res = run_setuid(lab, setuid_dir, "setuid_fetch", env, tag)
    assert "at_secure=1 preloaded=1 uid=65534 euid=0" in res.text_err, describe(res)
    assert res.rc == 0 and res.out == LISTENER_BODY, \
        "the setuid program did not follow the root-owned file\n" + describe(res)
    heads = traffic(listener)
    assert len(heads) == 1 and tag.encode() in heads[0], listener.seen()
    assert "lunar-intercept" not in res.text_err, "DEBUG from the environment\n" + describe(res)


@pytest.mark.parametrize("owner,mode,why", [
    (0, 0o666, "writable by group or others"),
    (0, 0o664, "writable by group or others"),
    (NOBODY, 0o644, "owned by uid 65534"),
], ids=["world-writable", "group-writable", "not-root"])
def test_setuid_program_ignores_an_untrusted_file(lab, setuid_dir, listener, tag, owner, mode, why):
    """The same file, group/world-writable or owned by nobody: ignored with one warning;
    the request goes to the origin and the listener gets nothing."""
    setuid_files(setuid_dir, listener_conf(listener), owner, mode)
    res = run_setuid(lab, setuid_dir, "setuid_fetch", {}, tag)
    assert "at_secure=1 preloaded=1" in res.text_err, describe(res)
    echo = origin_echo(res)
    assert echo["server"] == API_IP + ":80" and echo["path"] == tag, echo
    assert not [k for k, _ in echo["headers"] if k.lower().startswith(("x-lunar-", "x-seen-"))], echo
    assert listener.seen() == [], listener.seen()
    lines = lib_lines(res)
    assert len(lines) == 1 and CONF in lines[0] and why in lines[0], describe(res)


def test_setuid_program_ignores_LUNAR_INTERCEPTOR_CONFIG(lab, setuid_dir, listener, tag):
    """No /etc/lunar/interceptor.conf; the environment names nobody's file naming the
    listener. The plain program (control) follows it; the setuid one does not, silently."""
    setuid_files(setuid_dir, None)
    env = {"LUNAR_INTERCEPTOR_CONFIG": user_conf(setuid_dir, listener)}
    plain = run_setuid(lab, setuid_dir, "plain_fetch", env, tag + "/plain")
    assert "at_secure=0 preloaded=1" in plain.text_err, describe(plain)
    assert plain.rc == 0 and plain.out == LISTENER_BODY, \
        "control run: the plain program did not follow LUNAR_INTERCEPTOR_CONFIG\n" + describe(plain)
    before = len(listener.seen())

    res = run_setuid(lab, setuid_dir, "setuid_fetch", env, tag + "/setuid")
    assert "at_secure=1 preloaded=1" in res.text_err, describe(res)
    echo = origin_echo(res)
    assert echo["path"] == tag + "/setuid" and not header(echo, "x-via-haproxy"), echo
    assert listener.seen()[before:] == [], listener.seen()
    assert lib_lines(res) == [], describe(res)


# ---- (e): an inert process never opens the file -----------------------------------------

def opens_of_the_file(lab, d, cmd):
    trace = os.path.join(d, "strace.out")
    res = run_with_etc(lab, d, ["strace", "-f", "-qq", "-e", "trace=openat,open",
                                "-o", trace] + cmd)
    with open(trace) as f:
        lines = f.read().splitlines()
    return res, [ln for ln in lines if "interceptor.conf" in ln], lines


def test_an_inert_process_never_opens_the_file(lab, etc_dir, tag):
    """Programs that make no connect (a shell running coreutils, python without network)
    never open the file; curl, which connects, does (control: the trace sees opens)."""
    lab.start_haproxy()
    write_conf(etc_dir, LAB_PROXY)
    for cmd in (["/bin/sh", "-c", "ls / >/dev/null; cat /etc/hostname >/dev/null; true"],
                ["/usr/bin/python3", "-c", "import json; print(json.dumps([1]))"]):
        res, opened, lines = opens_of_the_file(lab, etc_dir, cmd)
        assert res.rc == 0, describe(res)
        assert any("openat(" in ln for ln in lines), lines[:5]
        assert opened == [], "an inert process opened the file: %r" % opened
    res, opened, _ = opens_of_the_file(lab, etc_dir, curl(tag))
    assert_ok(res)
    assert len(opened) == 1 and "O_CLOEXEC" in opened[0], opened


# ---- (f): LUNAR_INTERCEPTOR_LOG_TARGET ---------------------------------------------------

# $1 the temporary directory (its log is the test's socket), the rest the program, run
# with the library; prints its pid on stderr first (exec keeps it).
DEV_LOG_SCRIPT = r'''
d=$1; lib=$2; shift 2
mount -t overlay lunar-test -o "lowerdir=/dev,upperdir=$d/upper,workdir=$d/work" /dev
[ "$(stat -f -c %T /dev)" = overlayfs ] || exit 97
: > /dev/log
mount --bind "$d/log" /dev/log
echo "pid=$$" >&2
exec env LD_PRELOAD="$lib" "$@"
'''


@pytest.fixture
def dev_log(lab, need_lib):
    """A temporary directory with a datagram socket `log` the test reads."""
    d = tempfile.mkdtemp(prefix="lunar-syslog-")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        os.mkdir(os.path.join(d, "upper"))
        os.mkdir(os.path.join(d, "work"))
        sock.bind(os.path.join(d, "log"))
        sock.setblocking(False)
        yield d, sock
    finally:
        sock.close()
        shutil.rmtree(d, ignore_errors=True)


def received(sock):
    out = []
    while True:
        try:
            out.append(sock.recv(65536))
        except BlockingIOError:
            return out


def test_syslog_target_sends_lines_to_dev_log_with_name_and_pid(lab, dev_log, tag):
    d, sock = dev_log
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-ec", DEV_LOG_SCRIPT, "sh", d, lab.lib] + curl(tag)
    res = lab.run(argv, env={"LUNAR_PROXY_HOST": "127.0.0.1:8000",
                             "LUNAR_INTERCEPTOR_LOG_LEVEL": "DEBUG",
                             "LUNAR_INTERCEPTOR_LOG_TARGET": "syslog"},
                  preload=False, proxy=False, timeout=30)
    assert_ok(res)
    one_echo(res)
    pid = [ln[4:] for ln in res.text_err.splitlines() if ln.startswith("pid=")]
    assert len(pid) == 1, describe(res)
    assert lib_lines(res) == [], "library lines on stderr with the syslog target\n" + describe(res)
    lines = received(sock)
    assert lines, "nothing arrived at /dev/log\n" + describe(res)
    # LOG_USER (8) plus the severity: 3 ERROR, 4 WARNING, 6 INFO, 7 DEBUG.
    frame = re.compile(rb"^<1[1-5]>curl\[%s\]: lunar-intercept (ERROR|WARNING|INFO|DEBUG): "
                       % pid[0].encode())
    assert all(frame.match(ln) for ln in lines), lines
    want = b"<15>curl[%s]: lunar-intercept DEBUG: " % pid[0].encode()
    assert any(ln.startswith(want) and b"-> proxy" in ln for ln in lines), (want, lines)


def test_syslog_target_without_a_syslog_socket_is_silent(lab, need_lib, tag):
    """The lab has no /dev/log: the lines are dropped, never moved to stderr, and the
    program's request is untouched."""
    assert not os.path.exists("/dev/log")
    res = lab.run(curl(tag), env={"LUNAR_INTERCEPTOR_LOG_LEVEL": "DEBUG",
                                  "LUNAR_INTERCEPTOR_LOG_TARGET": "syslog"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert lib_lines(res) == [], describe(res)


def test_an_unknown_log_target_warns_once_and_keeps_stderr(lab, need_lib, tag):
    res = lab.run(curl(tag), env={"LUNAR_INTERCEPTOR_LOG_TARGET": "journal"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    lines = lib_lines(res)
    assert len(lines) == 1 and "LUNAR_INTERCEPTOR_LOG_TARGET" in lines[0], describe(res)


def test_the_log_target_from_the_file(lab, etc_dir, tag):
    """The file's LUNAR_INTERCEPTOR_LOG_TARGET applies: with syslog, the warning about its
    bad line goes there (the lab has no /dev/log: nothing on stderr); with stderr, the
    same warning is on stderr."""
    lab.start_haproxy()
    write_conf(etc_dir, LAB_PROXY + "bogus line\nLUNAR_INTERCEPTOR_LOG_TARGET=syslog\n")
    res = run_with_etc(lab, etc_dir, curl(tag))
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert lib_lines(res) == [], describe(res)
    write_conf(etc_dir, LAB_PROXY + "bogus line\nLUNAR_INTERCEPTOR_LOG_TARGET=stderr\n")
    res = run_with_etc(lab, etc_dir, curl(tag))
    assert len(lib_lines(res)) == 1, describe(res)


FD_CHECK = r'''
import os, sys, urllib.request
with urllib.request.urlopen("http://api.example.test" + sys.argv[1]) as answer:
    answer.read()
fds = os.listdir("/proc/self/fd")  # its own descriptor is closed on return
links = []
for fd in fds:
    try:
        links.append(os.readlink("/proc/self/fd/" + fd))
    except FileNotFoundError:
        pass
print(" ".join(links))
'''


def test_syslog_target_leaves_no_descriptor_open(lab, dev_log, tag):
    """After a diverted request logged at DEBUG to syslog, the program holds no socket:
    the library keeps no descriptor for its syslog lines."""
    d, sock = dev_log
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-ec", DEV_LOG_SCRIPT, "sh", d, lab.lib,
            "/usr/bin/python3", "-c", FD_CHECK, tag]
    res = lab.run(argv, env={"LUNAR_PROXY_HOST": "127.0.0.1:8000",
                             "LUNAR_INTERCEPTOR_LOG_LEVEL": "DEBUG",
                             "LUNAR_INTERCEPTOR_LOG_TARGET": "syslog"},
                  preload=False, proxy=False, timeout=30)
    assert res.rc == 0, describe(res)
    assert any(b"-> proxy" in ln for ln in received(sock)), describe(res)
    assert "pipe:" in res.text_out, res.text_out  # the listing worked
    assert "socket:" not in res.text_out, "a socket left open: " + res.text_out
