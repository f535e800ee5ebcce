"""SM9 identity-based signatures and encryption (GB/T 38635, GM/T 0044).

Why this shape: the maintained SM9 code we can install is GmSSL 3, which
gmssl_pyx bundles. Its Python classes cover encryption and key extraction but
not signatures, so signing and verifying call GmSSL's own z256 pairing and
curve functions (compiled into the same extension) through ctypes, step by
step as GmSSL's sm9_do_sign / sm9_do_verify do. The annex example of the
standard (tests/test_sm9.py) pins every step byte for byte, and a second
implementation (gmalg, pure Python) cross-checks random signatures.

Sizes: signing master public key 128 bytes (a point on the twist, x1 x0 y1 y0),
member signing key 64 bytes (x || y on the base curve), signature 96 bytes
(h || x || y of S). Encryption: master public key 64 bytes, member
decryption key 128 bytes, ciphertext C1 (64) || C3 (32) || C2 as in the
standard's annex.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import threading

import gmssl_pyx
from gmssl_pyx import gmsslext

from medchain.exceptions import MedChainError

HID_SIGN = 1
MASTER_PUBLIC_BYTES = 128
SIGN_KEY_BYTES = 64
SIGNATURE_BYTES = 96
N = 0xB640000002A3A6F1D603AB4FF58EC74449F2934B18EA8BEEE56EE19CD69ECF25

_Z256 = ctypes.c_uint64 * 4
_POINT = ctypes.c_uint64 * 12  # X, Y, Z (Jacobian, Montgomery form)
_TWIST = ctypes.c_uint64 * 24  # X, Y, Z over Fp2
_FP12 = ctypes.c_uint64 * 48


class SM9Error(MedChainError, ValueError):
    """A malformed SM9 key, identity or ciphertext."""


_lib = ctypes.CDLL(gmsslext.__file__)
_lock = threading.Lock()


def _fn(name: str, *argtypes: object) -> ctypes._NamedFuncPointer:
    f = getattr(_lib, name)
    f.argtypes = list(argtypes)
    return f  # type: ignore[no-any-return]


_P = ctypes.c_void_p
_from_bytes = _fn("sm9_z256_from_bytes", _P, ctypes.c_char_p)
_to_bytes = _fn("sm9_z256_to_bytes", _P, _P)
_hash1 = _fn("sm9_z256_hash1", _P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint8)
_generator = _fn("sm9_z256_generator")
_generator.restype = _P
_point_mul = _fn("sm9_z256_point_mul", _P, _P, _P)
_point_mul_generator = _fn("sm9_z256_point_mul_generator", _P, _P)
_point_on_curve = _fn("sm9_z256_point_is_on_curve", _P)
_point_to_octets = _fn("sm9_z256_point_to_uncompressed_octets", _P, _P)
_point_from_octets = _fn("sm9_z256_point_from_uncompressed_octets", _P, ctypes.c_char_p)
_twist_mul_generator = _fn("sm9_z256_twist_point_mul_generator", _P, _P)
_twist_add_full = _fn("sm9_z256_twist_point_add_full", _P, _P, _P)
_twist_on_curve = _fn("sm9_z256_twist_point_is_on_curve", _P)
_twist_to_octets = _fn("sm9_z256_twist_point_to_uncompressed_octets", _P, _P)
_twist_from_octets = _fn("sm9_z256_twist_point_from_uncompressed_octets", _P, ctypes.c_char_p)
_pairing = _fn("sm9_z256_pairing", _P, _P, _P)
_fp12_pow = _fn("sm9_z256_fp12_pow", _P, _P, _P)
_fp12_mul = _fn("sm9_z256_fp12_mul", _P, _P, _P)
_fp12_to_bytes = _fn("sm9_z256_fp12_to_bytes", _P, _P)


def _z(value: int) -> ctypes.Array[ctypes.c_uint64]:
    r = _Z256()
    _from_bytes(ctypes.byref(r), value.to_bytes(32, "big"))
    return r


def _int(z: ctypes.Array[ctypes.c_uint64]) -> int:
    out = ctypes.create_string_buffer(32)
    _to_bytes(ctypes.byref(z), out)
    return int.from_bytes(out.raw, "big")


def _point(xy: bytes) -> ctypes.Array[ctypes.c_uint64]:
    if len(xy) != 64:
        raise SM9Error("an SM9 G1 point is 64 bytes (x || y)")
    p = _POINT()
    if _point_from_octets(ctypes.byref(p), b"\x04" + xy) != 1 or _point_on_curve(
        ctypes.byref(p)
    ) != 1:
        raise SM9Error("not a point on the SM9 curve")
    return p


def _point_bytes(p: ctypes.Array[ctypes.c_uint64]) -> bytes:
    out = ctypes.create_string_buffer(65)
    _point_to_octets(ctypes.byref(p), out)
    return out.raw[1:]


def _twist(xy: bytes) -> ctypes.Array[ctypes.c_uint64]:
    if len(xy) != MASTER_PUBLIC_BYTES:
        raise SM9Error(f"an SM9 signing master public key is {MASTER_PUBLIC_BYTES} bytes")
    p = _TWIST()
    if _twist_from_octets(ctypes.byref(p), b"\x04" + xy) != 1 or _twist_on_curve(
        ctypes.byref(p)
    ) != 1:
        raise SM9Error("not a point on the SM9 twist curve")
    return p


def check_master_public(master_public_key: bytes) -> None:
    """SM9Error unless this is a signing master public key (a point on the twist)."""
    with _lock:
        _twist(master_public_key)


def check_enc_master_public(master_public_key: bytes) -> None:
    """SM9Error unless this is an encryption master public key (a point on the curve)."""
    if len(master_public_key) != ENC_MASTER_PUBLIC_BYTES:
        raise SM9Error(f"an SM9 encryption master public key is {ENC_MASTER_PUBLIC_BYTES} bytes")
    with _lock:
        _point(master_public_key)


def _h1(identity: bytes) -> int:
    h = _Z256()
    _hash1(ctypes.byref(h), identity, len(identity), HID_SIGN)
    return _int(h)


def _h2(message: bytes, w: bytes) -> int:
    """H2(M || w, N) with SM3 (GB/T 38635.2, 5.3.2.3): 40 bytes -> [1, N-1]."""
    prefix = b"\x02" + message + w
    ha = hashlib.new("sm3", prefix + b"\x00\x00\x00\x01").digest()
    ha += hashlib.new("sm3", prefix + b"\x00\x00\x00\x02").digest()
    return int.from_bytes(ha[:40], "big") % (N - 1) + 1


def _gt_bytes(g: ctypes.Array[ctypes.c_uint64]) -> bytes:
    out = ctypes.create_string_buffer(384)
    _fp12_to_bytes(ctypes.byref(g), out)
    return out.raw


def _random_scalar() -> int:
    while True:
        k = int.from_bytes(gmssl_pyx.rand_bytes(32), "big") % N
        if k:
            return k


def generate_master_secret() -> bytes:
    """A KGC's signing master secret ks (32 bytes), from the OS CSPRNG."""
    return _random_scalar().to_bytes(32, "big")


