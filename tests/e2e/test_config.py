"""Configuration edge cases (client-independent: curl only): invalid list entries,
allow list + block list, empty variables, TLS to a proxy that speaks none."""
import time

import pytest

from conftest import assert_direct, assert_ok, assert_proxied, describe, one_echo

API = "203.0.113.10:80"


def run(lab, tag, env):
    return lab.run(["curl", "-sS", "http://api.example.test" + tag], env=env, debug=False)


def warnings(res):
    return [ln for ln in res.text_err.splitlines() if ln.strip()]


def test_invalid_block_list_entry_disables_interceptor(lab, need_lib, tag):
    res = run(lab, tag, {"LUNAR_BLOCK_LIST": "other.example.test,bad_host!"})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    w = warnings(res)
    assert len(w) == 1 and "bad_host!" in w[0], w


def test_tls_to_a_proxy_without_tls_sends_nothing_in_clear_text(lab, need_lib, tag):
    """LUNAR_PROXY_SUPPORT_TLS=1 with the lab's plain proxy ports (traffic 8000,
    handshake 8081): the handshake over TLS meets plain HTTP and fails, so the proxy is
    unavailable and the request goes to its destination; no request of the program
    reaches HAProxy (in clear text or at all); one warning names the handshake port and
    OpenSSL's reason. (test_proxy_tls_traffic.py: diverting over TLS.)"""
    lab.start_haproxy()
    before = lab.haproxy_log()
    res = run(lab, tag, {"LUNAR_PROXY_SUPPORT_TLS": "1"})
    assert_ok(res)
    assert_direct(one_echo(res), res, origin=API, path=tag)
    w = warnings(res)
    assert len(w) == 1 and "8081" in w[0], w
    assert "wrong version number" in w[0] or "packet length too long" in w[0], w
    time.sleep(0.3)  # HAProxy writes a line when a connection ends
    lines = lab.haproxy_log()[len(before):].splitlines()
    assert not [ln for ln in lines if tag in ln or "lunar_traffic" in ln], lines


def test_invalid_allow_list_entry_dropped(lab, need_lib, tag):
    res = run(lab, tag, {"LUNAR_ALLOW_LIST": "bad_host!,api.example.test"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    w = warnings(res)
    assert len(w) == 1 and "bad_host!" in w[0], w


def test_block_list_ignored_with_allow_list(lab, need_lib, tag):
    res = run(lab, tag, {"LUNAR_ALLOW_LIST": "api.example.test", "LUNAR_BLOCK_LIST": "api.example.test"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    w = warnings(res)
    assert len(w) == 1 and "LUNAR_BLOCK_LIST" in w[0], w


@pytest.mark.parametrize("env", [{"LUNAR_ALLOW_LIST": ""}, {"LUNAR_BLOCK_LIST": ""},
                                 {"LUNAR_ALLOW_LIST": "", "LUNAR_BLOCK_LIST": ""}],
                         ids=["allow", "block", "both"])
def test_empty_list_variable_is_unset(lab, need_lib, tag, env):
    """`LUNAR_ALLOW_LIST=` (empty, as an env file or compose file easily leaves it)
    means no list: the external host is diverted, and nothing is warned about."""
    res = run(lab, tag, env)
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    assert warnings(res) == [], "warnings for an empty list variable: %r" % warnings(res)


@pytest.mark.parametrize("value", ["0", "abc", "-1"])
def test_bad_cooldown_settings_do_not_break_requests(lab, need_lib, tag, value):
    res = run(lab, tag, {"LUNAR_ENTER_COOLDOWN_AFTER_ATTEMPTS": value,
                         "LUNAR_EXIT_COOLDOWN_AFTER_SEC": value})
    assert_ok(res)
    one_echo(res)


@pytest.mark.parametrize("level", ["INFO", "WARNING", "WARN", "ERROR", "debug", "bogus"])
def test_log_levels(lab, need_lib, tag, level):
    res = lab.run(["curl", "-sS", "http://api.example.test" + tag],
                  env={"LUNAR_INTERCEPTOR_LOG_LEVEL": level})
    assert_ok(res)
    assert_proxied(one_echo(res), res, "api.example.test", origin=API, path=tag)
    lines = warnings(res)
    if level.upper() in ("WARNING", "WARN", "ERROR"):
        assert lines == [], "output at level %s: %r" % (level, lines)
    if level.upper() == "DEBUG":
        assert any("-> proxy" in ln for ln in lines), describe(res)
    assert all("-> proxy" not in ln for ln in lines) or level.upper() == "DEBUG", lines


def test_a_proxy_name_with_an_address_not_listening_uses_the_next(lab, need_lib, tag):
    """LUNAR_PROXY_HOST=localhost:8000, the form Lunar's docs show: the lab's localhost is
    ::1 first (where nothing listens on 8000 or 8081), then 127.0.0.1 (HAProxy). The
    handshake tries each address and the traffic goes to the one that answered."""
    lab.start_haproxy()
    res = run(lab, tag, {"LUNAR_PROXY_HOST": "localhost:8000"})
    assert_ok(res)
    assert_proxied(one_echo(res), res, lunar_host="api.example.test", origin=API, path=tag)
    assert warnings(res) == [], describe(res)
