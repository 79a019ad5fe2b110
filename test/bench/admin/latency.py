#!/usr/bin/python3
# latency.py: admin API figures on a throwaway Apache (build/devserver, SQLite or MariaDB):
# time per request of GET /nodes and of PATCH /nodes/{id}, and the time from the PATCH answer
# to the delta on another node's open map stream (what an admin waits to see a rename).
#   /usr/bin/python3 test/bench/admin/latency.py [--db mysql --dbparams ...] [--nodes 20]
#                                                [--rounds 50]
import argparse
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))

import conftest  # noqa: E402
from test_admin import Admin, admin_conf, metrics  # noqa: E402
from test_control import Node, changed_ids  # noqa: E402


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def report(name, xs):
    print(f"{name:<34} n={len(xs):<4} median {statistics.median(xs) * 1000:7.2f} ms   "
          f"p95 {pct(xs, 0.95) * 1000:7.2f} ms   max {max(xs) * 1000:7.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "mysql"])
    ap.add_argument("--dbparams")
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    d = conftest.make_state_dir()
    s = conftest.Server(os.path.join(d, "state"), a.db, a.dbparams, admin_conf(d))
    s.start()
    try:
        adm = Admin(s)
        adm.ok("POST", "/users", {"name": "bench"}, status=201)
        key = adm.ok("POST", "/preauthkeys", {"user": "bench", "reusable": True},
                     status=201)["key"]
        watcher = Node(s, "watcher")
        watcher.register(key)
        watcher.open_map()
        others = []
        for i in range(a.nodes):
            n = Node(s, f"n{i}")
            n.register(key)
            others.append(n)
        target = adm.get("/nodes")["nodes"][-1]["id"]
        watcher.stream.until(lambda m: target in changed_ids(m), timeout=20)
        gets, patches, deltas = [], [], []
        for r in range(a.rounds):
            t0 = time.perf_counter()
            adm.get("/nodes")
            gets.append(time.perf_counter() - t0)
            name = f"renamed-{r}"
            t0 = time.perf_counter()
            adm.ok("PATCH", f"/nodes/{target}", {"name": name})
            t1 = time.perf_counter()
            patches.append(t1 - t0)
            watcher.stream.until(lambda m: any(p["ID"] == target and p["Name"].startswith(name + ".")
                                               for p in m.get("PeersChanged", []) or []),
                                 timeout=10)
            deltas.append(time.perf_counter() - t1)
        print(f"db={a.db} nodes={a.nodes + 1} rounds={a.rounds}")
        report("GET /nodes", gets)
        report("PATCH /nodes/{id} (rename)", patches)
        report("PATCH answer -> delta on stream", deltas)
        m = metrics(s)
        cnt = m[("ts2021_delta_fanout_seconds_count", "")]
        print(f"ts2021_delta_fanout_seconds: count {cnt:.0f}, mean "
              f"{m[('ts2021_delta_fanout_seconds_sum', '')] / max(cnt, 1) * 1000:.2f} ms")
        for n in others + [watcher]:
            n.close()
    finally:
        s.stop(check_log=False)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
