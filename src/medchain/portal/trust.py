"""Which app hash the explorer may trust, and why: a root given at launch
(`medchain portal --trust ...`), and headers checked against it here, on the user's
computer, with the chain's own light-client rules (contracts/lightclient.py over
crypto/cometbft.py, the code the htlc and supervision contracts run).

- solo: the node signs each block's header {chain_id, height, block_hash, app_hash,
  time_ms} with its header key (`<home>/header_key.json`); the root is that key's
  public half. A header it signed vouches for the state after that block.
- cometbft: the root is a validator set, from the network's genesis.json or from a
  header hash the user got out of band (`HEIGHT:HASH`). A header is trusted when more
  than 2/3 of the power of the set in force signed its commit; a header that
  announces another set hands trust on to it (checked against next_validators_hash),
  walking header by header from the last set known. Header H carries the app hash
  after block H-1, so the state after block h is checked against header h+1.

Without a root the explorer can only compare a proof with the app hash the same node
reports, and says so. The trusting period of CometBFT's light client (a set that left
long ago signing forged headers) is not enforced here: a root is given per launch.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from medchain import crypto
from medchain.contracts import lightclient
from medchain.contracts.lightclient import TrustedRoot
from medchain.core import proofs
from medchain.crypto import cometbft
from medchain.exceptions import MedChainError
from medchain.network import comet_rpc

MAX_WALK = 2000  # headers followed one by one before a root counts as too old

HeaderSource = Callable[[int], Mapping[str, Any]]
"""GET /v1/chain/signed-header/{height}: the node's answer, trusted for nothing."""


class Untrusted(MedChainError):
    """A header or proof that does not check out against the root: why, in words."""


@dataclass(frozen=True)
class Verified:
    """An app hash a header vouched for, and what made the header trustworthy."""

    root: TrustedRoot  # the state height and its app hash
    header_height: int
    signed_power: int  # of `total_power`; 1 of 1 for a solo node's key
    total_power: int


@dataclass(frozen=True)
class SoloRoot:
    """A solo node's header key, given at launch."""

    suite: str
    public_key: bytes

    def describe(self) -> str:
        """The root as the page names it."""
        return f"the solo node's header key {self.suite}:{self.public_key.hex()}"

    def verify(self, chain_id: str, height: int, fetch: HeaderSource) -> Verified:
        """The state after block `height`, from its header signed by this key."""
        answer = fetch(height)
        if answer.get("engine") != "solo":
            raise Untrusted("the node does not answer solo headers: the root is of another kind")
        head = answer["header"]
        header = dict(head) | {k: bytes.fromhex(head[k]) for k in ("block_hash", "app_hash")}
        try:
            root = lightclient.verify_solo_header(
                chain_id,
                self.suite,
                self.public_key,
                header,
                bytes.fromhex(str(answer["signature"])),
            )
        except MedChainError as e:
            raise Untrusted(str(e)) from None
        if root.height != height:
            raise Untrusted(f"asked for header {height}, the node signed header {root.height}")
        return Verified(root, height, 1, 1)


@dataclass
class CometRoot:
    """A CometBFT validator set from a root, followed through announced changes."""

    chain_id: str
    source: str  # what the user gave, for the page
    epochs: dict[int, list[dict[str, Any]]]  # first height -> stored set in force
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def describe(self) -> str:
        """The root as the page names it."""
        first = min(self.epochs)
        power = sum(v["power"] for v in self.epochs[first])
        return (
            f"{self.source}: {len(self.epochs[first])} validators of chain {self.chain_id} "
            f"(power {power}) at height {first}"
        )

    def verify(self, chain_id: str, height: int, fetch: HeaderSource) -> Verified:
        """The state after block `height`, from header height+1 signed by more than 2/3
        of the power of the set the root hands trust to."""
        if chain_id != self.chain_id:
            raise Untrusted(f"the root is of chain {self.chain_id!r}, the node of {chain_id!r}")
        with self._lock:
            header, commit, validators = self._header(height + 1, fetch)
        if header.height != height + 1:  # a genuine header of another height vouches for that
            raise Untrusted(
                f"asked for header {height + 1}, the node answered header {header.height}"
            )
        try:
            signed = cometbft.verify_commit(
                self.chain_id, header, commit, lightclient.followed_set(validators)
            )
            root = lightclient.verify_cometbft_header(self.chain_id, validators, header, commit)
        except (cometbft.BadCommit, MedChainError) as e:
            raise Untrusted(str(e)) from None
        total = sum(v["power"] for v in validators)
        return Verified(root, header.height, signed, total)

    def set_at(self, height: int) -> list[dict[str, Any]]:
        """The set in force at `height` as far as this root has followed it."""
        starts = [h for h in self.epochs if h <= height]
        if not starts:
            raise Untrusted(f"height {height} is below the trusted root ({min(self.epochs)})")
        return self.epochs[max(starts)]

    def _header(
        self, height: int, fetch: HeaderSource
    ) -> tuple[cometbft.Header, cometbft.Commit, list[dict[str, Any]]]:
        """Header `height` and the set that must have signed it, walking forward from
        the nearest known set when the header names another one."""
        header, commit = _signed(fetch(height))
        validators = self.set_at(height)
        if header.validators_hash == cometbft.validators_hash(lightclient.followed_set(validators)):
            return header, commit, validators
        start = max(h for h in self.epochs if h <= height)
        if height - start > MAX_WALK:
            raise Untrusted(
                f"header {height} is {height - start} headers past the last validator set "
                "followed: give a newer root (--trust HEIGHT:HASH)"
            )
        current = validators
        for h in range(start, height):
            step, step_commit = _signed(fetch(h))
            if step.height != h:
                raise Untrusted(f"asked for header {h}, the node answered header {step.height}")
            try:
                lightclient.verify_followed_commit(self.chain_id, current, step, step_commit)
                following = fetch(h + 1)
                announced = lightclient.announced_set(
                    step, comet_rpc.validators_from_rpc(list(following["validators"]))
                )
            except (MedChainError, KeyError) as e:
                raise Untrusted(f"following the validator set at header {h}: {e}") from None
            if announced is not None:
                current = announced
                self.epochs[h + 1] = announced
        return header, commit, current


