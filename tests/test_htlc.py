"""Cross-chain atomic exchange (issue 19 point 3) between two real solo networks, each
with its own gateway and header-signing node key: tokens on network A for a
record-package access grant on network B.

The patient locks the grant offer on B first (the later deadline); the buyer locks
tokens on A only once A's light client of B has checked, from B's signed header
and a state proof, that B holds that offer for it. Then: the happy path (both
complete, the relayer carries the preimage), refund after timeout (both refund,
nothing granted), a wrong preimage, a relayer that forges a header or a proof
(refused; the swap still ends atomically by refunds), and a relayer that withholds
(the buyer completes with the preimage itself)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.htlc import fund_buyer
from support.ledger import Ledger, did_of

from medchain import crypto, encoding
from medchain.consensus.solo import SoloEngine
from medchain.contracts.consent import model as consent
from medchain.contracts.htlc import model as hm
from medchain.contracts.token import model as tm
from medchain.exceptions import Code
from medchain.network import htlc_relay
from medchain.network.htlc_relay import Relayer, Side
from medchain.node import GatewayServer, free_port
from medchain.sdk.client import Client

A_CHAIN, B_CHAIN = "alliance-a", "alliance-b"
PRICE = 200
OFFER = {"kind": "grant", "records": ["rec-b1", "rec-b2"], "purposes": ["TREAT"]}
OFFER["duration_ms"] = 30 * 86_400_000


@dataclass
class Chain:
    """One running network: its ledger (for direct state reads), engine, gateway."""

    ledger: Ledger
    engine: SoloEngine
    url: str
    header_key: crypto.KeyPair

    def client(self, key: crypto.KeyPair | None = None) -> Client:
        return Client(self.url, key=key)

    def side(self, key: crypto.KeyPair) -> Side:
        return Side(self.client(key))

    def state(self, key: str) -> Any:
        return self.ledger.state(key)


@dataclass
class Swap:
    a: Chain
    b: Chain
    keys: dict[str, crypto.KeyPair]

    def did(self, who: str) -> str:
        return did_of(self.keys[who])

    def send(self, chain: Chain, who: str, action: str, payload: dict[str, Any]) -> Any:
        with chain.client(self.keys[who]) as c:
            return c.send(self.keys[who], "htlc", action, payload)

    def ok(self, chain: Chain, who: str, action: str, payload: dict[str, Any]) -> Any:
        answer = self.send(chain, who, action, payload)
        assert answer["code_name"] == "OK", answer
        return answer

    def height(self, chain: Chain) -> int:
        return chain.ledger.app.db.height

    def advance(self, chain: Chain, past: int) -> None:
        """Blocks happen when txs come: a stranger's refused txs move the height on."""
        while self.height(chain) <= past:
            self.send(chain, "relayer", "refund", {"lock_id": "no-such-lock"})

    def offer(self, lock_id: str, preimage: bytes, blocks: int = 40) -> Any:
        """The patient locks the record-package offer to the buyer on B (first lock)."""
        return self.ok(
            self.b,
            "patient",
            "lock",
            {
                "lock_id": lock_id,
                "hashlock": crypto.sm3(preimage),
                "recipient": self.did("buyer"),
                "asset": OFFER,
                "timeout_height": self.height(self.b) + blocks,
            },
        )

    def pay(self, lock_id: str, preimage: bytes, blocks: int = 10, **over: Any) -> Any:
        """The buyer locks the price on A against the offer on B (second lock)."""
        with self.b.client(self.keys["buyer"]) as cb, self.a.client(self.keys["buyer"]) as ca:
            counterpart = htlc_relay.counterpart(Side(cb), Side(ca), lock_id, self.keys["buyer"])
        payload = {
            "lock_id": lock_id,
            "hashlock": crypto.sm3(preimage),
            "recipient": self.did("patient"),
            "asset": {"kind": "token", "amount": PRICE},
            "timeout_height": self.height(self.a) + blocks,
            "counterpart": counterpart,
        } | over
        return self.send(self.a, "buyer", "lock", payload)

    def balance(self, who: str) -> int:
        return tm.balance(self.a.state, self.did(who))

    def grants_to_buyer(self) -> list[Any]:
        prefix = consent.by_grantee_key("did", self.did("buyer"), self.did("patient"), "")
        return [v for _, v in self.b.ledger.app.db.scan(prefix, 100)]


