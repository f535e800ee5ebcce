"""The failover client going back to its first node: a probe of a first node that
takes connections and never answers costs a couple of seconds, not the request
timeout; and a client whose own txs are still pending where it is does not go back
(the first node cannot see them, so the key's next nonce there would be stale).

Real solo node and gateway; the silent first node is a socket that never answers
(fault injection: a dropped-packet node is not something a real part does on cue).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.consortium import Consortium, running_consortium
from support.servers import free_port

from medchain.sdk.client import Client


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def test_a_silent_first_node_costs_a_probe_not_the_request_timeout(world: Consortium) -> None:
    port = free_port()  # nothing listens yet: the first call fails over at once
    with Client([f"http://127.0.0.1:{port}", world.node.url], timeout=60.0) as client:
        client.status()
        assert client.url == world.node.url
        silent = socket.socket()
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", port))
        silent.listen(16)  # connections complete in the kernel; nothing ever answers
        try:
            client._first_again_at = 0.0  # its wait on the fallback is over
            started = time.monotonic()
            assert client.status()["height"] > 0
            assert time.monotonic() - started < 30.0  # the probe gave up; 60 s before
            assert client.url == world.node.url
        finally:
            silent.close()


def test_a_client_with_txs_pending_on_its_fallback_stays_there(world: Consortium) -> None:
    url = world.node.url  # the same node twice: "level" at once, only the rule decides
    key = world.keys["admin_a"]
    with Client([url, url], key=key) as client:
        call = ("identity", "set_endpoint", {"org_id": "hosp-a", "edge_url": world.edge_url})
        client._current, client._first_again_at = 1, time.monotonic() + 600
        answers = client.submit_batch(client.sign_batch(key, [call]))  # on its fallback
        assert answers[0]["status"] == "pending" and client._current == 1, answers
        client._first_again_at = 0.0  # its wait on the fallback is over
        client.status()
        assert client._current == 1  # went back before: next_nonce there missed this tx
        client.outcomes(answers)
        client._first_again_at = 0.0
        client.status()
        assert client._current == 0  # resolved: back to the first node
