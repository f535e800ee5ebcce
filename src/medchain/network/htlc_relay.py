"""Carrying a cross-chain swap between two MedChain networks: headers for each
chain's light client of the other, lock proofs, and claimed preimages.

Nothing here is trusted by either chain. A header is checked by the light client
(contracts/lightclient.py) against the counterparty's registered root; a lock
proof against an app hash such a header vouched for; a preimage against the
lock's hashlock. So the relayer may only help or fail to help: if it withholds,
the parties do the same steps themselves (`medchain htlc claim --preimage`, or
`medchain htlc lock --counterpart-*`, which updates the light client it needs),
and otherwise both sides refund after their timeouts.

`Side` is one chain seen through its gateway; `Relayer` follows two of them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import msgspec

from medchain import crypto, encoding
from medchain.contracts.htlc import model as htlc
from medchain.crypto import cometbft
from medchain.network import comet_rpc
from medchain.sdk.client import Client, ClientError

log = logging.getLogger("medchain.htlc_relay")


class RelayError(ClientError):
    """A step of the relay could not be done (the message says which and why)."""

    def __init__(self, message: str) -> None:
        super().__init__("RELAY", message)


@dataclass
class Side:
    """One chain, through one of its gateways: what its light clients of other chains
    need from it, and its htlc state."""

    client: Client
    _engine: str = field(default="", init=False)

    @property
    def chain_id(self) -> str:
        """The chain's id."""
        return self.client.chain_id

    @property
    def engine(self) -> str:
        """solo or cometbft, as the node says."""
        if not self._engine:
            self._engine = str(self.client.status()["engine"])
        return self._engine

    def height(self) -> int:
        """The node's last committed height."""
        return int(self.client.status()["height"])

    def registration(self, height: int | None = None) -> dict[str, Any]:
        """An htlc.register_counterparty payload for this chain, as its node describes
        itself: its header key (solo), or the validator set and hash of header `height`
        (cometbft; default: the latest). A governor should compare the key or set with
        what the other network's operators publish: this is trust on first use."""
        at = self.height() if height is None else height
        answer = self.client.get(f"/v1/chain/signed-header/{max(at, 1)}")
        if answer["engine"] == "solo":
            return {
                "chain_id": self.chain_id,
                "engine": "solo",
                "suite": answer["suite"],
                "public_key": bytes.fromhex(answer["public_key"]),
            }
        header = comet_rpc.header_from_rpc(answer["signed_header"]["header"])
        validators = comet_rpc.validators_from_rpc(answer["validators"])
        return {
            "chain_id": self.chain_id,
            "engine": "cometbft",
            "validators": [{"pub_key": v.pub_key, "power": v.power} for v in validators],
            "height": header.height,
            "header_hash": cometbft.header_hash(header),
        }

    def header_update(self, state_height: int) -> dict[str, Any]:
        """An htlc.update_client payload proving this chain's app hash after block
        `state_height` (cometbft: header state_height+1, which must exist)."""
        if self.engine == "solo":
            answer = self.client.get(f"/v1/chain/signed-header/{state_height}")
            head = answer["header"]
            header = {
                "chain_id": head["chain_id"],
                "height": head["height"],
                "block_hash": bytes.fromhex(head["block_hash"]),
                "app_hash": bytes.fromhex(head["app_hash"]),
                "time_ms": head["time_ms"],
            }
            return {
                "chain_id": self.chain_id,
                "solo": {"header": header, "signature": bytes.fromhex(answer["signature"])},
            }
        answer = self.client.get(f"/v1/chain/signed-header/{state_height + 1}")
        signed = answer["signed_header"]
        comet_header = comet_rpc.header_from_rpc(signed["header"])
        update: dict[str, Any] = {
            "header": _plain(comet_header),
            "commit": _plain(comet_rpc.commit_from_rpc(signed["commit"])),
        }
        if comet_header.next_validators_hash != comet_header.validators_hash:
            following = self.client.get(f"/v1/chain/signed-header/{state_height + 2}")
            update["next_validators"] = _plain(
                comet_rpc.validators_from_rpc(following["validators"])
            )
        return {"chain_id": self.chain_id, "cometbft": update}

    def lock_view(self, lock_id: str) -> dict[str, Any] | None:
        """A lock's public view on this chain, or None if there is none."""
        try:
            return dict(self.client.get(f"/v1/htlc/locks/{lock_id}"))
        except ClientError as e:
            if e.status == 404:
                return None
            raise

    def locks_after(self, height: int, limit: int = htlc.MAX_LOCKS_LISTED) -> list[dict[str, Any]]:
        """Public views of the locks made after `height`, in order."""
        return list(self.client.get("/v1/htlc/locks", after_height=height, limit=limit))

    def client_of(self, chain_id: str) -> dict[str, Any] | None:
        """This chain's light client of `chain_id`, or None if not registered."""
        try:
            return dict(self.client.get(f"/v1/htlc/clients/{chain_id}"))
        except ClientError as e:
            if e.status == 404:
                return None
            raise

    def submit(self, key: crypto.KeyPair, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Sign and send one htlc action, answered once its block commits."""
        return self.client.send(key, "htlc", action, payload)


def ensure_root(target: Side, source: Side, state_height: int, key: crypto.KeyPair) -> None:
    """Make `target`'s light client of `source` hold `source`'s app hash after block
    `state_height`, relaying the header if it does not yet (signed with `key`)."""
    known = target.client_of(source.chain_id)
    if known is None:
        raise RelayError(
            f"{target.chain_id} does not follow {source.chain_id}: a governor runs "
            "`medchain htlc register-counterparty` first"
        )
    if state_height in known["heights"]:
        return
    answer = target.submit(key, "update_client", source.header_update(state_height))
    if answer.get("code_name") not in ("OK", "ALREADY_EXISTS"):
        raise RelayError(
            f"{target.chain_id} refused {source.chain_id}'s header {state_height}: "
            f"{answer.get('code_name')} {answer.get('log')}"
        )


def counterpart(source: Side, target: Side, lock_id: str, key: crypto.KeyPair) -> dict[str, Any]:
    """The `counterpart` of a second lock on `target`: a proof of lock `lock_id` on
    `source` (which `key`, its recipient, may read) at a height `target`'s light
    client holds, relaying that header first if needed."""
    doc = source.client.get("/v1/proofs/state", key=htlc.lock_key(lock_id))
    if doc["value"] is None:
        raise RelayError(f"{source.chain_id} holds no lock {lock_id!r}")
    if target.chain_id == source.chain_id:
        raise RelayError("the counterpart is on the same chain")
    if source.engine == "cometbft":
        _wait_for_height(source, doc["height"] + 1)
    ensure_root(target, source, doc["height"], key)
    value = bytes.fromhex(doc["value"])
    asset = encoding.decode(value)["asset"]
    return {
        "chain": source.chain_id,
        "lock_id": lock_id,
        "asset": asset,
        "proof": proof_payload(doc),
    }


def proof_payload(doc: dict[str, Any]) -> dict[str, Any]:
    """A medchain-proof/v1 state document (hex) as the htlc payload carries it (bytes)."""
    raw = doc["state_proof"]

    def opt(v: str | None) -> bytes | None:
        return None if v is None else bytes.fromhex(v)

    return {
        "chain_id": doc["chain_id"],
        "height": doc["height"],
        "key": doc["key"],
        "value": opt(doc["value"]),
        "key_hash": bytes.fromhex(raw["key_hash"]),
        "siblings": [bytes.fromhex(s) for s in raw["siblings"]],
        "leaf_key": opt(raw["leaf_key"]),
        "leaf_value_hash": opt(raw["leaf_value_hash"]),
        "results_root": bytes.fromhex(doc["results_root"]),
        "app_hash": bytes.fromhex(doc["app_hash"]),
    }


def _wait_for_height(side: Side, height: int, timeout: float = 30.0) -> None:
    """CometBFT: header h+1 (the app hash after h) exists once the next block does."""
    stop = threading.Event()
    waited = 0.0
    while side.height() < height:
        if waited >= timeout:
            raise RelayError(f"{side.chain_id} did not reach height {height}")
        stop.wait(0.2)
        waited += 0.2


def _plain(value: Any) -> Any:
    """A msgspec struct as the CBOR payload carries it (bytes kept as bytes)."""
    return msgspec.to_builtins(value, builtin_types=(bytes,))


@dataclass
class Relayer:
    """Follows two chains' locks. When one side's lock is claimed, the preimage is
    public: the relayer claims every still open lock on the other side with the same
    hashlock that names it as counterpart (or that it names). When a new lock appears
    on one side, it brings the other side's light client up to that height, so the
    counterparty can prove it without relaying a header itself."""

    a: Side
    b: Side
    key: crypto.KeyPair
    carry_preimages: bool = True
    carry_headers: bool = True
    _cursor: dict[str, int] = field(default_factory=dict)
    _open: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def step(self) -> int:
        """One round over both chains; how many txs it sent."""
        sent = 0
        for here, there in ((self.a, self.b), (self.b, self.a)):
            sent += self._follow(here, there)
        for here, there in ((self.a, self.b), (self.b, self.a)):
            if self.carry_preimages:
                sent += self._carry_preimages(here, there)
        return sent

    def _follow(self, here: Side, there: Side) -> int:
        """Pick up new locks on `here`; bring `there`'s light client up to date if any."""
        chain = here.chain_id
        opened = self._open.setdefault(chain, {})
        cursor = self._cursor.get(chain, -1)
        fresh = here.locks_after(cursor)
        for view in fresh:
            opened[view["lock_id"]] = view
            cursor = max(cursor, int(view["height"]))
        # A full page may end inside a height: list that height again next round.
        self._cursor[chain] = cursor - 1 if len(fresh) >= htlc.MAX_LOCKS_LISTED else cursor
        if not (fresh and self.carry_headers):
            return 0
        height = here.height() - (1 if here.engine == "cometbft" else 0)
        try:
            ensure_root(there, here, height, self.key)
        except ClientError as e:  # the locker's own CLI relays it if this fails
            log.warning("header %s of %s not relayed: %s", height, chain, e)
            return 0
        return 1

    def _carry_preimages(self, here: Side, there: Side) -> int:
        """Claim on `there` what a claim on `here` made claimable."""
        sent = 0
        opened = self._open.get(here.chain_id, {})
        for lock_id in list(opened):
            view = here.lock_view(lock_id)
            if view is None or view["status"] == htlc.REFUNDED:
                opened.pop(lock_id, None)
                continue
            if view["status"] != htlc.CLAIMED:
                continue
            opened.pop(lock_id, None)
            preimage = view["preimage"]
            for other in self._matching(view, here, there):
                answer = there.submit(
                    self.key, "claim", {"lock_id": other, "preimage": bytes.fromhex(preimage)}
                )
                sent += 1
                log.info(
                    "claimed %s/%s with the preimage from %s/%s: %s",
                    there.chain_id,
                    other,
                    here.chain_id,
                    lock_id,
                    answer.get("code_name"),
                )
        return sent

    def _matching(self, view: dict[str, Any], here: Side, there: Side) -> list[str]:
        """Open locks on `there` with the same hashlock, linked to `view` either way."""
        found = []
        named = view.get("counterpart")
        if named and named["chain"] == there.chain_id:
            theirs = there.lock_view(named["lock_id"])
            if (
                theirs
                and theirs["status"] == htlc.LOCKED
                and theirs["hashlock"] == view["hashlock"]
            ):
                found.append(named["lock_id"])
        for lock_id, other in self._open.get(there.chain_id, {}).items():
            cp = other.get("counterpart")
            if (
                cp
                and cp["chain"] == here.chain_id
                and cp["lock_id"] == view["lock_id"]
                and other["hashlock"] == view["hashlock"]
                and lock_id not in found
            ):
                found.append(lock_id)
        return found

    def run(self, stop: threading.Event, interval: float = 0.2) -> None:
        """Step every `interval` seconds until `stop` is set; a chain that does not
        answer is tried again next round."""
        while not stop.is_set():
            try:
                self.step()
            except ClientError as e:
                log.warning("relay round: %s", e)
            stop.wait(interval)
