"""Health records on a running node: a solo node serving its HTTP gateway and a
custodian edge serving its own HTTP API, both real servers on real ports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.core.tx import build_tx
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import fetch_record, upload_record
from medchain.edge.vault import Vault
from medchain.node import EdgeServer, GatewayServer
from medchain.sdk.client import Client
from medchain.sdk.tls import ClientTls
from support.ledger import CHAIN_ID, DATA, Ledger, did_of
from support.servers import free_port

SPEC = DATA / "fhir" / "spec-examples"
REPORT = (SPEC / "DiagnosticReport-f201.json").read_bytes()
PRESCRIPTION = (SPEC / "MedicationRequest-medrx0302.json").read_bytes()
DAY_MS = 86_400_000


@dataclass
class Consortium:
    node: Client
    edge_url: str
    edge: CustodianEdge
    keys: dict[str, crypto.KeyPair]
    records: dict[str, str] = field(default_factory=dict)
    chain_id: str = CHAIN_ID

    def did(self, name: str) -> str:
        return did_of(self.keys[name])

    def send(self, who: str, contract: str, action: str, payload: dict[str, Any]) -> Any:
        return self.node.send(self.keys[who], contract, action, payload)

    def ok(self, who: str, contract: str, action: str, payload: dict[str, Any]) -> Any:
        r = self.send(who, contract, action, payload)
        assert r["code_name"] == "OK", r
        return r

    def new_patient(self) -> tuple[crypto.KeyPair, str]:
        """A freshly registered patient: key and DID."""
        key = crypto.generate_keypair()
        assert self.node.send(key, "identity", "register_patient", {})["code_name"] == "OK"
        return key, self.node.account(key)["did"]

    def block_time_ms(self) -> int:
        return self.node.block_time_ms()

    def grant(
        self,
        grantee: str,
        types: list[str],
        purposes: list[str] | None = None,
        expires_in_ms: int = DAY_MS,
        as_who: str = "patient",
        kind: str = "did",
    ) -> str:
        r = self.ok(
            as_who,
            "consent",
            "grant",
            {
                "patient": self.did("patient"),
                "grantee_kind": kind,
                "grantee": self.did(grantee) if kind == "did" else grantee,
                "purposes": purposes or ["TREAT"],
                "scope_types": types,
                "expires_ms": self.block_time_ms() + expires_in_ms,
            },
        )
        return str(r["events"][0]["attributes"]["grant_id"])

    def upload(self, who: str, content: bytes, patient: str, **params: str) -> httpx.Response:
        return upload_record(
            self.keys[who], self.chain_id, self.edge_url, content, patient, **params
        )


NAMES = (
    "admin_a",
    "doctor_a",
    "attending_a",
    "admin_b",
    "doctor_b",
    "nurse_b",
    "pharmacist_b",
    "patient",
    "parent",
)
STAFF = (
    ("admin_a", "hosp-a", "doctor_a", ["doctor"]),
    ("admin_a", "hosp-a", "attending_a", ["doctor", "attending"]),
    ("admin_b", "hosp-b", "doctor_b", ["doctor"]),
    ("admin_b", "hosp-b", "nurse_b", ["nurse"]),
    ("admin_b", "hosp-b", "pharmacist_b", ["pharmacist"]),
)


def running_consortium(
    tmp_path: Path, header_key: crypto.KeyPair | None = None
) -> Iterator[Consortium]:
    """Two hospitals, staff and patients; a solo node's gateway and hosp-a's edge serving
    (with `header_key`, the node signs block headers with it, as `medchain node` does)."""
    keys = {n: crypto.generate_keypair() for n in NAMES}
    keys["root"] = crypto.generate_keypair()  # the consortium admin
    ledger = Ledger(tmp_path / "chain.db", keys["root"])
    ledger.add_org("hosp-a", keys["admin_a"])
    ledger.add_org("hosp-b", keys["admin_b"])
    for admin, org_id, member, roles in STAFF:
        ledger.add_staff(keys[admin], org_id, keys[member], roles)
    ledger.add_patient(keys["patient"])
    ledger.add_patient(keys["parent"])
    signing: dict[str, Any] = {}
    if header_key is not None:
        signing = {
            "header_signer": lambda m: crypto.sign(header_key, m),
            "header_key": (header_key.suite, header_key.public),
        }
    engine = SoloEngine(ledger.app, block_interval=0.05, **signing)
    engine.start()
    # The custodian's edge runs beside its node: its org key is an operator there, and
    # the test reads the ledger through the same signed client.
    operator = frozenset({(keys["admin_a"].suite, keys["admin_a"].public)})
    gateway = GatewayServer(engine, port=free_port(), operators=operator)
    gateway.start()
    node = Client(gateway.url, key=keys["admin_a"])
    edge = CustodianEdge(Vault(tmp_path / "vault-a", keys["admin_a"]), keys["admin_a"], node)
    edge_server = EdgeServer(edge, "127.0.0.1", free_port(), sync_interval=0.1)
    edge_server.start()
    world = Consortium(node, edge_server.url, edge, keys)
    world.ok(
        "admin_a", "identity", "set_endpoint", {"org_id": "hosp-a", "edge_url": edge_server.url}
    )
    for record_id, content in (("report-1", REPORT), ("rx-1", PRESCRIPTION)):
        r = world.upload("admin_a", content, patient=world.did("patient"), record_id=record_id)
        assert r.status_code == 201, r.text
    yield world
    edge_server.stop()
    gateway.stop()
    engine.stop()


def fetch(world: Consortium, who: str, record_id: str, purpose: str = "TREAT") -> bytes:
    return fetch_record(world.node, world.keys[who], record_id, purpose).plaintext


Call = tuple[str, str, str, dict[str, Any]]  # who, contract, action, payload


def run_in_rounds(node: Client, keys: dict[str, crypto.KeyPair], calls: list[Call]) -> None:
    """Commit `calls` in as few blocks as their order allows: each round takes every
    signer's next call (so no signer has two txs pending at once), submits the round,
    and waits for its block before the next."""
    queues: dict[str, list[Call]] = {}
    for call in calls:
        queues.setdefault(call[0], []).append(call)
    while any(queues.values()):
        round_ = [q.pop(0) for q in queues.values() if q]
        raws = [
            build_tx(
                keys[who],
                chain_id=node.chain_id,
                contract=contract,
                action=action,
                payload=payload,
                nonce=node.account(keys[who])["next_nonce"],
            )
            for who, contract, action, payload in round_
        ]
        answers = [node.submit_raw(raw, wait=False) for raw in raws]
        for call, result in zip(round_, node.outcomes(answers), strict=True):
            assert result.get("code") == 0, (call[:3], result)


def consortium_on(
    urls: list[str],
    root: crypto.KeyPair,
    operator: crypto.KeyPair,
    tmp_path: Path,
    tls: ClientTls | None = None,
    edge_node: int = 0,
) -> Iterator[Consortium]:
    """The consortium of `running_consortium` set up by transactions on a running
    network (any engine) whose consortium admin is `root`: hosp-a's admin is
    `operator` (an operator of every node), its edge talks to node `edge_node`
    (`urls[edge_node]`), and `world.node` is that node's client."""
    keys = {n: crypto.generate_keypair() for n in NAMES} | {"root": root, "admin_a": operator}
    node = Client(urls[edge_node], tls=tls, key=keys["admin_a"])
    orgs: list[Call] = [
        (
            "root",
            "identity",
            "register_org",
            {
                "org_id": org_id,
                "name": org_id,
                "org_type": "hospital",
                "admin_public_key": keys[admin].public,
            },
        )
        for org_id, admin in (("hosp-a", "admin_a"), ("hosp-b", "admin_b"))
    ]
    patients: list[Call] = [(p, "identity", "register_patient", {}) for p in ("patient", "parent")]
    run_in_rounds(node, keys, orgs + patients)
    staff: list[Call] = [
        (admin, "identity", "add_member", {"org_id": org, "public_key": keys[m].public, "roles": r})
        for admin, org, m, r in STAFF
    ]
    run_in_rounds(node, keys, staff)
    edge = CustodianEdge(Vault(tmp_path / "vault-a", keys["admin_a"]), keys["admin_a"], node)
    edge_server = EdgeServer(edge, "127.0.0.1", free_port(), sync_interval=0.1)
    edge_server.start()
    try:
        world = Consortium(node, edge_server.url, edge, keys, chain_id=node.chain_id)
        world.ok(
            "admin_a",
            "identity",
            "set_endpoint",
            {"org_id": "hosp-a", "edge_url": edge_server.url},
        )
        for record_id, content in (("report-1", REPORT), ("rx-1", PRESCRIPTION)):
            r = world.upload("admin_a", content, patient=world.did("patient"), record_id=record_id)
            assert r.status_code == 201, r.text
        yield world
    finally:
        edge_server.stop()
