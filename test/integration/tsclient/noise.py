# noise.py: the client (initiator) side of TS2021's Noise_IK_25519_ChaChaPoly_BLAKE2s, record
# framing with big-endian nonces, a streaming record reader and early-payload detection.
"""Independent TS2021 client transport, written from the transport spec (sections 2.5 and 3).

It deliberately shares nothing with the C module: a bug in one is meant to show up as a
disagreement with the other, or with the vectors.
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import urllib.parse

from nacl import bindings as _nacl
from nacl import exceptions as _nacl_exc

PROTOCOL_NAME = b"Noise_IK_25519_ChaChaPoly_BLAKE2s"
PROLOGUE_PREFIX = b"Tailscale Control Protocol v"
HANDSHAKE_HEADER = "X-Tailscale-Handshake"

KEY_LEN = 32
TAG_LEN = 16
MSG1_LEN = 101
MSG1_PAYLOAD_LEN = 96
MSG2_LEN = 51
MSG2_PAYLOAD_LEN = 48
HEADER_LEN = 3

TYPE_INITIATION = 0x01
TYPE_RESPONSE = 0x02
TYPE_ERROR = 0x03
TYPE_RECORD = 0x04

MAX_FRAME = 4096
MAX_CIPHERTEXT = MAX_FRAME - HEADER_LEN          # 4093
MAX_PLAINTEXT = MAX_CIPHERTEXT - TAG_LEN          # 4077
COUNTER_LIMIT = 2 ** 64 - 1                       # reaching it ends the direction

EARLY_MAGIC = b"\xff\xff\xffTS"
EARLY_HEADER_LEN = 9
EARLY_JSON_MAX = 10 << 20
EARLY_MIN_VERSION = 49


class NoiseError(Exception):
    """The handshake failed (malformed, unauthenticated or low-order input)."""


class ServerError(NoiseError):
    """The server answered message 1 with an error frame; .text holds its (unauthenticated) text."""

    def __init__(self, text):
        super().__init__(f"server error: {text!r}")
        self.text = text


class RecordError(Exception):
    """Fatal transport error: the connection must be closed.

    .delivered lists plaintexts that were decrypted before the failure in the same feed call."""

    def __init__(self, message, delivered=()):
        super().__init__(message)
        self.delivered = list(delivered)


class EarlyPayloadError(RecordError):
    """The early payload was present but malformed."""


# ---- primitives ----

def blake2s(data):
    return hashlib.blake2s(data).digest()


def hmac_blake2s(key, data):
    # RFC 2104 HMAC over BLAKE2s-256, not BLAKE2s's own keyed mode.
    return hmac.new(key, data, hashlib.blake2s).digest()


def hkdf2(chaining_key, ikm):
    prk = hmac_blake2s(chaining_key, ikm)
    out1 = hmac_blake2s(prk, b"\x01")
    out2 = hmac_blake2s(prk, out1 + b"\x02")
    return out1, out2


def clamp(private):
    k = bytearray(private)
    k[0] &= 248
    k[31] = (k[31] & 127) | 64
    return bytes(k)


def new_private_key():
    return clamp(os.urandom(KEY_LEN))


def public_key(private):
    return _nacl.crypto_scalarmult_base(bytes(private))


def x25519(private, public):
    try:
        out = _nacl.crypto_scalarmult(bytes(private), bytes(public))
    except _nacl_exc.RuntimeError:
        raise NoiseError("X25519 produced an all-zero shared secret") from None
    if not any(out):
        raise NoiseError("X25519 produced an all-zero shared secret")
    return out


def nonce(counter):
    """TS2021 nonce: four zero bytes, then the counter BIG-endian (the Noise spec says little)."""
    return bytes(4) + counter.to_bytes(8, "big")


def aead_seal(key, counter, ad, plaintext):
    return _nacl.crypto_aead_chacha20poly1305_ietf_encrypt(bytes(plaintext), bytes(ad),
                                                           nonce(counter), bytes(key))


def aead_open(key, counter, ad, ciphertext):
    """Returns the plaintext, or None if the tag does not verify."""
    if len(ciphertext) < TAG_LEN:
        return None
    try:
        return _nacl.crypto_aead_chacha20poly1305_ietf_decrypt(bytes(ciphertext), bytes(ad),
                                                               nonce(counter), bytes(key))
    except _nacl_exc.CryptoError:
        return None


def key_text(key, prefix="mkey:"):
    return prefix + bytes(key).hex()


def key_from_text(text, prefix="mkey:"):
    if not text.startswith(prefix) or len(text) != len(prefix) + 2 * KEY_LEN:
        raise ValueError(f"not a {prefix} key: {text!r}")
    return bytes.fromhex(text[len(prefix):])


# ---- transport ----

class CipherState:
    """One direction of the transport: a key and a counter, dead after any failure."""

    def __init__(self, key, counter=0):
        if len(key) != KEY_LEN:
            raise ValueError("cipher key must be 32 bytes")
        self.key = bytes(key)
        self.counter = counter
        self.dead = False

    def _usable(self):
        if self.dead:
            raise RecordError("cipher state discarded after an earlier failure")
        if self.counter >= COUNTER_LIMIT:
            self.dead = True
            raise RecordError("cipher exhausted: nonce counter reached 2^64-1")

    def seal(self, plaintext):
        self._usable()
        out = aead_seal(self.key, self.counter, b"", plaintext)
        self.counter += 1
        return out

    def open(self, ciphertext):
        self._usable()
        out = aead_open(self.key, self.counter, b"", ciphertext)
        if out is None:
            self.dead = True
            raise RecordError("record does not authenticate")
        self.counter += 1
        return out


def frame_header(frame_type, length):
    return struct.pack(">BH", frame_type, length)


def seal_record(cipher, plaintext):
    """One record; empty plaintext is allowed (the receiver must skip it)."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"record plaintext of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT}")
    return frame_header(TYPE_RECORD, len(plaintext) + TAG_LEN) + cipher.seal(plaintext)


