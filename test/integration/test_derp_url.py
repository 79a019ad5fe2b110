# test_derp_url.py: DERP maps from URLs (TS2021DERPMapURL) served by a local HTTP responder:
# merged with TS2021DERPMapFile, refreshed on the interval with changes reaching open streams,
# the last good copy kept when the URL fails or serves garbage, the cached copy used after a
# restart with the URL down, a late first map once the URL comes up, and bad directives.
import http.server
import json
import os
import threading
import time

import pytest

from conftest import make_state_dir
from test_config import configtest, edit
from test_control import Node, new_authkey
from tsclient import control

REGION_901 = {"RegionID": 901, "RegionCode": "url", "RegionName": "From the URL",
              "Nodes": [{"Name": "901a", "RegionID": 901, "HostName": "127.0.0.1",
                         "IPv4": "127.0.0.1", "IPv6": "none", "STUNPort": -1,
                         "DERPPort": 8444}]}
DERP_FILE = os.path.join(os.path.dirname(__file__), "data", "derpmap.json")


class DerpResponder:
    """Serves /derp.json from self.body with self.status; counts requests."""

    def __init__(self):
        self.status = 200
        self.body = json.dumps({"Regions": {"901": REGION_901}})
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                data = outer.body.encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/derp.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def set_regions(self, regions):
        self.body = json.dumps({"Regions": regions})

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def derp():
    r = DerpResponder()
    yield r
    r.close()


def start(server_factory, tmp_path, extra, state=None, fresh_db=True):
    conf = tmp_path / f"derp{len(os.listdir(tmp_path))}.conf"
    conf.write_text("    TS2021BaseDomain tail.example.test\n" + extra)
    return server_factory(extra_args=["--extra-conf", str(conf)], state=state,
                          fresh_db=fresh_db)


def first_map(s, name, key=None):
    key = key or new_authkey(s, "dan", "--reusable")
    n = Node(s, name)
    st, reg = n.register(key)
    assert st == 200 and reg["MachineAuthorized"], reg
    return n, n.open_map()


def test_url_merged_with_file(server_factory, tmp_path, derp):
    # Region 900 from the URL is replaced by the file's; 901 comes from the URL alone.
    derp.set_regions({"901": REGION_901,
                      "900": dict(REGION_901, RegionID=900, RegionCode="old",
                                  Nodes=[dict(REGION_901["Nodes"][0], Name="900x",
                                              RegionID=900)])})
    s = start(server_factory, tmp_path,
              f"    TS2021DERPMapURL {derp.url}\n    TS2021DERPMapFile {DERP_FILE}\n")
    n, first = first_map(s, "merged")
    regions = first["DERPMap"]["Regions"]
    assert sorted(regions) == ["900", "901"]
    assert regions["900"]["RegionCode"] == "test"
    assert regions["901"]["RegionCode"] == "url"
    assert derp.hits >= 1
    n.close()


def test_refresh_reaches_open_streams_and_failures_keep_last_good(server_factory, tmp_path,
                                                                 derp):
    s = start(server_factory, tmp_path,
              f"    TS2021DERPMapURL {derp.url}\n    TS2021DERPMapRefresh 1\n")
    n, first = first_map(s, "refresh")
    assert sorted(first["DERPMap"]["Regions"]) == ["901"]
    region_902 = dict(REGION_901, RegionID=902, RegionCode="new",
                      Nodes=[dict(REGION_901["Nodes"][0], Name="902a", RegionID=902)])
    derp.set_regions({"901": REGION_901, "902": region_902})
    msg = n.stream.until(lambda m: "DERPMap" in m, timeout=15)
    assert sorted(msg["DERPMap"]["Regions"]) == ["901", "902"]

    # Now the URL fails, then serves a broken map: no new DERPMap, the last good stays.
    derp.status = 500
    time.sleep(2.5)
    derp.status = 200
    derp.body = '{"Regions": {"903": {"RegionID": 999}}}'
    hits = derp.hits
    deadline = time.time() + 3
    while time.time() < deadline:
        m = n.stream.next(timeout=0.5)
        assert m is None or "DERPMap" not in m, m
    assert derp.hits > hits
    m2, first2 = first_map(s, "later")
    assert sorted(first2["DERPMap"]["Regions"]) == ["901", "902"]
    log = s.errlog()
    assert "DERP map from " + derp.url in log and "keeping the last good copy" in log
    n.close()
    m2.close()


def test_cached_copy_used_when_url_is_down_at_restart(server_factory, tmp_path, derp):
    state = make_state_dir()
    extra = f"    TS2021DERPMapURL {derp.url}\n"
    s = start(server_factory, tmp_path, extra, state=state)
    n, first = first_map(s, "cached")
    assert sorted(first["DERPMap"]["Regions"]) == ["901"]
    n.close()
    s.stop()
    # the parent's cache, in the TS2021StateDir (next to the key files)
    assert any(f.startswith("derp-") and f.endswith(".json")
               for _, _, files in os.walk(state) for f in files)
    derp.status = 503
    s2 = start(server_factory, tmp_path, extra, state=state, fresh_db=False)
    n2, first2 = first_map(s2, "cached2")
    assert sorted(first2["DERPMap"]["Regions"]) == ["901"]
    n2.close()


def test_first_map_arrives_once_the_url_comes_up(server_factory, tmp_path, derp):
    derp.status = 500
    s = start(server_factory, tmp_path,
              f"    TS2021DERPMapURL {derp.url}\n    TS2021DERPMapRefresh 1\n")
    assert "no DERP map" in s.errlog()
    key = new_authkey(s, "dan", "--reusable")
    n = Node(s, "late")
    st, reg = n.register(key)
    assert st == 200 and reg["MachineAuthorized"], reg
    req = control.map_request(n.ident, n.version, stream=False,
                              host=control.hostinfo(n.name))
    st, _ = control.post_json(n.conn, "/machine/map", req)
    assert st == 503
    derp.status = 200
    deadline = time.time() + 20
    while True:
        st, _ = control.post_json(n.conn, "/machine/map", req)
        if st == 200:
            break
        assert time.time() < deadline, f"map still {st}"
        time.sleep(0.5)
    first = n.open_map()
    assert sorted(first["DERPMap"]["Regions"]) == ["901"]
    n.close()


@pytest.mark.parametrize("line,message", [
    ("TS2021DERPMapURL ftp://derp.example/map",
     "TS2021DERPMapURL: 'ftp://derp.example/map' is not an http://, https:// or file:/// URL"),
    ("TS2021DERPMapURL https://", "is not an http://, https:// or file:/// URL"),
    ("TS2021DERPMapRefresh 0", "TS2021DERPMapRefresh: '0' is not a duration between"),
    ("TS2021DERPMapRefresh soon", "TS2021DERPMapRefresh: 'soon' is not a duration"),
])
def test_bad_derp_url_directives(conf_path, line, message):
    edit(conf_path, "TS2021 On", "TS2021 On\n    " + line)
    rc, out = configtest(conf_path)
    assert rc != 0 and message in out, out
