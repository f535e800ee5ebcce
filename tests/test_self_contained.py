"""A fresh clone, alone in a directory, passes its own tests: no test reads beside the repo."""

from __future__ import annotations

import re

import pytest
from conftest import OutsideRepository
from support.ledger import DATA, REPO


def test_reading_beside_the_repository_is_refused() -> None:
    with pytest.raises(OutsideRepository):
        (REPO.parent / "shared" / "data" / "README.md").read_bytes()
    with pytest.raises(OutsideRepository):
        list((REPO.parent / "shared").iterdir())


def test_test_data_lives_in_the_repository_with_its_sources() -> None:
    assert DATA.is_relative_to(REPO)
    sources = (DATA / "SOURCES.md").read_text()
    for path in sorted(DATA.rglob("*")):
        if path.is_file() and path.parent != DATA and path.parent.name != "LICENSES":
            assert path.name in sources, f"{path.relative_to(DATA)} has no source line"


def test_no_test_or_bench_names_a_path_outside_the_repository() -> None:
    """Subprocesses escape the audit hook, so the source is checked too."""
    outside = re.compile(r'"shared"|\.\./shared/|/shared/data')
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("tests", "bench")
        for p in (REPO / folder).rglob("*.py")
        if p.name != "test_self_contained.py" and outside.search(p.read_text())
    ]
    assert offenders == []
