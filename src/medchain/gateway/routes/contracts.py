"""The contracts this network runs and each action's payload schema (public), so an
integrator can build a transaction without reading handler source."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter

from medchain.contracts.schemas import contract_catalogue

router = APIRouter(prefix="/v1/contracts", tags=["contracts"])


@cache
def catalogue() -> list[dict[str, Any]]:
    """The catalogue, built once: it depends only on this software version."""
    return contract_catalogue()


@router.get("", summary="Contracts, versions, actions and each action's payload JSON Schema")
def contracts() -> list[dict[str, Any]]:
    """Every contract the business and regulator chains run, with the chains that run
    it and each action's payload schema (null where an action is not typed yet)."""
    return catalogue()
