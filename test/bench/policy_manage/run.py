#!/usr/bin/python3
# run.py: how long `ts2021ctl policy check` and `policy set` take on a tailnet of N nodes in
# SQLite (users, tagged routers advertising subnets, a policy of groups, tags, 50 rules and
# autoApprovers). Usage: test/bench/policy_manage/run.py [N ...]   (default 1000 5000)
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CTL = os.path.join(TOP, "ts2021ctl")
USERS = 50


def policy():
    groups = {f"group:g{g}": [f"u{u}@example.com" for u in range(g, USERS, 10)]
              for g in range(10)}
    tags = {f"tag:t{t}": [f"group:g{t}"] for t in range(10)}
    acls = []
    for i in range(50):
        acls.append({"action": "accept", "src": [f"group:g{i % 10}", f"tag:t{(i + 3) % 10}"],
                     "dst": [f"tag:t{i % 10}:{1000 + i}", f"u{i % USERS}@example.com:22"]})
    import json
    return json.dumps({"groups": groups, "tagOwners": tags, "acls": acls,
                       "autoApprovers": {"routes": {"10.0.0.0/8": ["tag:t0", "tag:t1"]},
                                         "exitNode": ["tag:t0"]}}, indent=1)


def run(n):
    d = tempfile.mkdtemp(prefix="polbench-")
    db = os.path.join(d, "ts.sqlite")
    base = [CTL, "--db-driver", "sqlite3", "--db-params", db]
    subprocess.run(base + ["users", "list"], check=True, capture_output=True)
    c = sqlite3.connect(db)
    now = int(time.time() * 1e6)
    for u in range(USERS):
        c.execute("INSERT INTO users (name, email, version, created_at, updated_at) "
                  "VALUES (?, ?, 1, ?, ?)", (f"u{u}", f"u{u}@example.com", now, now))
    for i in range(n):
        tagged = i % 10 == 0
        c.execute("INSERT INTO nodes (machine_key, node_key, given_name, ipv4, ipv6, user_id, "
                  "tags, version, created_at, updated_at) VALUES (?,?,?,?,?,?,?,1,?,?)",
                  (f"mkey:{i:064x}", f"nodekey:{i:064x}", f"n{i}",
                   f"100.{64 + i // 65536}.{(i // 256) % 256}.{i % 256}", f"fd7a:115c:a1e0::{i:x}",
                   None if tagged else 1 + i % USERS,
                   f'["tag:t{(i // 10) % 10}"]' if tagged else None, now, now))
        if tagged:
            nid = c.execute("SELECT last_insert_rowid()").fetchone()[0]
            c.execute("INSERT INTO node_routes (node_id, prefix, advertised, approved) "
                      "VALUES (?, ?, 1, 0)", (nid, f"10.{i // 256 % 256}.{i % 256}.0/24"))
    c.commit()
    c.close()
    path = os.path.join(d, "policy.json")
    with open(path, "w") as f:
        f.write(policy())
    out = {}
    for what in ("check", "set", "set"):
        t = time.monotonic()
        r = subprocess.run(base + ["--json", "policy", what, path], capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        out.setdefault(what, []).append(time.monotonic() - t)
        if what == "set":
            out.setdefault("approved", []).append(r.stdout.split('"auto_approved_nodes": ')[1]
                                                  .split("\n")[0].strip())
    print(f"{n} nodes: check {out['check'][0]:.3f} s, set (approving) {out['set'][0]:.3f} s "
          f"[{out['approved'][0]} nodes approved], set again {out['set'][1]:.3f} s "
          f"[{out['approved'][1]}]")


for n in [int(a) for a in sys.argv[1:]] or [1000, 5000]:
    run(n)
