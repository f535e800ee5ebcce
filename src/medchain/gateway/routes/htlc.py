"""Cross-chain atomic exchange views: signed block headers for other chains' light
clients, this chain's light clients of its counterparties, and hash-time locks.
Changes go through signed transactions (htlc.*); these routes only read.

Who may see what (docs/crosschain.md):

- A signed header, a light client and a lock's public view (hashlock, status,
  deadline, counterpart, and the preimage once claimed) are public: a relayer,
  which need not be a member, works from them alone.
- Who locked what for whom (locker, recipient, asset: for a record-package offer,
  the patient and the records) is for the two parties, regulators and operators;
  anyone else gets the same 403 whether or not the lock exists.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Path, Query

from medchain import encoding
from medchain.consensus.engine import Engine as ChainEngine
from medchain.contracts.htlc import model as htlc
from medchain.exceptions import InternalError
from medchain.gateway.auth import SIGNED, SignedCaller
from medchain.gateway.deps import Engine, getter
from medchain.gateway.errors import Forbidden, NotFound
from medchain.gateway.limits import MAX_SQL_INT
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1/htlc", tags=["cross-chain exchange"])
public_router = APIRouter(prefix="/v1", tags=["cross-chain exchange"])

Height = Annotated[int, Path(ge=0, le=MAX_SQL_INT, description="block height")]
TERMS_REFUSED = "a lock's terms are for its locker, its recipient and regulators"


@public_router.get(
    "/chain/signed-header/{height}",
    summary="Block `height`'s header as this node vouches for it to other chains' light "
    "clients (solo: signed by the node key; cometbft: the header, its commit and validators)",
)
def signed_header(height: Height, engine: Engine) -> dict[str, Any]:
    """What a relayer carries to htlc.update_client on another chain. A solo node signs
    {chain_id, height, block_hash, app_hash, time_ms} (the state after the block); a
    CometBFT node answers CometBFT's own signed header and commit (header H holds the
    app hash after block H-1) and the validator set that signed it."""
    rpc_url = getattr(engine, "rpc_url", None)
    if rpc_url is not None:
        return _comet_header(str(rpc_url), height)
    signing = getattr(engine, "signed_header", None)
    found = signing(height) if signing is not None else None
    if found is None:
        raise NotFound(
            f"no signed header at height {height}; the chain is at {engine.app.db.height}"
        )
    message, signature = found
    suite, public_key = engine.header_key  # type: ignore[attr-defined]
    return {
        "engine": "solo",
        "header": to_json(encoding.decode(message)),
        "signature": signature.hex(),
        "suite": suite,
        "public_key": public_key.hex(),
    }


def _comet_header(rpc_url: str, height: int) -> dict[str, Any]:
    try:
        with httpx.Client(timeout=10) as http:
            commit = http.get(f"{rpc_url}/commit", params={"height": height}).json()
            validators = http.get(
                f"{rpc_url}/validators", params={"height": height, "per_page": 100}
            ).json()
    except (httpx.HTTPError, ValueError) as e:
        raise InternalError(f"CometBFT RPC did not answer: {e}") from None
    if "error" in commit or "error" in validators:
        raise NotFound(f"no committed header at height {height} yet")
    return {
        "engine": "cometbft",
        "signed_header": commit["result"]["signed_header"],
        "validators": validators["result"]["validators"],
    }


@public_router.get(
    "/htlc/clients/{chain_id}",
    summary="This chain's light client of a counterparty chain: its root and verified heights",
)
def client(chain_id: Annotated[str, Path(max_length=64)], engine: Engine) -> dict[str, Any]:
    """Which heights of `chain_id` this chain can check a lock proof against."""
    found = getter(engine)(htlc.client_key(chain_id))
    if found is None:
        raise NotFound(f"no counterparty {chain_id!r}; a governor registers it first")
    return dict(to_json(found))


@public_router.get("/htlc/locks", summary="Locks made after a height (public views, in order)")
def locks(
    engine: Engine,
    after_height: Annotated[int, Query(ge=-1, le=MAX_SQL_INT)] = -1,
    limit: Annotated[int, Query(ge=1, le=htlc.MAX_LOCKS_LISTED)] = 100,
) -> list[dict[str, Any]]:
    """For relayers: what was locked after `after_height`, with status and preimage."""
    return [htlc_view(engine, lock_id) for lock_id in _lock_ids(engine, after_height, limit)]


@public_router.get("/htlc/locks/{lock_id}", summary="A lock's public view")
def lock(lock_id: Annotated[str, Path(max_length=64)], engine: Engine) -> dict[str, Any]:
    """Hashlock, status, deadline, counterpart and (once claimed) the preimage."""
    return htlc_view(engine, lock_id)


@router.get(
    "/locks/{lock_id}/terms",
    summary="A lock in full (locker, recipient, asset): for its parties and regulators",
    openapi_extra=SIGNED,
)
def terms(
    lock_id: Annotated[str, Path(max_length=64)], engine: Engine, caller: SignedCaller
) -> dict[str, Any]:
    """Who offers what to whom; the same 403 for anyone else whether or not it exists."""
    found = getter(engine)(htlc.lock_key(lock_id))
    if found is not None and (
        caller.supervises or caller.did in (found["locker"], found["recipient"])
    ):
        return dict(to_json(found))
    if found is None and caller.supervises:
        raise NotFound(f"no lock {lock_id!r}")
    raise Forbidden(TERMS_REFUSED)


def htlc_view(engine: ChainEngine, lock_id: str) -> dict[str, Any]:
    """A lock's public view, or 404."""
    found = getter(engine)(htlc.lock_key(lock_id))
    if found is None:
        raise NotFound(f"no lock {lock_id!r}")
    return dict(to_json(htlc.public_view(found)))


def _lock_ids(engine: ChainEngine, after_height: int, limit: int) -> list[str]:
    """Lock ids made after `after_height`, in height order, at most `limit`: each scan
    is bounded, however many locks the chain holds."""
    ids: list[str] = []
    for prefix in _height_prefixes(after_height + 1):
        for key, _ in engine.app.db.scan(htlc.by_height_prefix() + prefix, limit - len(ids)):
            ids.append(key.rsplit("/", 1)[1])
        if len(ids) >= limit:
            break
    return ids


def _height_prefixes(first: int) -> list[str]:
    """Prefixes of the 20-digit heights >= `first`, in ascending order: `first` itself,
    then for each digit from the last, the larger digits at that place."""
    digits = f"{first:020d}"
    prefixes = [digits + "/"]
    for place in range(len(digits) - 1, -1, -1):
        head = digits[:place]
        prefixes += [head + str(d) for d in range(int(digits[place]) + 1, 10)]
    return prefixes
