"""CKKS (TenSEAL) for the aggregation: hospitals encrypt, the aggregator only adds.

Keys: one hospital makes the secret context and it reaches the other hospitals (in
the embedded run as a file; a deployment wraps it to each hospital's SM2 key, see
docs/federated.md). The aggregator gets the public context only: it can add
ciphertexts but decrypt none. A hospital sends Enc(n_i × params_i) and n_i in clear;
the aggregator sums the ciphertexts; the hospitals decrypt the sum and divide by Σn.

The plain mode sends n_i × params_i as float64 bytes and sums them in clear: the
FedAvg baseline the bench compares the encrypted aggregation with.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import tenseal as ts

from medchain.exceptions import MedChainError
from medchain.fl.data import Floats

# No multiplication is done on ciphertexts, so one middle prime suffices; degree 8192
# with 160 bits of modulus is within the 128-bit security table of the HE standard.
POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BIT_SIZES = (60, 40, 60)
GLOBAL_SCALE = 2.0**40

CKKS = "ckks"
PLAIN = "plain"
MODES = (CKKS, PLAIN)


class AggregationError(MedChainError):
    """An update or key that cannot take part in the aggregation."""


def new_secret_context() -> Any:
    """A fresh CKKS context holding the secret key (the hospitals' side)."""
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=list(COEFF_MOD_BIT_SIZES),
    )
    context.global_scale = GLOBAL_SCALE
    return context


def secret_context_bytes(context: Any) -> bytes:
    """The secret context serialised, secret key included: for hospitals only."""
    return cast(bytes, context.serialize(save_secret_key=True))


def public_context_bytes(context: Any) -> bytes:
    """The context without its secret key: what the aggregator is given."""
    public = context.copy()
    public.make_context_public()
    return cast(bytes, public.serialize(save_secret_key=False))


def load_context(data: bytes) -> Any:
    """A context from its bytes (public or secret, whichever they hold)."""
    try:
        return ts.context_from(data)
    except Exception as e:  # TenSEAL raises bare exceptions from its C++ core
        raise AggregationError("not a serialised CKKS context") from e


def is_private(context: Any) -> bool:
    """Whether a context can decrypt (holds the secret key)."""
    return bool(context.is_private())


def encrypt_update(context: Any, weighted: Floats) -> bytes:
    """Enc(n_i × params_i): one CKKS vector of the weighted parameters."""
    return cast(bytes, ts.ckks_vector(context, [float(v) for v in weighted]).serialize())


def add_ciphertexts(public_context: Any, payloads: list[bytes]) -> bytes:
    """The sum of the hospitals' ciphertexts, computed with no key that decrypts."""
    if not payloads:
        raise AggregationError("no update to aggregate")
    try:
        vectors = [ts.ckks_vector_from(public_context, p) for p in payloads]
    except Exception as e:  # a malformed ciphertext from one hospital
        raise AggregationError("an update is not a CKKS vector of this context") from e
    total = vectors[0]
    for v in vectors[1:]:
        total = total + v
    return cast(bytes, total.serialize())


def decrypt_sum(secret_context: Any, payload: bytes, length: int) -> Floats:
    """The hospitals' side: the sum in clear (its first `length` slots)."""
    if not is_private(secret_context):
        raise AggregationError("decrypting needs the hospitals' secret context")
    vector = ts.ckks_vector_from(secret_context, payload)
    return np.asarray(vector.decrypt()[:length], dtype=np.float64)


def plain_bytes(weighted: Floats) -> bytes:
    """n_i × params_i in clear (plain mode): float64 little-endian."""
    data: bytes = np.ascontiguousarray(weighted, dtype="<f8").tobytes()
    return data


def add_plain(payloads: list[bytes]) -> bytes:
    """The plain-mode sum of float64 vectors, as float64 bytes again."""
    if not payloads or len({len(p) for p in payloads}) != 1 or len(payloads[0]) % 8:
        raise AggregationError("plain updates must be float64 vectors of one length")
    total = np.sum([np.frombuffer(p, dtype="<f8") for p in payloads], axis=0)
    return plain_bytes(np.asarray(total, dtype=np.float64))


def read_plain(payload: bytes) -> Floats:
    """A plain-mode vector from its bytes."""
    return np.frombuffer(payload, dtype="<f8").astype(np.float64)
