# ws.py: a minimal RFC 6455 client (opening handshake, masked frames, fragmentation, control
# frames) and TS2021 over it: the WebSocket variant of /ts2021 (transport spec 2.6).
"""Written from RFC 6455 and the transport spec, independently of the C module (ts_ws.c).

WSClient is a TS2021Client (client.py) whose bytes travel in WebSocket binary messages: the
Noise handshake comes from noise.py, HTTP/2 from python3-h2, exactly as on the native path.
"""
import base64
import hashlib
import os
import struct

import h2.config
import h2.connection

from . import client, noise

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUBPROTOCOL = "tailscale-control-protocol"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_NO_STATUS = 1005
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009


class WebSocketError(Exception):
    """The server broke RFC 6455 (or the test's expectations of it)."""


class UpgradeRefused(ConnectionError):
    """The server answered the opening handshake with something other than 101."""

    def __init__(self, status, headers, body):
        super().__init__(f"WebSocket upgrade refused: {status} {body!r}")
        self.status, self.headers, self.body = status, headers, body


class Closed(ConnectionError):
    """The server sent a close frame; .code and .reason hold its content."""

    def __init__(self, code, reason):
        super().__init__(f"WebSocket closed by the server: {code} {reason!r}")
        self.code, self.reason = code, reason


def new_key():
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def apply_mask(mask, data):
    """XOR with the 4-byte key repeated; its own inverse."""
    if not data:
        return b""
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, masked=True, rsv=0, mask=None, length=None):
    """One client frame. length overrides the encoded payload length (malformed frames);
    the length is encoded minimally for whatever value it has."""
    payload = bytes(payload)
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if masked else 0
    if n < 126:
        head = bytes([b0, m | n])
    elif n < 1 << 16:
        head = struct.pack(">BBH", b0, m | 126, n)
    else:
        head = struct.pack(">BBQ", b0, m | 127, n)
    if not masked:
        return head + payload
    mask = mask if mask is not None else os.urandom(4)
    return head + mask + apply_mask(mask, payload)


def close_body(code, reason=b""):
    return struct.pack(">H", code) + reason


def parse_close(payload):
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketError("close frame with a 1-byte body")
    return struct.unpack(">H", payload[:2])[0], payload[2:].decode("utf-8")


