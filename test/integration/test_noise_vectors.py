# test_noise_vectors.py: the Python client (tsclient.noise) against the TS2021 vectors.
# Needs no Apache: it proves the independent client right before it is used to test the module.
import json
import os

import pytest
from nacl import bindings

from tsclient import noise

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS_DIR = os.environ.get("TS_VECTORS_DIR") or os.path.join(HERE, "..", "vectors")
NOISE_VECTORS = ["noise-basic-v1.json", "noise-capver145-early-payload.json",
                 "noise-max-frame-v90.json"]
STEPS = ["init", "prologue", "pre s", "e", "es", "s", "ss", "payload", "e", "ee", "se",
         "payload", "split"]


def load(name):
    with open(os.path.join(VECTORS_DIR, name)) as f:
        return json.load(f)


def h(s):
    return bytes.fromhex(s)


def key(v, name):
    return h(v["keys"][name])


def initiator(v):
    return noise.Initiator(key(v, "client_static_private"), key(v, "server_static_public"),
                           v["protocol_version"], key(v, "client_ephemeral_private"))


def handshake(v):
    ini = initiator(v)
    ini.message1()
    return ini, ini.process_message2(h(v["response_message"]))


@pytest.fixture(params=NOISE_VECTORS)
def vec(request):
    return load(request.param)


# ---- primitives ----

