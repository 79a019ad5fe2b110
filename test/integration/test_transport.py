# test_transport.py: /ts2021 against a real Apache, over plain HTTP (the event loop) and TLS
# (worker threads): handshake, HTTP/2 inside Noise, streaming with flow control, and every
# kind of bad input refused cleanly while Apache keeps serving.
import base64
import socket
import struct
import threading
import time

import pytest

from tsclient import client, noise


def server_key(s):
    return client.fetch_server_key(s.url)


def connect(s, **kw):
    return client.TS2021Client("127.0.0.1", s.port, server_key(s), tls=s.tls, **kw).connect()


def assert_serving(s):
    """Apache still answers /key and a fresh Noise connection works."""
    st, _, _ = s.request("GET", "/key?v=145")
    assert st == 200
    c = connect(s)
    r = c.request("GET", "/machine/whoami")
    assert r.status == 200
    c.close()


def raw_upgrade(s, handshake_b64, **kw):
    sock = client.open_socket("127.0.0.1", s.port, s.tls)
    sock.sendall(client.upgrade_request("127.0.0.1", s.port, handshake_b64, **kw))
    return sock


def read_all(sock, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


# ---- the good path ----

def test_handshake_and_requests(ts_server):
    c = connect(ts_server)
    r = c.request("GET", "/machine/whoami")
    assert r.status == 200
    assert r.body.decode().strip() == (
        '{"MachineKey":"%s","Version":145}' % noise.key_text(c.machine_public))
    # Early payload for capability version >= 49, with a well-formed challenge key.
    assert c.early_payload["json"]["nodeKeyChallenge"].startswith("chalpub:")
    r = c.request("POST", "/ts2021-test/echo", b"x" * 100000)
    assert r.status == 200 and bytes(r.body) == b"x" * 100000
    r = c.request("GET", "/machine/unknown")
    assert r.status == 404
    c.close()


@pytest.mark.parametrize("version,early", [(32, False), (48, False), (49, True), (51, True),
                                           (90, True), (145, True)])
def test_client_versions(ts_factory, version, early):
    s = ts_factory()
    c = connect(s, version=version)
    assert (c.early_payload is not None) == early
    r = c.request("GET", "/machine/whoami")
    assert r.status == 200 and b'"Version":%d' % version in bytes(r.body)
    c.close()


def test_concurrent_streams_and_connections(ts_server):
    conns = [connect(ts_server) for _ in range(5)]
    for c in conns:
        rs = [c.start("POST", "/ts2021-test/echo", bytes([i]) * (1000 + i)) for i in range(20)]
        c.wait_for(lambda: all(r.ended for r in rs))
        for i, r in enumerate(rs):
            assert r.status == 200 and bytes(r.body) == bytes([i]) * (1000 + i)
    for c in conns:
        c.close()


def test_never_ending_stream_respects_flow_control(ts_server):
    c = connect(ts_server)
    r = c.start("GET", "/ts2021-test/stream?chunks=30&size=100000")
    assert c.wait_for(lambda: len(r.body) >= 3000000)
    assert r.status == 200 and not r.ended
    assert bytes(r.body[:100000]) == b"a" * 100000
    # The connection still serves other streams while that one stays open.
    w = c.request("GET", "/machine/whoami")
    assert w.status == 200 and not r.ended
    c.close()


def test_body_cap(ts_server):
    c = connect(ts_server)
    r = c.request("POST", "/ts2021-test/echo", b"y" * (1 << 20))
    assert r.status == 200 and len(r.body) == 1 << 20
    r = c.request("POST", "/ts2021-test/echo", b"y" * ((1 << 20) + 1))
    assert r.status == 413
    r = c.request("GET", "/machine/whoami")
    assert r.status == 200
    c.close()


def test_test_endpoints_off_by_default(server_factory):
    s = server_factory()
    c = connect(s)
    assert c.request("POST", "/ts2021-test/echo", b"x").status == 404
    c.close()
    s.stop()


# ---- bad input before the 101: a clear 4xx ----

BAD_UPGRADES = [
    (dict(upgrade=None), 400, b"missing next protocol"),
    (dict(upgrade="h2c"), 400, b"unknown next protocol"),
    (dict(upgrade="websocket"), 405, b"the WebSocket upgrade is a GET"),
    (dict(method="GET"), 405, b"the control protocol upgrade is a POST"),
    (dict(method="PUT"), 405, b"the control protocol upgrade is a POST"),
]


@pytest.mark.parametrize("kw,status,text", BAD_UPGRADES)
def test_bad_upgrade_headers(ts_server, kw, status, text):
    ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
    sock = raw_upgrade(ts_server, ini.handshake_header(), **kw)
    st, headers, rest = client.read_http_head(sock)
    assert st == status and text in rest
    sock.close()
    assert_serving(ts_server)


@pytest.mark.parametrize("value,text", [
    (None, b"missing Tailscale handshake header"),
    ("", b"missing Tailscale handshake header"),
    ("not base64 !!", b"invalid tailscale handshake header"),
    ("AAEBAGDukcopxDSAUKvKjLi7vuCY84smIjy8D035Oy0qIlX7UD-MkijTdYq4A4BI640rfWX2PQrQ0GdhCXBUwkhFsMvplsXWDzN5ydsO6geanwbLV6FBcxI8syqhE55Y6wW0evA=",
     b"invalid tailscale handshake header"),   # URL-safe alphabet
    ("A" * 4000, b"invalid tailscale handshake header"),
], ids=["missing", "empty", "not-base64", "url-safe", "too-long"])
def test_bad_handshake_header(ts_server, value, text):
    sock = raw_upgrade(ts_server, value)
    st, _, rest = client.read_http_head(sock)
    assert st == 400 and text in rest
    sock.close()
    assert_serving(ts_server)


def test_request_body_refused(ts_server):
    ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
    req = client.upgrade_request("127.0.0.1", ts_server.port, ini.handshake_header())
    req = req.replace(b"Content-Length: 0", b"Content-Length: 5") + b"hello"
    sock = client.open_socket("127.0.0.1", ts_server.port, ts_server.tls)
    sock.sendall(req)
    st, _, rest = client.read_http_head(sock)
    assert st == 400 and b"request body not allowed" in rest
    sock.close()


def test_wrong_server_key_and_old_version(ts_factory):
    s = ts_factory(extra_conf="    TS2021MinCapVersion 90\n")
    ini = noise.Initiator(noise.new_private_key(), noise.public_key(noise.new_private_key()), 145)
    sock = raw_upgrade(s, ini.handshake_header())
    st, _, rest = client.read_http_head(sock)
    assert st == 400 and b"Noise handshake failed" in rest
    ini = noise.Initiator(noise.new_private_key(), server_key(s), 51)
    sock = raw_upgrade(s, ini.handshake_header())
    st, _, rest = client.read_http_head(sock)
    assert st == 400 and b"unsupported client version 51 (minimum 90)" in rest
    assert "TS2021 upgrade from 127.0.0.1 refused: unsupported client version 51" in s.errlog()
    assert_serving(s)


# ---- framing errors: 101 + the reference error frame, then close ----

@pytest.mark.parametrize("mutate,text", [
    (lambda m: m[:100], b"wrong handshake initiation size"),
    (lambda m: m + b"\x00", b"wrong handshake initiation size"),
    (lambda m: m[:2] + b"\x02" + m[3:], b"unexpected handshake message type"),
    (lambda m: m[:3] + b"\x00\x61" + m[5:], b"wrong handshake initiation length"),
])
def test_initiation_framing_errors(ts_server, mutate, text):
    ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
    msg = mutate(ini.message1())
    sock = raw_upgrade(ts_server, base64.b64encode(msg).decode())
    st, headers, rest = client.read_http_head(sock)
    assert st == 101
    rest += read_all(sock)
    assert rest == noise.error_frame(text.decode()), rest
    assert_serving(ts_server)


# ---- after the handshake: any bad record closes the connection ----

def handshaken_socket(s):
    """A raw socket past the handshake, with the client's session."""
    ini = noise.Initiator(noise.new_private_key(), server_key(s), 145)
    sock = raw_upgrade(s, ini.handshake_header())
    st, _, rest = client.read_http_head(sock)
    assert st == 101
    while noise.split_handshake_response(rest) is None:
        rest += sock.recv(65536)
    msg2, rest = noise.split_handshake_response(rest)
    sess = ini.process_message2(msg2)
    sess.after_msg2 = rest      # server bytes that came with message 2 (early payload, SETTINGS)
    return sock, sess


def h2_frames(data):
    """(type, flags, stream, payload) for each whole HTTP/2 frame in data."""
    frames = []
    while len(data) >= 9:
        n = int.from_bytes(data[:3], "big")
        if len(data) < 9 + n:
            break
        frames.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF,
                       data[9:9 + n]))
        data = data[9 + n:]
    return frames


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


