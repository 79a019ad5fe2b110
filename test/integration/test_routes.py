# test_routes.py: subnet routes and exit nodes end to end (real Apache, SQLite and MariaDB):
# routes advertised in Hostinfo are stored unapproved, `ts2021ctl routes approve` makes peers
# route them (AllowedIPs, PrimaryRoutes) as a delta on open streams, exit routes go as a pair,
# the primary fails over when its router goes offline, a router that stops advertising keeps
# its approval, bad prefixes are refused with nothing written; `ts2021ctl nodes tag`.
import json

import pytest

from test_control import Node, ctl, new_authkey, tailnet_server
from tsclient import control


class Router(Node):
    """A node advertising routes in every Hostinfo it sends."""

    def __init__(self, server, name, routable):
        super().__init__(server, name)
        self.routable = list(routable)

    def host(self):
        return control.hostinfo(self.name, routable=self.routable)

    def register(self, authkey=None, **kw):
        req = control.register_request(self.ident, self.version, auth_key=authkey,
                                       host=self.host(), **kw)
        return control.post_json(self.conn, "/machine/register", req)

    def open_map(self, endpoints=("198.51.100.8:41641",)):
        req = control.map_request(self.ident, self.version, endpoints=list(endpoints),
                                  host=self.host())
        self.stream = control.MapStream(self.conn, req)
        first = self.stream.next()
        assert first is not None and "Node" in first, first
        return first

    def advertise(self, routable):
        self.routable = list(routable)
        req = control.map_request(self.ident, self.version, stream=False, omit_peers=True,
                                  endpoints=["198.51.100.8:41641"], host=self.host())
        st, _ = control.post_json(self.conn, "/machine/map", req)
        assert st == 200


def routes(s, node=None):
    args = ["--json", "routes", "list"] + (["--node", node] if node else [])
    return {(r["node"], r["prefix"]): r for r in json.loads(ctl(s, *args).stdout)}


def peer_update(stream, peer_id, pred, timeout=10):
    """The next PeersChanged entry of peer_id that satisfies pred."""
    found = {}

    def match(m):
        for p in m.get("PeersChanged", []) or []:
            if p["ID"] == peer_id and pred(p):
                found["p"] = p
                return True
        return False
    stream.until(match, timeout=timeout)
    return found["p"]


def test_advertise_approve_failover(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "rita", "--reusable")
    r1 = Router(s, "router1", ["10.10.0.0/24", "0.0.0.0/0", "::/0"])
    r2 = Router(s, "router2", ["10.10.0.0/24"])
    c = Node(s, "client")
    for n in (r1, r2, c):
        st, reg = n.register(key)
        assert st == 200 and reg["MachineAuthorized"], reg
    id1 = r1.open_map()["Node"]["ID"]
    id2 = r2.open_map()["Node"]["ID"]
    first = c.open_map()

    # advertised, not approved: stored, but nobody routes them
    rl = routes(s)
    assert rl[("router1", "10.10.0.0/24")]["advertised"] and \
        not rl[("router1", "10.10.0.0/24")]["approved"]
    assert rl[("router1", "0.0.0.0/0")]["exit"]
    peer1 = next(p for p in first["Peers"] if p["ID"] == id1)
    assert all(not a.startswith("10.10.") and not a.endswith("/0") for a in peer1["AllowedIPs"])
    assert not peer1.get("PrimaryRoutes")

    # approve the subnet on both routers: router1 (the older) is primary
    ctl(s, "routes", "approve", "router1", "10.10.0.0/24")
    ctl(s, "routes", "approve", "router2", "10.10.0.0/24")
    p1 = peer_update(c.stream, id1, lambda p: "10.10.0.0/24" in p["AllowedIPs"])
    assert p1["PrimaryRoutes"] == ["10.10.0.0/24"]
    assert "0.0.0.0/0" not in p1["AllowedIPs"]

    # the exit node: approving one family approves both
    out = ctl(s, "routes", "approve", "router1", "0.0.0.0/0").stdout
    assert "approved" in out
    p1 = peer_update(c.stream, id1, lambda p: "0.0.0.0/0" in p["AllowedIPs"])
    assert "::/0" in p1["AllowedIPs"]
    assert routes(s, "router1")[("router1", "::/0")]["approved"]

    # router1 goes away: after the grace period router2 takes the subnet over
    r1.close()
    p2 = peer_update(c.stream, id2, lambda p: "10.10.0.0/24" in p["AllowedIPs"], timeout=20)
    assert p2["PrimaryRoutes"] == ["10.10.0.0/24"]

    # router2 stops advertising: its approval stays, peers stop routing to it
    r2.advertise([])
    rl = routes(s, "router2")
    assert rl[("router2", "10.10.0.0/24")]["approved"]
    assert not rl[("router2", "10.10.0.0/24")]["advertised"]
    peer_update(c.stream, id2, lambda p: "10.10.0.0/24" not in p["AllowedIPs"])
    # ...and serves it again at once when it advertises again
    r2.advertise(["10.10.0.0/24"])
    peer_update(c.stream, id2, lambda p: "10.10.0.0/24" in p["AllowedIPs"])

    # withdrawing the approval
    ctl(s, "routes", "unapprove", "router2", "10.10.0.0/24")
    peer_update(c.stream, id2, lambda p: "10.10.0.0/24" not in p["AllowedIPs"])
    for n in (r2, c):
        n.close()