def test_blake2s_hmac_hkdf_reference_values():
    assert noise.blake2s(b"abc").hex() == (
        "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
    assert noise.blake2s(noise.PROTOCOL_NAME).hex() == (
        "bbea022b948cf3bc5857d70804229179e1116bc40cb8cc074835349c464bca36")
    o1, o2 = noise.hkdf2(bytes(range(32)), bytes(range(32, 64)))
    assert o1.hex() == "6a96444e20e8d4c1cee974416acae1c10b3c92886010e54ed94dafb2c3b80ea0"
    assert o2.hex() == "57af120b0de7acbe7907ec149c5ae870a2dbb74232b65777ba4123f1f7f888f5"


def test_nonce_is_big_endian():
    assert noise.nonce(1).hex() == "000000000000000000000001"
    assert noise.nonce(2 ** 64 - 2).hex() == "00000000fffffffffffffffe"


def test_vector_public_keys(vec):
    for who in ("client_static", "client_ephemeral", "server_static", "server_ephemeral"):
        assert noise.public_key(key(vec, who + "_private")) == key(vec, who + "_public")


def test_x25519_refuses_low_order_points():
    priv = noise.new_private_key()
    for bad in (bytes(32), b"\x01" + bytes(31)):
        with pytest.raises(noise.NoiseError):
            noise.x25519(priv, bad)


# ---- handshake ----

def test_message1_and_header(vec):
    ini = initiator(vec)
    assert ini.message1().hex() == vec["initiation_message"]
    assert ini.message1() is ini.message1()
    assert ini.handshake_header() == vec["x_tailscale_handshake_header"]
    assert ini.websocket_query() == vec["websocket_query"]
    assert len(ini.handshake_header()) == 136


def test_trace_matches_responder_trace(vec):
    ini, _ = handshake(vec)
    assert [t["step"] for t in ini.trace] == STEPS
    for got, want in zip(ini.trace, vec["responder_trace"]):
        if got["step"] == "split":
            assert got["c2s"].hex() == want["c2s_key"]
            assert got["s2c"].hex() == want["s2c_key"]
            assert got["h"].hex() == want["handshake_hash"]
            continue
        assert got["h"].hex() == want["h"], got["step"]
        assert got["ck"].hex() == want["ck"], got["step"]
        for field in ("data", "dh", "k"):
            assert (field in got) == (field in want), (got["step"], field)
            if field in want:
                assert got[field].hex() == want[field], (got["step"], field)


def test_session_keys_and_hash(vec):
    _, s = handshake(vec)
    assert s.handshake_hash.hex() == vec["handshake_hash"]
    assert s.tx.key.hex() == vec["c2s_key"] == vec["server_rx_key"]
    assert s.rx.key.hex() == vec["s2c_key"] == vec["server_tx_key"]
    assert s.server_public == key(vec, "server_static_public")
    assert s.version == vec["protocol_version"]


def test_message2_corruptions_fail():
    v = load("noise-basic-v1.json")
    good = h(v["response_message"])
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x08
        ini = initiator(v)
        ini.message1()
        with pytest.raises(noise.NoiseError):
            ini.process_message2(bytes(bad))
    for bad in (good[:-1], good + b"\x00", b""):
        ini = initiator(v)
        ini.message1()
        with pytest.raises(noise.NoiseError):
            ini.process_message2(bad)


def test_error_frame_in_place_of_message2():
    v = load("noise-basic-v1.json")
    for rej in v["server_must_reject"]:
        if "reference_error_frame" not in rej:
            continue
        ini = initiator(v)
        ini.message1()
        frame = h(rej["reference_error_frame"])
        with pytest.raises(noise.ServerError) as e:
            ini.process_message2(frame)
        assert noise.error_frame(e.value.text) == frame
        assert noise.split_handshake_response(frame + b"xyz") == (frame, b"xyz")
        assert noise.split_handshake_response(frame[:-1]) is None


def test_version_changes_message1():
    v = load("noise-basic-v1.json")
    ini = noise.Initiator(key(v, "client_static_private"), key(v, "server_static_public"), 2,
                          key(v, "client_ephemeral_private"))
    m1 = ini.message1()
    ref = h(v["initiation_message"])
    assert m1[:2] == b"\x00\x02" and ref[:2] == b"\x00\x01"
    # Same ephemeral, different prologue: the encrypted static key differs.
    assert m1[5:37] == ref[5:37]
    assert m1[37:85] != ref[37:85]


def test_random_ephemerals_differ():
    server = noise.new_private_key()
    me = noise.new_private_key()
    a = noise.Initiator(me, noise.public_key(server), 145).message1()
    b = noise.Initiator(me, noise.public_key(server), 145).message1()
    assert a[:5] == b[:5] == bytes.fromhex("0091010060")
    assert a[5:37] != b[5:37]


# ---- records ----

def test_records_both_directions(vec):
    _, s = handshake(vec)
    for rec in vec["c2s_records"]:
        assert s.tx.counter == rec["nonce_counter"]
        assert noise.nonce(rec["nonce_counter"]).hex() == rec["nonce_bytes"]
        assert noise.seal_record(s.tx, h(rec["plaintext"])).hex() == rec["frame"]
    wire = b"".join(h(r["frame"]) for r in vec["s2c_records"])
    got = noise.RecordReader(s.rx).feed(wire)
    assert got == [h(r["plaintext"]) for r in vec["s2c_records"] if r["plaintext"]]


def test_little_endian_nonce_does_not_match(vec):
    for direction, keyname in (("c2s_records", "c2s_key"), ("s2c_records", "s2c_key")):
        k = h(vec[keyname])
        for rec in vec[direction]:
            if rec["nonce_counter"] == 0:
                assert "frame_if_little_endian_nonce_WRONG" not in rec
                continue
            wrong = h(rec["frame_if_little_endian_nonce_WRONG"])
            le_nonce = bytes(4) + rec["nonce_counter"].to_bytes(8, "little")
            sealed = bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
                h(rec["plaintext"]), b"", le_nonce, k)
            assert sealed == wrong[3:]
            c = noise.CipherState(k, rec["nonce_counter"])
            assert noise.seal_record(c, h(rec["plaintext"])) != wrong
            with pytest.raises(noise.RecordError):
                noise.CipherState(k, rec["nonce_counter"]).open(wrong[3:])


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 19, 4096, None])
def test_reader_any_chunking(vec, chunk):
    for direction, keyname in (("c2s_records", "c2s_key"), ("s2c_records", "s2c_key")):
        wire = b"".join(h(r["frame"]) for r in vec[direction])
        want = b"".join(h(r["plaintext"]) for r in vec[direction])
        reader = noise.RecordReader(noise.CipherState(h(vec[keyname])))
        got = []
        step = chunk or len(wire)
        for i in range(0, len(wire), step):
            got += reader.feed(wire[i:i + step])
        assert b"".join(got) == want
        assert all(got)   # the empty record is skipped, never surfaced
        assert reader.at_boundary()
        assert reader.cipher.counter == len(vec[direction])


def test_write_split_4077_plus_1():
    v = load("noise-max-frame-v90.json")
    _, s = handshake(v)
    data = h(v["write_split_input_c2s"])
    assert len(data) == 4078
    out = s.seal(data)
    recs = v["c2s_records"]
    assert out.hex() == recs[0]["frame"] + recs[1]["frame"]
    assert len(h(recs[0]["frame"])) == noise.MAX_FRAME
    assert s.seal(b"") == b""
    assert s.tx.counter == 2
    with pytest.raises(ValueError):
        noise.seal_record(s.tx, bytes(noise.MAX_PLAINTEXT + 1))


