"""The relay: follows a business chain and hands the regulator chain a signed
digest of every block, in order, chained by a running hash.

The regulator chain's stored stream (last height, running hash) is the only
cursor, so a relay that crashes or loses the network simply resumes: it reads
the stream, rebuilds the next digests from the business chain and submits
them. The contract accepts only the next height with the right running hash,
so nothing is skipped, repeated or altered.

Two kinds of business chain, two kinds of trust:

- A solo business chain has no signatures but its node's: the regulator chain
  takes the digests of relayers a regulator authorised, and `verify_stream`
  cross-checks them against the business chain afterwards.
- A CometBFT business chain (registered with its chain id and genesis
  validators) proves each block final: the relay reads from the business
  node's CometBFT RPC the signed header height+1 (it carries the app hash
  after block height), its commit and header height (the block's time), and
  from the gateway the block's state root and full tx results; the supervision
  contract checks the commit against the validator set it follows, recomputes
  the app hash from the state root and the results' chunk roots, checks each
  part's results against them, and derives the audit events itself. The
  digest's block hashes are CometBFT's block ids (of block height and the one
  before, both named by the signed headers) and its time is header height's,
  so every stored field is bound to what the validators signed: the relayer is
  then trusted for nothing but liveness.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
from prometheus_client import CollectorRegistry, Counter, Gauge

from medchain import crypto, encoding
from medchain.contracts.supervision import model as supervision
from medchain.core.block import TxResult, result_leaf
from medchain.crypto import cometbft
from medchain.exceptions import MedChainError
from medchain.metrics.http import Check
from medchain.network import comet_rpc
from medchain.sdk.client import Client, ClientError

log = logging.getLogger("medchain.network.relay")
DEFAULT_BATCH = 50


class RelayError(MedChainError):
    """The regulator chain refused a digest; the message says which and why."""


PART_BYTES = 40_000  # audit events per digest part, well under the 64 KiB tx limit
# Part 0 of a CometBFT source also carries the finality (signed headers, commit, next
# validator set, state root, a root per chunk of results): its results get what is
# left of this much once the finality's size is taken off (the rest of the 64 KiB tx
# is its envelope: the digest's other fields, signature, public key).
PART0_BYTES = 60_000
# A commit's size is counted as if every validator's slot held the largest signature
# entry, so the split does not depend on which of a block's commits (the one a node
# first saw, or the canonical one in the next block) the RPC serves.
COMMIT_SIG_BYTES = len(
    encoding.encode(
        msgspec.to_builtins(
            cometbft.CommitSig(
                cometbft.FLAG_COMMIT,
                bytes(cometbft.ADDRESS_BYTES),
                cometbft.Timestamp(-(2**63), 999_999_999),
                bytes(64),
            ),
            builtin_types=(bytes,),
        )
    )
)


class RpcUnavailable(ClientError):
    """The business node's CometBFT RPC did not answer (the relay retries)."""


