"""A custodian's purge receipt, fetched from its edge and checked against the chain:
the one check `medchain records receipt` and the patient's erasure page both make.

A receipt is only worth what ties it to the ledger. It is verified when it is signed
by a key the chain says belongs to the record's custodian organisation, names this
record, the chain shows the record erased with a `records.erased` event at the
height its tombstone names, and (when the chain's registration event names one) the
receipt's CID is the one that was registered. Anything short of that is a reason,
not a "verified".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from medchain.edge.requester import ExchangeFailed, edge_url_of
from medchain.edge.vault import receipt_from_json, verify_purge_receipt
from medchain.sdk.client import Client, ClientError, response_error

# Why a receipt does not verify: a code (the pages translate it) and its English text.
PROBLEMS = {
    "malformed": "the edge's answer is not a purge receipt",
    "signature": "the signature does not verify with the key the receipt names",
    "signer": "the signing key is not a member of the record's custodian organisation",
    "record": "the receipt names another record",
    "not_erased": "the chain does not show the record erased",
    "no_event": "no records.erased event on chain at the tombstone's height",
    "cid": "the receipt's CID is not the one the chain registered",
}


@dataclass(frozen=True)
class ReceiptCheck:
    """A receipt as the edge served it (JSON) and what checking it found."""

    receipt: dict[str, Any]
    signed_by_org: str | None
    erase_height: int | None
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        """Every check passed."""
        return not self.problems


def fetch_purge_receipt(node: Client, record_id: str, wait: float = 10.0) -> dict[str, Any]:
    """The custodian's receipt for an erased record, as its edge serves it (JSON).

    The edge purges on its next sync; asking it to purge now (the edge checks the
    chain itself) saves waiting for that. ExchangeFailed if none comes in `wait`."""
    record = node.record(record_id)
    url = f"{edge_url_of(node, record['custodian'])}/edge/v1"
    deadline = time.monotonic() + wait
    with httpx.Client(timeout=30, verify=node.ssl_context) as http:
        while True:
            r = http.get(f"{url}/receipts/{record_id}")
            if r.status_code != 200:
                r = http.post(f"{url}/records/{record_id}/purge")
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    if r.status_code != 200:
        e = response_error(r)
        raise ExchangeFailed(e.code, e.message, "erase the record first, or try again later")
    answer: dict[str, Any] = r.json()
    return answer


def check_purge_receipt(node: Client, record_id: str, receipt: dict[str, Any]) -> ReceiptCheck:
    """Check `receipt` (JSON, as the edge serves it) against the chain (see the module
    docstring); ClientError if the node refuses a read."""
    record = node.record(record_id)
    height = record.get("erased_height")
    try:
        signed = receipt_from_json(receipt)
        body = signed["body"]
    except (KeyError, TypeError, ValueError, AttributeError):
        return ReceiptCheck(receipt, None, height, ("malformed",))
    problems: list[str] = []
    signer = body["custodian"]
    if not verify_purge_receipt(signed, signer):
        problems.append("signature")
    org = _org_of_key(node, signer)
    if org is None or org != record["custodian"]:
        problems.append("signer")
    if body.get("record_id") != record_id:
        problems.append("record")
    if record.get("status") != "erased" or height is None:
        problems.append("not_erased")
    events = _record_events(node, record_id)
    if height is not None and not any(
        e["kind"] == "records.erased" and e["height"] == height for e in events
    ):
        problems.append("no_event")
    registered = [e for e in events if e["kind"] == "records.registered"]
    if registered and registered[0]["attributes"].get("cid") != body.get("cid"):
        problems.append("cid")
    return ReceiptCheck(receipt, org, height, tuple(problems))


def _org_of_key(node: Client, public: bytes) -> str | None:
    """The organisation of the member holding `public`, from its public DID document;
    None unless the key and its member are active now (a revoked or suspended key
    vouches for nothing)."""
    try:
        account = node.account_of("sm", public)
        if account.get("status") != "active" or not account.get("did"):
            return None
        doc = node.did_document(account["did"])
    except ClientError:
        return None
    return str(doc["medchain"]["org_id"]) if doc and doc["medchain"].get("org_id") else None


def _record_events(node: Client, record_id: str) -> list[dict[str, Any]]:
    """The record's audit events the caller may see, oldest first, every page."""
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = node.audit(after, 1000, record=record_id)
        events += page["events"]
        after = page["next_after"]
    return events