def test_reader_rejects_server_must_reject_records():
    v = load("noise-basic-v1.json")
    c2s = h(v["c2s_key"])
    good = h(v["c2s_records"][0]["frame"])
    seen = 0
    for rej in v["server_must_reject"]:
        if not rej.get("after_handshake"):
            continue
        wire = h(rej["frame"]) if "frame" in rej else h(rej["frame_header"])
        reader = noise.RecordReader(noise.CipherState(c2s))
        with pytest.raises(noise.RecordError):
            reader.feed(wire)
        with pytest.raises(noise.RecordError):
            reader.feed(good)      # no resynchronisation
        seen += 1
    assert seen == 3


def test_reader_oversize_fails_on_header_alone():
    reader = noise.RecordReader(noise.CipherState(bytes(32)))
    assert reader.feed(bytes.fromhex("040ffd")) == []      # 4093 is the maximum: wait for it
    reader = noise.RecordReader(noise.CipherState(bytes(32)))
    with pytest.raises(noise.RecordError, match="exceeds 4096"):
        reader.feed(bytes.fromhex("040ffe"))


def test_reader_keeps_records_before_a_failure():
    v = load("noise-basic-v1.json")
    frames = [h(r["frame"]) for r in v["c2s_records"]]
    bad = bytearray(frames[2])
    bad[-1] ^= 1
    reader = noise.RecordReader(noise.CipherState(h(v["c2s_key"])))
    with pytest.raises(noise.RecordError) as e:
        reader.feed(frames[0] + frames[1] + bytes(bad))
    assert e.value.delivered == [b"client>server"]


def test_cipher_exhaustion():
    k = noise.new_private_key()
    tx, rx = noise.CipherState(k, 2 ** 64 - 2), noise.CipherState(k, 2 ** 64 - 2)
    assert rx.open(tx.seal(b"last")) == b"last"
    with pytest.raises(noise.RecordError, match="exhausted"):
        tx.seal(b"one more")
    with pytest.raises(noise.RecordError):
        rx.open(bytes(17))
    with pytest.raises(noise.RecordError, match="discarded"):
        tx.seal(b"")


# ---- early payload ----

def test_server_wire_after_101_with_early_payload():
    v = load("noise-capver145-early-payload.json")
    ini = initiator(v)
    ini.message1()
    wire = h(v["server_wire_after_101"])
    msg2, rest = noise.split_handshake_response(wire)
    assert msg2.hex() == v["response_message"]
    s = ini.process_message2(msg2)
    stream = s.server_stream()
    h2 = b""
    for i in range(len(rest)):              # byte by byte: detection must not depend on splits
        h2 += stream.feed(rest[i:i + 1])
    assert h2 == b""
    ep = v["early_payload"]
    assert stream.early_payload["json"] == json.loads(ep["json"])
    assert stream.early_payload["challenge_public"].hex() == ep["challenge_public"]
    # The server's HTTP/2 SETTINGS follow in record 3 and pass through untouched.
    rec3 = v["s2c_records"][3]
    assert stream.feed(h(rec3["frame"])) == h(rec3["plaintext"])


def test_no_early_payload_passes_http2_through():
    v = load("noise-basic-v1.json")
    _, s = handshake(v)
    server_tx = noise.CipherState(h(v["s2c_key"]))
    settings = bytes.fromhex("000000040000000000") + bytes.fromhex("000000040100000000")
    wire = noise.seal_record(server_tx, settings[:4]) + noise.seal_stream(server_tx, settings[4:])
    stream = s.server_stream()
    assert stream.feed(wire) == settings
    assert stream.early_payload is None


def test_malformed_early_payloads_are_refused():
    cases = [
        b'{"nodeKeyChallenge":"nodekey:' + b"00" * 32 + b'"}',
        b'{"nodeKeyChallenge":"chalpub:' + b"00" * 31 + b'"}',
        b'{"nodeKeyChallenge":',
        b"[]",
    ]
    for body in cases:
        k = noise.new_private_key()
        plain = noise.EARLY_MAGIC + len(body).to_bytes(4, "big") + body
        stream = noise.ServerStream(noise.CipherState(k))
        with pytest.raises(noise.EarlyPayloadError):
            stream.feed(noise.seal_stream(noise.CipherState(k), plain))
    k = noise.new_private_key()
    huge = noise.EARLY_MAGIC + (noise.EARLY_JSON_MAX + 1).to_bytes(4, "big")
    with pytest.raises(noise.EarlyPayloadError):
        noise.ServerStream(noise.CipherState(k)).feed(noise.seal_stream(noise.CipherState(k), huge))


def test_key_text_helpers():
    v = load("noise-basic-v1.json")
    body = json.loads(v["key_endpoint_json"])
    assert noise.key_from_text(body["publicKey"]) == key(v, "server_static_public")
    assert noise.key_text(key(v, "server_static_public")) == body["publicKey"]
    with pytest.raises(ValueError):
        noise.key_from_text("nodekey:" + "00" * 32)