@pytest.mark.parametrize("args,code,message", [
    (["routes", "approve", "router", "10.0.0.1/24"], 2, "'10.0.0.1/24' has host bits set"),
    (["routes", "approve", "router", "not-a-prefix"], 2, "is not an IP prefix"),
    (["routes", "approve", "router", "10.0.0.0/24", "10.0.0.0/40"], 2, "is not an IP prefix"),
    (["routes", "approve", "router"], 2, "usage: ts2021ctl routes approve"),
    (["routes", "approve", "nosuchnode", "10.0.0.0/24"], 1, "no node 'nosuchnode'"),
    (["routes", "list", "--node", "nosuchnode"], 1, "no node 'nosuchnode'"),
    (["nodes", "tag", "router"], 2, "needs --tags"),
    (["nodes", "tag", "router", "--tags", "tag:"], 2, "is not a tag"),
    (["nodes", "tag", "router", "--tags", ""], 2, "add --user USER"),
    (["nodes", "tag", "router", "--tags", "tag:x", "--user", "rita"], 2, "a tagged node has no user"),
])
def test_bad_route_and_tag_commands_write_nothing(server_factory, tmp_path, args, code, message):
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "rita")
    r = Router(s, "router", ["10.0.0.0/24"])
    st, _ = r.register(key)
    assert st == 200
    before = (ctl(s, "--json", "routes", "list").stdout, ctl(s, "--json", "nodes", "list").stdout)
    res = ctl(s, *args, check=False)
    assert res.returncode == code and message in res.stderr, (res.returncode, res.stderr)
    after = (ctl(s, "--json", "routes", "list").stdout, ctl(s, "--json", "nodes", "list").stdout)
    assert before == after
    r.close()


def test_nodes_tag_reaches_peers(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "tess", "--reusable")
    a, b = Node(s, "tagme"), Node(s, "watcher")
    for n in (a, b):
        assert n.register(key)[0] == 200
    ida = a.open_map()["Node"]["ID"]
    b.open_map()
    ctl(s, "nodes", "tag", "tagme", "--tags", "tag:server,tag:web")
    shown = json.loads(ctl(s, "--json", "nodes", "show", "tagme").stdout)
    assert shown["tags"] == ["tag:server", "tag:web"] and not shown.get("user")
    p = peer_update(b.stream, ida, lambda p: p.get("Tags"))
    assert p["Tags"] == ["tag:server", "tag:web"]
    ctl(s, "nodes", "tag", "tagme", "--tags", "", "--user", "tess")
    shown = json.loads(ctl(s, "--json", "nodes", "show", "tagme").stdout)
    assert not shown["tags"] and shown["user"] == "tess"
    peer_update(b.stream, ida, lambda p: not p.get("Tags"))
    a.close()
    b.close()
