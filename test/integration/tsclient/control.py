# control.py: the control API as a Tailscale client speaks it over a TS2021Client: register
# requests, map requests, and the map frame stream (LE32 length + zstd JSON), written from the
# spec for the tests (independent of the module's code).
import json
import struct

import zstandard

from . import noise

ZERO_TIME = "0001-01-01T00:00:00Z"


class NodeIdentity:
    """A node's keys: machine (the Noise static key), node and disco."""

    def __init__(self, machine_private=None):
        self.machine_private = machine_private or noise.new_private_key()
        self.node_private = noise.new_private_key()
        self.disco_private = noise.new_private_key()

    @property
    def machine_key(self):
        return noise.key_text(noise.public_key(self.machine_private), "mkey:")

    @property
    def node_key(self):
        return noise.key_text(noise.public_key(self.node_private), "nodekey:")

    @property
    def disco_key(self):
        return noise.key_text(noise.public_key(self.disco_private), "discokey:")

    def rotate_node_key(self):
        old = self.node_key
        self.node_private = noise.new_private_key()
        return old


def hostinfo(name, os_name="linux", routable=None, extra=None):
    h = {"IPNVersion": "1.96.0-test", "BackendLogID": "0" * 64, "OS": os_name,
         "Hostname": name, "NetInfo": {"PreferredDERP": 900}}
    if routable:
        h["RoutableIPs"] = routable
    if extra:
        h.update(extra)
    return h


def register_request(ident, version=145, auth_key=None, followup="", expiry=ZERO_TIME,
                     old_node_key=None, host=None, old_style_auth=False, ephemeral=False):
    req = {"Version": version, "NodeKey": ident.node_key,
           "OldNodeKey": old_node_key or "nodekey:" + "0" * 64,
           "Expiry": expiry, "Followup": followup, "Hostinfo": host or hostinfo("node"),
           "Ephemeral": ephemeral}
    if old_style_auth or auth_key is not None:
        # v1.34.2 always sends the Auth object; current clients only with a key.
        req["Auth"] = {"Provider": "", "LoginName": "", "Oauth2Token": None,
                       "AuthKey": auth_key or ""}
    return req


def map_request(ident, version=145, stream=True, omit_peers=False, read_only=False,
                endpoints=None, host=None, keepalive=True, compress="zstd"):
    return {"Version": version, "NodeKey": ident.node_key, "DiscoKey": ident.disco_key,
            "Endpoints": endpoints or [], "Hostinfo": host or hostinfo("node"),
            "Stream": stream, "OmitPeers": omit_peers, "ReadOnly": read_only,
            "KeepAlive": keepalive, "Compress": compress}


def post_json(conn, path, obj):
    """A complete request on the Noise connection: (status, parsed JSON or raw bytes)."""
    r = conn.request("POST", path, json.dumps(obj).encode())
    body = bytes(r.body)
    try:
        return r.status, json.loads(body) if body else None
    except ValueError:
        return r.status, body


def zstd_decode_all(payload, max_output_size=64 << 20, frames=None):
    """A map payload: one or more whole zstd frames, decoded and concatenated, as clients do
    (a server may send a map as several frames one after the other). zstandard's one-shot
    decompress() would read only the first frame; anything but whole frames is an error."""
    if not payload:
        raise zstandard.ZstdError("empty zstd payload")
    dctx = zstandard.ZstdDecompressor()
    out, total, data = [], 0, payload
    while data:
        dobj = dctx.decompressobj()
        chunk = dobj.decompress(data)
        if not dobj.eof:
            raise zstandard.ZstdError("truncated zstd frame in a map payload")
        total += len(chunk)
        if total > max_output_size:
            raise zstandard.ZstdError("map payload decodes to more than the limit")
        out.append(chunk)
        data = dobj.unused_data
    if frames is not None:
        frames.append(len(out))
    return b"".join(out)


class MapStream:
    """A streaming /machine/map response: decodes frames as their bytes arrive."""

    def __init__(self, conn, req, compress="zstd"):
        self.conn = conn
        self.resp = conn.start("POST", "/machine/map", json.dumps(req).encode())
        self.compress = compress
        self.offset = 0
        self.messages = []
        self.zframes = []           # zstd frames in each message's payload

    def _decode_available(self):
        body = self.resp.body
        while len(body) - self.offset >= 4:
            (n,) = struct.unpack_from("<I", body, self.offset)
            if len(body) - self.offset - 4 < n:
                break
            payload = bytes(body[self.offset + 4:self.offset + 4 + n])
            self.offset += 4 + n
            if self.compress == "zstd":
                payload = zstd_decode_all(payload, frames=self.zframes)
            self.messages.append(json.loads(payload))

    def next(self, timeout=10, skip_keepalive=True):
        """The next message (blocking up to timeout seconds per read); None at the end."""
        while True:
            self._decode_available()
            while self.messages:
                m = self.messages.pop(0)
                if skip_keepalive and m.get("KeepAlive") and len(m) == 1:
                    continue
                return m
            if self.resp.ended or self.resp.reset is not None:
                return None
            try:
                if not self.conn.pump(timeout):
                    return None
            except (TimeoutError, OSError):
                return None

    def until(self, pred, timeout=10):
        """Messages until one satisfies pred; returns it (AssertionError on timeout/end)."""
        import time
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.next(max(0.1, deadline - time.time()))
            if m is None:
                break
            if pred(m):
                return m
        raise AssertionError("expected map message did not arrive")