def seal_stream(cipher, data):
    """A write of any size: full records and a shorter last one; nothing for no data."""
    data = bytes(data)
    return b"".join(seal_record(cipher, data[i:i + MAX_PLAINTEXT])
                    for i in range(0, len(data), MAX_PLAINTEXT))


def error_frame(text):
    raw = text.encode() if isinstance(text, str) else bytes(text)
    return frame_header(TYPE_ERROR, len(raw)) + raw


class RecordReader:
    """Incremental reader of records: feed() any chunk, get the plaintexts it completed."""

    def __init__(self, cipher):
        self.cipher = cipher
        self.buf = bytearray()
        self.error = None

    def at_boundary(self):
        return self.error is None and not self.buf

    def _fail(self, message, delivered):
        self.error = message
        self.buf = bytearray()
        self.cipher.dead = True
        raise RecordError(message, delivered)

    def feed(self, data):
        if self.error is not None:
            raise RecordError(self.error)
        self.buf += data
        out = []
        while len(self.buf) >= HEADER_LEN:
            frame_type, length = struct.unpack(">BH", self.buf[:HEADER_LEN])
            # Spec order: size before reading the body, then type, then counter and tag.
            if HEADER_LEN + length > MAX_FRAME:
                self._fail(f"record of {HEADER_LEN + length} bytes exceeds {MAX_FRAME}", out)
            if len(self.buf) < HEADER_LEN + length:
                break
            body = bytes(self.buf[HEADER_LEN:HEADER_LEN + length])
            del self.buf[:HEADER_LEN + length]
            if frame_type != TYPE_RECORD:
                self._fail(f"frame type 0x{frame_type:02x} is not a transport record", out)
            try:
                plaintext = self.cipher.open(body)
            except RecordError as e:
                self._fail(str(e), out)
            if plaintext:
                out.append(plaintext)
        return out