def chain(tmp: Path, chain_id: str, admin: crypto.KeyPair) -> Ledger:
    return Ledger(tmp / f"{chain_id}.db", admin, chain_id=chain_id)


def build(a: Ledger, b: Ledger, k: dict[str, crypto.KeyPair]) -> None:
    """A: hospital hosp-a earns tokens for a record and pays its researcher (the buyer);
    the patient and the relayer are members. B: hosp-b holds the patient's two records;
    the buyer is a doctor there; the relayer is a member."""
    fund_buyer(a, k, cap=100_000)

    b.add_org("hosp-b", k["hosp_b"])
    b.add_staff(k["hosp_b"], "hosp-b", k["buyer"], ["doctor"])
    for who in ("patient", "relayer"):
        b.add_patient(k[who])
    for record_id in ("rec-b1", "rec-b2"):
        record = {
            "record_id": record_id,
            "patient": did_of(k["patient"]),
            "resource_type": "Observation",
            "cid": "b" + "c" * 58,
            "content_hash": bytes(32),
        }
        assert b.run(k["hosp_b"], "register", record, "records").code == Code.OK


@pytest.fixture(scope="module")
def swap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swap]:
    tmp = tmp_path_factory.mktemp("htlc")
    names = ("admin_a", "admin_b", "hosp_a", "hosp_b", "buyer", "patient", "relayer")
    k = {n: crypto.generate_keypair() for n in names}
    a, b = chain(tmp, A_CHAIN, k["admin_a"]), chain(tmp, B_CHAIN, k["admin_b"])
    build(a, b, k)
    running: list[tuple[SoloEngine, GatewayServer]] = []
    chains = []
    try:
        for ledger in (a, b):
            key = crypto.generate_keypair()
            engine = SoloEngine(
                ledger.app,
                block_interval=0.05,
                header_signer=lambda m, key=key: crypto.sign(key, m),
                header_key=(key.suite, key.public),
            )
            engine.start()
            gateway = GatewayServer(engine, port=free_port())
            gateway.start()
            running.append((engine, gateway))
            chains.append(Chain(ledger, engine, gateway.url, key))
        s = Swap(chains[0], chains[1], k)
        # Each alliance's governor registers the other's node key (trust on first use).
        with s.b.client() as cb, s.a.client() as ca:
            s.ok(s.a, "admin_a", "register_counterparty", Side(cb).registration())
            s.ok(s.b, "admin_b", "register_counterparty", Side(ca).registration())
        yield s
    finally:
        for engine, gateway in running:
            gateway.stop()
            engine.stop()


def run_relayer(s: Swap, rounds: int = 6) -> Relayer:
    relayer = Relayer(s.a.side(s.keys["relayer"]), s.b.side(s.keys["relayer"]), s.keys["relayer"])
    for _ in range(rounds):
        relayer.step()
    return relayer


def test_registration_is_the_other_nodes_header_key(swap: Swap) -> None:
    client = swap.a.state(hm.client_key(B_CHAIN))
    assert client["engine"] == "solo"
    assert client["public_key"] == swap.b.header_key.public


def test_happy_path_tokens_for_a_record_package_grant(swap: Swap) -> None:
    s = swap
    preimage = os.urandom(32)
    s.offer("swap-ok", preimage)
    relayer = run_relayer(s, rounds=1)  # picks up the offer, relays B's header to A
    before = (s.balance("buyer"), s.balance("patient"))
    paid = s.pay("swap-ok", preimage)
    assert paid["code_name"] == "OK", paid
    assert s.balance("buyer") == before[0] - PRICE
    assert tm.balance(s.a.state, hm.escrow("swap-ok")) == PRICE
    locked = s.a.state(hm.lock_key("swap-ok"))
    assert locked["counterpart"]["chain"] == B_CHAIN

    # The patient takes the tokens on A, which publishes the preimage...
    s.ok(s.a, "patient", "claim", {"lock_id": "swap-ok", "preimage": preimage})
    assert s.balance("patient") == before[1] + PRICE
    # ...and the relayer carries it to B: the buyer's grant is issued.
    for _ in range(5):
        relayer.step()
        if s.b.state(hm.lock_key("swap-ok"))["status"] == hm.CLAIMED:
            break
    offer = s.b.state(hm.lock_key("swap-ok"))
    assert offer["status"] == hm.CLAIMED
    grant = s.b.state(consent.grant_key(offer["grant_id"]))
    assert grant["grantee"] == s.did("buyer")
    assert grant["patient"] == s.did("patient")
    assert sorted(grant["scope_records"]) == ["rec-b1", "rec-b2"]
    assert grant["status"] == consent.ACTIVE


