"""SM2 (GB/T 32918) through the system's OpenSSL 3 libcrypto.

pyca/cryptography does not expose SM2, so this module binds the few EVP calls
we need with ctypes. Why OpenSSL rather than gmssl-pyx (measured on our
2-core machine, see docs/crypto.md): it signs 2.6x and verifies 1.3x as fast
on one thread, and its calls release the GIL so two threads use two cores
(gmssl-pyx holds the GIL). gmssl-pyx stays as the independent second
implementation the tests cross-check against.

Parsed keys are kept in a small reference-counted LRU cache: parsing a DER key
costs more than half of a signature, and staff sign many transactions.

Keys travel as raw bytes: private = 32-byte scalar, public = 64-byte X||Y.
Signatures are DER SEQUENCE{r, s}; ciphertexts are DER C1C3C2 (GM/T 0009).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections import OrderedDict
from collections.abc import Callable
from ctypes import POINTER, byref, c_char_p, c_int, c_long, c_size_t, c_void_p

from medchain.exceptions import MedChainError

DISTINGUISHING_ID = b"1234567812345678"
# Order n of the sm2p256v1 base point. A private key is an integer in [1, n-2]
# (GB/T 32918.1); OpenSSL 3.0 would accept n-1 and then never finish signing.
CURVE_ORDER = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)

# DER prefixes: id-ecPublicKey (1.2.840.10045.2.1) with namedCurve SM2
# (1.2.156.10197.1.301).
_ALGORITHM = bytes.fromhex("301306072a8648ce3d020106082a811ccf5501822d")
_SPKI_PREFIX = bytes.fromhex("3059") + _ALGORITHM + bytes.fromhex("034200") + b"\x04"


class OpenSSLUnavailable(MedChainError, RuntimeError):
    """libcrypto.so.3 with SM2 support was not found on this machine."""


def _load() -> tuple[ctypes.CDLL, ctypes.PyDLL]:
    for name in ("libcrypto.so.3", ctypes.util.find_library("crypto") or ""):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if hasattr(lib, "EVP_PKEY_CTX_set1_id") and hasattr(lib, "EVP_sm3"):
            return lib, ctypes.PyDLL(name)
    raise OpenSSLUnavailable(
        "OpenSSL 3 libcrypto with SM2 not found: install Debian's libssl3 package"
    )


# Two handles on one library. Calls through _slow (CDLL) release the GIL: the
# curve arithmetic and key parsing, so other threads run meanwhile. Calls
# through _lib (PyDLL) keep it: allocations, frees and setters of a few
# microseconds. Every release costs a GIL handoff, and a thread taking the GIL
# back waits for whoever holds it (up to the 5 ms switch interval if that is
# Python code): a dozen releases per verify let CheckTx threads and the block
# producer convoy on one core.
_slow, _lib = _load()


def _sig(name: str, restype: object, *argtypes: object) -> None:
    for lib in (_slow, _lib):
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = list(argtypes)


_PP = POINTER(c_char_p)
_sig("d2i_PUBKEY", c_void_p, c_void_p, _PP, c_long)
_sig("d2i_AutoPrivateKey", c_void_p, c_void_p, _PP, c_long)
_sig("i2d_PUBKEY", c_int, c_void_p, POINTER(ctypes.POINTER(ctypes.c_ubyte)))
_sig("EVP_PKEY_free", None, c_void_p)
_sig("EVP_PKEY_new", c_void_p)
_sig("EVP_PKEY_copy_parameters", c_int, c_void_p, c_void_p)
_sig("EVP_PKEY_set1_encoded_public_key", c_int, c_void_p, c_char_p, c_size_t)
_sig("EVP_PKEY_up_ref", c_int, c_void_p)
_sig("EVP_MD_CTX_new", c_void_p)
_sig("EVP_MD_CTX_free", None, c_void_p)
_sig("EVP_MD_CTX_set_pkey_ctx", None, c_void_p, c_void_p)
_sig("EVP_PKEY_CTX_new", c_void_p, c_void_p, c_void_p)
_sig("EVP_PKEY_CTX_new_from_name", c_void_p, c_void_p, c_char_p, c_char_p)
_sig("EVP_PKEY_CTX_free", None, c_void_p)
_sig("EVP_PKEY_CTX_set1_id", c_int, c_void_p, c_char_p, c_int)
_sig("EVP_sm3", c_void_p)
_sig("EVP_DigestSignInit", c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)
_sig("EVP_DigestSign", c_int, c_void_p, c_char_p, POINTER(c_size_t), c_char_p, c_size_t)
_sig("EVP_DigestVerifyInit", c_int, c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)
_sig("EVP_DigestVerify", c_int, c_void_p, c_char_p, c_size_t, c_char_p, c_size_t)
_sig("EVP_PKEY_keygen_init", c_int, c_void_p)
_sig("EVP_PKEY_generate", c_int, c_void_p, POINTER(c_void_p))
_sig("EVP_PKEY_get_bn_param", c_int, c_void_p, c_char_p, POINTER(c_void_p))
_sig("BN_bn2binpad", c_int, c_void_p, c_char_p, c_int)
_sig("BN_clear_free", None, c_void_p)
_sig("EVP_PKEY_encrypt_init", c_int, c_void_p)
_sig("EVP_PKEY_encrypt", c_int, c_void_p, c_char_p, POINTER(c_size_t), c_char_p, c_size_t)
_sig("EVP_PKEY_decrypt_init", c_int, c_void_p)
_sig("EVP_PKEY_decrypt", c_int, c_void_p, c_char_p, POINTER(c_size_t), c_char_p, c_size_t)
_sig("ERR_clear_error", None)

_SM3 = _lib.EVP_sm3()


class SM2Error(MedChainError, ValueError):
    """An SM2 operation failed (bad key, bad ciphertext, library error)."""


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _parse(fn_name: str, der: bytes) -> int:
    buf = c_char_p(der)
    ptr = c_char_p(ctypes.cast(buf, c_void_p).value)
    pkey = getattr(_slow, fn_name)(None, byref(ptr), len(der))
    if not pkey:
        _lib.ERR_clear_error()
        raise SM2Error("invalid SM2 key")
    return int(pkey)


class _KeyCache:
    """LRU of parsed EVP_PKEYs. Every handed-out pkey carries its own reference,
    which the caller frees; eviction frees only the cache's reference, so a key
    in use by another thread is never freed under it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._keys: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, raw: bytes, parse: Callable[[bytes], int]) -> int:
        with self._lock:
            pkey = self._keys.get(raw)
            if pkey is not None:
                self._keys.move_to_end(raw)
                _lib.EVP_PKEY_up_ref(pkey)
                return pkey
        pkey = parse(raw)
        with self._lock:
            if raw not in self._keys:
                _lib.EVP_PKEY_up_ref(pkey)
                self._keys[raw] = pkey
                while len(self._keys) > self._size:
                    _, old = self._keys.popitem(last=False)
                    _lib.EVP_PKEY_free(old)
        return pkey


