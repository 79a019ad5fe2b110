# tsclient: an independent Python TS2021 client for the integration tests.
# Written from the transport spec only; it shares no code with mod_ts2021.
from .noise import (
    CipherState,
    EarlyPayloadError,
    Initiator,
    NoiseError,
    RecordError,
    RecordReader,
    ServerError,
    ServerStream,
    Session,
)

__all__ = [
    "CipherState", "EarlyPayloadError", "Initiator", "NoiseError", "RecordError",
    "RecordReader", "ServerError", "ServerStream", "Session",
]
