"""What a process keeps mapped of the library (src/sys/residency.rs, build.rs's layout,
src/hot_data.rs): a process that diverts http maps the code http runs and its data, not
https's code nor the cold code and data, which the set-up fences off into mappings of
their own; one that diverts https maps https's code too, still none of the cold; an inert
process is not fenced (no system call for it). Code and read-only data share one segment
(build.rs: `--no-rosegment`): once fenced, its mappings are the loader's tables with the
hot read-only data and http's code, https's code, the cold code, and the cold read-only
data."""
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
    fenced = [m for m in maps if "x" in m["perm"]]
    assert len(fenced) == 4, "code and data not fenced into http's code (and the hot data)," \
        " https's, the cold code and the cold data:\n" + shown
    http, https, cold, cold_data = fenced
    assert http["resident"] > 0, shown
    assert https["resident"] == 0 and cold["resident"] == 0, (
        "an http-only process mapped code beyond http's (a stale scripts/layout/hot-code.txt?"
        " run scripts/layout/profile.sh):\n" + shown)
    assert cold_data["resident"] == 0, (
        "an http process read cold data (a literal outside src/hot_data.rs?):\n" + shown)


def test_https_process_maps_none_of_the_cold_code_or_data(lab, need_lib, tmp_path, tag):
    res, maps = mappings(lab, tmp_path, tag, proxy=True, scheme="https")
    echoes_seen = echoes(res)
    assert len(echoes_seen) == 20, describe(res)
    for echo in echoes_seen:
        assert echo["scheme"] == "https" and echo["headers"], describe(res)
        assert ["x-seen-lunar-scheme", "https"] in echo["headers"], describe(res)
    shown = "\n".join(json.dumps(m) for m in maps)
    fenced = [m for m in maps if "x" in m["perm"]]
    assert len(fenced) == 4, "code and data not fenced:\n" + shown
    http, https, cold, cold_data = fenced
    assert http["resident"] > 0 and https["resident"] > 0, shown
    assert cold["resident"] == 0, (
        "an https process mapped cold code (a TLS entry point or its work outside the hot"
        " code? a stale scripts/layout/hot-code.txt?):\n" + shown)
    assert cold_data["resident"] == 0, (
        "an https process read cold data (a literal outside src/hot_data.rs?):\n" + shown)


def test_inert_process_is_not_fenced(lab, need_lib, tmp_path, tag):
    res, maps = mappings(lab, tmp_path, tag, proxy=False)
    assert len(echoes(res)) == 20, describe(res)
    code = [m for m in maps if "x" in m["perm"]]
    assert len(code) == 1, "\n".join(json.dumps(m) for m in maps)
