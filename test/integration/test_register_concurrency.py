# test_register_concurrency.py: many nodes registering at once against a real Apache (2
# children, SQLite and MariaDB; two Apaches on one MariaDB): every registration succeeds,
# addresses and MagicDNS names are distinct (host, host-1, ...), no row is half-written; a
# database locked for longer than the store retries gives 503 with Retry-After, never 500.
import ipaddress
import json
import os
import sqlite3
import threading
import time

import pytest

from conftest import mysql_exec
from tsclient import client, control
from test_control import ctl, new_authkey

NODES = 40


def query(server, sql):
    if server.db == "sqlite":
        with sqlite3.connect(os.path.join(server.state, "db", "ts2021.sqlite")) as db:
            return [tuple(r) for r in db.execute(sql)]
    return [tuple(r) for r in mysql_exec(sql, "ts2021")]


def connect(server, timeout=30):
    ident = control.NodeIdentity()
    key = client.fetch_server_key(server.url)
    conn = client.TS2021Client("127.0.0.1", server.port, key, machine_private=ident.machine_private,
                               timeout=timeout).connect()
    return ident, conn


def register_all(servers, key, hostname, count):
    """count nodes spread over servers connect first, then all register at once."""
    nodes = [connect(servers[i % len(servers)]) for i in range(count)]
    start = threading.Barrier(count)
    results = [None] * count

    def one(i):
        ident, conn = nodes[i]
        req = control.register_request(ident, auth_key=key, host=control.hostinfo(hostname))
        start.wait()
        try:
            results[i] = control.post_json(conn, "/machine/register", req)
        except Exception as e:          # reported below with the others
            results[i] = ("exception", repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for _, conn in nodes:
        conn.close()
    return results


def check_tailnet(server, count, hostname):
    rows = query(server, "SELECT id, given_name, ipv4, ipv6 FROM nodes")
    assert len(rows) == count
    names = sorted(r[1] for r in rows)
    assert names == sorted([hostname] + [f"{hostname}-{i}" for i in range(1, count)])
    v4 = [ipaddress.ip_address(r[2]) for r in rows]
    v6 = [ipaddress.ip_address(r[3]) for r in rows]
    assert len(set(v4)) == count and len(set(v6)) == count
    assert all(a in ipaddress.ip_network("100.64.0.0/10") for a in v4)
    # sequential: a block from the start of the prefix, no address skipped or lost
    assert sorted(int(a) & 0xffff for a in v4) == list(range(1, count + 1))
    assert sorted(int(a) & 0xffff for a in v6) == list(range(1, count + 1))
    # nothing half-written: one node.created change per node, cursors at the last address
    created = query(server, "SELECT COUNT(*), COUNT(DISTINCT node_id) FROM change_log "
                            "WHERE kind = 'node.created'")[0]
    assert tuple(int(x) for x in created) == (count, count)
    cursors = dict(query(server, "SELECT prefix, last_ip FROM ip_cursors"))
    assert cursors == {"100.64.0.0/10": str(max(v4)), "fd7a:115c:a1e0::/48": str(max(v6))}


def test_concurrent_registrations_same_hostname(server_factory):
    s = server_factory(extra_args=["--servers", "2", "--threads", "32"])
    key = new_authkey(s, "alice", "--reusable")
    results = register_all([s], key, "host", NODES)
    bad = [r for r in results if r[0] != 200 or r[1].get("Error") or not r[1]["MachineAuthorized"]]
    assert not bad, bad[:5]
    check_tailnet(s, NODES, "host")
    assert "TS2021 register from" not in s.errlog(), s.errlog()[-2000:]


def test_two_apaches_on_one_database_register_at_once(server_factory, db):
    if db != "mysql":
        pytest.skip("two servers share one database only on MariaDB")
    s1 = server_factory(extra_args=["--servers", "2", "--threads", "16"])
    s2 = server_factory(extra_args=["--servers", "2", "--threads", "16"], fresh_db=False)
    key = new_authkey(s1, "alice", "--reusable")
    results = register_all([s1, s2], key, "web", NODES)
    bad = [r for r in results if r[0] != 200 or r[1].get("Error")]
    assert not bad, bad[:5]
    check_tailnet(s1, NODES, "web")


def test_locked_database_answers_503_with_retry_after(server_factory, db):
    if db != "sqlite":
        pytest.skip("an outside write lock is held with sqlite3 here")
    s = server_factory()
    key = new_authkey(s, "alice", "--reusable")
    ident, conn = connect(s, timeout=90)
    req = control.register_request(ident, auth_key=key, host=control.hostinfo("locked"))
    path = os.path.join(s.state, "db", "ts2021.sqlite")
    lock = sqlite3.connect(path, isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.time()
        r = conn.request("POST", "/machine/register", json.dumps(req).encode())
        waited = time.time() - t0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert r.status == 503, bytes(r.body)
    assert r.headers.get("retry-after") == "2"
    assert b"try again" in bytes(r.body)
    assert waited < 60
    assert query(s, "SELECT COUNT(*) FROM nodes")[0][0] == 0
    # the client comes back and is registered; Apache kept serving
    st, reg = control.post_json(conn, "/machine/register", req)
    assert st == 200 and reg["MachineAuthorized"], reg
    assert query(s, "SELECT COUNT(*) FROM nodes")[0][0] == 1
    conn.close()
    assert "register (503, busy)" in s.errlog()
    s.stop()