class FrameReader:
    """Server frames from a byte stream: never masked, no extension bits."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        """Returns the complete frames as (fin, opcode, payload)."""
        self.buf += data
        frames = []
        while True:
            got = self._one()
            if got is None:
                return frames
            frames.append(got)

    def _one(self):
        b = self.buf
        if len(b) < 2:
            return None
        fin, rsv, opcode = b[0] >> 7, (b[0] >> 4) & 7, b[0] & 0x0F
        if rsv:
            raise WebSocketError(f"server frame with reserved bits {rsv}")
        if b[1] & 0x80:
            raise WebSocketError("masked server frame")
        n, head = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, head = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, head = struct.unpack(">Q", b[2:10])[0], 10
        if len(b) < head + n:
            return None
        payload = bytes(b[head:head + n])
        del b[:head + n]
        return bool(fin), opcode, payload


def upgrade_request(host, port, query, key, version="13", protocol=SUBPROTOCOL, method="GET",
                    connection="Upgrade", upgrade="websocket", origin="http://example.test",
                    extra=(), path="/ts2021"):
    """The browser's opening handshake; None leaves a header out."""
    target = f"{path}?{query}" if query is not None else path
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
    for name, value in (("Connection", connection), ("Upgrade", upgrade),
                        ("Sec-WebSocket-Version", version), ("Sec-WebSocket-Key", key),
                        ("Sec-WebSocket-Protocol", protocol), ("Origin", origin)):
        if value is not None:
            lines.append(f"{name}: {value}")
    lines += [f"{k}: {v}" for k, v in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def check_101(headers, key, protocol=SUBPROTOCOL):
    """RFC 6455 4.1 client checks of the server's 101 (headers lower-cased by read_http_head)."""
    if headers.get("upgrade", "").lower() != "websocket":
        raise WebSocketError(f"Upgrade is {headers.get('upgrade')!r}")
    if "upgrade" not in [t.strip().lower() for t in headers.get("connection", "").split(",")]:
        raise WebSocketError(f"Connection is {headers.get('connection')!r}")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise WebSocketError(f"bad Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}")
    if headers.get("sec-websocket-protocol") != protocol:
        raise WebSocketError(f"subprotocol {headers.get('sec-websocket-protocol')!r}")
    if "sec-websocket-extensions" in headers:
        raise WebSocketError("the server negotiated an extension")


class WSConn:
    """A WebSocket client on a connected socket: binary messages out (cut as asked), frames
    in; pings are answered, the close is recorded."""

    def __init__(self, sock, rest=b"", frame_size=None, fragment=False, ping_between=False):
        self.sock = sock
        self.reader = FrameReader()
        self.pending = bytes(rest)
        self.frame_size = frame_size      # cut each message into frames of this many bytes
        self.fragment = fragment          # ...as fragments of one message, else as messages
        self.ping_between = ping_between  # a ping after every frame sent
        self.message = None               # binary payload of an unfinished message
        self.messages = []                # sizes of the server's complete binary messages
        self.heads = []                   # and their first 3 bytes
        self.pongs = []
        self.pings_sent = 0
        self.close = None                 # (code, reason) once the server closed

    def send_binary(self, data):
        data = bytes(data)
        size = self.frame_size or max(len(data), 1)
        pieces = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        out = bytearray()
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if self.fragment:
                out += frame(OP_BINARY if i == 0 else OP_CONTINUATION, piece, fin=last)
            else:
                out += frame(OP_BINARY, piece)
            if self.ping_between:
                self.pings_sent += 1
                out += frame(OP_PING, b"p%d" % self.pings_sent)
        self.sock.sendall(bytes(out))

    def send(self, raw):
        self.sock.sendall(raw)

    def read(self, timeout=None):
        """Reads once; returns the binary payload bytes that arrived (possibly b""), or None on
        EOF or once the server's close frame came."""
        if self.pending:
            data, self.pending = self.pending, b""
        else:
            if timeout is not None:
                self.sock.settimeout(timeout)
            data = self.sock.recv(65536)
            if not data:
                return None
        out = bytearray()
        for fin, opcode, payload in self.reader.feed(data):
            if not self._frame(fin, opcode, payload, out):
                return None if not out else bytes(out)
        return bytes(out)

    def _frame(self, fin, opcode, payload, out):
        if opcode == OP_PING:
            self.sock.sendall(frame(OP_PONG, payload))
        elif opcode == OP_PONG:
            self.pongs.append(payload)
        elif opcode == OP_CLOSE:
            self.close = parse_close(payload)
            return False
        elif opcode in (OP_BINARY, OP_CONTINUATION):
            if (opcode == OP_BINARY) != (self.message is None):
                raise WebSocketError("broken fragmentation from the server")
            self.message = (self.message or b"") + payload
            out += payload
            if fin:
                self.messages.append(len(self.message))
                self.heads.append(self.message[:3])
                self.message = None
        else:
            raise WebSocketError(f"server sent opcode {opcode}")
        return True

    def read_message(self, timeout=None):
        """The next complete binary message (tests of the handshake)."""
        buf = bytearray()
        start = len(self.messages)
        while len(self.messages) == start:
            got = self.read(timeout)
            if got is None:
                raise Closed(*(self.close or (None, "EOF")))
            buf += got
        return bytes(buf[:self.messages[start]]), bytes(buf[self.messages[start]:])


class WSClient(client.TS2021Client):
    """TS2021 over WebSocket, as the browser/WASM client makes it. frame_size, fragment and
    ping_between shape how the client's bytes go out (see WSConn)."""

    def __init__(self, host, port, server_public, frame_size=None, fragment=False,
                 ping_between=False, **kw):
        super().__init__(host, port, server_public, **kw)
        self.shape = dict(frame_size=frame_size, fragment=fragment, ping_between=ping_between)
        self.ws = None
        self.first_message = None

    def connect(self):
        ini = noise.Initiator(self.machine_private, self.server_public, self.version)
        key = new_key()
        self.sock = client.open_socket(self.host, self.port, self.tls, self.timeout)
        self.sock.sendall(upgrade_request(self.host, self.port, ini.websocket_query(), key))
        status, headers, rest = client.read_http_head(self.sock)
        if status != 101:
            raise UpgradeRefused(status, headers, rest)
        check_101(headers, key)
        self.ws = WSConn(self.sock, rest, **self.shape)
        # Message 2 comes alone in the first binary message.
        self.first_message, rest = self.ws.read_message(self.timeout)
        self.session = ini.process_message2(self.first_message)
        self.stream = self.session.server_stream()
        self._start_h2()
        if rest:
            self._feed(rest)
        return self

    def _start_h2(self):
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                      header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(8 << 20)
        self._flush()

    def _flush(self):
        data = self.h2.data_to_send()
        if data:
            self.ws.send_binary(self.session.seal(data))

    def pump(self, timeout=None):
        """Reads once (blocking up to timeout); False on EOF or the server's close."""
        got = self.ws.read(timeout if timeout is not None else self.timeout)
        if got:
            self._feed(got)
        if got is None:
            self.closed = True
            return False
        return True

    def ping(self, payload):
        self.ws.send(frame(OP_PING, payload))

    def close_ws(self, code=CLOSE_NORMAL):
        self.ws.send(frame(OP_CLOSE, close_body(code)))
