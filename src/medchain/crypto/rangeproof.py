"""Pedersen commitments and Bulletproofs range proofs: prove a committed value
meets a threshold without revealing it.

The construction is the single-value range proof with the logarithmic inner
product argument of Bünz, Bootle, Boneh, Poelstra, Wuille and Maxwell,
"Bulletproofs: Short Proofs for Confidential Transactions and More" (IEEE S&P
2018; eprint 2017/1066), sections 3 and 4.2, made non-interactive by
Fiat-Shamir with an SM3 transcript, and verified with one combined check
(section 6.2's single multi-exponentiation). The group is secp256k1's
(prime order, cofactor 1), through libsecp256k1 (`coincurve`).

A lab commits to a value v as V = v*G + r*H. "v >= t" is proven as a range
proof that V - t*G commits to a value in [0, 2**bits); "v <= t" that
t*G - V does. Every proof is bound to a context (who proves what, for which
challenge): a proof made for one context does not verify for another.

Layer: crypto. Proving draws randomness from the OS; verifying is a pure
function of its inputs and never raises on attacker bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from coincurve import PublicKey

from medchain.crypto import primitives
from medchain.exceptions import MedChainError

GROUP = "secp256k1"
BITS = 32
MAX_BITS = 64
POINT_BYTES = 33
SCALAR_BYTES = 32
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
OPS = ("ge", "le")
_DOMAIN = b"medchain/rangeproof/v1"


class ProofError(MedChainError, ValueError):
    """The statement is false (or out of range): no proof of it can be made."""


Point = PublicKey


def random_blinding() -> int:
    """A uniformly random non-zero scalar: a commitment's blinding factor."""
    return secrets.randbelow(ORDER - 1) + 1


def commit(value: int, blinding: int) -> bytes:
    """V = value*G + blinding*H, as a 33-byte compressed point."""
    if not 0 <= value < ORDER or not 0 < blinding < ORDER:
        raise ProofError("value or blinding out of the group's scalar range")
    return _sum([_mul_base(value), _mul(_h(), blinding)]).format()


def prove_threshold(
    value: int, blinding: int, op: str, threshold: int, context: bytes, bits: int = BITS
) -> bytes:
    """A proof that the value committed with `blinding` is >= ("ge") or <= ("le")
    `threshold`, bound to `context`; ProofError if it is not (or the gap does not
    fit in `bits` bits)."""
    _check_shape(op, bits)
    gap, gap_blinding = (
        (value - threshold, blinding) if op == "ge" else (threshold - value, ORDER - blinding)
    )
    if not 0 <= gap < 1 << bits:
        raise ProofError(f"the value does not meet the criterion ({op} the threshold)")
    shifted = _shift(_point(commit(value, blinding)), op, threshold)
    return _prove_range(gap, gap_blinding % ORDER, shifted, bits, context).encode()


def verify_threshold(
    commitment: bytes, op: str, threshold: int, proof: bytes, context: bytes, bits: int = BITS
) -> bool:
    """True if `proof` shows the committed value is `op` `threshold` for this
    context; False for a false statement, another context or malformed bytes."""
    try:
        _check_shape(op, bits)
        shifted = _shift(_point(commitment), op, threshold)
        return _verify_range(shifted, _RangeProof.decode(proof, bits), bits, context)
    except (ProofError, ValueError):
        return False


def proof_size(bits: int = BITS) -> int:
    """Bytes of one range proof over `bits` bits."""
    return (4 + 2 * _log2(bits)) * POINT_BYTES + 5 * SCALAR_BYTES


# -- the group ------------------------------------------------------------------


def _point(data: bytes) -> Point:
    """A compressed point; ValueError for anything else (uncompressed, off curve)."""
    if len(data) != POINT_BYTES or data[0] not in (2, 3):
        raise ValueError("not a compressed secp256k1 point")
    return PublicKey(data)


def _scalar(k: int) -> bytes:
    return (k % ORDER).to_bytes(SCALAR_BYTES, "big")


def _mul(p: Point, k: int) -> Point | None:
    """k*P, or None for the identity (k = 0)."""
    k %= ORDER
    return None if k == 0 else p.multiply(_scalar(k))


