"""The explorer: the chain's status, blocks, transactions and their results,
validators, and a proof checked here against a header this computer verified.

What each viewer sees is what the node answers to their signed reads: a block's
transactions and results only to those the node shows blocks to (operators and
regulators), a transaction's events only to those who may see every audit event in
it (the node's proof policy). Headers, app hashes and validators are public (the node
serves them unsigned to any light client), so everyone sees those. A proof and a
header are checked against the trust root given at launch (portal/trust.py); without
one the page says it compared with the node's own word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from medchain import encoding
from medchain.core.block import TxResult
from medchain.network import comet_rpc
from medchain.portal.core import FormFields, NavEntry, Portal, Refused
from medchain.portal.trust import Root, Untrusted, Verified, check_proof, root_of
from medchain.sdk.client import Client, ClientError
from medchain.sdk.proofs import BadProof, verify_proof

NAV: tuple[NavEntry, ...] = (
    ("/explorer", "nav.explorer"),
    ("/explorer/blocks", "nav.explorer_blocks"),
    ("/explorer/validators", "nav.explorer_validators"),
)
PAGE_SIZE = 10
RECENT = 5


@dataclass(frozen=True)
class BlockRow:
    """One block as this viewer may see it: the public header parts, and the
    transactions' results only if the node showed the block."""

    height: int
    hash: str
    app_hash: str  # the state after this block
    time_ms: int | None
    results: list[dict[str, Any]] | None  # None: the node did not show them


def is_tx_id(text: str) -> bool:
    """A tx id: 64 hex digits (anything else is taken for a state key)."""
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text.lower())


def signed_header(node: Client, height: int) -> dict[str, Any]:
    """The node's public signed header at `height` (trusted for nothing by itself)."""
    return dict(node.get(f"/v1/chain/signed-header/{height}"))


def register(app: FastAPI, portal: Portal) -> None:
    """The explorer's routes."""
    node = portal.node

    def root() -> Root | None:
        return root_of(app)

    @app.get("/explorer", response_class=HTMLResponse)
    def explorer(request: Request) -> HTMLResponse:
        """The chain's public status and, for those the node shows them to, the last blocks."""
        return overview(request)

    def overview(request: Request, **verdict: Any) -> HTMLResponse:
        status = portal.read(node.status)
        top = int(status["height"])
        rows = block_rows(node, range(top, max(top - RECENT, 0), -1))
        return portal.page(
            request,
            "explorer.html",
            status=status,
            blocks=rows,
            shown=shown_whole(rows),
            root=root(),
            **verdict,
        )

    @app.post("/explorer/verify", response_class=HTMLResponse)
    def verify(request: Request, fields: FormFields) -> HTMLResponse:
        """Fetch a proof for a tx id or a state key and check it here: against a header
        verified from the trust root if there is one, else the node's own app hash."""
        target = fields.get("target", "").strip()[:512]
        doc = portal.read(
            lambda: node.prove_tx(target.lower()) if is_tx_id(target) else node.prove_state(target)
        )
        return overview(request, target=target, **check(portal, root(), doc))

    @app.get("/explorer/blocks", response_class=HTMLResponse)
    def blocks(request: Request, top: int = 0) -> HTMLResponse:
        """Blocks, newest first, a page at a time (`top`: the first height shown)."""
        height = int(portal.read(node.status)["height"])
        first = height if top < 1 or top > height else top
        rows = block_rows(node, range(first, max(first - PAGE_SIZE, 0), -1))
        return portal.page(
            request,
            "explorer_blocks.html",
            blocks=rows,
            shown=shown_whole(rows),
            newer=min(first + PAGE_SIZE, height) if first < height else None,
            older=first - PAGE_SIZE if first > PAGE_SIZE else None,
        )

    @app.get("/explorer/blocks/{height}", response_class=HTMLResponse)
    def block(request: Request, height: int) -> HTMLResponse:
        """One block: its header and app hash, checked against the trust root, and its
        transactions with their results for those the node shows them to."""
        if not 1 <= height <= int(portal.read(node.status)["height"]):
            raise Refused("NOT_FOUND", f"no block at height {height} yet", "", 404)
        shown = block_rows(node, [height])
        if not shown:  # a node that signs no headers shows blocks to operators only
            raise Refused("NOT_SHOWN", "the node shows this block to operators only", "", 403)
        row = shown[0]
        return portal.page(
            request,
            "explorer_block.html",
            block=row,
            header=header_check(portal, root(), row),
            root=root(),
        )

    @app.get("/explorer/tx/{tx_id}", response_class=HTMLResponse)
    def transaction(request: Request, tx_id: str) -> HTMLResponse:
        """A transaction: where it was committed and its code (public), and its log and
        events for those the node's proof policy lets see them."""
        if not is_tx_id(tx_id):
            raise Refused("MALFORMED", "a transaction id is 64 hex digits", "", 400)
        tx_id = tx_id.lower()
        found = portal.read(lambda: node.tx(tx_id))
        result = visible_result(node, tx_id) if found.get("status") == "committed" else None
        return portal.page(request, "explorer_tx.html", tx=found, result=result, tx_id=tx_id)

    @app.get("/explorer/validators", response_class=HTMLResponse)
    def validators(request: Request) -> HTMLResponse:
        """Who signs this chain's headers, with their voting power (public)."""
        status = portal.read(node.status)
        height = int(status["height"])
        try:
            answer = signed_header(node, height)
        except ClientError:  # no block yet, or a solo node that signs no headers
            answer = {"engine": status["engine"]}
        rows = [
            {
                "address": str(v.get("address", "")),
                "pub_key": str((v.get("pub_key") or {}).get("value", "")),
                "power": int(v.get("voting_power", 0)),
            }
            for v in answer.get("validators") or []
        ]
        return portal.page(
            request,
            "explorer_validators.html",
            engine=answer.get("engine"),
            height=height,
            validators=rows,
            total=sum(r["power"] for r in rows),
            header_key=f"{answer['suite']}:{answer['public_key']}" if "suite" in answer else None,
            root=root(),
        )


