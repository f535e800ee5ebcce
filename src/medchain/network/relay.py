"""The relay: follows a business chain and hands the regulator chain a signed
digest of every block, in order, chained by a running hash.

The regulator chain's stored stream (last height, running hash) is the only
cursor, so a relay that crashes or loses the network simply resumes: it reads
the stream, rebuilds the next digests from the business chain and submits
them. The contract accepts only the next height with the right running hash,
so nothing is skipped, repeated or altered.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from medchain import crypto, encoding
from medchain.contracts.supervision import model as supervision
from medchain.exceptions import MedChainError
from medchain.sdk.client import Client, ClientError

log = logging.getLogger("medchain.network.relay")
DEFAULT_BATCH = 50


class RelayError(MedChainError):
    """The regulator chain refused a digest; the message says which and why."""


PART_BYTES = 40_000  # audit events per digest part, well under the 64 KiB tx limit


def block_digests(source: str, block: dict[str, Any]) -> list[dict[str, Any]]:
    """The digest bodies of one business block (as the gateway returns it, hex bytes):
    one, or several parts when its audit events do not fit one transaction. The split
    depends only on the block, so a resumed relay and a verifier make the same parts."""
    events = [
        {"tx": i, "type": e["type"], "attributes": dict(e["attributes"])}
        for i, result in enumerate(block["results"])
        for e in result["events"]
        if "actor" in e["attributes"]
    ]
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for event in events:
        cost = len(encoding.encode(event))
        if chunks[-1] and (size + cost > PART_BYTES or len(chunks[-1]) >= supervision.MAX_EVENTS):
            chunks.append([])
            size = 0
        chunks[-1].append(event)
        size += cost
    header = block["header"]
    return [
        supervision.digest_body(
            source,
            block["height"],
            bytes.fromhex(block["hash"]),
            bytes.fromhex(header["prev_hash"]),
            bytes.fromhex(block["app_hash"]),
            len(block["txs"]),
            header["time_ms"],
            chunk,
            part,
            len(chunks),
        )
        for part, chunk in enumerate(chunks)
    ]


@dataclass
class Stream:
    """Where the regulator chain says this relay stands: the last part relayed and
    the running hash the next digest must extend."""

    height: int  # of the last relayed part
    part: int
    parts: int
    running_hash: bytes


class Relay:
    """One business chain (`source`) to one regulator chain."""

    def __init__(
        self,
        business: Client,
        regulator: Client,
        key: crypto.KeyPair,
        source: str,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.business, self.regulator, self.key = business, regulator, key
        self.source, self.batch = source, batch

    def stream(self) -> Stream:
        """This relay's position on the regulator chain; RelayError until a regulator
        authorises the relay for this source."""
        value = self.regulator.value(supervision.stream_key(self.source))
        if value is None:
            raise RelayError(
                f"the regulator chain does not follow {self.source!r} yet: a regulator runs "
                "`supervision.authorize_relayer` for this relay's key first"
            )
        return Stream(
            value["height"], value["part"], value["parts"], bytes.fromhex(value["running_hash"])
        )

    def step(self) -> int:
        """Relay what the business chain has committed beyond the stream; how many."""
        stream = self.stream()
        head = self.business.status()["height"]
        bodies = []
        if stream.part + 1 < stream.parts:  # finish a block cut short by a crash
            bodies += block_digests(self.source, self.business.block(stream.height))[
                stream.part + 1 :
            ]
        for h in range(stream.height + 1, min(head, stream.height + self.batch) + 1):
            bodies += block_digests(self.source, self.business.block(h))
        if not bodies:
            return 0
        calls, running = [], stream.running_hash
        for body in bodies:
            running = supervision.running_hash(running, body)
            calls.append(("supervision", "digest", body | {"running_hash": running}))
        answers = self.regulator.submit_batch(self.regulator.sign_batch(self.key, calls))
        refused = [o for o in self.regulator.outcomes(answers) if o["code"] != 0]
        if refused:
            first = refused[0]
            raise RelayError(f"regulator refused a digest: {first['code_name']}: {first['log']}")
        return len(calls)

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Relay until `stop` is set; a network cut or restart of either side is waited out."""
        while not stop.is_set():
            try:
                if self.step():
                    continue
            except ClientError as e:
                log.warning("relay %s: %s; retrying", self.source, e)
            stop.wait(interval)


def verify_stream(business: Client, regulator: Client, source: str) -> list[str]:
    """Recompute every relayed digest from the business chain and compare: the
    problems found (empty: the regulator holds exactly what the business chain did)."""
    stream = regulator.value(supervision.stream_key(source))
    if stream is None:
        return [f"no stream {source!r} on the regulator chain"]
    problems, running = [], supervision.GENESIS_RUNNING_HASH
    for h in range(stream["first_height"], stream["height"] + 1):
        for body in block_digests(source, business.block(h)):
            if (h, body["part"]) > (stream["height"], stream["part"]):
                break  # not relayed yet
            running = supervision.running_hash(running, body)
            stored = regulator.value(supervision.digest_key(source, h, body["part"]))
            if stored is None:
                problems.append(f"height {h} part {body['part']}: no digest on the regulator chain")
                return problems
            if bytes.fromhex(stored["running_hash"]) != running:
                problems.append(f"height {h}: relayed digest differs from the business block")
                return problems  # every later running hash differs too
    return problems