_public_keys = _KeyCache(4096)
_private_keys = _KeyCache(64)


# The SM2 base point G (GB/T 32918.5): a valid public key whose parsed form
# carries the curve for every other public key (see _parse_public).
_G = bytes.fromhex(
    "32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0"
)
_CURVE_TEMPLATE = _parse("d2i_PUBKEY", _SPKI_PREFIX + _G)


def _parse_public(public_key: bytes) -> int:
    """An SM2 pkey: the curve copied from a template, then the point set (OpenSSL
    checks it is on the curve). About 10 us, against 150 us through d2i_PUBKEY's
    decoder lookup; CheckTx of a self-registration always parses a new key."""
    pkey = _lib.EVP_PKEY_new()
    if not pkey:
        raise MemoryError("OpenSSL key allocation failed")
    point = b"\x04" + public_key
    if (
        _lib.EVP_PKEY_copy_parameters(pkey, _CURVE_TEMPLATE) != 1
        or _lib.EVP_PKEY_set1_encoded_public_key(pkey, point, len(point)) != 1
    ):
        _lib.EVP_PKEY_free(pkey)
        _lib.ERR_clear_error()
        raise SM2Error("invalid SM2 key")
    return int(pkey)


def _parse_private(private_key: bytes) -> int:
    ec_private = _der(0x30, bytes.fromhex("020101") + _der(0x04, private_key))
    pkcs8 = _der(0x30, bytes.fromhex("020100") + _ALGORITHM + _der(0x04, ec_private))
    return _parse("d2i_AutoPrivateKey", pkcs8)


