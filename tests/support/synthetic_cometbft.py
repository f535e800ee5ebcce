"""A synthetic CometBFT chain signed by validators with fixed ed25519 keys, for the
cases a real localnet cannot produce cheaply (exactly 2/3 of the power, weighted
sets) and for a determinism vector of the regulator's finality checks. Ed25519
signing is deterministic, so the same inputs give the same bytes every time.

Real localnet headers, not these, prove the encoding agrees with CometBFT
(tests/test_relay.py); these only reuse that encoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from medchain.contracts.supervision import model as supervision
from medchain.core.block import TxResult, compute_app_hash, result_leaf
from medchain.core.merkle import merkle_root
from medchain.crypto import cometbft, primitives

T0_SECONDS = 1_764_000_000


def _be(n: int) -> bytes:
    return n.to_bytes(8, "big")


@dataclass(frozen=True)
class Signer:
    """A validator with its private key."""

    private: bytes
    power: int

    @property
    def validator(self) -> cometbft.Validator:
        return cometbft.Validator(primitives.ed25519_public_from_private(self.private), self.power)


def signers(*powers: int, seed: int = 1) -> list[Signer]:
    """Validators with fixed keys (seed, seed+1, ...) and the given powers."""
    return [Signer(bytes([seed + i]) * 32, p) for i, p in enumerate(powers)]


def ordered(keys: list[Signer]) -> list[Signer]:
    """In the set's order (power descending, then address)."""
    return sorted(keys, key=lambda s: (-s.power, s.validator.address))


def sign(
    chain_id: str,
    header: cometbft.Header,
    keys: list[Signer],
    signing: set[int] | None = None,
    forged: frozenset[int] = frozenset(),
) -> cometbft.Commit:
    """A commit for `header` with precommits of the validators at `signing` (indexes
    in set order; all of them by default); those at `forged` carry 64 bytes of garbage
    for a signature (as a Byzantine validator's ZIP-215-only signature looks here)."""
    block_id = cometbft.BlockId(
        cometbft.header_hash(header), 1, primitives.sha256(b"parts" + _be(header.height))
    )
    bare = cometbft.Commit(header.height, 0, block_id, [])
    sigs = []
    for i, key in enumerate(ordered(keys)):
        when = cometbft.Timestamp(header.time.seconds + 1, i)
        if signing is not None and i not in signing:
            sigs.append(cometbft.CommitSig(1, b"", cometbft.Timestamp(-62135596800), b""))
            continue
        unsigned = cometbft.CommitSig(2, key.validator.address, when, b"")
        message = cometbft.vote_sign_bytes(chain_id, bare, unsigned)
        signature = primitives.ed25519_sign(key.private, message)
        if i in forged:
            signature = primitives.sha256(signature) * 2
        sigs.append(msgspec.structs.replace(unsigned, signature=signature))
    return msgspec.structs.replace(bare, signatures=sigs)


