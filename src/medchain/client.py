"""The Python SDK under one name: `from medchain.client import Client` (issue 16.7).

A thin face over medchain.sdk, re-exporting what integrators use (docs/sdk.md):
the node client and its retry policy, the errors it raises, typed action payloads,
state and tx proofs checked offline, SMART on FHIR tokens for an edge, and the
encrypted keystore. Nothing is defined here; the code lives in medchain.sdk.
"""

from __future__ import annotations

from medchain.sdk.actions import PayloadError, checked_payload, payload_type
from medchain.sdk.client import (
    DEFAULT_RETRY,
    NO_RETRY,
    Client,
    ClientError,
    RetryPolicy,
)
from medchain.sdk.keystore import Keystore, KeystoreError
from medchain.sdk.proofs import BadProof, verify_proof
from medchain.sdk.smart import SmartAuth, TokenRefused

__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "BadProof",
    "Client",
    "ClientError",
    "Keystore",
    "KeystoreError",
    "PayloadError",
    "RetryPolicy",
    "SmartAuth",
    "TokenRefused",
    "checked_payload",
    "payload_type",
    "verify_proof",
]
