# test_websocket.py: the WebSocket variant of /ts2021 against a real Apache, over ws:// (the event
# loop) and wss:// (worker threads): handshake, HTTP/2 inside Noise inside binary messages, any
# framing, pings, closes, and every kind of bad input refused cleanly while Apache keeps serving.
import base64
import socket
import struct
import time

import pytest

from tsclient import client, noise, ws


def server_key(s):
    return client.fetch_server_key(s.url)


def ws_connect(s, **kw):
    return ws.WSClient("127.0.0.1", s.port, server_key(s), tls=s.tls, **kw).connect()


def assert_serving(s):
    """Apache still answers /key, and fresh native and WebSocket connections work."""
    st, _, _ = s.request("GET", "/key?v=145")
    assert st == 200
    for c in (client.TS2021Client("127.0.0.1", s.port, server_key(s), tls=s.tls).connect(),
              ws_connect(s)):
        r = c.request("GET", "/machine/whoami")
        assert r.status == 200
        c.close()


def raw_ws(s, query, key=None, **kw):
    """A socket that has sent a WebSocket upgrade; returns (sock, key)."""
    key = key if key is not None else ws.new_key()
    sock = client.open_socket("127.0.0.1", s.port, s.tls)
    sock.sendall(ws.upgrade_request("127.0.0.1", s.port, query, key, **kw))
    return sock, key


def good_query(s, version=145):
    return noise.Initiator(noise.new_private_key(), server_key(s), version).websocket_query()


def read_to_close(conn, timeout=10):
    """Binary payload until the server's close frame or EOF: (data, (code, reason) or None)."""
    data = b""
    while True:
        try:
            got = conn.read(timeout)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            break
        if got is None:
            break
        data += got
    return data, conn.close


def assert_eof(sock, timeout=10):
    sock.settimeout(timeout)
    try:
        assert sock.recv(65536) == b""
    except ConnectionResetError:
        pass


# ---- the good path ----

def test_handshake_and_requests(ts_server):
    c = ws_connect(ts_server)
    # Message 2 alone in the first binary message, and no early payload (spec 2.5) even for a
    # client version that gets one on the native path.
    assert len(c.first_message) == noise.MSG2_LEN and c.first_message[0] == noise.TYPE_RESPONSE
    r = c.request("GET", "/machine/whoami")
    assert r.status == 200
    assert r.body.decode().strip() == (
        '{"MachineKey":"%s","Version":145}' % noise.key_text(c.machine_public))
    assert c.early_payload is None
    r = c.request("POST", "/ts2021-test/echo", b"x" * 100000)
    assert r.status == 200 and bytes(r.body) == b"x" * 100000
    assert c.request("GET", "/machine/unknown").status == 404
    # Every later message is exactly one Noise record.
    assert len(c.ws.messages) > 10
    for size, head in zip(c.ws.messages[1:], c.ws.heads[1:]):
        assert head[0] == noise.TYPE_RECORD and struct.unpack(">H", head[1:3])[0] + 3 == size
        assert size <= noise.MAX_FRAME
    c.close()


@pytest.mark.parametrize("version", [32, 48, 49, 145])
def test_never_early_payload(ts_factory, version):
    s = ts_factory()
    c = ws_connect(s, version=version)
    r = c.request("GET", "/machine/whoami")
    assert r.status == 200 and b'"Version":%d' % version in bytes(r.body)
    assert c.early_payload is None
    c.close()


@pytest.mark.parametrize("shape", [
    dict(frame_size=1, fragment=True),
    dict(frame_size=3, fragment=False),
    dict(frame_size=2, fragment=True, ping_between=True),
    dict(frame_size=7, fragment=False, ping_between=True),
], ids=["1-byte-fragments", "3-byte-messages", "fragments-with-pings", "messages-with-pings"])
def test_tiny_frames_and_fragments(ts_server, shape):
    c = ws_connect(ts_server, **shape)
    r = c.request("POST", "/ts2021-test/echo", bytes(range(256)) * 12)
    assert r.status == 200 and bytes(r.body) == bytes(range(256)) * 12
    assert c.request("GET", "/machine/whoami").status == 200
    if shape.get("ping_between"):
        # Every ping gets its pong (with its payload), even between fragments.
        assert c.wait_for(lambda: len(c.ws.pongs) == c.ws.pings_sent, timeout=10)
        assert c.ws.pongs[:3] == [b"p1", b"p2", b"p3"]
    c.close()