def _public_pkey(public_key: bytes) -> int:
    """A pkey reference for a 64-byte public key; the caller frees it."""
    if len(public_key) != 64:
        raise SM2Error("SM2 public key must be 64 bytes (X||Y)")
    return _public_keys.acquire(public_key, _parse_public)


def _private_pkey(private_key: bytes) -> int:
    """A pkey reference for a 32-byte private key in [1, n-2]; the caller frees it."""
    if len(private_key) != 32:
        raise SM2Error("SM2 private key must be 32 bytes")
    if not 1 <= int.from_bytes(private_key, "big") <= CURVE_ORDER - 2:
        raise SM2Error("SM2 private key is outside [1, n-2]")
    return _private_keys.acquire(private_key, _parse_private)


def _export_public(pkey: int) -> bytes:
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = _lib.i2d_PUBKEY(pkey, None)
    buf = (ctypes.c_ubyte * size)()
    out = ctypes.cast(buf, ctypes.POINTER(ctypes.c_ubyte))
    if _lib.i2d_PUBKEY(pkey, byref(out)) != size:
        raise SM2Error("cannot export SM2 public key")
    der = bytes(buf)
    if not der.startswith(_SPKI_PREFIX):
        raise SM2Error("unexpected SM2 public key encoding")
    return der[len(_SPKI_PREFIX) :]


def _export_private(pkey: int) -> bytes:
    bn = c_void_p()
    if _lib.EVP_PKEY_get_bn_param(pkey, b"priv", byref(bn)) != 1:
        raise SM2Error("cannot export SM2 private key")
    try:
        out = ctypes.create_string_buffer(32)
        if _lib.BN_bn2binpad(bn, out, 32) != 32:
            raise SM2Error("cannot export SM2 private key")
        return out.raw
    finally:
        _lib.BN_clear_free(bn)


def generate_keypair() -> tuple[bytes, bytes]:
    """Return (private 32 bytes, public 64 bytes) from OpenSSL's CSPRNG."""
    ctx = _lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
    pkey = c_void_p()
    try:
        if not ctx or _lib.EVP_PKEY_keygen_init(ctx) != 1:
            raise SM2Error("SM2 key generation unavailable")
        if _slow.EVP_PKEY_generate(ctx, byref(pkey)) != 1:
            raise SM2Error("SM2 key generation failed")
        return _export_private(pkey.value or 0), _export_public(pkey.value or 0)
    finally:
        _lib.EVP_PKEY_CTX_free(ctx)
        _lib.EVP_PKEY_free(pkey)


def public_from_private(private_key: bytes) -> bytes:
    """Derive the 64-byte public key of a 32-byte SM2 private key."""
    pkey = _private_pkey(private_key)
    try:
        return _export_public(pkey)
    finally:
        _lib.EVP_PKEY_free(pkey)


def _digest_ctx(pkey: int) -> tuple[int, int]:
    mctx = _lib.EVP_MD_CTX_new()
    pctx = _lib.EVP_PKEY_CTX_new(pkey, None)
    if not mctx or not pctx:
        _lib.EVP_MD_CTX_free(mctx)
        _lib.EVP_PKEY_CTX_free(pctx)
        raise MemoryError("OpenSSL context allocation failed")
    if _lib.EVP_PKEY_CTX_set1_id(pctx, DISTINGUISHING_ID, len(DISTINGUISHING_ID)) != 1:
        _lib.EVP_MD_CTX_free(mctx)
        _lib.EVP_PKEY_CTX_free(pctx)
        raise SM2Error("cannot set SM2 distinguishing id")
    # The caller keeps ownership of both contexts and frees both.
    _lib.EVP_MD_CTX_set_pkey_ctx(mctx, pctx)
    return mctx, pctx


