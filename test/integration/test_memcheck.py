# test_memcheck.py: the module inside a real Apache under valgrind: handshakes, requests on
# the worker pool, streams, bad records and abrupt closes must leave no invalid access and
# no leak in our code.
import os
import re
import shutil
import socket
import time

import pytest

from conftest import Server, make_state_dir
from test_transport import H2_PREFACE, connect, handshaken_socket, read_all
from tsclient import noise

OUR_CODE = re.compile(r"\((ts_[a-z0-9_]+\.c|mod_ts2021[a-z0-9_]*\.c):\d+\)")


def exercise(s):
    for _ in range(3):
        c = connect(s)
        assert c.request("GET", "/machine/whoami").status == 200
        assert c.request("POST", "/ts2021-test/echo", b"v" * 50000).status == 200
        r = c.start("GET", "/ts2021-test/stream?chunks=3&size=30000")
        assert c.wait_for(lambda: len(r.body) == 90000, 30)
        c.close()     # abrupt: open stream, no GOAWAY
    for mutate in (lambda rec: rec[:-1] + bytes([rec[-1] ^ 1]),
                   lambda rec: b"\x02" + rec[1:]):
        sock, sess = handshaken_socket(s)
        sock.sendall(mutate(noise.seal_record(sess.tx, H2_PREFACE)))
        read_all(sock, timeout=30)
        sock.close()
    sock, sess = handshaken_socket(s)
    sock.sendall(noise.seal_record(sess.tx, b"not http/2 at all" * 10))
    read_all(sock, timeout=30)
    sock.close()
    st, _, _ = s.request("GET", "/key?v=abc")
    assert st == 400


def in_httpd_exit_path(block):
    """An error inside httpd's own exit handlers (pools destroyed by exit(), no frame of
    ours), seen only in one-process mode (-X): reported in the closing notes, not ours to
    assert on here."""
    return "__run_exit_handlers" in block and "mod_ts2021" not in block

def errors_in(log):
    """valgrind error blocks that are invalid accesses anywhere, or leaks in our code."""
    bad = []
    for block in re.split(r"\n==\d+== \n", log):
        if re.search(r"Invalid (read|write|free)|uninitialised|Mismatched free", block):
            if not in_httpd_exit_path(block):
                bad.append(block)
        elif "definitely lost" in block and OUR_CODE.search(block):
            bad.append(block)
    return bad


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_no_memory_errors_under_valgrind(tls, tmp_path):
    state = make_state_dir()
    vlog = str(tmp_path / "valgrind.log")
    args = ["--test-endpoints", "--valgrind", vlog] + (["--tls"] if tls else [])
    s = Server(state, "sqlite", None, args)
    try:
        assert s.start()
        s.url and exercise(s)
        s.stop()
        log = open(vlog).read()
        assert "ERROR SUMMARY" in log, log[-2000:]
        bad = errors_in(log)
        assert not bad, "\n\n".join(bad[:5])
    finally:
        s.stop(check_log=False)
        shutil.rmtree(state, ignore_errors=True)