def _mul_base(k: int) -> Point | None:
    k %= ORDER
    return None if k == 0 else PublicKey.from_secret(_scalar(k))


def _neg(p: Point) -> Point:
    raw = p.format()
    return PublicKey(bytes([raw[0] ^ 1]) + raw[1:])


def _sum(points: Sequence[Point | None]) -> Point:
    """The sum; ValueError if it is the identity (never for honest random inputs)."""
    present = [p for p in points if p is not None]
    if not present:
        raise ValueError("the identity")
    return present[0] if len(present) == 1 else PublicKey.combine_keys(present)


def _shift(v: Point, op: str, threshold: int) -> Point:
    """V - t*G for "ge", t*G - V for "le": a commitment to the gap."""
    if op == "ge":
        return _sum([v, _mul_base(-threshold)])
    return _sum([_neg(v), _mul_base(threshold)])


def _hash_to_point(label: bytes) -> Point:
    """A point nobody knows the discrete log of: try-and-increment on SM3."""
    for counter in range(256):
        x = primitives.sm3(_DOMAIN + b"/generator/" + label + bytes([counter]))
        try:
            return PublicKey(b"\x02" + x)
        except ValueError:
            continue
    raise AssertionError("no point found")  # probability 2**-256


@cache
def _h() -> Point:
    return _hash_to_point(b"H")


@cache
def _u() -> Point:
    return _hash_to_point(b"U")


@cache
def _gens(bits: int) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    return (
        tuple(_hash_to_point(b"G%d" % i) for i in range(bits)),
        tuple(_hash_to_point(b"H%d" % i) for i in range(bits)),
    )


def _check_shape(op: str, bits: int) -> None:
    if op not in OPS:
        raise ProofError(f"op must be one of {', '.join(OPS)}")
    if bits not in (8, 16, 32, 64):
        raise ProofError("bits must be 8, 16, 32 or 64")


def _log2(bits: int) -> int:
    return bits.bit_length() - 1


def _inv(k: int) -> int:
    return pow(k, -1, ORDER)


def _powers(base: int, count: int) -> list[int]:
    out, acc = [], 1
    for _ in range(count):
        out.append(acc)
        acc = acc * base % ORDER
    return out