def test_a_claim_with_a_wrong_preimage_is_refused(swap: Swap) -> None:
    s = swap
    preimage = os.urandom(32)
    s.offer("swap-wrong", preimage)
    answer = s.send(s.b, "relayer", "claim", {"lock_id": "swap-wrong", "preimage": os.urandom(32)})
    assert answer["code_name"] == "INVALID_PROOF"
    assert s.b.state(hm.lock_key("swap-wrong"))["status"] == hm.LOCKED


def test_both_sides_refund_after_their_timeouts_and_nothing_is_granted(swap: Swap) -> None:
    s = swap
    preimage = os.urandom(32)
    s.offer("swap-late", preimage, blocks=12)
    assert s.pay("swap-late", preimage, blocks=4)["code_name"] == "OK"
    paid_from = s.balance("buyer")
    early = s.send(s.a, "buyer", "refund", {"lock_id": "swap-late"})
    assert early["code_name"] == "INVALID_STATE"  # not before the timeout
    a_lock = s.a.state(hm.lock_key("swap-late"))
    s.advance(s.a, a_lock["timeout_height"])
    late = s.send(s.a, "patient", "claim", {"lock_id": "swap-late", "preimage": preimage})
    assert late["code_name"] == "INVALID_STATE"  # the patient waited too long
    s.ok(s.a, "buyer", "refund", {"lock_id": "swap-late"})
    assert s.balance("buyer") == paid_from + PRICE
    assert tm.balance(s.a.state, hm.escrow("swap-late")) == 0

    grants = len(s.grants_to_buyer())
    s.advance(s.b, s.b.state(hm.lock_key("swap-late"))["timeout_height"])
    s.ok(s.b, "relayer", "refund", {"lock_id": "swap-late"})
    assert s.b.state(hm.lock_key("swap-late"))["status"] == hm.REFUNDED
    assert len(s.grants_to_buyer()) == grants


def test_a_forged_header_is_refused_by_the_light_client(swap: Swap) -> None:
    s = swap
    with s.b.client() as cb:
        update = Side(cb).header_update(s.height(s.b))
    update["solo"]["header"]["app_hash"] = bytes(32)  # vouch for a state B never had
    answer = s.send(s.a, "relayer", "update_client", update)
    assert answer["code_name"] == "INVALID_PROOF"
    forger = crypto.generate_keypair()  # or sign it with a key of one's own
    header = update["solo"]["header"]
    from medchain.contracts.lightclient import solo_header_bytes

    update["solo"]["signature"] = crypto.sign(forger, solo_header_bytes(**header))
    answer = s.send(s.a, "relayer", "update_client", update)
    assert answer["code_name"] == "INVALID_PROOF"