Root = SoloRoot | CometRoot


def _signed(answer: Mapping[str, Any]) -> tuple[cometbft.Header, cometbft.Commit]:
    """A CometBFT header and its commit from the node's signed-header answer."""
    if answer.get("engine") != "cometbft":
        raise Untrusted("the node does not answer CometBFT headers: the root is of another kind")
    signed = answer["signed_header"]
    return comet_rpc.header_from_rpc(signed["header"]), comet_rpc.commit_from_rpc(signed["commit"])


def load_root(text: str, fetch: HeaderSource) -> Root:
    """A root from what the user gave at launch: a solo header key file
    (header_key.json: its public half is taken), a CometBFT genesis.json, a
    `HEIGHT:HASH` of a CometBFT header (its set is fetched and checked against the
    hash), or `SUITE:PUBLICKEYHEX` of a solo header key. ValueError if none of these."""
    head, _, tail = text.partition(":")
    if tail and head.isdigit():
        return _header_hash_root(int(head), bytes.fromhex(tail), text, fetch)
    if tail and head in crypto.SUITES:
        return SoloRoot(head, bytes.fromhex(tail))
    path = Path(text)
    doc = json.loads(path.read_text())
    if "validators" in doc:
        stored = lightclient.stored_set(comet_rpc.validators_from_rpc(doc["validators"]))
        start = int(doc.get("initial_height") or 1)
        return CometRoot(str(doc["chain_id"]), f"genesis {path.name}", {start: stored})
    if "public_key" in doc:
        return SoloRoot(str(doc["suite"]), bytes.fromhex(doc["public_key"]))
    if "private_key" in doc:
        key = crypto.keypair_from_private(str(doc["suite"]), bytes.fromhex(doc["private_key"]))
        return SoloRoot(key.suite, key.public)
    raise ValueError(f"{text} is neither a header key, a genesis.json nor HEIGHT:HASH")


def _header_hash_root(height: int, hash_: bytes, text: str, fetch: HeaderSource) -> CometRoot:
    """The set that signed the header with this hash, as its own hash proves."""
    header, _ = _signed(fetch(height))
    if cometbft.header_hash(header) != hash_:
        raise ValueError(f"header {height} of the node does not have hash {hash_.hex()}")
    validators = comet_rpc.validators_from_rpc(list(fetch(height)["validators"]))
    if cometbft.validators_hash(validators) != header.validators_hash:
        raise ValueError(f"the node's validators of header {height} are not the ones it names")
    return CometRoot(
        header.chain_id, f"header {text[:24]}", {height: lightclient.stored_set(validators)}
    )


def check_proof(doc: Mapping[str, Any], chain_id: str, verified: Verified) -> str:
    """What a proof shows, if it is of this chain at the verified height and hashes up
    to the verified app hash; proofs.BadProof saying why not."""
    if doc.get("chain_id") != chain_id or doc.get("height") != verified.root.height:
        raise proofs.BadProof(f"the proof is not of {chain_id} at height {verified.root.height}")
    return proofs.verify(dict(doc), verified.root.app_hash)


def set_root(app: FastAPI, root: Root | None) -> None:
    """Give a portal app its trust root (from `medchain portal --trust`)."""
    app.state.trust_root = root


def root_of(app: FastAPI) -> Root | None:
    """The portal app's trust root, if it was given one."""
    root: Root | None = getattr(app.state, "trust_root", None)
    return root
