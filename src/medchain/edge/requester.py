"""The requester's side of an exchange: request, fetch, decrypt, verify, acknowledge.

1. exchange.request on chain: the contract checks consent and role now and
   opens a session (or refuses, with the reason, and the refusal is audited);
2. a signed fetch from the custodian's edge (its URL is on chain, in the
   custodian organisation's record): ciphertext plus the data key wrapped
   for this requester's key;
3. decrypt locally, check the salted SM3 against the hash registered on
   chain (a custodian cannot hand over something else unnoticed);
4. exchange.ack with that hash, which closes the session.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass, field

import httpx

from medchain import crypto
from medchain.edge.vault import content_hash, open_record
from medchain.exceptions import MedChainError
from medchain.sdk.client import Client, ClientError, response_error
from medchain.sdk.signing import send_signed

# Names the block a request to an edge depends on; the edge waits for its node to
# commit it (edge/http/deps.py, CustodianEdge.catch_up).
HEIGHT_HEADER = "X-MedChain-Height"


class ExchangeFailed(MedChainError):
    """The exchange stopped; `code` says where (refused by chain, by edge, bad data)."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.hint = code, message, hint


@dataclass
class Fetched:
    """A record received through an exchange, with the timing of each step (s)."""

    record_id: str
    resource_type: str
    session_id: str
    plaintext: bytes
    timings: dict[str, float] = field(default_factory=dict)


def open_session(node: Client, key: crypto.KeyPair, record_id: str, purpose: str) -> str:
    """Submit exchange.request; the session id, or ExchangeFailed with the chain's reason."""
    return open_session_at(node, key, record_id, purpose)[0]


def open_session_at(
    node: Client, key: crypto.KeyPair, record_id: str, purpose: str
) -> tuple[str, int]:
    """The session id and the height of the block that opened it (on a network the
    custodian's edge may follow another node, one that has not committed it yet)."""
    result = node.send(key, "exchange", "request", {"record_id": record_id, "purpose": purpose})
    if result.get("code") != 0:
        raise ExchangeFailed(
            result.get("code_name", "PENDING"),
            result.get("log") or "the request was not committed in time",
            "ask the patient for consent (consent.grant), or use break-glass in an emergency",
        )
    opened = next(e for e in result["events"] if e["type"] == "exchange.opened")
    return str(opened["attributes"]["session_id"]), int(result["height"])


def edge_url_of(node: Client, custodian: str) -> str:
    """Where a custodian's edge listens, as its org admin published it on chain."""
    url = node.org(custodian).get("edge_url")
    if not url:
        raise ExchangeFailed(
            "NO_EDGE",
            f"custodian {custodian} has not published an edge endpoint",
            "its org admin publishes one with identity.set_endpoint (medchain edge serve does)",
        )
    return str(url)


def fetch_delivery(
    node: Client,
    key: crypto.KeyPair,
    session_id: str,
    edge_url: str,
    opened_at: int | None = None,
) -> dict[str, str]:
    """POST the signed fetch for a session to the custodian's edge; `opened_at` (the
    session's block) lets an edge whose node is a block behind wait for it."""
    path = f"/edge/v1/sessions/{session_id}/fetch"
    params = None if opened_at is None else {"height": str(opened_at)}
    try:
        r = send_signed(key, node.chain_id, "POST", edge_url, path, params, verify=node.ssl_context)
    except httpx.HTTPError as e:
        raise ExchangeFailed("UNREACHABLE", f"cannot reach the custodian's edge: {e}") from None
    if r.status_code != 200:
        error = response_error(r)
        raise ExchangeFailed(error.code, error.message, error.hint)
    return dict(r.json())


def fetch_record(
    node: Client,
    key: crypto.KeyPair,
    record_id: str,
    purpose: str = "TREAT",
    edge_url: str | None = None,
) -> Fetched:
    """Run one whole exchange for `record_id` and return the verified plaintext."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    # Ask the chain first: it decides, says why it refuses and audits the refusal.
    # Only once a session is open may this requester read the record's registration.
    session_id, opened_at = open_session_at(node, key, record_id, purpose)
    timings["request"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        record = node.record(record_id, purpose=purpose)
    except ClientError as e:
        raise ExchangeFailed(e.code, e.message, e.hint) from None
    url = edge_url or edge_url_of(node, record["custodian"])
    delivery = fetch_delivery(node, key, session_id, url, opened_at)
    timings["fetch"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        plaintext = open_record(
            record_id,
            bytes.fromhex(delivery["ciphertext"]),
            bytes.fromhex(delivery["wrapped_key"]),
            key,
        )
    except crypto.DecryptionFailed:
        raise ExchangeFailed(
            "DECRYPTION_FAILED", "the delivered key or ciphertext does not open"
        ) from None
    digest = content_hash(bytes.fromhex(delivery["salt"]), plaintext)
    if digest.hex() != record["content_hash"]:
        raise ExchangeFailed(
            "HASH_MISMATCH", "what the custodian delivered is not the registered record"
        )
    timings["decrypt"] = time.perf_counter() - t
    t = time.perf_counter()
    ack = node.send(key, "exchange", "ack", {"session_id": session_id, "content_hash": digest})
    if ack.get("code") != 0:
        raise ExchangeFailed(ack.get("code_name", "PENDING"), ack.get("log", ""))
    timings["ack"] = time.perf_counter() - t
    return Fetched(record_id, record["resource_type"], session_id, plaintext, timings)


def upload_record(
    key: crypto.KeyPair,
    chain_id: str,
    edge_url: str,
    content: bytes,
    patient: str,
    record_id: str | None = None,
    resource_type: str | None = None,
    supersedes: str | None = None,
    verify: ssl.SSLContext | None = None,
    height: int | None = None,
) -> httpx.Response:
    """Staff hand a record to their organisation's edge (which stores and registers it);
    `verify` checks the edge's TLS certificate (default: the process's trust); `height`
    (e.g. the block that registered the patient, sent through another node) lets an
    edge whose node is a block or two behind wait for it."""
    params = {
        "patient": patient,
        "record_id": record_id,
        "resource_type": resource_type,
        "supersedes": supersedes,
    }
    return send_signed(
        key,
        chain_id,
        "POST",
        edge_url,
        "/edge/v1/records",
        params,
        content,
        120,
        headers=height_header(height),
        verify=verify,
    )


def height_header(height: int | None) -> dict[str, str]:
    """The header naming the block a request to an edge depends on (none if None)."""
    return {} if height is None else {HEIGHT_HEADER: str(height)}


def import_file(
    key: crypto.KeyPair,
    chain_id: str,
    edge_url: str,
    kind: str,
    content: bytes,
    patient: str | None = None,
    mapping: str | None = None,
    verify: ssl.SSLContext | None = None,
) -> httpx.Response:
    """Staff send a FHIR / HL7 v2 / CSV file to their organisation's edge to import."""
    params = {"patient": patient, "mapping": mapping}
    return send_signed(
        key,
        chain_id,
        "POST",
        edge_url,
        f"/edge/v1/import/{kind}",
        params,
        content,
        600,
        verify=verify,
    )


def link_patient(
    key: crypto.KeyPair,
    chain_id: str,
    edge_url: str,
    system: str,
    identifier: str,
    did: str,
    verify: ssl.SSLContext | None = None,
) -> httpx.Response:
    """Staff tell their edge which ledger DID a HIS patient identifier belongs to."""
    body = json.dumps({"system": system, "identifier": identifier, "did": did}).encode()
    return send_signed(
        key, chain_id, "POST", edge_url, "/edge/v1/patients", None, body, verify=verify
    )
