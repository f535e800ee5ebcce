"""ABCI socket framing in CometBFT v0.38: each message is prefixed by its
length as an unsigned varint (older Tendermint used a signed zigzag varint)."""

from __future__ import annotations

from typing import Protocol

from medchain.exceptions import MedChainError


class Readable(Protocol):
    """Anything the framing reads from: a socket file or a buffer in tests."""

    def read(self, n: int, /) -> bytes:
        """Up to `n` bytes; fewer only at the end of the stream."""


MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class FramingError(MedChainError, ValueError):
    """The peer sent a length prefix we cannot accept."""


def encode_uvarint(n: int) -> bytes:
    """The unsigned varint (protobuf encoding) CometBFT prefixes each message with."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_message(stream: Readable) -> bytes | None:
    """One length-prefixed message from a buffered stream; None at a clean end."""
    length = 0
    for shift in range(0, 64, 7):
        b = stream.read(1)
        if not b:
            if shift == 0:
                return None
            raise FramingError("stream ended inside a length prefix")
        length |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            break
    else:
        raise FramingError("length prefix longer than 10 bytes")
    if length > MAX_MESSAGE_BYTES:
        raise FramingError(f"message of {length} bytes exceeds {MAX_MESSAGE_BYTES}")
    data = stream.read(length)
    if len(data) != length:
        raise FramingError("stream ended inside a message")
    return data


def frame(message: bytes) -> bytes:
    """A message with its length prefix, as written to the ABCI socket."""
    return encode_uvarint(len(message)) + message
