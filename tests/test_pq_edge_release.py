"""A requester whose key cannot receive a data key (pq: no ML-KEM wrap yet) is
refused by the edge before it releases on chain, so no session is spent and the
ledger never records a release that delivered nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.consortium import Consortium, running_consortium
from test_sm9_chain_edge import add_doctor

from medchain import crypto
from medchain.edge.requester import ExchangeFailed, fetch_delivery, open_session


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def test_pq_requester_is_refused_before_the_release_and_keeps_its_session(
    world: Consortium,
) -> None:
    add_doctor(world, "dr_pq", crypto.generate_keypair("pq"))
    session_id = open_session(world.node, world.keys["dr_pq"], "report-1", "TREAT")
    with pytest.raises(ExchangeFailed) as e:
        fetch_delivery(world.node, world.keys["dr_pq"], session_id, world.edge_url)
    assert "cannot receive data keys" in e.value.message, e.value.message
    assert world.node.session(session_id)["status"] == "open"
