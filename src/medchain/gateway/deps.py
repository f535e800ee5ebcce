"""FastAPI dependencies: the running engine behind the routes."""

from __future__ import annotations

from fastapi import Request

from medchain.consensus.solo import SoloEngine


def get_engine(request: Request) -> SoloEngine:
    engine: SoloEngine = request.app.state.engine
    return engine
