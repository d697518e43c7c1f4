"""What a process keeps mapped of the library (src/sys/residency.rs, build.rs's layout,
src/hot_data.rs): a process that diverts http maps the code http runs and its data, not
https's code nor the cold code and data, which the set-up fences off into mappings of
their own; one that diverts https maps https's code too, still none of the cold; an inert
process is not fenced (no system call for it)."""
import json
import os

from conftest import CLIENT_DIR, PY, assert_proxied, describe, echoes

API = "203.0.113.10:80"


def mappings(lab, tmp_path, tag, proxy, scheme="http"):
    report = str(tmp_path / "maps.jsonl")
    res = lab.run([PY, os.path.join(CLIENT_DIR, "py_residency.py"),
                   scheme + "://api.example.test" + tag, "20", lab.lib, report], proxy=proxy)
    assert res.rc == 0, describe(res)
    with open(report) as f:
        return res, [json.loads(line) for line in f]


def test_http_process_maps_none_of_the_https_or_cold_code(lab, need_lib, tmp_path, tag):
    res, maps = mappings(lab, tmp_path, tag, proxy=True)
    for echo in echoes(res):
        assert_proxied(echo, res, "api.example.test", origin=API, path=tag)
    shown = "\n".join(json.dumps(m) for m in maps)
    code = [m for m in maps if "x" in m["perm"]]
    assert len(code) == 3, "code not fenced into http's, https's and the rest:\n" + shown
    http, https, cold = code
    assert http["resident"] > 0, shown
    assert https["resident"] == 0 and cold["resident"] == 0, (
        "an http-only process mapped code beyond http's (a stale scripts/layout/hot-code.txt?"
        " run scripts/layout/profile.sh):\n" + shown)
    # The read-only data after the code: the hot part, then the cold part (fenced and
    # unmapped), then the relocated part before the writable data.
    data = [m for m in maps if m["perm"] == "r--p" and m["offset"] > cold["offset"]]
    assert len(data) == 3, "read-only data not fenced:\n" + shown
    assert data[0]["resident"] > 0 and data[1]["resident"] == 0, shown


def test_https_process_maps_none_of_the_cold_code_or_data(lab, need_lib, tmp_path, tag):
    res, maps = mappings(lab, tmp_path, tag, proxy=True, scheme="https")
    echoes_seen = echoes(res)
    assert len(echoes_seen) == 20, describe(res)
    for echo in echoes_seen:
        assert echo["scheme"] == "https" and echo["headers"], describe(res)
        assert ["x-seen-lunar-scheme", "https"] in echo["headers"], describe(res)
    shown = "\n".join(json.dumps(m) for m in maps)
    code = [m for m in maps if "x" in m["perm"]]
    assert len(code) == 3, "code not fenced:\n" + shown
    http, https, cold = code
    assert http["resident"] > 0 and https["resident"] > 0, shown
    assert cold["resident"] == 0, (
        "an https process mapped cold code (a TLS entry point or its work outside the hot"
        " code? a stale scripts/layout/hot-code.txt?):\n" + shown)
    data = [m for m in maps if m["perm"] == "r--p" and m["offset"] > cold["offset"]]
    assert len(data) == 3 and data[1]["resident"] == 0, (
        "an https process read cold data (a literal outside src/hot_data.rs?):\n" + shown)


def test_inert_process_is_not_fenced(lab, need_lib, tmp_path, tag):
    res, maps = mappings(lab, tmp_path, tag, proxy=False)
    assert len(echoes(res)) == 20, describe(res)
    code = [m for m in maps if "x" in m["perm"]]
    assert len(code) == 1, "\n".join(json.dumps(m) for m in maps)