def test_a_forged_proof_is_refused_and_the_swap_ends_by_refunds(swap: Swap) -> None:
    """A proof that B's offer is bigger than it is (or exists when it does not) does not
    hash up to the app hash A's light client verified: the buyer's lock is refused, so
    the buyer never pays, and the patient's offer lapses."""
    s = swap
    preimage = os.urandom(32)
    s.offer("swap-forged", preimage, blocks=8)
    with s.b.client(s.keys["buyer"]) as cb, s.a.client(s.keys["buyer"]) as ca:
        cp = htlc_relay.counterpart(Side(cb), Side(ca), "swap-forged", s.keys["buyer"])
    record = encoding.decode(cp["proof"]["value"])
    record["asset"]["records"] = ["rec-b1", "rec-b2", "rec-other"]
    cp["proof"]["value"] = encoding.encode(record)
    cp["asset"] = record["asset"]
    before = s.balance("buyer")
    payload = {
        "lock_id": "swap-forged",
        "hashlock": crypto.sm3(preimage),
        "recipient": s.did("patient"),
        "asset": {"kind": "token", "amount": PRICE},
        "timeout_height": s.height(s.a) + 4,
        "counterpart": cp,
    }
    answer = s.send(s.a, "buyer", "lock", payload)
    assert answer["code_name"] == "INVALID_PROOF"
    assert s.a.state(hm.lock_key("swap-forged")) is None
    assert s.balance("buyer") == before
    s.advance(s.b, s.b.state(hm.lock_key("swap-forged"))["timeout_height"])
    s.ok(s.b, "patient", "refund", {"lock_id": "swap-forged"})
    assert s.b.state(hm.lock_key("swap-forged"))["status"] == hm.REFUNDED


def test_a_second_lock_must_match_the_first_and_time_out_sooner(swap: Swap) -> None:
    s = swap
    preimage = os.urandom(32)
    s.offer("swap-terms", preimage, blocks=10)
    other = s.pay("swap-terms", os.urandom(32))  # another hashlock
    assert other["code_name"] == "INVALID_STATE" and "hashlock" in other["log"]
    later = s.pay("swap-terms", preimage, blocks=60)  # would outlive the offer
    assert later["code_name"] == "INVALID_STATE" and "times out" in later["log"]
    wrong = s.pay("swap-terms", preimage, recipient=s.did("relayer"))
    assert wrong["code_name"] == "INVALID_STATE" and "locker" in wrong["log"]


def test_a_withholding_relayer_does_not_stop_the_buyer(swap: Swap) -> None:
    """No relayer at all: the buyer reads the preimage from A's public lock view and
    claims on B itself."""
    s = swap
    preimage = os.urandom(32)
    s.offer("swap-self", preimage)
    assert s.pay("swap-self", preimage)["code_name"] == "OK"  # relays B's header itself
    s.ok(s.a, "patient", "claim", {"lock_id": "swap-self", "preimage": preimage})
    with s.a.client() as ca:
        public = Side(ca).lock_view("swap-self")
    assert public is not None and bytes.fromhex(public["preimage"]) == preimage
    s.ok(s.b, "buyer", "claim", {"lock_id": "swap-self", "preimage": preimage})
    assert s.b.state(hm.lock_key("swap-self"))["status"] == hm.CLAIMED


def test_only_a_governor_registers_and_only_the_owner_locks(swap: Swap) -> None:
    s = swap
    with s.b.client() as cb:
        registration = Side(cb).registration()
    refused = s.send(s.a, "relayer", "register_counterparty", registration)
    assert refused["code_name"] == "UNAUTHORIZED"
    # The buyer may not offer the patient's records.
    stolen = s.send(
        s.b,
        "buyer",
        "lock",
        {
            "lock_id": "stolen",
            "hashlock": bytes(32),
            "recipient": s.did("relayer"),
            "asset": OFFER,
            "timeout_height": s.height(s.b) + 5,
        },
    )
    assert stolen["code_name"] in ("NOT_FOUND", "UNAUTHORIZED")
    # Nobody locks more tokens than they hold.
    broke = s.send(
        s.a,
        "relayer",
        "lock",
        {
            "lock_id": "broke",
            "hashlock": bytes(32),
            "recipient": s.did("patient"),
            "asset": {"kind": "token", "amount": 5},
            "timeout_height": s.height(s.a) + 5,
        },
    )
    assert broke["code_name"] == "INVALID_STATE"


def test_a_stranger_sees_a_locks_public_view_not_its_terms(swap: Swap) -> None:
    s = swap
    preimage = os.urandom(32)
    s.offer("swap-view", preimage)
    with s.b.client(s.keys["relayer"]) as c:
        public = c.get("/v1/htlc/locks/swap-view")
        assert "recipient" not in public and "locker" not in public
        assert public["hashlock"] == crypto.sm3(preimage).hex()
        with pytest.raises(Exception) as refused:
            c.get("/v1/htlc/locks/swap-view/terms")
        assert getattr(refused.value, "status", 0) == 403
        with pytest.raises(Exception) as missing:
            c.get("/v1/htlc/locks/no-such-lock/terms")
        assert getattr(missing.value, "status", 0) == 403
    with s.b.client(s.keys["buyer"]) as c:
        assert c.get("/v1/htlc/locks/swap-view/terms")["recipient"] == s.did("buyer")


