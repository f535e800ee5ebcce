"""ABCI socket framing in CometBFT v0.38: each message is prefixed by its
length as an unsigned varint (older Tendermint used a signed zigzag varint)."""

from __future__ import annotations

import asyncio

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class FramingError(ValueError):
    """The peer sent a length prefix we cannot accept."""


def encode_uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


async def read_message(reader: asyncio.StreamReader) -> bytes | None:
    """One length-prefixed message, or None at a clean end of stream."""
    length = 0
    for shift in range(0, 64, 7):
        b = await reader.read(1)
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
    return await reader.readexactly(length)


def frame(message: bytes) -> bytes:
    return encode_uvarint(len(message)) + message
