# test_idle_timeout.py: TS2021IdleTimeout: a silent connection with nothing open is closed
# after it; one with an open stream (a request still arriving, a registration held until
# approval, a map stream without keep-alives) is not, however long it stays silent. Plain
# connections (the event loop) and TLS ones (worker threads).
import json
import socket
import time

import pytest

from test_config import configtest, edit
from test_control import Node, changed_ids, ctl, new_authkey, tailnet_server
from test_transport import assert_serving, connect
from tsclient import control

IDLE = "    TS2021IdleTimeout 2\n"


def closed_within(c, seconds):
    """True once the server closed the connection (EOF or reset) within seconds; the bytes
    that arrive meanwhile are processed as usual."""
    end = time.time() + seconds
    while time.time() < end:
        try:
            if not c.pump(max(0.1, end - time.time())):
                return True
        except (TimeoutError, socket.timeout):
            continue
        except OSError:
            return True
    return False


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_idle_connection_closed_open_request_kept(ts_factory, tls):
    s = ts_factory(tls=tls, extra_conf=IDLE)
    idle, busy = connect(s), connect(s)
    assert idle.request("GET", "/machine/whoami").status == 200
    assert busy.request("GET", "/machine/whoami").status == 200
    # Headers and the body's bytes, but no END_STREAM: a request in progress, then silence.
    r = busy.start("POST", "/ts2021-test/echo", b"0123456789", end=False)
    t0 = time.time()
    assert closed_within(idle, 10), "a connection with nothing open outlived the idle timeout"
    assert time.time() - t0 >= 1.5
    # Three times the timeout without a byte either way: still open.
    assert not closed_within(busy, max(0.5, t0 + 6 - time.time()))
    assert not busy.closed and r.status is None
    busy.h2.end_stream(r.stream_id)
    busy._flush()
    assert busy.wait_for(lambda: r.ended, timeout=10)
    assert r.status == 200 and bytes(r.body) == b"0123456789"
    # Answered, nothing open any more: now it goes the way of the idle one.
    assert closed_within(busy, 10)
    assert_serving(s)


def test_silent_streams_outlive_the_idle_timeout(server_factory, tmp_path):
    s = tailnet_server(server_factory, tmp_path, IDLE)
    key = new_authkey(s, "ida", "--reusable")
    ctl(s, "users", "create", "ivan")       # before the streams: no delta from it later
    # A map stream without keep-alives in a tailnet where nothing happens: silent.
    quiet = Node(s, "quiet")
    st, reg = quiet.register(key)
    assert st == 200 and reg["MachineAuthorized"], reg
    req = control.map_request(quiet.ident, endpoints=["198.51.100.7:41641"],
                              host=control.hostinfo("quiet"), keepalive=False)
    quiet.stream = control.MapStream(quiet.conn, req)
    assert "Node" in quiet.stream.next()
    # An interactive registration whose Followup is held until approval: silent too.
    held = Node(s, "held")
    st, reg = held.register()
    assert st == 200 and reg["AuthURL"], reg
    auth_id = reg["AuthURL"].rsplit("/", 1)[1]
    follow = control.register_request(held.ident, followup=reg["AuthURL"],
                                      host=control.hostinfo("held"))
    r = held.conn.start("POST", "/machine/register", json.dumps(follow).encode())
    # Its own node's update (endpoints, online) comes first; then nothing reaches either
    # for three times the idle timeout, and neither is closed.
    for _ in range(5):
        if quiet.stream.next(timeout=6) is None:
            break
    else:
        pytest.fail("the map stream never fell silent")
    assert not quiet.conn.closed and not closed_within(quiet.conn, 0.5)
    assert not quiet.stream.resp.ended and quiet.stream.resp.reset is None
    assert not closed_within(held.conn, 1) and not r.ended
    # Both still work: the approval answers the held request, and its node's arrival
    # reaches the silent map stream.
    ctl(s, "nodes", "register", auth_id, "--user", "ivan")
    assert held.conn.wait_for(lambda: r.ended, timeout=10)
    body = json.loads(bytes(r.body))
    assert r.status == 200 and body["MachineAuthorized"], body
    idh = held.open_map()["Node"]["ID"]
    quiet.stream.until(lambda m: idh in changed_ids(m), timeout=10)
    quiet.close()
    held.close()


@pytest.mark.parametrize("value,ok", [("2", True), ("10mi", True), ("500ms", False),
                                      ("7200", False), ("soon", False)])
def test_idle_timeout_values(conf_path, value, ok):
    edit(conf_path, "TS2021 On", f"TS2021 On\n    TS2021IdleTimeout {value}")
    rc, out = configtest(conf_path)
    if ok:
        assert rc == 0 and "Syntax OK" in out, out
    else:
        assert rc != 0, out
        assert f"TS2021IdleTimeout: '{value}' is not a duration between 1000 ms and 3600 " \
               "seconds" in out, out