def test_a_solo_node_signs_its_headers_with_its_home_key(swap: Swap, tmp_path: Path) -> None:
    """The gateway serves each committed block's header signed by the node key; the
    signature checks against that key and the header matches the block; a height not
    yet committed is 404. `medchain node`'s home keeps the key 0600 and reuses it."""
    from medchain.contracts.lightclient import solo_header_bytes
    from medchain.node import NodeHome

    s = swap
    height = s.height(s.b)
    with s.b.client() as c:
        answer = c.get(f"/v1/chain/signed-header/{height}")
        with pytest.raises(Exception) as ahead:
            c.get(f"/v1/chain/signed-header/{height + 1000}")
    assert getattr(ahead.value, "status", 0) == 404
    head = answer["header"]
    roots = s.b.ledger.app.db.roots(height)
    assert roots is not None and bytes.fromhex(head["app_hash"]) == roots["app_hash"]
    message = solo_header_bytes(
        head["chain_id"],
        head["height"],
        bytes.fromhex(head["block_hash"]),
        bytes.fromhex(head["app_hash"]),
        head["time_ms"],
    )
    key = s.b.header_key
    assert answer["public_key"] == key.public.hex()
    assert crypto.verify(key.suite, key.public, message, bytes.fromhex(answer["signature"]))
    assert not crypto.verify(
        key.suite, key.public, message + b"x", bytes.fromhex(answer["signature"])
    )

    home = NodeHome(tmp_path / "node")
    first = home.header_key()
    assert oct(home.header_key_path.stat().st_mode & 0o777) == "0o600"
    assert home.header_key().public == first.public


def test_erasing_an_offered_record_does_not_stop_the_buyers_claim(swap: Swap) -> None:
    """Once the patient took the tokens on A, B's claim must not fail: erasing an
    offered record in between leaves the grant issued (covering less)."""
    s = swap
    with s.b.client(s.keys["hosp_b"]) as c:
        record = {
            "record_id": "rec-b9",
            "patient": s.did("patient"),
            "resource_type": "Observation",
            "cid": "b" + "d" * 58,
            "content_hash": bytes(32),
        }
        assert c.send(s.keys["hosp_b"], "records", "register", record)["code_name"] == "OK"
    preimage = os.urandom(32)
    offer = OFFER | {"records": ["rec-b9"]}
    s.ok(
        s.b,
        "patient",
        "lock",
        {
            "lock_id": "swap-erase",
            "hashlock": crypto.sm3(preimage),
            "recipient": s.did("buyer"),
            "asset": offer,
            "timeout_height": s.height(s.b) + 40,
        },
    )
    assert s.pay("swap-erase", preimage)["code_name"] == "OK"
    s.ok(s.a, "patient", "claim", {"lock_id": "swap-erase", "preimage": preimage})
    with s.b.client(s.keys["hosp_b"]) as c:
        erased = c.send(s.keys["hosp_b"], "records", "erase", {"record_id": "rec-b9"})
    assert erased["code_name"] == "OK", erased
    s.ok(s.b, "buyer", "claim", {"lock_id": "swap-erase", "preimage": preimage})
    assert s.b.state(hm.lock_key("swap-erase"))["grant_id"]


def test_locks_are_listed_after_a_height_in_order(swap: Swap) -> None:
    s = swap
    with s.a.client() as c:
        every = c.get("/v1/htlc/locks", after_height=-1, limit=200)
        heights = [v["height"] for v in every]
        assert heights == sorted(heights) and len(every) >= 2
        later = c.get("/v1/htlc/locks", after_height=heights[0])
        assert [v["lock_id"] for v in later] == [
            v["lock_id"] for v in every if v["height"] > heights[0]
        ]
        assert len(c.get("/v1/htlc/locks", after_height=-1, limit=1)) == 1