@pytest.mark.parametrize("case", ["bad_mac", "wrong_type", "oversize", "truncated",
                                  "garbage_h2", "replayed_initiation", "garbage_bytes"])
def test_bad_records_close_cleanly(ts_server, case):
    if case == "replayed_initiation":
        # An observer replays a client's initiation: it gets a 101 and message 2, but without
        # the client's ephemeral key it cannot make a single valid record.
        ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
        hdr = ini.handshake_header()
        first = raw_upgrade(ts_server, hdr)
        assert client.read_http_head(first)[0] == 101
        sock = raw_upgrade(ts_server, hdr)
        st, _, _ = client.read_http_head(sock)
        assert st == 101
        fake = noise.CipherState(bytes(32))
        sock.sendall(noise.seal_record(fake, H2_PREFACE))
        assert read_all(sock) is not None
        first.close()
    else:
        sock, sess = handshaken_socket(ts_server)
        # Sealing uses up a nonce: only the case that sends it seals the preface.
        rec = noise.seal_record(sess.tx, H2_PREFACE) if case != "garbage_h2" else None
        if case == "bad_mac":
            rec = rec[:-1] + bytes([rec[-1] ^ 1])
        elif case == "wrong_type":
            rec = b"\x02" + rec[1:]
        elif case == "oversize":
            rec = struct.pack(">BH", 4, 4094) + b"\x00" * 4094
        elif case == "truncated":
            rec = rec[:10]
        elif case == "garbage_h2":
            rec = noise.seal_record(sess.tx, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"z" * 100)
        elif case == "garbage_bytes":
            rec = b"\xff" * 5000
        sock.sendall(rec)
        if case == "truncated":
            sock.shutdown(socket.SHUT_WR)
        tail = read_all(sock)
        if case == "garbage_h2" and not ts_server.tls:
            # The server's answer comes in valid records, then EOF: its SETTINGS (maybe already
            # with message 2) and a GOAWAY(PROTOCOL_ERROR). Over TLS a close with unread bytes
            # may turn into a reset that eats them.
            h2 = sess.server_stream().feed(sess.after_msg2 + tail)
            goaways = [f for f in h2_frames(h2) if f[0] == 7]
            assert len(goaways) == 1
            assert int.from_bytes(goaways[0][3][4:8], "big") == 1     # PROTOCOL_ERROR
    sock.close()
    assert_serving(ts_server)


