# test_key.py: GET /key against a real Apache: the exact answer of transport spec 1.2,
# keys that survive restarts, and every kind of bad request refused cleanly.
import json
import os
import re
import stat

from nacl.bindings import crypto_scalarmult_base

KEY_RE = re.compile(r"^mkey:[0-9a-f]{64}$")
ZERO = "mkey:" + "0" * 64


def key_file(server):
    d = os.path.join(server.state, "keys")
    files = [f for f in os.listdir(d) if f.endswith(".key")]
    assert files == ["127.0.0.1.key"], files
    return os.path.join(d, files[0])


def noise_public_from_file(path):
    for line in open(path):
        if line.startswith("noise "):
            priv = bytes.fromhex(line.split()[1][len("privkey:"):])
            return "mkey:" + crypto_scalarmult_base(priv).hex()
    raise AssertionError("no noise line in key file")


def get_key(server, query="?v=145"):
    status, headers, body = server.request("GET", "/key" + query)
    assert status == 200, body
    return headers, body


def assert_serving(server):
    headers, body = get_key(server)
    assert KEY_RE.match(json.loads(body)["publicKey"])


def test_key_answer_is_exactly_the_spec_form(server):
    headers, body = get_key(server)
    assert headers["content-type"] == "application/json"
    assert headers["access-control-allow-origin"] == "*"
    doc = json.loads(body)
    assert list(doc) == ["legacyPublicKey", "publicKey"]
    assert doc["legacyPublicKey"] == ZERO
    assert KEY_RE.match(doc["publicKey"]) and doc["publicKey"] != ZERO
    # The byte form matches the vectors' key_endpoint_json layout (plus a newline).
    assert body == ('{"legacyPublicKey":"%s","publicKey":"%s"}\n'
                    % (ZERO, doc["publicKey"])).encode()
    # The published key is the public half of the noise key in the key file.
    assert doc["publicKey"] == noise_public_from_file(key_file(server))


def test_key_file_is_private_and_holds_two_distinct_keys(server):
    path = key_file(server)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    keys = dict(line.split() for line in open(path) if not line.startswith("#") and line.strip())
    assert set(keys) == {"noise", "legacy"}
    assert keys["noise"] != keys["legacy"]


def test_key_for_old_and_new_clients(server):
    first = json.loads(get_key(server, "?v=145")[1])
    for v in ("32", "51", "90", "145", "65535"):
        assert json.loads(get_key(server, "?v=" + v)[1]) == first
    # Other parameters are ignored; HEAD gets the headers only.
    assert json.loads(get_key(server, "?foo=1&v=51")[1]) == first
    status, headers, body = server.request("HEAD", "/key?v=145")
    assert status == 200 and body == b"" and headers["content-type"] == "application/json"


def test_keys_survive_restart(server_factory):
    s = server_factory()
    first = json.loads(get_key(s)[1])["publicKey"]
    s.stop()
    s.start()
    assert json.loads(get_key(s)[1])["publicKey"] == first
    s.stop()
    # A new state directory means new keys.
    other = server_factory()
    assert json.loads(get_key(other)[1])["publicKey"] != first
    other.stop()


BAD = [
    ("", 400, b"capability version must be set"),
    ("?v=", 400, b"must be a number"),
    ("?v=abc", 400, b"must be a number"),
    ("?v=-1", 400, b"must be a number"),
    ("?v=1.5", 400, b"must be a number"),
    ("?v=65536", 400, b"must be a number"),
    ("?v=99999999999999999999", 400, b"must be a number"),
    ("?v=145&v=51", 400, b"given twice"),
    ("?v=31", 400, b"unsupported client version 31"),
    ("?v=0", 400, b"unsupported client version 0"),
    ("?v=145&pad=" + "x" * 300, 400, b"query string too long"),
]


def test_key_bad_queries_refused_and_server_keeps_serving(server):
    for query, status, text in BAD:
        st, headers, body = server.request("GET", "/key" + query)
        assert st == status, (query, st, body)
        assert text in body, (query, body)
        assert headers["content-type"].startswith("text/plain")
        assert_serving(server)
    # A request line beyond Apache's limit is refused by Apache itself.
    st, _, _ = server.request("GET", "/key?v=145&pad=" + "x" * 10000)
    assert st == 414
    assert_serving(server)
    log = server.errlog()
    assert "TS2021 /key from 127.0.0.1 refused: capability version must be set" in log


def test_key_wrong_methods(server):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        st, headers, body = server.request(method, "/key?v=145", body=b"x" * 10)
        assert st == 405, method
        assert "GET" in headers.get("allow", "")
        assert_serving(server)


def test_min_capver_directive(server_factory, tmp_path):
    extra = tmp_path / "extra.conf"
    extra.write_text("    TS2021MinCapVersion 90\n")
    s = server_factory(extra_args=["--extra-conf", str(extra)])
    st, _, body = s.request("GET", "/key?v=51")
    assert st == 400 and b"unsupported client version 51 (minimum 90)" in body
    get_key(s, "?v=90")
    s.stop()


def test_other_paths_untouched(server):
    st, _, _ = server.request("GET", "/nothing-here")
    assert st == 404
    st, _, _ = server.request("GET", "/key/extra?v=145")
    assert st == 404
