"""The edge's wait for the block a request names (X-MedChain-Height): what any signer
can make it cost, and a header value that is not a height.

The wait runs before the chain has said who asks, so many waiting requests from
keys nobody registered must cost the node one shared poll, tie up a bounded number
of the edge's threads (the rest answered 503 EDGE_BUSY with Retry-After at once)
and leave the edge serving everyone else. Real node, real edge; the node's status
call is only counted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.consortium import Consortium, running_consortium
from support.ledger import CHAIN_ID

from medchain import crypto
from medchain.edge.custodian import MAX_HEIGHT_WAITERS
from medchain.edge.height_watch import HeightWatcher, WaitersFull
from medchain.edge.requester import HEIGHT_HEADER
from medchain.sdk.signing import sign_request, with_query

STRANGERS = 30


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def test_many_waiting_strangers_cost_one_shared_poll_and_the_edge_still_serves(
    world: Consortium,
) -> None:
    calls, real_status = [0], world.edge.node.status

    def counted_status() -> dict[str, Any]:
        calls[0] += 1
        return real_status()

    world.edge.node.status = counted_status  # type: ignore[method-assign]
    ahead = str(real_status()["height"] + 2)  # the solo node makes no empty blocks
    path = "/fhir/Observation/report-1"
    answers: list[httpx.Response] = []

    def stranger_reads() -> None:
        headers = sign_request(crypto.generate_keypair(), CHAIN_ID, "GET", path, purpose="TREAT")
        answers.append(
            httpx.get(world.edge_url + path, headers=headers | {HEIGHT_HEADER: ahead}, timeout=60)
        )

    started = time.monotonic()
    threads = [threading.Thread(target=stranger_reads) for _ in range(STRANGERS)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # Meanwhile a staff upload (no height named) is served.
    served = world.upload("admin_a", b'{"resourceType": "Patient"}', world.did("patient"))
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    world.edge.node.status = real_status  # type: ignore[method-assign]
    assert served.status_code in (201, 422), served.text  # answered, not stuck
    codes = sorted(r.status_code for r in answers)
    assert len(codes) == STRANGERS and set(codes) <= {403, 404, 503}, codes
    busy = [r for r in answers if r.status_code == 503]
    assert len(busy) >= STRANGERS - 2 * MAX_HEIGHT_WAITERS, codes
    assert all(r.headers["retry-after"] == "1" for r in busy)
    assert all("busy" in r.text for r in busy)
    # One poll every 50 ms while anyone waits (plus the edge's own sync every 100 ms
    # and the upload's), however many wait; each stranger polling on its own made
    # hundreds of calls a second.
    assert calls[0] <= elapsed / 0.05 + elapsed / 0.1 + 20, (calls[0], elapsed)


def test_a_height_header_that_is_not_ascii_digits_is_a_400_not_a_500(world: Consortium) -> None:
    path = "/fhir/Observation/report-1"
    doctor = world.keys["doctor_a"]
    for raw in (b"\xb2", b"1\xb2", b"-1", b"soon"):  # latin-1 "²": str.isdigit() says yes
        headers = sign_request(doctor, CHAIN_ID, "GET", path, purpose="TREAT")
        fhir = httpx.get(
            world.edge_url + path,
            headers=[*headers.items(), (HEIGHT_HEADER, raw)],  # type: ignore[list-item]
        )
        assert fhir.status_code == 400 and HEIGHT_HEADER in fhir.text, (raw, fhir.text)
        link = with_query("/edge/v1/patients", {})
        body = b'{"system": "urn:his", "identifier": "1", "did": "x"}'
        signed = sign_request(world.keys["admin_a"], CHAIN_ID, "POST", link, body)
        rest = httpx.post(
            world.edge_url + link,
            content=body,
            headers=[*signed.items(), (HEIGHT_HEADER, raw)],  # type: ignore[list-item]
        )
        assert rest.status_code == 400, (raw, rest.text)
        assert rest.json()["error"]["code"] == "MALFORMED" and HEIGHT_HEADER in rest.text


def test_the_watcher_polls_once_for_all_waiters_and_stops_when_none_wait() -> None:
    calls, height = [0], [5]

    def node_height() -> int:
        calls[0] += 1
        return height[0]

    watcher = HeightWatcher(node_height, max_waiters=4, poll_seconds=0.01)
    assert watcher.wait_for(5, 1.0, 3)  # already there
    assert not watcher.wait_for(50, 5.0, 3)  # too far ahead: given up after one fresh poll
    results: list[bool] = []
    waiters = [
        threading.Thread(target=lambda: results.append(watcher.wait_for(7, 30.0, 3)))
        for _ in range(4)
    ]
    for t in waiters:
        t.start()
    while watcher.waiters < 4:
        time.sleep(0.01)
    with pytest.raises(WaitersFull):
        watcher.wait_for(7, 1.0, 3)
    height[0] = 7
    for t in waiters:
        t.join()
    assert results == [True] * 4
    time.sleep(0.1)
    settled = calls[0]
    time.sleep(0.1)
    assert calls[0] == settled  # nobody waits: nobody polls
