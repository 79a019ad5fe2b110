# test_control.py: the control API against a real Apache on SQLite and MariaDB, with an
# independent client: nodes register with pre-auth keys and interactively, see each other in
# their maps, and every change (join, leave, endpoints, presence, ts2021ctl edits, a second
# Apache on the same database) reaches open streams as deltas.
import json
import os
import re
import subprocess
import time

import pytest

from conftest import TOP, MYSQL_PARAMS
from tsclient import client, control

CTL = os.path.join(TOP, "ts2021ctl")
DERP = os.path.join(TOP, "test", "integration", "data", "derpmap.json")
TAILNET_CONF = f"""    TS2021DERPMapFile {DERP}
    TS2021BaseDomain tail.example.test
    TS2021OfflineGrace 1
"""


def tailnet_server(server_factory, tmp_path, extra="", **kw):
    conf = tmp_path / f"tailnet{len(os.listdir(tmp_path))}.conf"
    conf.write_text(TAILNET_CONF + extra)
    return server_factory(extra_args=["--extra-conf", str(conf)], **kw)


def ctl(server, *args, check=True):
    if server.db == "sqlite":
        db = ["--db-driver", "sqlite3", "--db-params",
              os.path.join(server.state, "db", "ts2021.sqlite")]
    else:
        db = ["--db-driver", "mysql", "--db-params", server.dbparams]
    r = subprocess.run([CTL] + db + list(args), capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def new_authkey(server, user="alice", *flags):
    ctl(server, "users", "create", user, check=False)
    out = ctl(server, "preauthkeys", "create", "--user", user, *flags).stdout
    m = re.search(r"tskey-auth-\S+", out)
    assert m, out
    return m.group(0)


class Node:
    """One simulated tailscaled: keys, a Noise connection, its registration and map stream."""

    def __init__(self, server, name, version=145):
        self.server = server
        self.name = name
        self.version = version
        self.ident = control.NodeIdentity()
        key = client.fetch_server_key(server.url)
        self.conn = client.TS2021Client("127.0.0.1", server.port, key, tls=server.tls,
                                        machine_private=self.ident.machine_private,
                                        version=version).connect()
        self.stream = None

    def register(self, authkey=None, **kw):
        req = control.register_request(self.ident, self.version, auth_key=authkey,
                                       host=control.hostinfo(self.name), **kw)
        return control.post_json(self.conn, "/machine/register", req)

    def open_map(self, endpoints=("198.51.100.7:41641",)):
        req = control.map_request(self.ident, self.version, endpoints=list(endpoints),
                                  host=control.hostinfo(self.name))
        self.stream = control.MapStream(self.conn, req)
        first = self.stream.next()
        assert first is not None and "Node" in first, first
        return first

    def lite_update(self, endpoints):
        req = control.map_request(self.ident, self.version, stream=False, omit_peers=True,
                                  endpoints=list(endpoints), host=control.hostinfo(self.name))
        st, _ = control.post_json(self.conn, "/machine/map", req)
        return st

    def close(self):
        self.conn.close()


def peer_ids(msg):
    return sorted(p["ID"] for p in msg.get("Peers", []))


def changed_ids(msg):
    return sorted(p["ID"] for p in msg.get("PeersChanged", []) or [])


def test_preauth_join_two_nodes_see_each_other(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "alice", "--reusable")
    a, b = Node(s, "alpha"), Node(s, "beta")
    st, reg = a.register(key)
    assert st == 200 and reg["MachineAuthorized"] and not reg.get("Error"), reg
    assert reg["Login"]["LoginName"] and reg["User"]["ID"] > 0
    first_a = a.open_map()
    node_a = first_a["Node"]
    assert node_a["Name"] == "alpha.tail.example.test."
    assert node_a["Key"] == a.ident.node_key and node_a["Machine"] == a.ident.machine_key
    assert any(x.startswith("100.") for x in node_a["Addresses"])
    assert first_a["DERPMap"]["Regions"]["900"]["RegionID"] == 900
    assert first_a["PacketFilter"][0]["SrcIPs"] == ["*"]
    assert peer_ids(first_a) == []

    st, reg = b.register(key)
    assert st == 200 and reg["MachineAuthorized"], reg
    first_b = b.open_map()
    assert peer_ids(first_b) == [node_a["ID"]]
    peer = first_b["Peers"][0]
    assert peer["Key"] == a.ident.node_key and peer["Addresses"] == node_a["Addresses"]
    assert peer["Online"] is True
    # A hears of B as a delta, well within a second.
    t0 = time.time()
    delta = a.stream.until(lambda m: first_b["Node"]["ID"] in changed_ids(m), timeout=5)
    assert time.time() - t0 < 2
    assert "Peers" not in delta
    a.close()
    b.close()


def test_interactive_registration_approved_by_ctl(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    ctl(s, "users", "create", "bob")
    n = Node(s, "gamma")
    st, reg = n.register()
    assert st == 200 and reg["AuthURL"].startswith(s.url + "/register/tsreg-"), reg
    auth_id = reg["AuthURL"].rsplit("/", 1)[1]
    # The Followup is held open until the registration is approved elsewhere.
    req = control.register_request(n.ident, followup=reg["AuthURL"],
                                   host=control.hostinfo("gamma"))
    r = n.conn.start("POST", "/machine/register", json.dumps(req).encode())
    with pytest.raises((TimeoutError, OSError)):
        n.conn.pump(1.5)
    assert not r.ended
    ctl(s, "nodes", "register", auth_id, "--user", "bob")
    assert n.conn.wait_for(lambda: r.ended, timeout=10)
    body = json.loads(bytes(r.body))
    assert r.status == 200 and body["MachineAuthorized"] and not body.get("AuthURL"), body
    n.open_map()
    n.close()


def test_changes_reach_open_streams(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "carol", "--reusable")
    a, b = Node(s, "one"), Node(s, "two")
    a.register(key)
    a.open_map()
    b.register(key)
    first_b = b.open_map()
    idb = first_b["Node"]["ID"]
    assert len(first_b["Peers"]) == 1
    a.stream.until(lambda m: idb in changed_ids(m))
    # Endpoints change: a patch, not a full entry.
    assert b.lite_update(["203.0.113.9:41641"]) == 200
    m = a.stream.until(lambda m: any(p.get("NodeID") == idb and "Endpoints" in p
                                     for p in m.get("PeersChangedPatch", []) or [])
                       or idb in changed_ids(m))
    # An admin rename through ts2021ctl (Apache untouched) reaches the open stream.
    ctl(s, "nodes", "rename", str(idb), "renamed-two")
    m = a.stream.until(lambda m: any(p["ID"] == idb and p["Name"].startswith("renamed-two.")
                                     for p in m.get("PeersChanged", []) or []))
    # A third node joins: both streams hear of it.
    c = Node(s, "three")
    c.register(key)
    idc = c.open_map()["Node"]["ID"]
    a.stream.until(lambda m: idc in changed_ids(m))
    b.stream.until(lambda m: idc in changed_ids(m))
    # B goes away: after the grace period A sees it offline.
    b.close()
    a.stream.until(lambda m: any(p.get("NodeID") == idb and p.get("Online") is False
                                 for p in m.get("PeersChangedPatch", []) or [])
                   or any(p["ID"] == idb and p.get("Online") is False
                          for p in m.get("PeersChanged", []) or []), timeout=15)
    # Deleting C through ts2021ctl removes it from A's map.
    ctl(s, "nodes", "delete", str(idc))
    a.stream.until(lambda m: idc in (m.get("PeersRemoved") or []))
    a.close()
    c.close()


def test_bad_bodies_answered_and_nothing_written(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    n = Node(s, "bad")
    before = ctl(s, "nodes", "list", "--json").stdout
    for path in ("/machine/register", "/machine/map"):
        r = n.conn.request("POST", path, b"{not json")
        assert r.status in (200, 400), r.status
        if r.status == 200:
            assert json.loads(bytes(r.body)).get("Error"), bytes(r.body)
        r = n.conn.request("POST", path, b"[]")
        assert r.status in (200, 400)
        r = n.conn.request("POST", path, b"x" * ((1 << 20) + 10))
        assert r.status == 413
        r = n.conn.request("POST", path, b"{}", headers=[("content-type", "text/html")])
        assert r.status == 415
        r = n.conn.request("GET", path)
        assert r.status == 405
    st, body = control.post_json(n.conn, "/machine/register",
                                 control.register_request(n.ident, auth_key="tskey-auth-bogus"))
    assert st == 200 and body.get("Error"), body
    assert ctl(s, "nodes", "list", "--json").stdout == before
    n.close()


@pytest.mark.skipif(not MYSQL_PARAMS, reason="needs MariaDB")
def test_change_on_second_apache_reaches_first(server_factory, tmp_path, db):
    if db != "mysql":
        pytest.skip("two servers share one database only on MariaDB")
    s1 = tailnet_server(server_factory, tmp_path)
    s2 = tailnet_server(server_factory, tmp_path, fresh_db=False)
    key = new_authkey(s1, "dave", "--reusable")
    a = Node(s1, "east")
    a.register(key)
    a.open_map()
    b = Node(s2, "west")
    st, reg = b.register(key)
    assert st == 200 and reg["MachineAuthorized"], reg
    idb = b.open_map()["Node"]["ID"]
    t0 = time.time()
    a.stream.until(lambda m: idb in changed_ids(m), timeout=10)
    assert time.time() - t0 < 3
    a.close()
    b.close()


def test_keepalives_on_idle_streams(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path, "    TS2021KeepAliveInterval 1\n")
    key = new_authkey(s, "erin")
    n = Node(s, "quiet")
    n.register(key)
    n.open_map()
    t0 = time.time()
    seen = []
    while time.time() - t0 < 8:
        m = n.stream.next(timeout=8, skip_keepalive=False)
        seen.append(m)
        if m == {"KeepAlive": True}:
            break
    assert seen[-1] == {"KeepAlive": True}, seen
    assert time.time() - t0 < 5
    n.close()


def test_ephemeral_node_removed_after_disconnect(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path, "    TS2021EphemeralTimeout 1\n")
    key = new_authkey(s, "frank", "--reusable")
    eph_key = new_authkey(s, "frank", "--ephemeral")
    a = Node(s, "stay")
    a.register(key)
    a.open_map()
    e = Node(s, "ephemeral")
    st, reg = e.register(eph_key)
    assert st == 200 and reg["MachineAuthorized"], reg
    ide = e.open_map()["Node"]["ID"]
    a.stream.until(lambda m: ide in changed_ids(m))
    e.close()
    # Offline after the 1 s grace, deleted 1 s later: peers see it removed.
    a.stream.until(lambda m: ide in (m.get("PeersRemoved") or []), timeout=20)
    listed = json.loads(ctl(s, "nodes", "list", "--json").stdout)
    assert ide not in [x["id"] if "id" in x else x.get("ID") for x in listed]
    a.close()


def test_logout_and_key_rotation(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "gina", "--reusable")
    a, b = Node(s, "watcher"), Node(s, "leaver")
    a.register(key)
    a.open_map()
    b.register(key)
    idb = b.open_map()["Node"]["ID"]
    a.stream.until(lambda m: idb in changed_ids(m))
    # Key rotation: a new node key with OldNodeKey, authorised by the key; same node, new key.
    old = b.ident.rotate_node_key()
    st, reg = b.register(key, old_node_key=old)
    assert st == 200 and reg["MachineAuthorized"] and not reg.get("Error"), reg
    a.stream.until(lambda m: any(p.get("NodeID") == idb and p.get("Key") == b.ident.node_key
                                 for p in m.get("PeersChangedPatch", []) or [])
                   or any(p["ID"] == idb and p["Key"] == b.ident.node_key
                          for p in m.get("PeersChanged", []) or []))
    # Logout (an Expiry in the past): the node expires and its peers are told.
    st, reg = b.register(expiry="1970-01-01T00:02:03Z", old_style_auth=True)
    assert st == 200 and reg["NodeKeyExpired"] is True and not reg.get("Error"), reg

    def expired(m):
        for p in m.get("PeersChangedPatch", []) or []:
            if p.get("NodeID") == idb and "KeyExpiry" in p:
                return True
        for p in m.get("PeersChanged", []) or []:
            if p["ID"] == idb and p.get("Expired"):
                return True
        return idb in (m.get("PeersRemoved") or [])
    a.stream.until(expired)
    shown = json.loads(ctl(s, "nodes", "show", str(idb), "--json").stdout)
    assert shown, shown
    a.close()
    b.close()


def test_graceful_restart_keeps_presence_and_reaps_the_gone(server_factory, tmp_path):
    import signal
    from test_lifecycle import apache_pid
    s = tailnet_server(server_factory, tmp_path, "    TS2021OfflineGrace 4\n")
    key = new_authkey(s, "hank", "--reusable")
    nodes = [Node(s, n) for n in ("stays-a", "stays-b", "goes")]
    for n in nodes:
        n.register(key)
    ids = [n.open_map()["Node"]["ID"] for n in nodes]
    os.kill(apache_pid(s), signal.SIGUSR1)
    time.sleep(1.5)
    for n in nodes:
        n.close()
    # Two come back at once (as clients do after a GOAWAY); the third never does.
    back = [Node(s, "stays-a"), Node(s, "stays-b")]
    for new, old in zip(back, nodes):
        new.ident = old.ident
        new.conn = client.TS2021Client("127.0.0.1", s.port, client.fetch_server_key(s.url),
                                       machine_private=old.ident.machine_private).connect()
    first = back[0].open_map()
    back[1].open_map()
    peers = {p["ID"]: p for p in first["Peers"]}
    assert peers[ids[1]]["Online"] is True          # no flap for the one that came back
    # The one that never came back goes offline once the grace period (plus sweep) passed.
    back[0].stream.until(lambda m: any(p.get("NodeID") == ids[2] and p.get("Online") is False
                                       for p in m.get("PeersChangedPatch", []) or [])
                         or any(p["ID"] == ids[2] and p.get("Online") is False
                                for p in m.get("PeersChanged", []) or []), timeout=20)
    for n in back:
        n.close()


def test_view_catches_up_past_one_batch_of_generations(server_factory, tmp_path):
    """More than one batch (1,000 generations) of changes committed at once, with one wake-up:
    the view must catch up to the last of them without waiting for another change."""
    import sqlite3
    s = tailnet_server(server_factory, tmp_path)
    if s.db != "sqlite":
        pytest.skip("writes the change log directly (SQLite)")
    key = new_authkey(s, "ivy", "--reusable")
    a, b = Node(s, "watcher"), Node(s, "moved")
    a.register(key)
    a.open_map()
    b.register(key)
    idb = b.open_map()["Node"]["ID"]
    a.stream.until(lambda m: idb in changed_ids(m))
    time.sleep(0.5)
    db = sqlite3.connect(os.path.join(s.state, "db", "ts2021.sqlite"), timeout=10)
    with db:
        db.execute("BEGIN IMMEDIATE")
        (g,) = db.execute("SELECT generation FROM ts_state WHERE id = 1").fetchone()
        (uid,) = db.execute("SELECT user_id FROM nodes WHERE id = ?", (idb,)).fetchone()
        now = int(time.time() * 1e6)
        # 2,600 generations of no-op user changes, then the node's endpoints move.
        db.executemany("INSERT INTO change_log (generation, created_at, kind, node_id, user_id,"
                       " payload) VALUES (?, ?, 'user.updated', NULL, ?, NULL)",
                       [(g + i, now, uid) for i in range(1, 2601)])
        db.execute("UPDATE nodes SET endpoints = ? WHERE id = ?",
                   ('["192.0.2.77:41641"]', idb))
        db.execute("INSERT INTO change_log (generation, created_at, kind, node_id, user_id,"
                   " payload) VALUES (?, ?, 'node.updated', ?, NULL, NULL)", (g + 2601, now, idb))
        db.execute("UPDATE ts_state SET generation = ? WHERE id = 1", (g + 2601,))
    db.close()
    # The leader's poll (every 0.5 s) notices the generation moved: one wake-up, no more.
    a.stream.until(lambda m: any(p.get("NodeID") == idb and "192.0.2.77:41641"
                                 in (p.get("Endpoints") or [])
                                 for p in m.get("PeersChangedPatch", []) or [])
                   or any(p["ID"] == idb and "192.0.2.77:41641" in (p.get("Endpoints") or [])
                          for p in m.get("PeersChanged", []) or []), timeout=10)
    a.close()
    b.close()


def test_join_endpoints_and_online_in_one_delta(server_factory, tmp_path):
    """A node's map request stores its disco key and endpoints and brings it online: peers
    get both in one delta (one notification, debounced), never the key without Online."""
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "joe", "--reusable")
    a = Node(s, "watcher")
    a.register(key)
    a.open_map()
    for i in range(3):
        b = Node(s, f"joiner{i}")
        b.register(key)
        first_b = b.open_map()
        idb, disco = first_b["Node"]["ID"], b.ident.disco_key

        def about_b(m):
            out = [p for p in m.get("PeersChanged", []) or [] if p["ID"] == idb]
            out += [p for p in m.get("PeersChangedPatch", []) or [] if p.get("NodeID") == idb]
            return out

        seen = []
        while True:
            m = a.stream.next(timeout=10)
            assert m is not None, "stream ended"
            entries = about_b(m)
            if not entries:
                continue
            seen.append(entries)
            if any(e.get("Online") is True for e in entries):
                break
        # The message that brings it online also carries its disco key; none before did.
        assert any(e.get("DiscoKey") == disco for e in seen[-1]), seen
        assert not any(e.get("DiscoKey") == disco for es in seen[:-1] for e in es), seen
        # Register (offline, no disco key yet), then disco key + endpoints + online.
        assert len(seen) <= 2, seen
        b.close()
    a.close()


def test_streams_opened_during_changes_never_go_back(server_factory, tmp_path):
    """Streams opened while a peer keeps changing its endpoints: the first map is compressed
    off the lock while deltas go on, so each stream must see the peer's values in order from
    its first map on (never an older one after a newer) and end at the last one."""
    import threading
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "kim", "--reusable")
    mover = Node(s, "mover")
    mover.register(key)
    idm = mover.open_map()["Node"]["ID"]
    watchers = [Node(s, f"watch{i}") for i in range(6)]
    for w in watchers:
        w.register(key)
    rounds = 30
    errors = []

    def move():
        try:
            for i in range(1, rounds + 1):
                assert mover.lite_update([f"203.0.113.{i}:41641"]) == 200
                time.sleep(0.02)
        except Exception as e:      # reported below
            errors.append(e)

    def index_of(p):
        eps = p.get("Endpoints") or []
        for e in eps:
            m = re.match(r"203\.0\.113\.(\d+):41641$", e)
            if m:
                return int(m.group(1))
        return None

    t = threading.Thread(target=move)
    t.start()
    seen = {}
    for w in watchers:
        first = w.open_map()
        peer = [p for p in first["Peers"] if p["ID"] == idm][0]
        seen[w.name] = [index_of(peer) or 0]
        time.sleep(0.05)
    t.join()
    assert not errors, errors
    for w in watchers:
        deadline = time.time() + 10
        while seen[w.name][-1] != rounds and time.time() < deadline:
            m = w.stream.next(timeout=2)
            if m is None:
                continue
            for p in (m.get("PeersChanged") or []):
                if p["ID"] == idm and index_of(p) is not None:
                    seen[w.name].append(index_of(p))
            for p in (m.get("PeersChangedPatch") or []):
                if p.get("NodeID") == idm and index_of(p) is not None:
                    seen[w.name].append(index_of(p))
        vals = seen[w.name]
        assert vals[-1] == rounds, (w.name, vals)
        assert vals == sorted(vals), (w.name, vals)     # never back in time
    for n in watchers + [mover]:
        n.close()


def test_full_map_of_many_peers_is_exact(server_factory, tmp_path):
    """A first map with hundreds of peers is several zstd frames (shared peer chunks): decoded
    as clients do, it is valid JSON listing exactly the other nodes, for viewers at either end
    and in the middle of the tailnet, and a change shows in the next viewer's full map."""
    s = tailnet_server(server_factory, tmp_path)
    key = new_authkey(s, "mia", "--reusable")
    server_key = client.fetch_server_key(s.url)
    idents = []
    for i in range(260):
        ident = control.NodeIdentity()
        conn = client.TS2021Client("127.0.0.1", s.port, server_key, tls=s.tls,
                                   machine_private=ident.machine_private, version=145).connect()
        req = control.register_request(ident, 145, auth_key=key,
                                       host=control.hostinfo(f"bulk{i}"))
        st, reg = control.post_json(conn, "/machine/register", req)
        assert st == 200 and reg["MachineAuthorized"], reg
        conn.close()
        idents.append(ident)
    everyone = {i.node_key for i in idents}

    def first_map(ident, name, endpoints=("198.51.100.7:41641",), ready=lambda m: True):
        # Each child's view learns of other children's writes from the change log a few ms
        # later (the notifier's round), so a first map may lag the newest registrations or
        # endpoints; it must never list a stranger, a duplicate or the node itself, and must
        # list everyone (and pass `ready`) once the view caught up.
        for attempt in range(50):
            conn = client.TS2021Client("127.0.0.1", s.port, server_key, tls=s.tls,
                                       machine_private=ident.machine_private,
                                       version=145).connect()
            req = control.map_request(ident, 145, endpoints=list(endpoints),
                                      host=control.hostinfo(name))
            stream = control.MapStream(conn, req)
            m = stream.next()
            assert m is not None and m["Node"]["Key"] == ident.node_key, m
            got = [p["Key"] for p in m.get("Peers", [])]
            assert len(got) == len(set(got)), "a peer listed twice"
            assert not set(got) - (everyone - {ident.node_key}), "a stranger or itself listed"
            ids = [p["ID"] for p in m["Peers"]]
            assert ids == sorted(ids)
            assert stream.zframes[0] > 3, stream.zframes   # head, shared chunks, tail
            if set(got) == everyone - {ident.node_key} and ready(m):
                return conn, m
            conn.close()
            time.sleep(0.1)
        assert set(got) == everyone - {ident.node_key}, "view never caught up"
        assert ready(m), m
        return conn, m

    open_conns = []
    for i in (0, 130, 259, 1, 200):
        conn, m = first_map(idents[i], f"bulk{i}", (f"198.51.100.{i % 250 + 1}:41641",))
        open_conns.append(conn)
        if i == 130:
            mid_id = m["Node"]["ID"]
    # node 130 reported new endpoints (its own map request): a newcomer's map has them
    conn, _ = first_map(idents[130], "bulk130", ("192.0.2.99:41641",))
    open_conns.append(conn)
    late = control.NodeIdentity()
    conn = client.TS2021Client("127.0.0.1", s.port, server_key, tls=s.tls,
                               machine_private=late.machine_private, version=145).connect()
    st, reg = control.post_json(conn, "/machine/register",
                                control.register_request(late, 145, auth_key=key,
                                                         host=control.hostinfo("late")))
    assert st == 200, reg
    conn.close()
    everyone.add(late.node_key)
    def mid_moved(m):
        e = [p for p in m["Peers"] if p["ID"] == mid_id]
        return bool(e) and e[0]["Endpoints"] == ["192.0.2.99:41641"]

    conn, fresh = first_map(late, "late", ready=mid_moved)
    open_conns.append(conn)
    entry = [p for p in fresh["Peers"] if p["ID"] == mid_id]
    assert entry and entry[0]["Endpoints"] == ["192.0.2.99:41641"], entry
    assert entry[0]["Online"] is True
    for c in open_conns:
        c.close()
