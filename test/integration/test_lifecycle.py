# test_lifecycle.py: graceful restart and stop with connections open: children drain their
# Noise connections (GOAWAY, then close) within the drain window and clients reconnect;
# a hard stop never hangs.
import os
import signal
import time

import pytest

from test_transport import connect, server_key
from tsclient import client


def apache_pid(s):
    with open(os.path.join(s.state, "apache", "httpd.pid")) as f:
        return int(f.read().strip())


def drain_conf(tmp_path, seconds=2):
    p = tmp_path / "drain.conf"
    p.write_text(f"TS2021DrainTime {seconds}\n")
    return str(p)


def open_streams(s, n):
    conns = []
    for _ in range(n):
        c = connect(s)
        r = c.start("GET", "/ts2021-test/stream?chunks=1&size=10")
        assert c.wait_for(lambda: len(r.body) == 10)
        conns.append((c, r))
    return conns


def wait_closed(c, deadline):
    """Reads until EOF; returns whether a GOAWAY came first."""
    while time.time() < deadline:
        try:
            if not c.pump(max(0.1, deadline - time.time())):
                return c.goaway is not None
        except (ConnectionResetError, TimeoutError, OSError):
            return c.goaway is not None
    raise AssertionError("connection still open after the drain window")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_graceful_restart_drains_and_clients_reconnect(ts_factory, tmp_path, tls):
    s = ts_factory(tls=tls, extra_args=["--global-conf", drain_conf(tmp_path)])
    conns = open_streams(s, 6)
    t0 = time.time()
    os.kill(apache_pid(s), signal.SIGUSR1)
    # Drain window 2 s + 5 s grace after each GOAWAY, plus slack.
    for c, r in conns:
        assert wait_closed(c, t0 + 15), "closed without a GOAWAY"
        assert not r.ended   # the never-ending stream was cut, not finished
    spread = time.time() - t0
    assert spread < 15
    # The new generation serves at once.
    for c, _ in conns:
        c.close()
    c = connect(s)
    assert c.request("GET", "/machine/whoami").status == 200
    c.close()
    assert "caught SIGTERM" not in s.errlog()


def test_graceful_stop_with_connections_finishes(ts_factory, tmp_path):
    s = ts_factory(extra_args=["--global-conf", drain_conf(tmp_path, 1)])
    conns = open_streams(s, 4)
    t0 = time.time()
    os.kill(apache_pid(s), signal.SIGWINCH)   # graceful-stop
    for c, _ in conns:
        assert wait_closed(c, t0 + 15)
    s.proc.wait(timeout=30)
    assert time.time() - t0 < 20


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_hard_stop_never_hangs(ts_factory, tls):
    s = ts_factory(tls=tls)
    conns = open_streams(s, 5)
    t0 = time.time()
    os.kill(apache_pid(s), signal.SIGTERM)
    s.proc.wait(timeout=30)
    assert time.time() - t0 < 15
    for c, _ in conns:
        c.close()


STATUS_CONF = """    <Location "/server-status">
        SetHandler server-status
    </Location>
"""


def status_counts(s):
    st, _, body = s.request("GET", "/server-status?auto")
    assert st == 200
    out = {}
    for line in body.decode().splitlines():
        if line.startswith("TS2021"):
            k, v = line.split(":", 1)
            out[k] = int(v)
    return out


def wait_counts(s, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = status_counts(s)
        if all(got.get(k) == v for k, v in want.items()):
            return got
        time.sleep(0.1)
    raise AssertionError(f"mod_status shows {status_counts(s)}, want {want}")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_mod_status_shows_connections(ts_factory, tls):
    s = ts_factory(tls=tls, extra_conf=STATUS_CONF)
    kind = "TS2021TLSConnections" if tls else "TS2021CleartextConnections"
    wait_counts(s, {"TS2021Connections": 0})
    conns = open_streams(s, 3)
    wait_counts(s, {kind: 3, "TS2021Connections": 3})
    st, _, body = s.request("GET", "/server-status")
    assert b"<h2>TS2021 connections</h2>" in body
    for c, _ in conns:
        c.close()
    wait_counts(s, {"TS2021Connections": 0})