def test_concurrent_streams(ts_server):
    c = ws_connect(ts_server, frame_size=100)
    rs = [c.start("POST", "/ts2021-test/echo", bytes([i]) * (1000 + i)) for i in range(20)]
    c.wait_for(lambda: all(r.ended for r in rs))
    for i, r in enumerate(rs):
        assert r.status == 200 and bytes(r.body) == bytes([i]) * (1000 + i)
    c.close()


def test_pings_answered(ts_server):
    c = ws_connect(ts_server)
    for payload in (b"", b"hello", bytes(range(125))):
        c.ping(payload)
        assert c.wait_for(lambda: payload in c.ws.pongs, timeout=10)
    # A ping before any record is answered too, and the connection goes on.
    assert c.request("GET", "/machine/whoami").status == 200
    c.close()


@pytest.mark.parametrize("code", [ws.CLOSE_NORMAL, ws.CLOSE_GOING_AWAY, 4000])
def test_client_close_is_echoed(ts_server, code):
    c = ws_connect(ts_server)
    assert c.request("GET", "/machine/whoami").status == 200
    c.close_ws(code)
    _, close = read_to_close(c.ws)
    assert close == (code, "")
    assert_eof(c.sock)
    c.close()
    assert_serving(ts_server)


def test_stream_survives_pings(ts_server):
    c = ws_connect(ts_server)
    r = c.start("GET", "/ts2021-test/stream?chunks=10&size=100000")
    c.ping(b"mid-stream")
    assert c.wait_for(lambda: len(r.body) >= 1000000 and b"mid-stream" in c.ws.pongs)
    c.close()


# ---- bad input before the 101: a clear 4xx ----

BAD_HANDSHAKES = [
    ("missing-key", dict(key=""), 400, b"missing Sec-WebSocket-Key"),
    ("short-key", dict(key="abc"), 400, b"invalid Sec-WebSocket-Key"),
    ("15-byte-key", dict(key=base64.b64encode(b"k" * 15).decode()), 400,
     b"invalid Sec-WebSocket-Key"),
    ("17-byte-key", dict(key=base64.b64encode(b"k" * 17).decode()), 400,
     b"invalid Sec-WebSocket-Key"),
    ("url-safe-key", dict(key="-_" * 11 + "=="), 400, b"invalid Sec-WebSocket-Key"),
    ("version-8", dict(version="8"), 426, b"unsupported WebSocket version"),
    ("version-missing", dict(version=None), 426, b"unsupported WebSocket version"),
    ("post", dict(method="POST"), 405, b"the WebSocket upgrade is a GET"),
    ("put", dict(method="PUT"), 405, b"the WebSocket upgrade is a GET"),
    ("no-connection-upgrade", dict(connection="keep-alive"), 400,
     b"WebSocket upgrade without Connection: Upgrade"),
]


@pytest.mark.parametrize("name,kw,status,text", BAD_HANDSHAKES, ids=[b[0] for b in BAD_HANDSHAKES])
def test_bad_opening_handshake(ts_server, name, kw, status, text):
    kw = dict(kw)
    key = kw.pop("key", None)
    if key == "":
        sock = client.open_socket("127.0.0.1", ts_server.port, ts_server.tls)
        req = ws.upgrade_request("127.0.0.1", ts_server.port, good_query(ts_server), "x", **kw)
        sock.sendall(req.replace(b"Sec-WebSocket-Key: x\r\n", b""))
    else:
        sock, _ = raw_ws(ts_server, good_query(ts_server), key, **kw)
    st, headers, rest = client.read_http_head(sock)
    assert st == status and text in rest, (st, rest)
    assert rest.count(b"\n") == 1       # one line of reason
    if status == 426:
        assert headers["sec-websocket-version"] == "13"
    if status == 405:
        assert headers["allow"] == "GET"
    sock.close()
    assert_serving(ts_server)