def parse_early_payload(body):
    """Strict check of tailcfg.EarlyNoise: {"nodeKeyChallenge": "chalpub:<64 hex>"}."""
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise EarlyPayloadError(f"early payload is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise EarlyPayloadError("early payload is not a JSON object")
    chal = obj.get("nodeKeyChallenge")
    if not isinstance(chal, str):
        raise EarlyPayloadError("early payload lacks nodeKeyChallenge")
    try:
        key = key_from_text(chal, "chalpub:")
    except ValueError as e:
        raise EarlyPayloadError(str(e)) from None
    return {"json": obj, "challenge_public": key}


class ServerStream:
    """Server-to-client plaintext as the client sees it: takes the wire bytes after message 2,
    strips the early payload if one is there, and returns the HTTP/2 bytes."""

    def __init__(self, rx_cipher):
        self.records = RecordReader(rx_cipher)
        self.pending = bytearray()
        self.state = "detect"       # -> "early" -> "h2", or straight to "h2"
        self.early_needed = 0
        self.early_payload = None   # dict from parse_early_payload, once seen

    def feed(self, data):
        out = bytearray()
        for plaintext in self.records.feed(data):
            out += self._plaintext(plaintext)
        return bytes(out)

    def _plaintext(self, plaintext):
        if self.state == "h2":
            return plaintext
        self.pending += plaintext
        if self.state == "detect":
            # Like the client: decide on the first nine bytes, whatever the record split.
            if len(self.pending) < EARLY_HEADER_LEN:
                return b""
            if self.pending[:len(EARLY_MAGIC)] != EARLY_MAGIC:
                return self._to_h2(0)
            n = struct.unpack(">I", self.pending[len(EARLY_MAGIC):EARLY_HEADER_LEN])[0]
            if n > EARLY_JSON_MAX:
                raise EarlyPayloadError(f"early payload of {n} bytes exceeds {EARLY_JSON_MAX}")
            self.early_needed = EARLY_HEADER_LEN + n
            self.state = "early"
        if len(self.pending) < self.early_needed:
            return b""
        body = bytes(self.pending[EARLY_HEADER_LEN:self.early_needed])
        self.early_payload = parse_early_payload(body)
        return self._to_h2(self.early_needed)

    def _to_h2(self, skip):
        rest = bytes(self.pending[skip:])
        self.pending = bytearray()
        self.state = "h2"
        return rest


# ---- handshake ----

class Session:
    """A finished handshake from the client's side."""

    def __init__(self, c2s, s2c, handshake_hash, server_public, version):
        self.tx = CipherState(c2s)
        self.rx = CipherState(s2c)
        self.handshake_hash = handshake_hash
        self.server_public = server_public
        self.version = version

    def seal(self, data):
        return seal_stream(self.tx, data)

    def server_stream(self):
        return ServerStream(self.rx)


def split_handshake_response(buf):
    """From the bytes after the 101: (frame, rest) once the frame in message 2's place is
    complete (a response or an error frame), else None."""
    if len(buf) < HEADER_LEN:
        return None
    _, length = struct.unpack(">BH", bytes(buf[:HEADER_LEN]))
    if len(buf) < HEADER_LEN + length:
        return None
    return bytes(buf[:HEADER_LEN + length]), bytes(buf[HEADER_LEN + length:])


class Initiator:
    """Client side of the IK handshake. .trace records (step, h, ck, extras) for comparison
    with the vectors' responder_trace (both sides hash the same transcript)."""

    def __init__(self, machine_private, server_public, version, ephemeral_private=None):
        if not 0 <= version <= 0xFFFF:
            raise ValueError("version must fit in 16 bits")
        if len(machine_private) != KEY_LEN or len(server_public) != KEY_LEN:
            raise ValueError("keys must be 32 bytes")
        self.s = bytes(machine_private)
        self.s_pub = public_key(self.s)
        self.rs = bytes(server_public)
        self.version = version
        self.e = bytes(ephemeral_private) if ephemeral_private is not None else new_private_key()
        self.e_pub = public_key(self.e)
        self.h = self.ck = None
        self.trace = []
        self._msg1 = None
        self.session = None

    def _mix_hash(self, step, data):
        self.h = blake2s(self.h + data)
        self.trace.append({"step": step, "h": self.h, "ck": self.ck, "data": bytes(data)})

    def _mix_key(self, step, dh):
        self.ck, k = hkdf2(self.ck, dh)
        self.trace.append({"step": step, "h": self.h, "ck": self.ck, "dh": dh, "k": k})
        return k

    def _encrypt_and_hash(self, step, k, plaintext):
        # Every handshake key is used exactly once, so the nonce is always 0.
        ct = aead_seal(k, 0, self.h, plaintext)
        self._mix_hash(step, ct)
        return ct

    def _decrypt_and_hash(self, step, k, ciphertext):
        pt = aead_open(k, 0, self.h, ciphertext)
        if pt is None:
            raise NoiseError(f"{step}: authentication failed")
        self._mix_hash(step, ciphertext)
        return pt

    def message1(self):
        """The 101-byte initiation (computed once)."""
        if self._msg1 is not None:
            return self._msg1
        self.h = blake2s(PROTOCOL_NAME)
        self.ck = self.h
        self.trace.append({"step": "init", "h": self.h, "ck": self.ck})
        self._mix_hash("prologue", PROLOGUE_PREFIX + str(self.version).encode())
        self._mix_hash("pre s", self.rs)
        self._mix_hash("e", self.e_pub)
        k = self._mix_key("es", x25519(self.e, self.rs))
        enc_s = self._encrypt_and_hash("s", k, self.s_pub)
        k = self._mix_key("ss", x25519(self.s, self.rs))
        tag = self._encrypt_and_hash("payload", k, b"")
        header = struct.pack(">HBH", self.version, TYPE_INITIATION, MSG1_PAYLOAD_LEN)
        self._msg1 = header + self.e_pub + enc_s + tag
        return self._msg1

    def handshake_header(self):
        """X-Tailscale-Handshake value: standard base64 with padding."""
        return base64.b64encode(self.message1()).decode("ascii")

    def websocket_query(self):
        return f"{HANDSHAKE_HEADER}={urllib.parse.quote(self.handshake_header(), safe='')}"

    def process_message2(self, data):
        """Message 2 (or an error frame, raised as ServerError) -> Session."""
        data = bytes(data)
        if self._msg1 is None or self.session is not None:
            raise NoiseError("message 2 processed out of order")
        if data[:1] == bytes([TYPE_ERROR]):
            got = split_handshake_response(data)
            if got is None:
                raise NoiseError("truncated error frame")
            raise ServerError(got[0][HEADER_LEN:].decode("utf-8", "replace"))
        if len(data) != MSG2_LEN:
            raise NoiseError(f"handshake response of {len(data)} bytes, want {MSG2_LEN}")
        frame_type, length = struct.unpack(">BH", data[:HEADER_LEN])
        if frame_type != TYPE_RESPONSE or length != MSG2_PAYLOAD_LEN:
            raise NoiseError(f"bad handshake response header {data[:HEADER_LEN].hex()}")
        re_pub = data[HEADER_LEN:HEADER_LEN + KEY_LEN]
        self._mix_hash("e", re_pub)
        self._mix_key("ee", x25519(self.e, re_pub))
        k = self._mix_key("se", x25519(self.s, re_pub))
        self._decrypt_and_hash("payload", k, data[HEADER_LEN + KEY_LEN:])
        c2s, s2c = hkdf2(self.ck, b"")
        self.trace.append({"step": "split", "h": self.h, "ck": self.ck, "c2s": c2s, "s2c": s2c})
        self.session = Session(c2s, s2c, self.h, self.rs, self.version)
        return self.session
