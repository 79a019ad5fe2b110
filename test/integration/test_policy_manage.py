# test_policy_manage.py: managing the policy on a real Apache (SQLite and MariaDB):
# `ts2021ctl policy get|check|set` and the admin API's PUT /policy check a policy with the
# compiler against the tailnet in the database (bad ones, and ones whose tests fail, are
# refused with their line and nothing is written; both refuse while TS2021PolicyFile is in
# force); tags a node asks for are checked against tagOwners (the client sees the refusal);
# autoApprovers approve advertised subnet and exit routes at registration, when a node
# advertises more and when a policy is stored, and peers see AllowedIPs change.
import json
import os
import shutil

from conftest import make_state_dir
from test_admin import Admin, admin_conf, error_of
from test_control import CTL, Node, ctl, new_authkey, tailnet_server
from test_routes import Router, peer_update, routes
from tsclient import control

import subprocess

BAD_GROUP = """// refused: the group does not exist
{
  "acls": [
    {"action": "accept", "src": ["group:nope"], "dst": ["*:*"]},
  ],
}
"""

GOOD = """// the tailnet's policy
{
  "groups": {"group:eng": ["alice@example.com"]},
  "tagOwners": {"tag:router": ["group:eng"]},
  "acls": [
    {"action": "accept", "src": ["*"], "dst": ["*:*"]},
  ],
  "autoApprovers": {
    "routes": {"10.20.0.0/16": ["tag:router"], "192.168.5.0/24": ["bob@example.com"]},
    "exitNode": ["tag:router"],
  },
}
"""

# The second test does not hold: alice's nodes may not reach port 80 of the router.
FAILING_TESTS = """{
  "acls": [{"action": "accept", "src": ["alice@example.com"], "dst": ["*:22"]}],
  "tests": [
    {"src": "alice@example.com", "deny": ["100.64.0.1:80"]},
    {"src": "alice@example.com", "accept": ["100.64.0.1:80"]},
  ],
}
"""


def users(s):
    ctl(s, "users", "create", "alice", "--email", "alice@example.com")
    ctl(s, "users", "create", "bob", "--email", "bob@example.com")


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def policy_rows(s):
    return json.loads(ctl(s, "--json", "policy", "get").stdout)


