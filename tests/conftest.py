"""Fixtures, and an audit hook that keeps every test inside the repository.

Shared helpers (Ledger, servers, the consortium, vectors) live in tests/support/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from support.ledger import Ledger

from medchain import crypto

REPO = Path(__file__).resolve().parents[1]


class OutsideRepository(PermissionError):
    """A test tried to read a file beside the repository, which a fresh clone lacks."""


def _refuse_reads_beside_the_repository(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: opening or listing a path next to the repo (e.g. ../shared) fails.

    A clone stands alone; anything a test needs lives under tests/data.
    Paths elsewhere (the venv inside the repo, /tmp, site-packages) are fine.
    """
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if not isinstance(path, str | bytes | os.PathLike):
        return
    full = os.path.abspath(os.fsdecode(path))
    repo, parent = str(REPO), str(REPO.parent)
    if full.startswith(parent + os.sep) and not (full == repo or full.startswith(repo + os.sep)):
        raise OutsideRepository(f"tests may not read outside the repository: {full}")


sys.addaudithook(_refuse_reads_beside_the_repository)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "chain.db", crypto.generate_keypair())
