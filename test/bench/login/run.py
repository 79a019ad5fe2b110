#!/usr/bin/python3
"""test/bench/login/run.py: figures of the interactive login page (SetHandler ts2021-register)
behind mod_auth_basic, on a real Apache from build/devserver with the module of this tree.

  1. approval latency: R devices each start an interactive login and hold their follow-up;
     a person's POST of the confirm form is timed until its page comes back, and until the
     device's held follow-up has its answer (what the device waits for after "Confirm");
  2. page latency: G sequential GETs of one pending /register/<id> page (Basic auth, one
     database read, HTML rendering), keep-alive off: p50/p95/max;
  3. the admin UI's app.js (embedded file) the same way, for reference.

  test/bench/login/run.py                       SQLite
  TS_TEST_MYSQL_PARAMS='...' test/bench/login/run.py --db mysql
"""
import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(TOP / "test" / "integration"))

import conftest  # noqa: E402
import test_login  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(name, ms):
    print(f"{name}: n={len(ms)} p50={statistics.median(ms):.1f} ms p95={pct(ms, .95):.1f} ms "
          f"max={max(ms):.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "mysql"], default="sqlite")
    ap.add_argument("--approvals", type=int, default=20)
    ap.add_argument("--gets", type=int, default=500)
    a = ap.parse_args()
    params = None
    if a.db == "mysql":
        if not conftest.MYSQL_PARAMS:
            sys.exit("set TS_TEST_MYSQL_PARAMS (build/mariadb-private start DIR)")
        conftest.mysql_reset("ts2021")
        params = conftest.MYSQL_PARAMS
    authdir = pathlib.Path(tempfile.mkdtemp(prefix="ts2021-bench-login-", dir="/tmp"))
    os.chmod(authdir, 0o755)
    made = []

    def factory(extra_args=()):
        s = conftest.Server(conftest.make_state_dir(), a.db, params, extra_args)
        made.append(s)
        s.start()
        return s

    try:
        s = test_login.login_server(factory, authdir, extra="    <Location /admin/ui>\n"
                                    "        SetHandler ts2021-ui\n    </Location>\n")
        approve, posts = [], []
        for i in range(a.approvals):
            n, auth_id, held = test_login.start_login(s, f"bench-{i}")
            token = test_login.form_token(test_login.page(s, auth_id, "alice")[2])
            t0 = time.monotonic()
            st, _ = test_login.post(s, auth_id, "alice", {"action": "approve", "token": token})
            assert st == 200
            posts.append((time.monotonic() - t0) * 1000)
            assert n.conn.wait_for(lambda: held.ended, timeout=30)
            approve.append((time.monotonic() - t0) * 1000)
            n.close()
        n, auth_id, held = test_login.start_login(s, "page-bench")
        gets = []
        for _ in range(a.gets):
            t0 = time.monotonic()
            st, _, _ = test_login.page(s, auth_id, "alice")
            gets.append((time.monotonic() - t0) * 1000)
            assert st == 200
        assets = []
        for _ in range(a.gets):
            t0 = time.monotonic()
            st, _, _ = s.request("GET", "/admin/ui/app.js")
            assets.append((time.monotonic() - t0) * 1000)
            assert st == 200
        n.close()
        print(f"db={a.db} cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
        summary("approve POST answered (user, node, resolve written)", posts)
        summary("approve POST -> held follow-up answered", approve)
        summary("GET /register/<id> (Basic auth, DB read, HTML)", gets)
        summary("GET /admin/ui/app.js (embedded, 19 KB)", assets)
    finally:
        for m in made:
            m.stop(check_log=False)
            shutil.rmtree(m.state, ignore_errors=True)
        shutil.rmtree(authdir, ignore_errors=True)


if __name__ == "__main__":
    main()