def master_public(master_secret: bytes) -> bytes:
    """Ppubs = [ks]P2: the signing master public key an organisation publishes."""
    ks = int.from_bytes(master_secret, "big")
    if not 0 < ks < N:
        raise SM9Error("SM9 master secret out of range")
    p = _TWIST()
    with _lock:
        _twist_mul_generator(ctypes.byref(p), ctypes.byref(_z(ks)))
        out = ctypes.create_string_buffer(129)
        _twist_to_octets(ctypes.byref(p), out)
    return out.raw[1:]


def extract_sign_key(master_secret: bytes, identity: bytes) -> bytes:
    """dsA = [ks / (H1(ID||hid) + ks)]P1: a member's signing key, issued by its KGC."""
    ks = int.from_bytes(master_secret, "big")
    if not 0 < ks < N:
        raise SM9Error("SM9 master secret out of range")
    t1 = (_h1(identity) + ks) % N
    if t1 == 0:
        raise SM9Error("this identity hits t1 = 0; the KGC must make a new master key")
    t2 = ks * pow(t1, -1, N) % N
    p = _POINT()
    with _lock:
        _point_mul_generator(ctypes.byref(p), ctypes.byref(_z(t2)))
        return _point_bytes(p)


def sign(
    sign_key: bytes, master_public_key: bytes, message: bytes, r: int | None = None
) -> bytes:
    """SM9 signature h || S (96 bytes). `r` only for the standard's examples."""
    ds = _point(sign_key)
    ppubs = _twist(master_public_key)
    with _lock:
        g = _FP12()
        _pairing(ctypes.byref(g), ctypes.byref(ppubs), ctypes.c_void_p(_generator()))
        while True:
            k = r if r is not None else _random_scalar()
            w = _FP12()
            _fp12_pow(ctypes.byref(w), ctypes.byref(g), ctypes.byref(_z(k)))
            h = _h2(message, _gt_bytes(w))
            lam = (k - h) % N
            if lam:
                break
            if r is not None:
                raise SM9Error("the given r gives l = 0")
        s = _POINT()
        _point_mul(ctypes.byref(s), ctypes.byref(_z(lam)), ctypes.byref(ds))
        return h.to_bytes(32, "big") + _point_bytes(s)