def test_connection_header_token_list(ts_server):
    # Browsers send "keep-alive, Upgrade" (Firefox): the token counts wherever it is.
    sock, key = raw_ws(ts_server, good_query(ts_server), connection="keep-alive, Upgrade")
    st, headers, _ = client.read_http_head(sock)
    assert st == 101
    ws.check_101(headers, key)
    sock.close()


# ---- bad input after the 101: close 1008 (spec 2.6) ----

def expect_policy_close(s, query, reason, protocol=ws.SUBPROTOCOL):
    sock, key = raw_ws(s, query, protocol=protocol)
    st, headers, rest = client.read_http_head(sock)
    assert st == 101
    if protocol is not None and ws.SUBPROTOCOL in protocol:
        ws.check_101(headers, key)
    else:
        # The subprotocol cannot be selected: none is named in the 101.
        assert "sec-websocket-protocol" not in headers
        assert headers["sec-websocket-accept"] == ws.accept_key(key)
    data, close = read_to_close(ws.WSConn(sock, rest))
    assert data == b"" and close == (ws.CLOSE_POLICY, reason), close
    sock.close()


@pytest.mark.parametrize("protocol", [None, "chat", "chat, superchat",
                                      "Tailscale-Control-Protocol"])
def test_subprotocol_not_offered(ts_server, protocol):
    expect_policy_close(ts_server, good_query(ts_server),
                        "client must speak the control subprotocol", protocol)
    assert_serving(ts_server)


def test_subprotocol_among_others(ts_server):
    sock, key = raw_ws(ts_server, good_query(ts_server),
                       protocol="chat, tailscale-control-protocol , other")
    st, headers, rest = client.read_http_head(sock)
    assert st == 101
    ws.check_101(headers, key)
    msg2, _ = ws.WSConn(sock, rest).read_message(10)
    assert len(msg2) == noise.MSG2_LEN
    sock.close()


def _hdr(s):
    return noise.Initiator(noise.new_private_key(), server_key(s), 145).handshake_header()


@pytest.mark.parametrize("make_query,reason", [
    (lambda s: None, "missing Tailscale handshake parameter"),
    (lambda s: "", "missing Tailscale handshake parameter"),
    (lambda s: "X-Tailscale-Handshake=", "missing Tailscale handshake parameter"),
    (lambda s: "x-tailscale-handshake=" + _hdr(s).replace("+", "%2B").replace("/", "%2F"),
     "missing Tailscale handshake parameter"),
    (lambda s: "foo=bar", "missing Tailscale handshake parameter"),
    (lambda s: "X-Tailscale-Handshake=%zz", "Could not parse parameters"),
    (lambda s: "X-Tailscale-Handshake=abc%4", "Could not parse parameters"),
    (lambda s: "X-Tailscale-Handshake=not-base64!!", "invalid tailscale handshake parameter"),
    (lambda s: "X-Tailscale-Handshake=" + "A" * 4000, "invalid tailscale handshake parameter"),
    # Not form-encoded: '+' turns into a space and the base64 breaks (as in the reference).
    (lambda s: "X-Tailscale-Handshake=+" + _hdr(s)[1:], "invalid tailscale handshake parameter"),
    (lambda s: "X-Tailscale-Handshake=" + base64.urlsafe_b64encode(b"\xfb" * 101).decode(),
     "invalid tailscale handshake parameter"),
], ids=["no-query", "empty-query", "empty-value", "wrong-case-name", "other-param", "bad-escape",
        "cut-escape", "not-base64", "too-long", "unencoded-plus", "url-safe"])
def test_bad_query_parameter(ts_server, make_query, reason):
    expect_policy_close(ts_server, make_query(ts_server), reason)
    assert_serving(ts_server)


def test_query_parameter_among_others(ts_server):
    q = "a=1&b=%20x+y&" + good_query(ts_server) + "&X-Tailscale-Handshake=ignored"
    sock, key = raw_ws(ts_server, q)
    st, headers, rest = client.read_http_head(sock)
    assert st == 101
    msg2, _ = ws.WSConn(sock, rest).read_message(10)
    assert msg2[0] == noise.TYPE_RESPONSE
    sock.close()


