"""Signed requests: what a requester signs when it asks a custodian's edge.

The same bytes are checked twice: by the edge when the request arrives, and
by the exchange contract when the edge puts the request on chain
(`exchange.access`), so an audited read carries the reader's own signature
and a custodian cannot claim a read nobody asked for.
"""

from __future__ import annotations

from medchain import encoding

PURPOSE = "medchain/edge-request/v1"
MAX_SKEW_MS = 5 * 60_000


def request_message(chain_id: str, method: str, path: str, time_ms: int, body_sm3: bytes) -> bytes:
    """The canonical bytes a request signature covers (path includes the query)."""
    return encoding.encode(
        {
            "purpose": PURPOSE,
            "chain_id": chain_id,
            "method": method.upper(),
            "path": path,
            "time_ms": time_ms,
            "body_sm3": body_sm3,
        }
    )