def verify(master_public_key: bytes, identity: bytes, message: bytes, signature: bytes) -> bool:
    """True only if `signature` is identity's over message under this master key."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    h = int.from_bytes(signature[:32], "big")
    if not 0 < h < N:
        return False
    try:
        s = _point(signature[32:])
        ppubs = _twist(master_public_key)
    except SM9Error:
        return False
    with _lock:
        g = _FP12()
        _pairing(ctypes.byref(g), ctypes.byref(ppubs), ctypes.c_void_p(_generator()))
        t = _FP12()
        _fp12_pow(ctypes.byref(t), ctypes.byref(g), ctypes.byref(_z(h)))
        p = _TWIST()
        _twist_mul_generator(ctypes.byref(p), ctypes.byref(_z(_h1(identity))))
        _twist_add_full(ctypes.byref(p), ctypes.byref(p), ctypes.byref(ppubs))
        u = _FP12()
        _pairing(ctypes.byref(u), ctypes.byref(p), ctypes.byref(s))
        w = _FP12()
        _fp12_mul(ctypes.byref(w), ctypes.byref(u), ctypes.byref(t))
        wbytes = _gt_bytes(w)
    return _h2(message, wbytes) == h


# --- encryption: the standard's KDF-stream cipher over GmSSL's KEM ---
# GmSSL's sm9_encrypt MACs with HMAC-SM3, where GB/T 38635.4 says
# MAC(K2, C2) = SM3(C2 || K2); its ciphertexts do not open with other
# implementations. So only the KEM (the pairing part) is GmSSL's; the XOR and the
# MAC follow the standard here, and the annex ciphertext opens (tests/test_sm9.py).

HID_ENC = 3
ENC_MASTER_PUBLIC_BYTES = 64
ENC_KEY_BYTES = 128
MAX_PLAINTEXT_BYTES = 255
_kem_encrypt = _fn("sm9_kem_encrypt", _P, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, _P, _P)
_kem_decrypt = _fn("sm9_kem_decrypt", _P, ctypes.c_char_p, ctypes.c_size_t, _P, ctypes.c_size_t, _P)


def _h1_enc(identity: bytes) -> int:
    h = _Z256()
    _hash1(ctypes.byref(h), identity, len(identity), HID_ENC)
    return _int(h)


def enc_master_public(master_secret: bytes) -> bytes:
    """Ppube = [ke]P1: the encryption master public key an organisation publishes (64 bytes)."""
    ke = int.from_bytes(master_secret, "big")
    if not 0 < ke < N:
        raise SM9Error("SM9 master secret out of range")
    p = _POINT()
    with _lock:
        _point_mul_generator(ctypes.byref(p), ctypes.byref(_z(ke)))
        return _point_bytes(p)


def extract_enc_key(master_secret: bytes, identity: bytes) -> bytes:
    """deB = [ke / (H1(ID||hid=3) + ke)]P2: a member's decryption key (128 bytes)."""
    ke = int.from_bytes(master_secret, "big")
    if not 0 < ke < N:
        raise SM9Error("SM9 master secret out of range")
    t1 = (_h1_enc(identity) + ke) % N
    if t1 == 0:
        raise SM9Error("this identity hits t1 = 0; the KGC must make a new master key")
    p = _TWIST()
    with _lock:
        _twist_mul_generator(ctypes.byref(p), ctypes.byref(_z(ke * pow(t1, -1, N) % N)))
        out = ctypes.create_string_buffer(129)
        _twist_to_octets(ctypes.byref(p), out)
    return out.raw[1:]


