"""Issue 8, item 7: environment values are bytes. A value that is not UTF-8 is a
warning and the variable's documented fallback, never "unset" (which would divert a
block-listed host, or one outside the allow list).

Values are handed to the program with Python's surrogate escapes ("\udcff" is the byte
0xff in the child's environment: subprocess encodes env with os.fsencode).
"""
from conftest import assert_direct, assert_ok, assert_proxied, describe, one_echo

API = "203.0.113.10:80"
FF = "\udcff"  # the byte 0xff in the program's environment


def curl(lab, tag, env):
    return lab.run(["curl", "-sS", "http://api.example.test" + tag], env=env, debug=False)


def library_lines(res):
    return [ln for ln in res.text_err.splitlines() if "lunar-intercept" in ln]


def proxy_saw_nothing(lab, before, tag, res):
    new = lab.haproxy_log()[len(before):]
    assert tag not in new, "the request reached the proxy\n%s\n%s" % (new, describe(res))
    assert "/handshake" not in new, "the library talked to the proxy\n%s\n%s" % (new, describe(res))


def test_non_utf8_block_list_is_not_unset(lab, need_lib, tag):
    """api.example.test is in the block list; another entry holds a byte that is not
    UTF-8. Before: the whole variable read as unset and api.example.test was diverted.
    Now: an invalid block list disables the interceptor, with one warning."""
    before = lab.haproxy_log()
    res = curl(lab, tag, {"LUNAR_BLOCK_LIST": "api.example.test,x%s.example.test" % FF})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    proxy_saw_nothing(lab, before, tag, res)
    lines = library_lines(res)
    assert len(lines) == 1, describe(res)
    assert "LUNAR_BLOCK_LIST" in lines[0] and r"x\xff.example.test" in lines[0], lines
    assert "disabled" in lines[0], lines


def test_non_utf8_allow_list_entry_dropped_unlisted_host_direct(lab, need_lib, tag):
    """The allow list names other.example.test and an entry that is not UTF-8: that
    entry is dropped with a warning, and api.example.test (not listed) goes direct.
    Before: the whole variable read as unset and api.example.test was diverted."""
    before = lab.haproxy_log()
    res = curl(lab, tag, {"LUNAR_ALLOW_LIST": "other.example.test,x%s.example.test" % FF})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    assert tag not in lab.haproxy_log()[len(before):], describe(res)
    lines = library_lines(res)
    assert len(lines) == 1, describe(res)
    assert "LUNAR_ALLOW_LIST" in lines[0] and r"x\xff.example.test" in lines[0], lines


def test_non_utf8_allow_list_entry_dropped_listed_host_diverted(lab, need_lib, tag):
    """The valid entries of an allow list keep working beside an invalid one."""
    res = curl(lab, tag, {"LUNAR_ALLOW_LIST": "x%s.example.test,api.example.test" % FF})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    lines = library_lines(res)
    assert len(lines) == 1 and "LUNAR_ALLOW_LIST" in lines[0], describe(res)


def test_non_utf8_proxy_host_inert_with_a_warning(lab, need_lib, tag):
    """Before: silently inert (read as unset). Now: inert, and one warning says why."""
    before = lab.haproxy_log()
    res = curl(lab, tag, {"LUNAR_PROXY_HOST": "127.0.0.1:8000" + FF})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    proxy_saw_nothing(lab, before, tag, res)
    lines = library_lines(res)
    assert len(lines) == 1, describe(res)
    assert "LUNAR_PROXY_HOST" in lines[0] and r"\xff" in lines[0], lines
    assert "disabled" in lines[0], lines


def test_non_utf8_ports_default_ports_with_a_warning(lab, need_lib, tag):
    """LUNAR_INTERCEPT_PORTS that is not UTF-8: the default ports (80 is diverted),
    and one warning."""
    res = curl(lab, tag, {"LUNAR_INTERCEPT_PORTS": "8080," + FF})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    lines = library_lines(res)
    assert len(lines) == 1 and "LUNAR_INTERCEPT_PORTS" in lines[0], describe(res)


def test_non_utf8_log_level_warns_and_keeps_warnings(lab, need_lib, tag):
    """A log level that is not UTF-8 is WARNING (with one warning), not DEBUG."""
    res = curl(lab, tag, {"LUNAR_INTERCEPTOR_LOG_LEVEL": "DEBUG" + FF})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    lines = library_lines(res)
    assert len(lines) == 1 and "LUNAR_INTERCEPTOR_LOG_LEVEL" in lines[0], describe(res)