def test_noise_failures(ts_factory):
    s = ts_factory(extra_conf="    TS2021MinCapVersion 90\n")
    # Another server's key: authentication fails; the reason rides in the close frame.
    q = noise.Initiator(noise.new_private_key(), noise.public_key(noise.new_private_key()),
                        145).websocket_query()
    expect_policy_close(s, q, "Noise handshake failed (wrong server key?)")
    expect_policy_close(s, good_query(s, 51), "unsupported client version 51 (minimum 90)")
    assert "TS2021 WebSocket upgrade from 127.0.0.1 refused: unsupported client version 51" \
        in s.errlog()
    assert_serving(s)


@pytest.mark.parametrize("mutate,text", [
    (lambda m: m[:100], "wrong handshake initiation size"),
    (lambda m: m[:2] + b"\x02" + m[3:], "unexpected handshake message type"),
    (lambda m: m[:3] + b"\x00\x61" + m[5:], "wrong handshake initiation length"),
])
def test_initiation_framing_errors(ts_server, mutate, text):
    """The reference's error frame in a binary message (where message 2 would be), then 1008."""
    ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
    b64 = base64.b64encode(mutate(ini.message1())).decode()
    q = "X-Tailscale-Handshake=" + b64.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    sock, key = raw_ws(ts_server, q)
    st, headers, rest = client.read_http_head(sock)
    assert st == 101
    conn = ws.WSConn(sock, rest)
    msg, _ = conn.read_message(10)
    assert msg == noise.error_frame(text)
    with pytest.raises(noise.ServerError) as e:
        ini.process_message2(msg)
    assert e.value.text == text
    _, close = read_to_close(conn)
    assert close == (ws.CLOSE_POLICY, text)
    sock.close()
    assert_serving(ts_server)


# ---- after the handshake: bad WebSocket frames close with a code, bad records just close ----

BAD_FRAMES = [
    ("text", ws.frame(ws.OP_TEXT, b"hello"), ws.CLOSE_UNSUPPORTED),
    ("unmasked", ws.frame(ws.OP_BINARY, b"hello", masked=False), ws.CLOSE_PROTOCOL),
    ("oversize", ws.frame(ws.OP_BINARY, b"", length=65537), ws.CLOSE_TOO_BIG),
    ("huge", ws.frame(ws.OP_BINARY, b"", length=1 << 40), ws.CLOSE_TOO_BIG),
    ("rsv1-compressed", ws.frame(ws.OP_BINARY, b"x", rsv=4), ws.CLOSE_PROTOCOL),
    ("reserved-opcode", ws.frame(0x3, b"x"), ws.CLOSE_PROTOCOL),
    ("reserved-control", ws.frame(0xB, b"x"), ws.CLOSE_PROTOCOL),
    ("continuation-first", ws.frame(ws.OP_CONTINUATION, b"x"), ws.CLOSE_PROTOCOL),
    ("fragmented-ping", ws.frame(ws.OP_PING, b"x", fin=False), ws.CLOSE_PROTOCOL),
    ("long-ping", ws.frame(ws.OP_PING, b"x" * 126), ws.CLOSE_PROTOCOL),
    ("close-1-byte", ws.frame(ws.OP_CLOSE, b"\x03"), ws.CLOSE_PROTOCOL),
    ("close-code-1005", ws.frame(ws.OP_CLOSE, b"\x03\xed"), ws.CLOSE_PROTOCOL),
    ("binary-inside-fragments", ws.frame(ws.OP_BINARY, b"", fin=False)
     + ws.frame(ws.OP_BINARY, b"x"), ws.CLOSE_PROTOCOL),
    ("garbage", b"\xff" * 100, ws.CLOSE_PROTOCOL),
    ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ws.CLOSE_PROTOCOL),
]