def _actor_events(index: int, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The audit events of one tx result: those that name an actor."""
    return [
        {"tx": index, "type": e["type"], "attributes": dict(e["attributes"])}
        for e in result["events"]
        if "actor" in e["attributes"]
    ]


def _committed_result(result: dict[str, Any]) -> dict[str, Any]:
    """A gateway tx result as its result leaf covers it (bytes, no log)."""
    return {
        "tx_id": bytes.fromhex(result["tx_id"]),
        "code": int(result["code"]),
        "events": [
            {"type": e["type"], "attributes": dict(e["attributes"])} for e in result["events"]
        ],
    }


_Item = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # results carried, audit events


def finality_bytes(finality: dict[str, Any]) -> int:
    """The room a part 0's finality takes (see COMMIT_SIG_BYTES): a function of the
    block's headers, validator sets and chunk roots only."""
    commit = finality["commit"]
    bare = finality | {"commit": commit | {"signatures": []}}
    return len(encoding.encode(bare)) + COMMIT_SIG_BYTES * len(commit["signatures"])


def block_parts(
    source: str, block: dict[str, Any], finality: dict[str, Any] | None = None
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The digests of one business block (as the gateway returns it, hex bytes): for
    each part, its body (what the running hash covers) and what else it carries. One
    part, or several when the block does not fit one transaction; the split depends
    only on the block (and its finality), so a resumed relay and a verifier make the
    same parts.

    `finality` (a CometBFT source, see comet_finality): parts split by whole chunks
    of txs, each carrying the full results of its txs (`first_tx`, `results`), part
    0 the finality with the chunk roots of all of them (supervision.chunk_roots) and
    the state root; the block hashes are CometBFT's block ids and the time header
    height's, as the regulator chain checks them."""
    items: list[_Item]
    block_hash = bytes.fromhex(block["hash"])
    prev_block_hash = bytes.fromhex(block["header"]["prev_hash"])
    time_ms = block["header"]["time_ms"]
    if finality is not None:
        if block.get("state_root") is None:
            raise RelayError(
                f"the business node gives no state root for block {block['height']}: "
                "follow a node whose gateway serves it (MedChain with issue 14)"
            )
        results = [_committed_result(r) for r in block["results"]]
        leaves = [result_leaf(TxResult.from_dict(r | {"log": ""})) for r in results]
        finality = finality | {
            "state_root": bytes.fromhex(block["state_root"]),
            "chunk_roots": supervision.chunk_roots(leaves),
        }
        block_hash, prev_block_hash, time_ms = comet_block_fields(finality)
        budget = min(PART_BYTES, PART0_BYTES - finality_bytes(finality))
        if budget < 0:
            raise RelayError(
                f"block {block['height']}'s finality (signed headers, commit, validator set "
                f"and {len(leaves)} txs' result chunk roots) does not fit one digest"
            )
        size = supervision.RESULTS_CHUNK
        items = [
            (
                results[i : i + size],
                [
                    e
                    for j in range(i, min(i + size, len(results)))
                    for e in _actor_events(j, results[j])
                ],
            )
            for i in range(0, len(results), size)
        ]
    else:
        budget = PART_BYTES
        items = [
            ([], [event])
            for i, result in enumerate(block["results"])
            for event in _actor_events(i, result)
        ]
    with_results = finality is not None
    chunks: list[list[_Item]] = [[]]
    size = events_in_chunk = 0
    for carried, events in items:
        cost = len(encoding.encode([carried, events] if with_results else events[0]))
        may_leave_empty = with_results and len(chunks) == 1  # part 0 may be all finality
        if (chunks[-1] or may_leave_empty) and (
            size + cost > budget or events_in_chunk + len(events) > supervision.MAX_EVENTS
        ):
            chunks.append([])
            size = events_in_chunk = 0
            budget = PART_BYTES
        chunks[-1].append((carried, events))
        size += cost
        events_in_chunk += len(events)
    parts, first_tx = [], 0
    for part, chunk in enumerate(chunks):
        body = supervision.digest_body(
            source,
            block["height"],
            block_hash,
            prev_block_hash,
            bytes.fromhex(block["app_hash"]),
            len(block["txs"]),
            time_ms,
            [event for _, events in chunk for event in events],
            part,
            len(chunks),
        )
        extra: dict[str, Any] = {}
        if finality is not None:
            carried = [r for rs, _ in chunk for r in rs]
            extra = {"first_tx": first_tx, "results": carried}
            first_tx += len(carried)
            if part == 0:
                extra["finality"] = finality
        parts.append((body, extra))
    return parts


def block_digests(
    source: str, block: dict[str, Any], finality: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The digest bodies of one business block (see block_parts)."""
    return [body for body, _ in block_parts(source, block, finality)]


def comet_block_fields(finality: dict[str, Any]) -> tuple[bytes, bytes, int]:
    """A CometBFT source's block hash, previous block hash and time, as the signed
    headers of its finality give them: CometBFT's block id of block height (named by
    header height+1), the block id header height names (empty for the first block),
    and header height's time in ms (0 for the genesis block 0, which has none)."""
    block_header = finality["block_header"]
    if block_header is None:
        return finality["header"]["last_block_id"]["hash"], b"", 0
    return (
        finality["header"]["last_block_id"]["hash"],
        block_header["last_block_id"]["hash"],
        msgspec.convert(block_header["time"], cometbft.Timestamp).ms(),
    )


class CometRpc:
    """A business network's CometBFT RPC: signed headers, commits, validator sets.

    `urls`: one node's RPC, or several (a list or comma-separated): a node that does
    not answer is passed over for the next, as the SDK client fails over between
    gateways. Any node serves the same finalised headers, so which one answers does
    not matter to the regulator chain, which checks the signatures itself."""

    def __init__(self, urls: str | list[str], timeout: float = 10.0) -> None:
        given = urls.split(",") if isinstance(urls, str) else urls
        self.urls = [u.strip().rstrip("/") for u in given if u.strip()]
        if not self.urls:
            raise ValueError("give at least one CometBFT RPC URL")
        self._current = 0
        self._http = httpx.Client(timeout=timeout)

    @property
    def url(self) -> str:
        """The RPC URL in use."""
        return self.urls[self._current]

    def _get(self, method: str, **params: Any) -> Any:
        failures = []
        for _ in self.urls:
            try:
                body = self._http.get(f"{self.url}/{method}", params=params).json()
                break
            except (httpx.HTTPError, ValueError) as e:
                failures.append(f"{self.url}: {e}")
                self._current = (self._current + 1) % len(self.urls)
        else:
            raise RpcUnavailable("UNAVAILABLE", f"no CometBFT RPC answered: {'; '.join(failures)}")
        if "error" in body:
            err = body["error"]
            raise RpcUnavailable(
                "UNAVAILABLE", f"CometBFT RPC {method}: {err.get('data') or err.get('message')}"
            )
        return body["result"]

    def latest_height(self) -> int:
        """The node's last committed CometBFT height."""
        return int(self._get("status")["sync_info"]["latest_block_height"])

    def signed_header(self, height: int) -> tuple[cometbft.Header, cometbft.Commit]:
        """Header `height` and the commit that finalised it."""
        signed = self._get("commit", height=height)["signed_header"]
        return comet_rpc.header_from_rpc(signed["header"]), comet_rpc.commit_from_rpc(
            signed["commit"]
        )

    def validators(self, height: int) -> list[cometbft.Validator]:
        """The validator set that signs header `height` (every page of it)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            r = self._get("validators", height=height, page=page, per_page=100)
            found += r["validators"]
            if len(found) >= int(r["total"]) or not r["validators"]:
                return comet_rpc.validators_from_rpc(found)
            page += 1

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> CometRpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finality(
        self, height: int, block_header: cometbft.Header | None = None
    ) -> tuple[dict[str, Any], cometbft.Header]:
        """What proves block `height` final (Finality of the supervision contract,
        without the state root and chunk roots the block gives), as the payload carries
        it, and header height+1 (the next block's `block_header`: pass it back to save
        a request). `block_header`: header `height` if the caller has it."""
        header, commit = self.signed_header(height + 1)
        if height > 0 and (block_header is None or block_header.height != height):
            block_header = self.signed_header(height)[0]
        finality: dict[str, Any] = {
            "header": _plain(header),
            "commit": _plain(commit),
            "block_header": _plain(block_header) if height > 0 else None,
        }
        if header.next_validators_hash != header.validators_hash:
            finality["next_validators"] = _plain(self.validators(height + 2))
        return finality, header


def comet_source(rpc: CometRpc, from_height: int = -1) -> dict[str, Any]:
    """What `supervision.authorize_relayer` takes as `cometbft` for a business chain
    relayed after `from_height`: its chain id and the set that signs the first header
    a digest carries (from genesis: the genesis validators)."""
    first_header = from_height + 2
    header, _ = rpc.signed_header(first_header)
    validators = rpc.validators(first_header)
    return {
        "chain_id": header.chain_id,
        "validators": [{"pub_key": v.pub_key, "power": v.power} for v in validators],
    }


def _plain(value: Any) -> Any:
    """A msgspec struct as the CBOR payload carries it (bytes kept as bytes)."""
    return msgspec.to_builtins(value, builtin_types=(bytes,))


class RelayMetrics:
    """A relay's metrics, in a registry of its own (served by `medchain relay
    --metrics-port`): how far behind the business chain the regulator chain's stream
    is, what was relayed, and whether the last round reached both chains."""

    def __init__(self, source: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.lag = Gauge(
            "medchain_relay_lag_heights",
            "Business-chain heights committed but not yet relayed (head minus the "
            "regulator chain's stream height), at the relay's last round.",
            ["source"],
            registry=self.registry,
        ).labels(source)
        self.relayed = Counter(
            "medchain_relay_digests",
            "Digest parts the regulator chain accepted from this relay.",
            ["source"],
            registry=self.registry,
        ).labels(source)
        self.failures = Counter(
            "medchain_relay_round_failures",
            "Relay rounds that failed (a chain unreachable, or a digest refused).",
            ["source"],
            registry=self.registry,
        ).labels(source)
        self.last_round_ok = True

    def checks(self) -> list[Check]:
        """Ready while the last round reached both chains and was accepted."""
        return [Check("last_round", lambda: self.last_round_ok)]


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
        business_rpc: str | list[str] | None = None,
    ) -> None:
        """`business_rpc`: the business nodes' CometBFT RPC (one URL or several, see
        CometRpc), needed when the regulator chain follows `source` as a CometBFT chain
        (it then checks finality)."""
        self.business, self.regulator, self.key = business, regulator, key
        self.source, self.batch = source, batch
        self.rpc = CometRpc(business_rpc) if business_rpc else None
        self._last_header: cometbft.Header | None = None
        self.metrics = RelayMetrics(source)

    def close(self) -> None:
        """Close the connections to the business node's CometBFT RPC (the two clients
        are the caller's)."""
        if self.rpc is not None:
            self.rpc.close()

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def follow(self) -> dict[str, Any] | None:
        """The CometBFT validator set the regulator chain follows for this source, or
        None for a source relayed on the relayer's word (a solo business chain)."""
        value = self.regulator.value(supervision.finality_key(self.source))
        if value is not None and self.rpc is None:
            raise RelayError(
                f"the regulator chain checks finality of {self.source!r}: give the relay the "
                "business node's CometBFT RPC (--business-rpc)"
            )
        return None if value is None else dict(value)

    def step(self) -> int:
        """Relay what the business chain has committed beyond the stream; how many."""
        stream = self.stream()
        follow = self.follow()
        head = self.business.status()["height"]
        if self.rpc is not None and follow is not None:
            head = min(head, self.rpc.latest_height() - 1)  # block h is proven by header h+1
        comet = follow is not None
        self.metrics.lag.set(max(0, head - stream.height))
        parts = []
        if stream.part + 1 < stream.parts:  # finish a block cut short by a crash
            parts += self._parts(stream.height, comet)[stream.part + 1 :]
        for h in range(stream.height + 1, min(head, stream.height + self.batch) + 1):
            parts += self._parts(h, comet)
        if not parts:
            return 0
        calls, running = [], stream.running_hash
        for body, extra in parts:
            running = supervision.running_hash(running, body)
            calls.append(("supervision", "digest", body | extra | {"running_hash": running}))
        answers = self.regulator.submit_batch(self.regulator.sign_batch(self.key, calls))
        refused = [o for o in self.regulator.outcomes(answers) if o["code"] != 0]
        if refused:
            first = refused[0]
            raise RelayError(f"regulator refused a digest: {first['code_name']}: {first['log']}")
        self.metrics.relayed.inc(len(calls))
        return len(calls)

    def _parts(self, height: int, comet: bool) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Block `height`'s digest parts; a CometBFT source's with the finality read
        from the RPC (header height+1 is kept: it is the next block's own header)."""
        finality = None
        if comet:
            assert self.rpc is not None
            finality, self._last_header = self.rpc.finality(height, self._last_header)
        return block_parts(self.source, self.business.block(height), finality)

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Relay until `stop` is set; a network cut or restart of either side is waited out."""
        while not stop.is_set():
            try:
                relayed = self.step()
            except ClientError as e:
                self.metrics.failures.inc()
                self.metrics.last_round_ok = False
                log.warning("relay %s: %s; retrying", self.source, e)
            else:
                self.metrics.last_round_ok = True
                if relayed:
                    continue
            stop.wait(interval)


def verify_stream(
    business: Client, regulator: Client, source: str, business_rpc: CometRpc | None = None
) -> list[str]:
    """Recompute every relayed digest from the business chain and compare: the
    problems found (empty: the regulator holds exactly what the business chain did).
    A CometBFT source's digests record CometBFT's block ids and are split around their
    finality: `business_rpc` (its CometBFT RPC) gives both."""
    stream = regulator.value(supervision.stream_key(source))
    if stream is None:
        return [f"no stream {source!r} on the regulator chain"]
    comet = regulator.value(supervision.finality_key(source)) is not None
    if comet and business_rpc is None:
        return [
            f"{source!r} is relayed with CometBFT finality: give the business node's CometBFT "
            "RPC (--business-rpc) to rebuild its digests"
        ]
    problems, running = [], supervision.GENESIS_RUNNING_HASH
    last_header: cometbft.Header | None = None
    for h in range(stream["first_height"], stream["height"] + 1):
        finality = None
        if business_rpc is not None and comet:
            finality, last_header = business_rpc.finality(h, last_header)
        for body in block_digests(source, business.block(h), finality):
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
