"""Signed requests: what a caller signs when it asks a custodian's edge or a node.

The same bytes are checked twice: by the edge when the request arrives, and
by the exchange contract when the edge puts the request on chain
(`exchange.access`), so an audited read carries the reader's own signature
and a custodian cannot claim a read nobody asked for.

v2 signs the purpose of use too: a header outside the signature could be
changed in transit, and the audit trail would then record a purpose the reader
never gave. Every header that changes what a request means belongs here.
"""

from __future__ import annotations

from medchain import encoding

PURPOSE = "medchain/edge-request/v2"
MAX_SKEW_MS = 5 * 60_000
# The purpose of use a request signed with no purpose is read under (FHIR PurposeOfUse).
DEFAULT_PURPOSE_OF_USE = "TREAT"


def request_message(
    chain_id: str, method: str, path: str, time_ms: int, body_sm3: bytes, purpose: str = ""
) -> bytes:
    """The canonical bytes a request signature covers (path includes the query;
    `purpose` is the X-MedChain-Purpose header, empty if there is none)."""
    return encoding.encode(
        {
            "purpose": PURPOSE,
            "chain_id": chain_id,
            "method": method.upper(),
            "path": path,
            "time_ms": time_ms,
            "body_sm3": body_sm3,
            "purpose_of_use": purpose,
        }
    )


def purpose_of_use(signed: str) -> str:
    """The purpose a signed request is read under: the one it signed, else TREAT."""
    return signed or DEFAULT_PURPOSE_OF_USE