@pytest.mark.parametrize("name,raw,code", BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
def test_bad_frames_close_with_code(ts_server, name, raw, code):
    c = ws_connect(ts_server)
    assert c.request("GET", "/machine/whoami").status == 200
    c.ws.send(raw)
    _, close = read_to_close(c.ws)
    assert close is not None and close[0] == code, close
    assert_eof(c.sock)
    c.close()
    assert_serving(ts_server)


@pytest.mark.parametrize("case", ["bad_mac", "wrong_type", "garbage_in_binary"])
def test_bad_records_close_without_code(ts_server, case):
    c = ws_connect(ts_server)
    assert c.request("GET", "/machine/whoami").status == 200
    rec = noise.seal_record(c.session.tx, b"\x00" * 9)
    if case == "bad_mac":
        rec = rec[:-1] + bytes([rec[-1] ^ 1])
    elif case == "wrong_type":
        rec = b"\x02" + rec[1:]
    else:
        rec = b"\xff" * 5000
    c.ws.send(ws.frame(ws.OP_BINARY, rec))
    # Noise failures are fatal as on the native path (spec 3.5.4): the connection just ends.
    _, close = read_to_close(c.ws)
    assert close is None
    c.close()
    assert_serving(ts_server)


def test_http2_garbage_gets_goaway_then_close(ts_factory):
    s = ts_factory()
    c = ws_connect(s)
    assert c.request("GET", "/machine/whoami").status == 200
    bad = noise.seal_record(c.session.tx, b"\x00\x00\x08\x07" + b"z" * 60)
    c.ws.send(ws.frame(ws.OP_BINARY, bad))
    data, close = read_to_close(c.ws)
    # HTTP/2's GOAWAY in a record, then the WebSocket close: 1000 when nghttp2 ended the
    # session itself (the GOAWAY says why), 1002 when it gave up on the input.
    assert data[:1] == bytes([noise.TYPE_RECORD])
    assert close is not None and close[0] in (ws.CLOSE_NORMAL, ws.CLOSE_PROTOCOL), close
    c.close()
    assert_serving(s)


def test_bad_http2_preface_gets_goaway_then_1002(ts_server):
    ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
    sock, key = raw_ws(ts_server, ini.websocket_query())
    st, _, rest = client.read_http_head(sock)
    assert st == 101
    conn = ws.WSConn(sock, rest)
    msg2, rest = conn.read_message(10)
    sess = ini.process_message2(msg2)
    conn.send(ws.frame(ws.OP_BINARY, sess.seal(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"z" * 100)))
    data, close = read_to_close(conn)
    # The server's SETTINGS record (it leaves with message 2, so it may have come in the same
    # read: rest); then the 1002 close.
    data = rest + data
    assert data[:1] == bytes([noise.TYPE_RECORD])
    assert close == (ws.CLOSE_PROTOCOL, "")
    sock.close()
    assert_serving(ts_server)


def test_stalled_handshake_is_closed(ts_factory):
    s = ts_factory(extra_conf="    TS2021HandshakeTimeout 1\n")
    sock, key = raw_ws(s, good_query(s))
    st, _, rest = client.read_http_head(sock)
    assert st == 101
    conn = ws.WSConn(sock, rest)
    t = time.time()
    data, _ = read_to_close(conn, timeout=15)
    assert time.time() - t < 10
    # Message 2, then the server's SETTINGS in a record; then the end.
    assert data[:1] == bytes([noise.TYPE_RESPONSE])
    assert data[noise.MSG2_LEN:noise.MSG2_LEN + 1] == bytes([noise.TYPE_RECORD])
    sock.close()
    assert_serving(s)


def test_native_post_with_websocket_upgrade(ts_server):
    """A POST asking for websocket is not the WebSocket variant: 405, nothing taken over."""
    ini = noise.Initiator(noise.new_private_key(), server_key(ts_server), 145)
    sock = client.open_socket("127.0.0.1", ts_server.port, ts_server.tls)
    sock.sendall(client.upgrade_request("127.0.0.1", ts_server.port, ini.handshake_header(),
                                        upgrade="websocket"))
    st, _, rest = client.read_http_head(sock)
    assert st == 405 and b"the WebSocket upgrade is a GET" in rest
    sock.close()


def test_many_websockets_opened_and_dropped(ts_server):
    q = good_query(ts_server)
    for i in range(60):
        sock, _ = raw_ws(ts_server, q)
        if i % 2:
            client.read_http_head(sock)
        sock.close()
    assert_serving(ts_server)