def sign(private_key: bytes, message: bytes) -> bytes:
    """SM2 signature over SM3(Z || message), Z from the standard ID."""
    pkey = _private_pkey(private_key)
    try:
        mctx, pctx = _digest_ctx(pkey)
        try:
            if _lib.EVP_DigestSignInit(mctx, None, _SM3, None, pkey) != 1:
                raise SM2Error("SM2 sign init failed")
            size = c_size_t(80)
            out = ctypes.create_string_buffer(80)
            if _slow.EVP_DigestSign(mctx, out, byref(size), message, len(message)) != 1:
                raise SM2Error("SM2 sign failed")
            return out.raw[: size.value]
        finally:
            _lib.EVP_MD_CTX_free(mctx)
            _lib.EVP_PKEY_CTX_free(pctx)
    finally:
        _lib.EVP_PKEY_free(pkey)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True only if `signature` is a valid SM2 signature of `message`."""
    try:
        pkey = _public_pkey(public_key)
    except SM2Error:
        return False
    try:
        mctx, pctx = _digest_ctx(pkey)
        try:
            if _lib.EVP_DigestVerifyInit(mctx, None, _SM3, None, pkey) != 1:
                _lib.ERR_clear_error()
                return False
            ok = _slow.EVP_DigestVerify(mctx, signature, len(signature), message, len(message))
            if ok != 1:
                _lib.ERR_clear_error()
            return bool(ok == 1)
        finally:
            _lib.EVP_MD_CTX_free(mctx)
            _lib.EVP_PKEY_CTX_free(pctx)
    finally:
        _lib.EVP_PKEY_free(pkey)


def _pkey_crypt(pkey: int, data: bytes, encrypt: bool) -> bytes:
    ctx = _lib.EVP_PKEY_CTX_new(pkey, None)
    try:
        init = _lib.EVP_PKEY_encrypt_init if encrypt else _lib.EVP_PKEY_decrypt_init
        run = _slow.EVP_PKEY_encrypt if encrypt else _slow.EVP_PKEY_decrypt
        if not ctx or init(ctx) != 1:
            raise SM2Error("SM2 cipher init failed")
        size = c_size_t(0)
        if run(ctx, None, byref(size), data, len(data)) != 1:
            raise SM2Error("SM2 cipher failed")
        out = ctypes.create_string_buffer(size.value)
        if run(ctx, out, byref(size), data, len(data)) != 1:
            raise SM2Error("SM2 cipher failed")
        return out.raw[: size.value]
    finally:
        _lib.ERR_clear_error()
        _lib.EVP_PKEY_CTX_free(ctx)


def encrypt(public_key: bytes, plaintext: bytes) -> bytes:
    """SM2 public-key encryption (DER C1C3C2). Use only to wrap short keys."""
    pkey = _public_pkey(public_key)
    try:
        return _pkey_crypt(pkey, plaintext, encrypt=True)
    finally:
        _lib.EVP_PKEY_free(pkey)


def decrypt(private_key: bytes, ciphertext: bytes) -> bytes:
    """Inverse of `encrypt`; raises SM2Error on any tampering (C3 check)."""
    pkey = _private_pkey(private_key)
    try:
        return _pkey_crypt(pkey, ciphertext, encrypt=False)
    finally:
        _lib.EVP_PKEY_free(pkey)


__all__ = [
    "DISTINGUISHING_ID",
    "OpenSSLUnavailable",
    "SM2Error",
    "decrypt",
    "encrypt",
    "generate_keypair",
    "public_from_private",
    "sign",
    "verify",
]