def _mac(k2: bytes, c2: bytes) -> bytes:
    return hashlib.new("sm3", c2 + k2).digest()


def encrypt(master_public_key: bytes, identity: bytes, plaintext: bytes) -> bytes:
    """Encrypt to an identity with nothing but its org's master public key: C1 || C3 || C2."""
    if not 0 < len(plaintext) <= MAX_PLAINTEXT_BYTES:
        raise SM9Error(f"SM9 encrypts 1..{MAX_PLAINTEXT_BYTES} bytes (a data key, not a record)")
    ppube = _point(master_public_key)
    mpk = (ctypes.c_uint64 * 16)()  # SM9_ENC_MASTER_KEY: Ppube (12 words), ke (4, unused)
    ctypes.memmove(mpk, ppube, ctypes.sizeof(ppube))
    klen = len(plaintext) + 32
    k = ctypes.create_string_buffer(klen)
    c1 = _POINT()
    with _lock:
        if _kem_encrypt(ctypes.byref(mpk), identity, len(identity), klen, k, ctypes.byref(c1)) != 1:
            raise SM9Error("SM9 encryption failed")
        c1_bytes = _point_bytes(c1)
    c2 = bytes(a ^ b for a, b in zip(plaintext, k.raw[: len(plaintext)], strict=True))
    return c1_bytes + _mac(k.raw[len(plaintext) :], c2) + c2


def decrypt(enc_key: bytes, identity: bytes, ciphertext: bytes) -> bytes:
    """Inverse of encrypt; SM9Error on any mismatch (opaque on purpose)."""
    if len(enc_key) != ENC_KEY_BYTES or not 96 < len(ciphertext) <= 96 + MAX_PLAINTEXT_BYTES:
        raise SM9Error("SM9 decryption failed")
    try:
        c1 = _point(ciphertext[:64])
        de = _twist(enc_key)
    except SM9Error:
        raise SM9Error("SM9 decryption failed") from None
    c3, c2 = ciphertext[64:96], ciphertext[96:]
    key = (ctypes.c_uint64 * 36)()  # SM9_ENC_KEY: Ppube (12 words, unused), de (24)
    ctypes.memmove(ctypes.addressof(key) + 96, de, ctypes.sizeof(de))
    klen = len(c2) + 32
    k = ctypes.create_string_buffer(klen)
    with _lock:
        if _kem_decrypt(ctypes.byref(key), identity, len(identity), ctypes.byref(c1), klen, k) != 1:
            raise SM9Error("SM9 decryption failed")
    if not hmac.compare_digest(_mac(k.raw[len(c2) :], c2), c3):
        raise SM9Error("SM9 decryption failed")
    return bytes(a ^ b for a, b in zip(c2, k.raw[: len(c2)], strict=True))