def test_settings_leave_with_message2(ts_server):
    """One write per handshake: the 101, message 2, the early payload and the server's HTTP/2
    SETTINGS leave together, so they are all there once the 101 head is read."""
    sock, sess = handshaken_socket(ts_server)
    # On loopback one write arrives whole; the client has sent nothing since its request.
    h2 = sess.server_stream().feed(sess.after_msg2)
    frames = h2_frames(h2)
    assert frames and frames[0][0] == 4 and frames[0][1] == 0      # SETTINGS, not an ACK
    sock.close()
    assert_serving(ts_server)


def test_stalled_handshake_is_closed(ts_factory):
    s = ts_factory(extra_conf="    TS2021HandshakeTimeout 1\n")
    sock, sess = handshaken_socket(s)
    t = time.time()
    # The server's SETTINGS arrive in a record (with message 2 and the early payload), then
    # the connection closes: no request came.
    data = read_all(sock, timeout=15)
    assert time.time() - t < 10
    assert (sess.after_msg2 + data)[:1] == b"\x04"
    sock.close()
    assert_serving(s)


def test_client_that_never_reads(ts_server):
    """A client that asks for megabytes and never reads: bounded buffers, others served."""
    c = connect(ts_server)
    for _ in range(4):
        c.start("GET", "/ts2021-test/stream?chunks=40&size=100000")
    time.sleep(1)
    assert_serving(ts_server)
    c.close()
    assert_serving(ts_server)


def test_thousands_of_connections_opened_and_dropped(ts_server):
    key = server_key(ts_server)
    hdr = noise.Initiator(noise.new_private_key(), key, 145).handshake_header()
    n = 600 if ts_server.tls else 2000

    def worker(count):
        for i in range(count):
            sock = client.open_socket("127.0.0.1", ts_server.port, ts_server.tls)
            if i % 3:
                sock.sendall(client.upgrade_request("127.0.0.1", ts_server.port, hdr))
                if i % 3 == 2:
                    try:
                        sock.recv(10)
                    except OSError:
                        pass
            sock.close()

    threads = [threading.Thread(target=worker, args=(n // 8,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_serving(ts_server)


def test_tampered_version_fails_authentication(ts_server):
    """The version feeds the Noise prologue: changing it in the clear header breaks the MAC."""
    ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
    msg = bytearray(ini.message1())
    msg[0:2] = (146).to_bytes(2, "big")
    sock = raw_upgrade(ts_server, base64.b64encode(bytes(msg)).decode())
    st, _, rest = client.read_http_head(sock)
    assert st == 400 and b"Noise handshake failed" in rest
    sock.close()
    assert_serving(ts_server)


def test_bytes_sent_with_the_upgrade_are_read(ts_factory):
    """Bytes behind the request that httpd's input filter already buffered reach the Noise
    layer: garbage there closes the connection at once, not after the handshake timeout."""
    s = ts_factory(extra_conf="    TS2021HandshakeTimeout 30\n")
    ini = noise.Initiator(noise.new_private_key(), server_key(s), 145)
    sock = client.open_socket("127.0.0.1", s.port, s.tls)
    sock.sendall(client.upgrade_request("127.0.0.1", s.port, ini.handshake_header(),
                                        extra=b"\x04\x00\x20" + b"\x00" * 32))
    t = time.time()
    st, _, rest = client.read_http_head(sock)
    assert st == 101
    read_all(sock, timeout=20)
    assert time.time() - t < 5
    sock.close()
    assert_serving(s)