@dataclass
class SyntheticChain:
    """A business chain's blocks as the relay sees them, with CometBFT headers."""

    chain_id: str
    keys: list[Signer]
    headers: dict[int, cometbft.Header] = field(default_factory=dict)
    next_keys: dict[int, list[Signer]] = field(default_factory=dict)  # set change at header

    def keys_at(self, height: int) -> list[Signer]:
        """The set that signs header `height`."""
        keys = self.keys
        for at, new in sorted(self.next_keys.items()):
            if at < height:
                keys = new
        return keys

    def header(self, height: int, app_hash: bytes) -> cometbft.Header:
        """Header `height` carrying `app_hash` (the app hash after block height-1)."""
        prev = self.headers.get(height - 1)
        last = (
            cometbft.BlockId(cometbft.header_hash(prev), 1, primitives.sha256(_be(height)))
            if prev
            else cometbft.BlockId(b"", 0, b"")
        )
        vals = [k.validator for k in self.keys_at(height)]
        nxt = [k.validator for k in self.keys_at(height + 1)]
        h = cometbft.Header(
            version_block=11,
            version_app=1,
            chain_id=self.chain_id,
            height=height,
            time=cometbft.Timestamp(T0_SECONDS + height, 1000 * height),
            last_block_id=last,
            last_commit_hash=primitives.sha256(b"commit" + _be(height)),
            data_hash=primitives.sha256(b""),
            validators_hash=cometbft.validators_hash(vals),
            next_validators_hash=cometbft.validators_hash(nxt),
            consensus_hash=primitives.sha256(b"params"),
            app_hash=app_hash,
            last_results_hash=primitives.sha256(b""),
            evidence_hash=primitives.sha256(b""),
            proposer_address=vals[0].address,
        )
        self.headers[height] = h
        return h

    def digest(
        self,
        source: str,
        height: int,
        results: list[dict[str, Any]],
        running: bytes,
        signing: set[int] | None = None,
        forged: frozenset[int] = frozenset(),
    ) -> dict[str, Any]:
        """The one-part digest of block `height` with `results` ({tx_id, code, events}),
        proven by a new header height+1 signed by `signing` of its set (`forged`: see
        sign); its block
        hashes are the CometBFT block ids the headers name, as the contract requires."""
        leaves = [result_leaf(TxResult.from_dict(r | {"log": ""})) for r in results]
        roots = supervision.chunk_roots(leaves)
        state_root = primitives.sha256(b"state" + _be(height))
        app_hash = compute_app_hash(height, state_root, merkle_root(leaves))
        block_header = self.headers.get(height)
        header = self.header(height + 1, app_hash)
        keys = self.keys_at(height + 1)
        events = [
            {"tx": i, "type": e["type"], "attributes": e["attributes"]}
            for i, r in enumerate(results)
            for e in r["events"]
            if "actor" in e["attributes"]
        ]
        body = supervision.digest_body(
            source,
            height,
            header.last_block_id.hash,
            block_header.last_block_id.hash if block_header else b"",
            app_hash,
            len(results),
            block_header.time.ms() if block_header else 0,
            events,
        )
        finality: dict[str, Any] = {
            "header": header,
            "commit": sign(self.chain_id, header, keys, signing, forged),
            "block_header": block_header,
            "state_root": state_root,
            "chunk_roots": roots,
        }
        if header.next_validators_hash != header.validators_hash:
            finality["next_validators"] = [k.validator for k in self.keys_at(height + 2)]
        plain = msgspec.to_builtins(finality, builtin_types=(bytes,))
        return body | {
            "finality": plain,
            "first_tx": 0,
            "results": results,
            "running_hash": supervision.running_hash(running, body),
        }

    def gateway_block(
        self, height: int, results: list[dict[str, Any]]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Block `height` with `results` ({tx_id, code, events}) as a MedChain gateway
        serves it (hex bytes), and its finality as CometRpc.finality reads it, with a
        new header height+1 signed by its whole set."""
        leaves = [result_leaf(TxResult.from_dict(r | {"log": ""})) for r in results]
        state_root = primitives.sha256(b"state" + _be(height))
        app_hash = compute_app_hash(height, state_root, merkle_root(leaves))
        block_header = self.headers.get(height)
        header = self.header(height + 1, app_hash)
        finality: dict[str, Any] = {
            "header": header,
            "commit": sign(self.chain_id, header, self.keys_at(height + 1)),
            "block_header": block_header,
        }
        if header.next_validators_hash != header.validators_hash:
            finality["next_validators"] = [k.validator for k in self.keys_at(height + 2)]
        block = {
            "height": height,
            "hash": primitives.sha256(b"block" + _be(height)).hex(),
            "header": {
                "prev_hash": bytes(32).hex(),
                "time_ms": block_header.time.ms() if block_header else 0,
            },
            "app_hash": app_hash.hex(),
            "state_root": state_root.hex(),
            "txs": [r["tx_id"].hex() for r in results],
            "results": [r | {"tx_id": r["tx_id"].hex(), "log": ""} for r in results],
        }
        return block, msgspec.to_builtins(finality, builtin_types=(bytes,))