def block_rows(node: Client, heights: Any) -> list[BlockRow]:
    """Each height's block as the node shows this viewer: whole for operators and
    regulators, else the public signed header; heights it shows neither are skipped."""
    rows = []
    headers: dict[int, dict[str, Any] | None] = {}

    def header_at(height: int) -> dict[str, Any] | None:
        if height not in headers:
            try:
                headers[height] = signed_header(node, height)
            except ClientError:
                headers[height] = None
        return headers[height]

    for height in heights:
        try:
            b = node.block(height)
            time_ms = _time_ms(b.get("header"))
            rows.append(
                BlockRow(height, str(b["hash"]), str(b["app_hash"]), time_ms, list(b["results"]))
            )
            continue
        except ClientError:
            pass
        answer = header_at(height)
        if answer is None:
            continue
        if answer.get("engine") == "solo":
            head = answer["header"]
            rows.append(
                BlockRow(height, head["block_hash"], head["app_hash"], head["time_ms"], None)
            )
            continue
        # CometBFT: header h+1 carries the app hash after block h (none yet at the top).
        signed = answer["signed_header"]
        following = header_at(height + 1)
        app_hash = following["signed_header"]["header"]["app_hash"] if following else ""
        rows.append(
            BlockRow(
                height,
                str(signed["commit"]["block_id"]["hash"]).lower(),
                str(app_hash).lower(),
                comet_rpc.parse_time(signed["header"]["time"]).ms(),
                None,
            )
        )
    return rows


def shown_whole(rows: list[BlockRow]) -> bool:
    """Whether the node showed this viewer these blocks whole (none shown: it did not)."""
    return bool(rows) and all(r.results is not None for r in rows)


def _time_ms(header: Any) -> int | None:
    """A block header's time, if it carries one in milliseconds."""
    if isinstance(header, dict) and isinstance(header.get("time_ms"), int):
        return int(header["time_ms"])
    return None


def visible_result(node: Client, tx_id: str) -> TxResult | None:
    """The tx's result with its log and events, if the node's proof policy lets this
    viewer see every audit event in it (else None: the page shows the code only)."""
    try:
        doc = node.prove_tx(tx_id)
    except ClientError:
        return None
    return TxResult.from_dict(encoding.decode(bytes.fromhex(doc["result"])))


def check(portal: Portal, root: Root | None, doc: dict[str, Any]) -> dict[str, Any]:
    """A proof's verdict for the page: against the header the trust root verifies, or
    (no root) the app hash the node itself reports for that block."""
    if root is not None:
        try:
            verified = verify_header(portal, root, int(doc["height"]))
            what = check_proof(doc, portal.node.chain_id, verified)
        except (Untrusted, BadProof) as e:
            return {"verdict": str(e), "verified": False, "checked": None}
        return {"verdict": what, "verified": True, "checked": verified}
    trusted = node_app_hash(portal.node, int(doc["height"]))
    try:
        verdict, ok = verify_proof(doc, trusted), True
    except BadProof as e:
        verdict, ok = str(e), False
    node_height = None if trusted is None else doc["height"]
    return {"verdict": verdict, "verified": ok, "checked": None, "node_height": node_height}


def verify_header(portal: Portal, root: Root, height: int) -> Verified:
    """The app hash after block `height` as a header verified from `root` gives it."""
    try:
        return root.verify(portal.node.chain_id, height, lambda h: signed_header(portal.node, h))
    except ClientError as e:
        raise Untrusted(f"the node gave no header: {e.message}") from None


def header_check(portal: Portal, root: Root | None, block: BlockRow) -> dict[str, Any] | None:
    """Whether the app hash the page shows for `block` is the one a header verified
    from the root vouches for (None when there is no root). The block itself is the
    node's unsigned answer: only its app hash matching the verified one is checked."""
    if root is None:
        return None
    try:
        verified = verify_header(portal, root, block.height)
    except Untrusted as e:
        return {"ok": False, "why": str(e)}
    vouched = verified.root.app_hash.hex()
    if block.app_hash.lower() != vouched:
        return {
            "ok": False,
            "why": f"the node shows app hash {block.app_hash} for block {block.height}, "
            f"header {verified.header_height} vouches for {vouched}",
        }
    return {"ok": True, "verified": verified}


def node_app_hash(node: Client, height: int) -> bytes | None:
    """The app hash of block `height` as the node reports it: its block if the viewer
    may read blocks, else its public status if still at that height; else none."""
    try:
        return bytes.fromhex(node.block(height)["app_hash"])
    except ClientError:
        pass
    status = node.status()
    if int(status["height"]) == height:
        return bytes.fromhex(status["app_hash"])
    return None
