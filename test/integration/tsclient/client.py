# client.py: an independent TS2021 client for the tests: HTTP/1.1 upgrade on a socket
# (plain or TLS), the Noise handshake from noise.py, then HTTP/2 (python3-h2) in records.
import base64
import json
import os
import socket
import ssl
import urllib.request

import h2.config
import h2.connection
import h2.events

from . import noise


def fetch_server_key(base_url, version=145):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(f"{base_url}/key?v={version}", timeout=10, context=ctx) as r:
        return noise.key_from_text(json.loads(r.read())["publicKey"])


def open_socket(host, port, tls=False, timeout=10):
    s = socket.create_connection((host, port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=host)
    return s


def upgrade_request(host, port, handshake_b64=None, method="POST", upgrade="tailscale-control-protocol",
                    extra=b"", path="/ts2021"):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "User-Agent: tsclient-test",
             "Content-Length: 0", "Connection: upgrade"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if handshake_b64 is not None:
        lines.append(f"X-Tailscale-Handshake: {handshake_b64}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + extra


def read_http_head(sock, buf=b""):
    """Reads until the end of an HTTP/1 head; returns (status, headers, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return status, headers, rest


class Response:
    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.status = None
        self.headers = {}
        self.body = bytearray()
        self.ended = False
        self.reset = None


class TS2021Client:
    """One Noise + HTTP/2 connection, as tailscaled makes it."""

    def __init__(self, host, port, server_public, machine_private=None, version=145, tls=False,
                 timeout=10):
        self.host, self.port, self.tls, self.timeout = host, port, tls, timeout
        self.server_public = server_public
        self.machine_private = machine_private or noise.new_private_key()
        self.machine_public = noise.public_key(self.machine_private)
        self.version = version
        self.sock = None
        self.responses = {}
        self.early_payload = None
        self.goaway = None
        self.closed = False

    def connect(self):
        ini = noise.Initiator(self.machine_private, self.server_public, self.version)
        self.sock = open_socket(self.host, self.port, self.tls, self.timeout)
        self.sock.sendall(upgrade_request(self.host, self.port, ini.handshake_header()))
        status, headers, rest = read_http_head(self.sock)
        if status != 101:
            raise ConnectionError(f"upgrade refused: {status}")
        assert headers.get("upgrade") == "tailscale-control-protocol", headers
        assert "upgrade" in headers.get("connection", "").lower(), headers
        while noise.split_handshake_response(rest) is None:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            rest += chunk
        msg2, rest = noise.split_handshake_response(rest)
        self.session = ini.process_message2(msg2)
        self.stream = self.session.server_stream()
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                      header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(8 << 20)
        self._flush()
        if rest:
            self._feed(rest)
        return self

    def _flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(self.session.seal(data))

    def _feed(self, wire):
        plain = self.stream.feed(wire)
        if self.stream.early_payload is not None:
            self.early_payload = self.stream.early_payload
        if plain:
            for ev in self.h2.receive_data(plain):
                self._event(ev)
        self._flush()

    def _event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            r = self.responses[ev.stream_id]
            r.headers = dict(ev.headers)
            r.status = int(r.headers[":status"])
        elif isinstance(ev, h2.events.DataReceived):
            r = self.responses[ev.stream_id]
            r.body += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded):
            self.responses[ev.stream_id].ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if ev.stream_id in self.responses:
                self.responses[ev.stream_id].reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev

    def pump(self, timeout=None):
        """Reads once (blocking up to timeout); False on EOF."""
        self.sock.settimeout(timeout if timeout is not None else self.timeout)
        chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
            return False
        self._feed(chunk)
        return True

    def start(self, method, path, body=b"", headers=(), end=True):
        sid = self.h2.get_next_available_stream_id()
        hdrs = [(":method", method), (":path", path), (":scheme", "https"),
                (":authority", "unused")] + list(headers)
        if body:
            hdrs.append(("content-length", str(len(body))))
        self.responses[sid] = Response(sid)
        self.h2.send_headers(sid, hdrs, end_stream=not body and end)
        self._flush()
        self.send_body(sid, body, end)
        return self.responses[sid]

    def send_body(self, sid, body, end=True):
        """DATA within the server's frame size and flow-control windows."""
        view = memoryview(body)
        while view:
            n = min(len(view), self.h2.max_outbound_frame_size,
                    self.h2.local_flow_control_window(sid))
            if n == 0:
                if not self.pump():
                    raise ConnectionError("closed while sending a body")
                r = self.responses[sid]
                if r.reset is not None or r.ended:
                    return
                continue
            self.h2.send_data(sid, bytes(view[:n]), end_stream=end and n == len(view))
            view = view[n:]
            self._flush()

    def request(self, method, path, body=b"", headers=()):
        r = self.start(method, path, body, headers)
        while not r.ended and r.reset is None:
            if not self.pump():
                raise ConnectionError("connection closed before the response ended")
        return r

    def wait_for(self, cond, timeout=None):
        while not cond():
            if not self.pump(timeout):
                return False
        return True

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