def test_ctl_policy_check_set_get(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    users(s)
    key = new_authkey(s, "alice")
    n = Node(s, "laptop")
    assert n.register(key)[1]["MachineAuthorized"]
    assert policy_rows(s)["policy"] is None

    bad = write(tmp_path, "bad.hujson", BAD_GROUP)
    for verb in ("check", "set"):
        r = ctl(s, "policy", verb, bad, check=False)
        assert r.returncode == 1 and "line 4" in r.stderr and "group:nope" in r.stderr, r.stderr
    out = json.loads(ctl(s, "--json", "policy", "check", bad, check=False).stdout)
    assert out["valid"] is False and out["line"] == 4 and "group:nope" in out["message"]
    tests = write(tmp_path, "tests.hujson", FAILING_TESTS)
    r = ctl(s, "policy", "set", tests, check=False)
    assert r.returncode == 1 and "tests[1]" in r.stderr and "line 5" in r.stderr, r.stderr
    big = write(tmp_path, "big.hujson", '{"acls": [], "x": "' + "a" * 1100000 + '"}')
    r = ctl(s, "policy", "set", big, check=False)
    assert r.returncode == 1 and "larger than" in r.stderr
    r = ctl(s, "policy", "set", str(tmp_path / "missing.hujson"), check=False)
    assert r.returncode == 1 and "missing.hujson" in r.stderr
    assert policy_rows(s)["policy"] is None          # nothing written by any of them

    good = write(tmp_path, "good.hujson", GOOD)
    assert "the policy is valid" in ctl(s, "policy", "check", good).stdout
    assert json.loads(ctl(s, "--json", "policy", "check", good).stdout)["valid"] is True
    out = json.loads(ctl(s, "--json", "policy", "set", good).stdout)
    assert out["id"] > 0
    got = policy_rows(s)
    assert got["policy"] == GOOD and got["id"] == out["id"] and got["source"] == "database"
    assert ctl(s, "policy", "get").stdout == GOOD
    # a later bad one leaves the good one in force
    assert ctl(s, "policy", "set", bad, check=False).returncode == 1
    assert policy_rows(s)["id"] == out["id"]
    n.close()


def test_ctl_refuses_with_policy_file(server_factory, tmp_path):
    pol = write(tmp_path, "policy.hujson", GOOD)
    s = tailnet_server(server_factory, tmp_path, extra=f"    TS2021PolicyFile {pol}\n")
    conf = s.config_only()
    good = write(tmp_path, "other.hujson", GOOD.replace("10.20.0.0/16", "10.21.0.0/16"))
    r = subprocess.run([CTL, "--apache-config", conf, "policy", "set", good],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "TS2021PolicyFile" in r.stderr, r.stderr
    r = subprocess.run([CTL, "--apache-config", conf, "--json", "policy", "get"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["source"] == "file" and out["policy"] == GOOD
    assert policy_rows(s)["policy"] is None


def admin_server_with(server_factory, policy_file=None):
    d = make_state_dir()
    args = admin_conf(d)
    if policy_file:
        extra = args[1]
        with open(extra, "a") as f:
            f.write(f"    TS2021PolicyFile {policy_file}\n")
    return server_factory(extra_args=args), d


def test_admin_put_policy(server_factory, tmp_path):
    s, d = admin_server_with(server_factory)
    try:
        a = Admin(s)
        for name in ("alice", "bob"):
            a.ok("POST", "/users", {"name": name, "email": f"{name}@example.com"}, status=201)
        st, _, out = a.call("PUT", "/policy", raw=BAD_GROUP.encode(), ctype="application/hujson")
        assert st == 400 and error_of(out) == "policy_invalid", out
        assert out["errors"][0]["line"] == 4 and "group:nope" in out["errors"][0]["message"]
        st, _, out = a.call("PUT", "/policy", raw=FAILING_TESTS.encode(), ctype="text/plain")
        assert st == 400 and error_of(out) == "policy_invalid"
        # no node of alice's yet: the first test names nobody, on its line
        assert out["errors"][0]["line"] == 4 and "tests[0]" in out["error"], out
        assert a.get("/policy")["policy"] is None
        out = a.ok("PUT", "/policy", raw=GOOD.encode(), ctype="application/hujson")
        assert out["id"] > 0
        assert a.get("/policy")["policy"] == GOOD
        # the same text through ts2021ctl is accepted the same way
        assert ctl(s, "policy", "check", write(tmp_path, "g.hujson", GOOD)).returncode == 0
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)

    # a vhost with TS2021PolicyFile: 409, nothing stored, Apache keeps serving
    pol = write(tmp_path, "policy.hujson", GOOD)
    os.chmod(pol, 0o644)
    s, d = admin_server_with(server_factory, pol)
    try:
        a = Admin(s)
        st, _, out = a.call("PUT", "/policy", raw=GOOD.encode(), ctype="text/plain")
        assert st == 409 and error_of(out) == "policy_from_file" and "TS2021PolicyFile" in out["error"]
        shown = a.get("/policy")           # the file is what is in force
        assert shown["source"] == "file" and shown["policy"] == GOOD
        assert a.get("/info")
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


class Tagged(Router):
    """A router that asks for tags (Hostinfo.RequestTags, `tailscale up --advertise-tags`)."""

    def __init__(self, server, name, routable, tags):
        super().__init__(server, name, routable)
        self.tags = list(tags)

    def host(self):
        h = control.hostinfo(self.name, routable=self.routable)
        if self.tags:
            h["RequestTags"] = self.tags
        return h


def nodes(s):
    return {n["name"]: n for n in json.loads(ctl(s, "--json", "nodes", "list").stdout)}


def test_tags_and_auto_approvers(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    users(s)
    ctl(s, "policy", "set", write(tmp_path, "good.hujson", GOOD))
    akey = new_authkey(s, "alice", "--reusable")
    bkey = new_authkey(s, "bob", "--reusable")

    c = Node(s, "client")
    assert c.register(akey)[1]["MachineAuthorized"]
    c.open_map()

    # bob may not apply tag:router: the client is told, nothing is written
    before = nodes(s)
    bad = Tagged(s, "badrouter", ["10.20.1.0/24"], ["tag:router"])
    st, reg = bad.register(bkey)
    assert st == 200 and not reg["MachineAuthorized"]
    assert "bob@example.com may not apply tag:router" in reg["Error"], reg
    assert set(nodes(s)) == set(before)

    # alice may: the node belongs to the tag, never expires, its routes are auto-approved
    r = Tagged(s, "router", ["10.20.1.0/24", "0.0.0.0/0", "::/0", "172.16.0.0/24"],
               ["tag:router"])
    st, reg = r.register(akey)
    assert st == 200 and reg["MachineAuthorized"] and reg["Login"]["LoginName"] == "tagged-devices"
    nd = nodes(s)["router"]
    assert nd["tags"] == ["tag:router"] and nd["user"] is None and nd["expiry"] is None, nd
    rl = routes(s, "router")
    assert rl[("router", "10.20.1.0/24")]["approved"]
    assert rl[("router", "0.0.0.0/0")]["approved"] and rl[("router", "::/0")]["approved"]
    assert not rl[("router", "172.16.0.0/24")]["approved"]    # no approver covers it
    rid = r.open_map()["Node"]["ID"]
    p = peer_update(c.stream, rid, lambda p: "10.20.1.0/24" in p["AllowedIPs"])
    assert "0.0.0.0/0" in p["AllowedIPs"] and "::/0" in p["AllowedIPs"]
    assert "172.16.0.0/24" not in p["AllowedIPs"]

    # it advertises one more inside 10.20/16: approved as the map request stores it
    r.advertise(["10.20.1.0/24", "10.20.2.0/24", "0.0.0.0/0", "::/0"])
    peer_update(c.stream, rid, lambda p: "10.20.2.0/24" in p["AllowedIPs"])
    assert routes(s, "router")[("router", "10.20.2.0/24")]["approved"]

    # bob's node advertises 192.168.5.0/24 before a policy lets him: stays unapproved...
    ctl(s, "policy", "set", write(tmp_path, "noauto.hujson",
                                  GOOD.replace('"192.168.5.0/24": ["bob@example.com"]',
                                               '"192.168.6.0/24": ["bob@example.com"]')))
    b = Router(s, "bobnet", ["192.168.5.0/24"])
    assert b.register(bkey)[1]["MachineAuthorized"]
    bid = b.open_map()["Node"]["ID"]
    assert not routes(s, "bobnet")[("bobnet", "192.168.5.0/24")]["approved"]
    # ...until a stored policy approves it: peers see it at once
    out = json.loads(ctl(s, "--json", "policy", "set",
                         write(tmp_path, "good2.hujson", GOOD)).stdout)
    assert out["auto_approved_nodes"] == 1
    peer_update(c.stream, bid, lambda p: "192.168.5.0/24" in p["AllowedIPs"])
    for n in (c, r, b, bad):
        n.close()


def test_interactive_tag_request(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    users(s)
    ctl(s, "policy", "set", write(tmp_path, "good.hujson", GOOD))
    for approver, ok in (("bob", False), ("alice", True)):
        n = Tagged(s, f"gw-{approver}", ["10.20.7.0/24"], ["tag:router"])
        st, reg = n.register()
        assert st == 200 and reg["AuthURL"], reg
        auth_id = reg["AuthURL"].rsplit("/", 1)[1]
        req = control.register_request(n.ident, followup=reg["AuthURL"], host=n.host())
        r = n.conn.start("POST", "/machine/register", json.dumps(req).encode())
        out = ctl(s, "nodes", "register", auth_id, "--user", approver, check=False)
        assert n.conn.wait_for(lambda: r.ended, timeout=10)
        body = json.loads(bytes(r.body))
        if ok:
            assert out.returncode == 0, out.stderr
            assert body["MachineAuthorized"] and body["Login"]["LoginName"] == "tagged-devices"
            nd = nodes(s)["gw-alice"]
            assert nd["tags"] == ["tag:router"] and nd["user"] is None
            assert routes(s, "gw-alice")[("gw-alice", "10.20.7.0/24")]["approved"]
        else:
            # the admin is told, and so is the waiting client; no node is written
            assert out.returncode == 1 and "may not apply tag:router" in out.stderr
            assert "bob@example.com may not apply tag:router" in body["Error"], body
            assert "gw-bob" not in nodes(s)
        n.close()