def _inner(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(x * y for x, y in zip(a, b, strict=True)) % ORDER


# -- the transcript ----------------------------------------------------------------


class _Transcript:
    """Fiat-Shamir: each challenge hashes everything sent so far (SM3)."""

    def __init__(self, bits: int, commitment: Point, context: bytes) -> None:
        self._state = primitives.sm3(
            _DOMAIN + bits.to_bytes(1, "big") + len(context).to_bytes(4, "big") + context
        )
        self.absorb(commitment)

    def absorb(self, *items: Point | int) -> None:
        parts = [p.format() if isinstance(p, PublicKey) else _scalar(p) for p in items]
        self._state = primitives.sm3(self._state + b"".join(parts))

    def challenge(self) -> int:
        self._state = primitives.sm3(self._state + b"challenge")
        c = int.from_bytes(self._state, "big") % ORDER
        if c == 0:
            raise ValueError("zero challenge")  # probability 2**-256
        return c


# -- the proof ---------------------------------------------------------------------


@dataclass(frozen=True)
class _RangeProof:
    a: Point
    s: Point
    t1: Point
    t2: Point
    tau_x: int
    mu: int
    t_hat: int
    ls: tuple[Point, ...]
    rs: tuple[Point, ...]
    a_final: int
    b_final: int

    def encode(self) -> bytes:
        points = [self.a, self.s, self.t1, self.t2]
        for left, right in zip(self.ls, self.rs, strict=True):
            points += [left, right]
        scalars = [self.tau_x, self.mu, self.t_hat, self.a_final, self.b_final]
        return b"".join(p.format() for p in points) + b"".join(_scalar(k) for k in scalars)

    @classmethod
    def decode(cls, data: bytes, bits: int) -> _RangeProof:
        """Strict: exact length, compressed points on the curve, canonical scalars."""
        if len(data) != proof_size(bits):
            raise ValueError("wrong proof length")
        rounds = _log2(bits)
        cut = (4 + 2 * rounds) * POINT_BYTES
        points = [_point(data[i : i + POINT_BYTES]) for i in range(0, cut, POINT_BYTES)]
        scalars = [
            int.from_bytes(data[i : i + SCALAR_BYTES], "big")
            for i in range(cut, len(data), SCALAR_BYTES)
        ]
        if any(k >= ORDER for k in scalars):
            raise ValueError("non-canonical scalar")
        tau_x, mu, t_hat, a_final, b_final = scalars
        big_a, big_s, big_t1, big_t2 = points[:4]
        return cls(
            big_a,
            big_s,
            big_t1,
            big_t2,
            tau_x,
            mu,
            t_hat,
            tuple(points[4::2]),
            tuple(points[5::2]),
            a_final,
            b_final,
        )


def _prove_range(
    value: int, blinding: int, commitment: Point, bits: int, context: bytes
) -> _RangeProof:
    """Section 4.2: value in [0, 2**bits) for commitment = value*G + blinding*H."""
    g, h = _gens(bits)
    transcript = _Transcript(bits, commitment, context)
    a_l = [(value >> i) & 1 for i in range(bits)]
    a_r = [(bit - 1) % ORDER for bit in a_l]
    alpha, rho = random_blinding(), random_blinding()
    s_l = [random_blinding() for _ in range(bits)]
    s_r = [random_blinding() for _ in range(bits)]
    big_a = _sum([_mul(_h(), alpha)] + [g[i] if a_l[i] else _neg(h[i]) for i in range(bits)])
    big_s = _sum(
        [_mul(_h(), rho)]
        + [_mul(g[i], s_l[i]) for i in range(bits)]
        + [_mul(h[i], s_r[i]) for i in range(bits)]
    )
    transcript.absorb(big_a, big_s)
    y, z = transcript.challenge(), transcript.challenge()
    y_n, two_n = _powers(y, bits), _powers(2, bits)
    z2 = z * z % ORDER
    l0 = [(a - z) % ORDER for a in a_l]
    r0 = [(y_n[i] * (a_r[i] + z) + z2 * two_n[i]) % ORDER for i in range(bits)]
    r1 = [y_n[i] * s_r[i] % ORDER for i in range(bits)]
    t1 = (_inner(l0, r1) + _inner(s_l, r0)) % ORDER
    t2 = _inner(s_l, r1)
    tau1, tau2 = random_blinding(), random_blinding()
    big_t1 = _sum([_mul_base(t1), _mul(_h(), tau1)])
    big_t2 = _sum([_mul_base(t2), _mul(_h(), tau2)])
    transcript.absorb(big_t1, big_t2)
    x = transcript.challenge()
    tau_x = (tau2 * x * x + tau1 * x + z2 * blinding) % ORDER
    mu = (alpha + rho * x) % ORDER
    left = [(l0[i] + s_l[i] * x) % ORDER for i in range(bits)]
    right = [(r0[i] + r1[i] * x) % ORDER for i in range(bits)]
    t_hat = _inner(left, right)
    transcript.absorb(tau_x, mu, t_hat)
    w = transcript.challenge()
    y_inv = _powers(_inv(y), bits)
    h_prime = [_mul(h[i], y_inv[i]) for i in range(bits)]
    ls, rs, a_final, b_final = _prove_inner_product(
        transcript, list(g), h_prime, _mul(_u(), w), left, right
    )
    return _RangeProof(big_a, big_s, big_t1, big_t2, tau_x, mu, t_hat, ls, rs, a_final, b_final)


def _prove_inner_product(
    transcript: _Transcript,
    g: list[Point],
    h: list[Point | None],
    u: Point | None,
    a: list[int],
    b: list[int],
) -> tuple[tuple[Point, ...], tuple[Point, ...], int, int]:
    """Section 3, protocol 2: halve the vectors each round, sending L and R."""
    ls: list[Point] = []
    rs: list[Point] = []
    while len(a) > 1:
        half = len(a) // 2
        a_lo, a_hi, b_lo, b_hi = a[:half], a[half:], b[:half], b[half:]
        g_lo, g_hi, h_lo, h_hi = g[:half], g[half:], h[:half], h[half:]
        c_l, c_r = _inner(a_lo, b_hi), _inner(a_hi, b_lo)
        big_l = _sum(_terms(g_hi, a_lo) + _terms(h_lo, b_hi) + [_opt_mul(u, c_l)])
        big_r = _sum(_terms(g_lo, a_hi) + _terms(h_hi, b_lo) + [_opt_mul(u, c_r)])
        ls.append(big_l)
        rs.append(big_r)
        transcript.absorb(big_l, big_r)
        x = transcript.challenge()
        x_inv = _inv(x)
        g = [_sum([_mul(g_lo[i], x_inv), _mul(g_hi[i], x)]) for i in range(half)]
        h = [_sum([_opt_mul(h_lo[i], x), _opt_mul(h_hi[i], x_inv)]) for i in range(half)]
        a = [(a_lo[i] * x + a_hi[i] * x_inv) % ORDER for i in range(half)]
        b = [(b_lo[i] * x_inv + b_hi[i] * x) % ORDER for i in range(half)]
    return tuple(ls), tuple(rs), a[0], b[0]


def _opt_mul(p: Point | None, k: int) -> Point | None:
    return None if p is None else _mul(p, k)


def _terms(points: Sequence[Point | None], scalars: Sequence[int]) -> list[Point | None]:
    return [_opt_mul(p, k) for p, k in zip(points, scalars, strict=True)]


def _verify_range(commitment: Point, proof: _RangeProof, bits: int, context: bytes) -> bool:
    """Both checks of section 4.2, the inner product one folded into a single
    equation over the original generators (section 6.2)."""
    g, h = _gens(bits)
    transcript = _Transcript(bits, commitment, context)
    transcript.absorb(proof.a, proof.s)
    y, z = transcript.challenge(), transcript.challenge()
    transcript.absorb(proof.t1, proof.t2)
    x = transcript.challenge()
    transcript.absorb(proof.tau_x, proof.mu, proof.t_hat)
    w = transcript.challenge()
    y_n, two_n = _powers(y, bits), _powers(2, bits)
    z2 = z * z % ORDER
    delta = ((z - z2) * sum(y_n) - z2 * z * ((1 << bits) - 1)) % ORDER
    # t_hat*G + tau_x*H == z^2*V + delta*G + x*T1 + x^2*T2
    if not _equal(
        [_mul_base(proof.t_hat - delta), _mul(_h(), proof.tau_x)],
        [_mul(commitment, z2), _mul(proof.t1, x), _mul(proof.t2, x * x)],
    ):
        return False
    challenges = []
    for big_l, big_r in zip(proof.ls, proof.rs, strict=True):
        transcript.absorb(big_l, big_r)
        challenges.append(transcript.challenge())
    s = list(_fold_scalars(challenges, bits))
    y_inv = _powers(_inv(y), bits)
    ab = proof.a_final * proof.b_final
    lhs: list[Point | None] = [_mul(_u(), w * (ab - proof.t_hat)), _mul(_h(), proof.mu)]
    for i in range(bits):
        lhs.append(_mul(g[i], proof.a_final * s[i] + z))
        s_inv = _inv(s[i])
        lhs.append(_mul(h[i], y_inv[i] * (proof.b_final * s_inv - z2 * two_n[i]) - z))
    rhs: list[Point | None] = [proof.a, _mul(proof.s, x)]
    for c, big_l, big_r in zip(challenges, proof.ls, proof.rs, strict=True):
        c2 = c * c % ORDER
        rhs += [_mul(big_l, c2), _mul(big_r, _inv(c2))]
    return _equal(lhs, rhs)


def _fold_scalars(challenges: Sequence[int], bits: int) -> Iterator[int]:
    """s_i = prod_j x_j^(+1 if bit j of i (from the top) is set, else -1)."""
    inverses = [_inv(c) for c in challenges]
    rounds = len(challenges)
    for i in range(bits):
        acc = 1
        for j in range(rounds):
            acc = acc * (challenges[j] if (i >> (rounds - 1 - j)) & 1 else inverses[j]) % ORDER
        yield acc


def _equal(lhs: Sequence[Point | None], rhs: Sequence[Point | None]) -> bool:
    """Whether two sums of points are equal (an identity sum on either side: no)."""
    try:
        return _sum(lhs).format() == _sum(rhs).format()
    except ValueError:
        return False
