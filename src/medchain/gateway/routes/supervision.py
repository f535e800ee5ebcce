"""Regulator-chain views: relayed streams and supervision alerts.

Signed reads for regulators and the node's operators: alerts name patients and
doctors, digests carry every relayed audit event."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from medchain import encoding
from medchain.contracts.supervision import model as supervision
from medchain.gateway.auth import SIGNED, Caller, SignedCaller
from medchain.gateway.deps import Engine, read, scanner
from medchain.gateway.errors import Forbidden
from medchain.gateway.schemas import to_json

router = APIRouter(prefix="/v1/supervision", tags=["supervision (regulator chain)"])
MAX_PARTS_READ = 1000  # digest parts (up to ~40 KB each) in one digests answer


def require_supervisor(caller: Caller) -> None:
    """Forbidden unless the caller is a regulator or one of the node's operators."""
    if not caller.supervises:
        raise Forbidden("supervision views are for regulators and node operators")


@router.get(
    "/alerts", summary="Supervision alerts, filtered by status and rule", openapi_extra=SIGNED
)
def alerts(
    engine: Engine,
    caller: SignedCaller,
    status: Annotated[str | None, Query(max_length=20)] = None,
    rule: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[Any]:
    """Alerts raised by the supervision rules, oldest first, for regulators and
    operators; filter by status (e.g. open) and rule."""
    require_supervisor(caller)
    out = []
    for _, alert in scanner(engine, limit=100_000)(supervision.alert_prefix()):
        if (status is None or alert["status"] == status) and (
            rule is None or alert["rule"] == rule
        ):
            out.append(to_json(alert))
    out.sort(key=lambda a: (a["raised_at_ms"], a["alert_id"]))
    return out[:limit]


@router.get(
    "/streams",
    summary="Every relayed business chain: last height and running hash",
    openapi_extra=SIGNED,
)
def streams(engine: Engine, caller: SignedCaller) -> list[Any]:
    """Each business chain the regulator chain follows, with its last relayed height
    and running hash, for regulators and operators checking the relay keeps up."""
    require_supervisor(caller)
    return [to_json(v) for _, v in scanner(engine)(supervision.stream_prefix())]


@router.get(
    "/digests/{source}",
    summary="Relayed block digests of one source, in height order, from a height",
    openapi_extra=SIGNED,
)
def digests(
    source: str,
    engine: Engine,
    caller: SignedCaller,
    from_height: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[Any]:
    """Every part of the relayed digests of `limit` business heights from `from_height`
    on, stopping at the first height not relayed, for regulators and operators reading
    the relayed stream and its audit events (the portal's stream and charts). Once
    MAX_PARTS_READ parts are in, it stops at the next whole block: ask again from the
    height after the last one returned."""
    require_supervisor(caller)
    db = engine.app.db
    out: list[Any] = []
    for height in range(from_height, from_height + limit):
        if len(out) >= MAX_PARTS_READ:
            break
        raw = db.get(supervision.digest_key(source, height))
        if raw is None:
            break
        first = encoding.decode_trusted(raw)
        out.append(to_json(first))
        for part in range(1, int(first["parts"])):
            more = db.get(supervision.digest_key(source, height, part))
            if more is None:
                return out  # the block's later parts are still arriving
            out.append(to_json(encoding.decode_trusted(more)))
    return out


@router.get(
    "/digests/{source}/{height}",
    summary="One relayed block digest (or part of one)",
    openapi_extra=SIGNED,
)
def digest(
    source: str,
    height: int,
    engine: Engine,
    caller: SignedCaller,
    part: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """One relayed block digest (a `part` of it when large), for regulators and operators
    auditing what a business chain reported."""
    require_supervisor(caller)
    key = supervision.digest_key(source, height, part)
    return dict(to_json(read(engine, key, f"digest of {source} at height {height} part {part}")))
