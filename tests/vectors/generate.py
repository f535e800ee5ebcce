"""Regenerate tests/vectors/*.json: `python tests/vectors/generate.py [name ...]`.

A vector is a genesis, a list of blocks of signed tx bytes, and what every
engine must reach at each height: the app hash, each tx's code and events, and
the write set (each key the height changed with the SM3 of its new value, and
one digest over them; see tests/support/vectors.py). Keys come from fixed
private scalars so a reader can re-sign; signatures are stored as bytes because
SM2 signing is randomised, so regenerating gives new tx bytes and new hashes.
Regenerate only when a change to the state machine is intended, and say so in
the commit.

`--expected-only` keeps a vector's blocks and recomputes only what is
expected of them (to add fields to an old vector without re-signing); with
`--new-genesis` as well, the genesis state may change (so may every app hash)
but each block's codes, events and write set must stay the same. Issue 15 used
it once: the genesis role policy gained the record types added then
(ServiceRequest, CarePlan, CareTeam, Goal, MedicationAdministration).

The vectors of issue 13 were made from the contracts as they stood before
their typed-payload refactor, to prove it changed nothing. Two state changes
of that refactor were intended: `consent.revoke` stores its `reason` on the
grant and `records.erase` on the tombstone. So the revoke and erase txs below
carry no `reason`, and stay valid across it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from support.synthetic_cometbft import SyntheticChain, signers
from support.vectors import replay_with_application

from medchain import crypto
from medchain.consensus.application import Application
from medchain.contracts.htlc import model as htlc
from medchain.contracts.identity.model import did_for_key, rotation_message
from medchain.contracts.lightclient import solo_header_bytes
from medchain.contracts.records.model import batch_root
from medchain.contracts.research import model as research
from medchain.contracts.supervision import model as supervision
from medchain.core import proofs
from medchain.core.block import Block, TxResult
from medchain.core.genesis import parse_genesis
from medchain.core.merkle import merkle_root
from medchain.core.tx import build_tx, tx_id_of
from medchain.network import htlc_relay
from medchain.storage.chain_db import ChainDB

HERE = Path(__file__).parent
CHAIN = "medchain-vectors"
T0 = 1_764_000_000_000
DAY_MS = 86_400_000
GTIN = "06901234567892"
CT_HEAD = "http://loinc.org|24725-4"
CONTENT_HASH = bytes(range(32))


def key(n: int) -> crypto.KeyPair:
    return crypto.keypair_from_private("sm", (n * 0x1F3D5B79).to_bytes(32, "big"))


def did(k: crypto.KeyPair) -> str:
    return did_for_key("sm", k.public)


class Script:
    """Blocks built one at a time on a live chain, so a later tx can name what an
    earlier one made (a grant id, a session id, an alert id)."""

    def __init__(self, workdir: Path, root: crypto.KeyPair, chain_id: str = CHAIN, **extra: Any):
        self.chain_id = chain_id
        self.genesis: dict[str, Any] = {
            "chain_id": chain_id,
            "genesis_time_ms": T0,
            "consortium_admins": [{"name": "root", "suite": "sm", "public_key": root.public.hex()}],
            **extra,
        }
        self.app = Application(ChainDB(workdir / f"{chain_id}.db"))
        self.app.init_chain(parse_genesis(self.genesis))
        self.blocks: list[list[bytes]] = []
        self.nonces: dict[bytes, int] = {}

    @property
    def next_time_ms(self) -> int:
        return T0 + 1000 * (len(self.blocks) + 1)

    def tx(self, k: crypto.KeyPair, contract: str, action: str, payload: dict[str, Any]) -> bytes:
        n = self.nonces.get(k.public, 0)
        self.nonces[k.public] = n + 1
        return build_tx(
            k, chain_id=self.chain_id, contract=contract, action=action, payload=payload, nonce=n
        )

    def block(self, *txs: bytes) -> list[TxResult]:
        db = self.app.db
        height = len(self.blocks) + 1
        result = self.app.finalize_block(
            Block(self.chain_id, height, self.next_time_ms, txs, db.last_block_hash)
        )
        self.app.commit(result)
        self.blocks.append(list(txs))
        return list(result.tx_results)

    def org(self, org_id: str, admin: crypto.KeyPair, org_type: str = "hospital") -> dict[str, Any]:
        return {
            "org_id": org_id,
            "name": org_id,
            "org_type": org_type,
            "admin_public_key": admin.public,
        }

    def member(self, org_id: str, k: crypto.KeyPair, *roles: str) -> dict[str, Any]:
        return {"org_id": org_id, "public_key": k.public, "roles": list(roles)}


def short_id(raw: bytes) -> str:
    """The id a contract gives what a tx opened: its tx id's first 16 bytes."""
    return tx_id_of(raw).hex()[:32]


def record(
    record_id: str, patient: crypto.KeyPair, resource_type: str, **extra: Any
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "patient": did(patient),
        "resource_type": resource_type,
        "cid": "b" + "a" * 58,
        "content_hash": CONTENT_HASH,
        **extra,
    }


def hospitals(s: Script, root: crypto.KeyPair, ks: dict[str, crypto.KeyPair]) -> None:
    """Two hospitals, a doctor at each, a nurse at B, a patient and a parent."""
    s.block(
        s.tx(root, "identity", "register_org", s.org("hosp-a", ks["admin_a"])),
        s.tx(root, "identity", "register_org", s.org("hosp-b", ks["admin_b"])),
    )
    s.block(
        s.tx(ks["admin_a"], "identity", "add_member", s.member("hosp-a", ks["doctor_a"], "doctor")),
        s.tx(ks["admin_b"], "identity", "add_member", s.member("hosp-b", ks["doctor_b"], "doctor")),
        s.tx(ks["admin_b"], "identity", "add_member", s.member("hosp-b", ks["nurse_b"], "nurse")),
        s.tx(ks["patient"], "identity", "register_patient", {}),
        s.tx(ks["parent"], "identity", "register_patient", {}),
    )


CAST = ("admin_a", "admin_b", "doctor_a", "doctor_b", "nurse_b", "patient", "parent")


def cast(first: int) -> dict[str, crypto.KeyPair]:
    return {name: key(first + i) for i, name in enumerate(CAST)}


def grant(
    s: Script, ks: dict[str, crypto.KeyPair], kind: str, grantee: str, **scope: Any
) -> dict[str, Any]:
    return {
        "patient": did(ks["patient"]),
        "grantee_kind": kind,
        "grantee": grantee,
        "purposes": ["TREAT"],
        "expires_ms": s.next_time_ms + DAY_MS,
        **scope,
    }


def consent_revocation(workdir: Path) -> tuple[str, Script]:
    root = key(101)
    ks = cast(102)
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(ks["doctor_a"], "records", "register", record("obs-1", ks["patient"], "Observation")),
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            record("rx-1", ks["patient"], "MedicationRequest"),
        ),
    )
    to_doctor = s.tx(
        ks["patient"],
        "consent",
        "grant",
        grant(s, ks, "did", did(ks["doctor_b"]), scope_types=["Observation"]),
    )
    s.block(
        to_doctor,
        s.tx(
            ks["patient"], "consent", "grant", grant(s, ks, "role", "nurse", scope_records=["rx-1"])
        ),
        s.tx(
            ks["parent"],
            "consent",
            "grant",
            grant(s, ks, "org", "hosp-b", scope_types=["Observation"]),
        ),  # not a guardian yet
        s.tx(
            ks["patient"],
            "consent",
            "grant",
            grant(s, ks, "role", "doctor", scope_types=["Observation"]) | {"expires_ms": T0},
        ),  # expired
        s.tx(
            ks["patient"],
            "consent",
            "grant",
            grant(s, ks, "did", "did:medchain:nobody", scope_types=["Observation"]),
        ),
        s.tx(ks["patient"], "consent", "delegate_guardian", {"guardian": did(ks["parent"])}),
    )
    opened = s.tx(ks["doctor_b"], "exchange", "request", {"record_id": "obs-1", "purpose": "TREAT"})
    s.block(
        opened,
        s.tx(
            ks["parent"],
            "consent",
            "grant",
            grant(s, ks, "org", "hosp-b", scope_types=["MedicationRequest"]),
        ),
        s.tx(
            root,
            "consent",
            "set_role_policy",
            {"role": "nurse", "resource_types": ["MedicationRequest", "Observation"]},
        ),
        s.tx(
            ks["admin_a"], "consent", "set_role_policy", {"role": "nurse", "resource_types": []}
        ),  # not a consortium admin
    )
    grant_id = short_id(to_doctor)
    # Same block: a request before the revocation is allowed, one after it is refused.
    s.block(
        s.tx(ks["doctor_b"], "exchange", "request", {"record_id": "obs-1", "purpose": "TREAT"}),
        s.tx(ks["patient"], "consent", "revoke", {"grant_id": grant_id}),  # no reason: see above
        s.tx(ks["doctor_b"], "exchange", "request", {"record_id": "obs-1", "purpose": "TREAT"}),
    )
    # Next block: the session opened before the revocation may not be released.
    s.block(
        s.tx(ks["doctor_a"], "exchange", "release", {"session_id": short_id(opened)}),
        s.tx(ks["patient"], "consent", "revoke", {"grant_id": grant_id}),  # already revoked
        s.tx(ks["doctor_b"], "consent", "revoke", {"grant_id": short_id(opened)}),  # no such grant
        s.tx(ks["patient"], "consent", "revoke_guardian", {"guardian": did(ks["parent"])}),
    )
    s.block(
        s.tx(
            ks["parent"],
            "consent",
            "grant",
            grant(s, ks, "org", "hosp-b", scope_types=["Observation"]),
        ),  # no longer a guardian
        s.tx(ks["patient"], "consent", "revoke_guardian", {"guardian": did(ks["parent"])}),
    )
    return (
        "grants, guardians and role policy; a revocation refuses later requests in its "
        "own block and every release after it",
        s,
    )


def exchange_refusal(workdir: Path) -> tuple[str, Script]:
    root = key(201)
    ks = cast(202)
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            record("report-1", ks["patient"], "DiagnosticReport"),
        ),
    )
    s.block(
        s.tx(
            ks["doctor_b"], "exchange", "request", {"record_id": "report-1", "purpose": "TREAT"}
        ),  # refused: no grant
        s.tx(
            ks["nurse_b"], "exchange", "request", {"record_id": "report-1", "purpose": "HRESEARCH"}
        ),  # refused
        s.tx(ks["doctor_b"], "exchange", "request", {"record_id": "report-1", "purpose": "GOSSIP"}),
        s.tx(ks["doctor_b"], "exchange", "request", {"record_id": "no-such", "purpose": "TREAT"}),
        s.tx(
            ks["patient"],
            "consent",
            "grant",
            grant(s, ks, "did", did(ks["doctor_b"]), scope_types=["DiagnosticReport"]),
        ),
    )
    first = s.tx(
        ks["doctor_b"], "exchange", "request", {"record_id": "report-1", "purpose": "TREAT"}
    )
    second = s.tx(
        ks["doctor_b"], "exchange", "request", {"record_id": "report-1", "purpose": "TREAT"}
    )
    s.block(first, second)
    s.block(
        s.tx(
            ks["doctor_b"], "exchange", "release", {"session_id": short_id(first)}
        ),  # not the custodian
        s.tx(ks["doctor_a"], "exchange", "release", {"session_id": short_id(first)}),
        s.tx(ks["doctor_a"], "exchange", "release", {"session_id": short_id(second)}),
        s.tx(
            ks["doctor_a"], "exchange", "release", {"session_id": short_id(second)}
        ),  # already released
        s.tx(
            ks["doctor_b"],
            "exchange",
            "ack",
            {"session_id": short_id(first), "content_hash": CONTENT_HASH},
        ),
    )
    s.block(
        s.tx(
            ks["doctor_b"],
            "exchange",
            "ack",
            {"session_id": short_id(first), "content_hash": CONTENT_HASH},
        ),
        s.tx(
            ks["nurse_b"],
            "exchange",
            "ack",
            {"session_id": short_id(second), "content_hash": bytes(32)},
        ),  # not the requester
        s.tx(
            ks["doctor_b"],
            "exchange",
            "ack",
            {"session_id": short_id(second), "content_hash": bytes(32)},
        ),  # disputed
        s.tx(
            ks["doctor_b"], "exchange", "ack", {"session_id": "0" * 32, "content_hash": bytes(32)}
        ),
    )
    return (
        "exchange requests refused with their audit event, sessions released, "
        "acknowledged and disputed",
        s,
    )


def records_erasure(workdir: Path) -> tuple[str, Script]:
    root = key(301)
    ks = cast(302)
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            record("note-1", ks["patient"], "DocumentReference"),
        ),
        s.tx(ks["doctor_a"], "records", "register", record("obs-1", ks["patient"], "Observation")),
        s.tx(
            ks["doctor_a"], "records", "register", record("obs-1", ks["patient"], "Observation")
        ),  # duplicate
        s.tx(ks["doctor_a"], "records", "register", record("../x", ks["patient"], "Observation")),
        s.tx(ks["doctor_a"], "records", "register", record("obs-2", ks["patient"], "Spaceship")),
        s.tx(
            ks["patient"], "records", "register", record("obs-3", ks["patient"], "Observation")
        ),  # not staff
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            {**record("obs-4", ks["patient"], "Observation"), "patient": did(ks["doctor_b"])},
        ),  # not a patient
    )
    s.block(
        s.tx(
            ks["doctor_a"],
            "records",
            "supersede",
            {
                "record_id": "obs-1",
                "new_record_id": "obs-1b",
                "resource_type": "Observation",
                "cid": "b" + "c" * 58,
                "content_hash": bytes(32),
            },
        ),
        s.tx(
            ks["doctor_b"],
            "records",
            "supersede",
            {
                "record_id": "note-1",
                "new_record_id": "note-1b",
                "resource_type": "DocumentReference",
                "cid": "b" + "c" * 58,
                "content_hash": bytes(32),
            },
        ),  # not the custodian
        s.tx(
            ks["doctor_a"],
            "records",
            "anchor_log",
            {"first_seq": 1, "last_seq": 10, "root": bytes(32)},
        ),
        s.tx(
            ks["doctor_a"],
            "records",
            "anchor_log",
            {"first_seq": 12, "last_seq": 20, "root": bytes(32)},
        ),  # a gap
        s.tx(
            ks["doctor_a"],
            "records",
            "anchor_log",
            {"first_seq": 11, "last_seq": 20, "root": bytes(31)},
        ),
    )
    # Erase: no reason field (see above).
    s.block(
        s.tx(ks["patient"], "records", "erase", {"record_id": "note-1"}),
        s.tx(
            ks["doctor_b"], "records", "erase", {"record_id": "obs-1b"}
        ),  # neither patient nor custodian admin
        s.tx(
            ks["doctor_a"], "records", "erase", {"record_id": "obs-1b"}
        ),  # a doctor, not the org admin
        s.tx(ks["admin_a"], "records", "erase", {"record_id": "obs-1b"}),
        s.tx(ks["patient"], "records", "erase", {"record_id": "nothing"}),
        s.tx(ks["patient"], "records", "erase", {"record_id": 7}),
    )
    s.block(
        s.tx(ks["patient"], "records", "erase", {"record_id": "note-1"}),  # already erased
        s.tx(
            ks["doctor_a"],
            "records",
            "supersede",
            {
                "record_id": "note-1",
                "new_record_id": "note-1b",
                "resource_type": "DocumentReference",
                "cid": "b" + "c" * 58,
                "content_hash": bytes(32),
            },
        ),  # erased
        s.tx(
            ks["doctor_a"],
            "records",
            "anchor_log",
            {"first_seq": 11, "last_seq": 20, "root": bytes(32)},
        ),
    )
    return (
        "records registered, superseded and erased (tombstones), refusals, edge log "
        "anchors with a gap",
        s,
    )


def batch(patient: crypto.KeyPair, ids: list[str], **root: bytes) -> dict[str, Any]:
    """A records.register_batch payload of Observations (its true root unless given)."""
    entries = [
        {k: v for k, v in record(i, patient, "Observation").items() if k != "patient"} for i in ids
    ]
    true_root = batch_root(did(patient), entries)
    return {"patient": did(patient), "root": root.get("root", true_root), "records": entries}


def records_batch(workdir: Path) -> tuple[str, Script]:
    root = key(1101)
    ks = cast(1102)
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(
            ks["doctor_a"], "records", "register_batch", batch(ks["patient"], ["b-1", "b-2", "b-3"])
        ),
        s.tx(ks["doctor_a"], "records", "register", record("one-1", ks["patient"], "Observation")),
        s.tx(
            ks["doctor_a"], "records", "register_batch", batch(ks["patient"], ["b-4", "one-1"])
        ),  # one-1 exists: the whole batch is refused
        s.tx(
            ks["doctor_a"], "records", "register_batch", batch(ks["patient"], ["b-5", "b-5"])
        ),  # an id twice
        s.tx(
            ks["doctor_a"],
            "records",
            "register_batch",
            batch(ks["patient"], ["b-6"], root=bytes(32)),
        ),  # not the entries' root
        s.tx(
            ks["patient"], "records", "register_batch", batch(ks["patient"], ["b-7"])
        ),  # not staff
        s.tx(
            ks["doctor_b"], "records", "register_batch", batch(ks["parent"], ["b-8", "b-9"])
        ),  # another custodian, another patient
    )
    s.block(
        s.tx(ks["patient"], "records", "erase", {"record_id": "b-2"}),
        s.tx(
            ks["doctor_a"],
            "records",
            "supersede",
            {
                "record_id": "b-3",
                "new_record_id": "b-3v2",
                "resource_type": "Observation",
                "cid": "b" + "c" * 58,
                "content_hash": bytes(32),
            },
        ),
    )
    return "records registered in batches under a Merkle root, refusals, erase, supersede", s


def supply_events(s: Script, ks: dict[str, crypto.KeyPair]) -> Callable[..., bytes]:
    """`event(who, step, epcs, **extra)`: a supply.record_event tx signed by ks[who],
    with the next made-up EPCIS event hash (1, 2, 3 ...) and the script's next time."""
    serial = iter(range(1, 100))

    def event(who: str, step: str, epcs: list[str], **extra: Any) -> bytes:
        payload = {
            "event_hash": f"ni:///sha-256;{next(serial):064x}?ver=CBV2.0",
            "biz_step": step,
            "event_time_ms": s.next_time_ms,
            "epcs": epcs,
            **extra,
        }
        return s.tx(ks[who], "supply", "record_event", payload)

    return event


def supply_recall_cold_chain(workdir: Path) -> tuple[str, Script]:
    root = key(401)
    names = ("maker", "api_supplier", "logistics", "logger", "pharmacy", "nmpa_admin", "regulator")
    ks = {n: key(402 + i) for i, n in enumerate(names)}
    s = Script(workdir, root)
    s.block(
        s.tx(root, "identity", "register_org", s.org("acme-pharma", ks["maker"], "manufacturer")),
        s.tx(root, "identity", "register_org", s.org("api-co", ks["api_supplier"], "manufacturer")),
        s.tx(
            root, "identity", "register_org", s.org("cold-logistics", ks["logistics"], "logistics")
        ),
        s.tx(root, "identity", "register_org", s.org("yifeng", ks["pharmacy"], "pharmacy")),
        s.tx(root, "identity", "register_org", s.org("nmpa", ks["nmpa_admin"], "regulator")),
    )
    s.block(
        s.tx(
            ks["logistics"],
            "identity",
            "add_member",
            s.member("cold-logistics", ks["logger"], "device"),
        ),
        s.tx(
            ks["nmpa_admin"],
            "identity",
            "add_member",
            s.member("nmpa", ks["regulator"], "regulator"),
        ),
    )
    product = {
        "gtin": GTIN,
        "name": "Insulin pen 3 ml",
        "kind": "drug",
        "temp_min_c10": 20,
        "temp_max_c10": 80,
        "max_excursion_ms": 10_000,
    }
    s.block(
        s.tx(
            ks["api_supplier"],
            "supply",
            "register_ingredient",
            {"lot_id": "API-77", "substance": "insulin"},
        ),
        s.tx(ks["maker"], "supply", "register_product", product),
        s.tx(
            ks["maker"], "supply", "register_product", product | {"gtin": "06901234567893"}
        ),  # bad check digit
        s.tx(
            ks["maker"],
            "supply",
            "register_product",
            product | {"gtin": "06901234567809", "temp_min_c10": 90},
        ),  # min above max
        s.tx(
            ks["pharmacy"], "supply", "register_product", product | {"gtin": "06901234567816"}
        ),  # not a maker
    )
    s.block(
        s.tx(
            ks["maker"],
            "supply",
            "register_batch",
            {"gtin": GTIN, "lot": "L2401", "expiry": "2030-12-31", "ingredients": ["API-77"]},
        ),
        s.tx(
            ks["maker"],
            "supply",
            "register_batch",
            {"gtin": GTIN, "lot": "L2402", "expiry": "2030-12-31", "ingredients": ["API-99"]},
        ),  # unknown ingredient
    )
    units = [f"{GTIN}/S{i:04d}" for i in range(4)]
    event = supply_events(s, ks)

    logger = did(ks["logger"])
    s.block(event("maker", "commissioning", units, lot="L2401"))
    s.block(event("maker", "packing", units[:2], parent="CASE-1"))
    s.block(
        event("maker", "shipping", ["CASE-1"], destination="yifeng", shipment="SH-1", device=logger)
    )
    t = s.next_time_ms
    s.block(
        s.tx(
            ks["logger"],
            "supply",
            "readings",
            {"shipment": "SH-1", "readings": [[t - 20_000, 50], [t - 15_000, 125]]},
        )
    )
    t = s.next_time_ms
    s.block(
        s.tx(
            ks["logger"], "supply", "readings", {"shipment": "SH-1", "readings": [[t - 3_000, 120]]}
        ),  # the excursion passes 10 s
        s.tx(
            ks["pharmacy"],
            "supply",
            "readings",
            {"shipment": "SH-1", "readings": [[t - 1_000, 40]]},
        ),  # not the shipment's logger
    )
    s.block(event("pharmacy", "receiving", ["CASE-1"], shipment="SH-1"))
    s.block(event("pharmacy", "dispensing", [units[0]]))  # quarantined
    s.block(
        event("maker", "shipping", units[2:], destination="yifeng", shipment="SH-2", device=logger)
    )
    t = s.next_time_ms
    s.block(
        s.tx(
            ks["logger"],
            "supply",
            "readings",
            {"shipment": "SH-2", "readings": [[t - 5000, 40], [t - 1000, 45]]},
        )
    )
    s.block(event("pharmacy", "receiving", units[2:], shipment="SH-2"))
    s.block(event("pharmacy", "dispensing", [units[2]]))
    s.block(
        s.tx(
            ks["pharmacy"], "supply", "recall", {"ingredient_lot": "API-77", "reason": "endotoxin"}
        ),  # not the supplier
        s.tx(
            ks["api_supplier"],
            "supply",
            "recall",
            {"ingredient_lot": "API-77", "reason": "endotoxin"},
        ),
    )
    s.block(
        event("pharmacy", "dispensing", [units[3]]),  # recalled
        s.tx(
            ks["regulator"],
            "supply",
            "recall",
            {"gtin": GTIN, "lot": "L2401", "reason": "regulator order"},
        ),
    )
    return (
        "a drug lot from ingredient to pharmacy: a cold-chain excursion quarantines a "
        "case, an ingredient recall stops dispensing",
        s,
    )


def supervision_gaps(workdir: Path) -> tuple[str, Script]:
    root, nhc, nhsa, inspector, relayer = (key(501 + i) for i in range(5))
    s = Script(workdir, root, chain_id="medchain-vectors-regulator", profile="regulator")
    source = "business-1"
    s.block(
        s.tx(root, "identity", "register_org", s.org("nhc", nhc, "regulator")),
        s.tx(root, "identity", "register_org", s.org("nhsa", nhsa, "regulator")),
    )
    s.block(
        s.tx(nhsa, "identity", "add_member", s.member("nhsa", inspector, "regulator")),
        s.tx(nhsa, "identity", "add_member", s.member("nhsa", relayer, "device")),
    )
    s.block(
        s.tx(
            relayer, "supervision", "authorize_relayer", {"source": source, "relayer": did(relayer)}
        ),  # a relayer may not
        s.tx(
            inspector,
            "supervision",
            "authorize_relayer",
            {"source": source, "relayer": did(relayer)},
        ),
    )
    chain = {"height": -1, "running": supervision.GENESIS_RUNNING_HASH, "block_hash": bytes(32)}

    def digest(time_ms: int, events: list[tuple[str, dict[str, str]]], **override: Any) -> bytes:
        height = chain["height"] + 1
        block_hash = crypto.sm3(height.to_bytes(8, "big"))
        body = supervision.digest_body(
            source,
            height,
            block_hash,
            chain["block_hash"],
            bytes(32),
            len(events),
            time_ms,
            [{"tx": i, "type": t, "attributes": a} for i, (t, a) in enumerate(events)],
        )
        body = body | {"running_hash": supervision.running_hash(chain["running"], body)} | override
        if not override:
            chain.update(height=height, running=body["running_hash"], block_hash=block_hash)
        return s.tx(relayer, "supervision", "digest", body)

    business = T0 - DAY_MS
    break_glass = (
        "consent.break_glass_opened",
        {"request_id": "b1", "patient": "did:p", "doctor": "did:dr", "actor": "did:a"},
    )
    s.block(digest(business, []), digest(business + 1000, []))
    s.block(
        digest(business + 2000, [], height=chain["height"] + 2),  # a gap
        digest(business + 2000, [], height=chain["height"]),  # a duplicate
        digest(business + 2000, [], app_hash=b"\x01" * 32),  # altered: the running hash breaks
        digest(business + 2000, [], prev_block_hash=b"\x02" * 32),  # a fork
        s.tx(inspector, "supervision", "digest", {"source": source}),
    )
    s.block(digest(business + 3000, [break_glass]))
    s.block(
        s.tx(
            inspector, "supervision", "report_lag", {"source": source, "head_height": 4}
        ),  # a little behind
        s.tx(inspector, "supervision", "report_lag", {"source": source, "head_height": 50}),
        s.tx(relayer, "supervision", "report_lag", {"source": source, "head_height": 99}),
    )
    s.block(
        s.tx(relayer, "supervision", "set_rule", {"rule": "break_glass", "enabled": False}),
        s.tx(
            inspector,
            "supervision",
            "set_rule",
            {"rule": "relay_gap", "enabled": True, "params": {"max_silence_ms": 3000}},
        ),
        s.tx(
            inspector,
            "supervision",
            "set_rule",
            {"rule": "volume_spike", "enabled": True, "params": {"max_per_actor": -1}},
        ),
        s.tx(inspector, "supervision", "set_rule", {"rule": "nope", "enabled": True}),
    )
    s.block()
    s.block()
    s.block()
    results = s.block(
        s.tx(
            inspector,
            "supervision",
            "report_lag",
            {"source": source, "head_height": chain["height"] + 1},
        )
    )  # silent too long
    alert_id = dict(results[0].events[0].attributes)["alert_id"]
    s.block(
        s.tx(
            relayer, "supervision", "ack_alert", {"alert_id": alert_id, "note": "relay restarted"}
        ),
        s.tx(
            inspector, "supervision", "ack_alert", {"alert_id": alert_id, "note": "relay restarted"}
        ),
        s.tx(inspector, "supervision", "ack_alert", {"alert_id": "nope", "note": ""}),
    )
    return (
        "the regulator chain: digests only in order (gap, duplicate, altered, fork "
        "refused), rules, relay gaps and alerts",
        s,
    )


def supervision_finality(workdir: Path) -> tuple[str, Script]:
    """A CometBFT source: digests proven final by commits of a synthetic business
    chain (fixed ed25519 keys), through a validator-set change; forgeries refused."""
    root, nhc, inspector, relayer = (key(701 + i) for i in range(4))
    s = Script(workdir, root, chain_id="medchain-vectors-regulator", profile="regulator")
    source = "hospitals"
    business = SyntheticChain("business-synthetic", signers(1, 1, 1, 1, seed=11))
    business.next_keys[3] = signers(1, 1, 1, 1, 1, seed=11)  # header 3 announces a fifth
    s.block(s.tx(root, "identity", "register_org", s.org("nhc", nhc, "regulator")))
    s.block(
        s.tx(nhc, "identity", "add_member", s.member("nhc", inspector, "regulator")),
        s.tx(nhc, "identity", "add_member", s.member("nhc", relayer, "device")),
    )
    follow = {
        "chain_id": business.chain_id,
        "validators": [{"pub_key": k.validator.pub_key, "power": k.power} for k in business.keys],
    }
    s.block(
        s.tx(
            inspector,
            "supervision",
            "authorize_relayer",
            {"source": source, "relayer": did(relayer), "cometbft": follow},
        )
    )
    tip = {"running": supervision.GENESIS_RUNNING_HASH}

    def result(n: int, events: list[tuple[str, dict[str, str]]]) -> dict[str, Any]:
        return {
            "tx_id": crypto.sm3(n.to_bytes(8, "big")),
            "code": 0,
            "events": [{"type": t, "attributes": a} for t, a in events],
        }

    def digest(height: int, results: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        return business.digest(source, height, results, tip["running"], **kw)

    def relay(body: dict[str, Any]) -> bytes:
        tip.update(running=body["running_hash"])
        return s.tx(relayer, "supervision", "digest", body)

    break_glass = (
        "consent.break_glass_opened",
        {"request_id": "b1", "patient": "did:p", "doctor": "did:dr", "actor": "did:a"},
    )
    s.block(relay(digest(0, [])))
    results = [result(1, [break_glass]), result(2, [("records.noted", {"x": "1"})])]
    weak = digest(1, results, signing={0, 1})  # the same header, signed by 2 of 4
    honest = digest(1, results)
    s.block(
        s.tx(relayer, "supervision", "digest", weak),  # 2 of 4: not final
        s.tx(relayer, "supervision", "digest", honest | {"events": []}),  # an event dropped
        s.tx(relayer, "supervision", "digest", honest | {"app_hash": bytes(32)}),
        s.tx(relayer, "supervision", "digest", honest | {"block_hash": bytes(32)}),
        relay(honest),  # break glass: an alert
    )
    # header 3 announces the new set: the digest carries it; one of the four signatures
    # is garbage and not counted (3 of 4 still sign)
    s.block(relay(digest(2, [], forged=frozenset({3}))))
    s.block(relay(digest(3, [])))  # header 4 signed by the five
    return (
        "the regulator chain following a CometBFT source: commits checked against the "
        "followed validators (a weak commit, a dropped event, an altered app hash and a "
        "block hash not CometBFT's refused; a garbage signature not counted), a "
        "break-glass alert, a validator-set change followed",
        s,
    )


def recognition_exams(workdir: Path) -> tuple[str, Script]:
    root = key(601)
    ks = cast(602) | {
        "admin_c": key(610),
        "doctor_c": key(611),
        "admin_reg": key(612),
        "inspector": key(613),
    }
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(root, "identity", "register_org", s.org("hosp-c", ks["admin_c"])),
        s.tx(root, "identity", "register_org", s.org("nhc", ks["admin_reg"], "regulator")),
    )
    s.block(
        s.tx(ks["admin_c"], "identity", "add_member", s.member("hosp-c", ks["doctor_c"], "doctor")),
        s.tx(
            ks["admin_reg"], "identity", "add_member", s.member("nhc", ks["inspector"], "regulator")
        ),
    )
    rule = {"exam_code": CT_HEAD, "max_age_days": 30, "min_level": "3B"}
    far = T0 + 365 * DAY_MS
    s.block(
        s.tx(ks["doctor_a"], "recognition", "set_rule", rule),  # not a regulator
        s.tx(ks["inspector"], "recognition", "set_rule", rule),
        s.tx(
            ks["admin_a"],
            "recognition",
            "accredit",
            {"org_id": "hosp-a", "level": "3A", "expires_ms": far},
        ),
        s.tx(
            ks["inspector"],
            "recognition",
            "accredit",
            {"org_id": "hosp-a", "level": "3A", "expires_ms": far},
        ),
        s.tx(
            ks["inspector"],
            "recognition",
            "accredit",
            {"org_id": "hosp-b", "level": "9Z", "expires_ms": far},
        ),
    )
    now = s.next_time_ms
    s.block(
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            record(
                "ct-1",
                ks["patient"],
                "ImagingStudy",
                exam_code=CT_HEAD,
                performed_ms=now - 5 * DAY_MS,
            ),
        ),
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            record(
                "ct-old",
                ks["patient"],
                "ImagingStudy",
                exam_code=CT_HEAD,
                performed_ms=now - 31 * DAY_MS,
            ),
        ),
    )
    s.block(s.tx(ks["doctor_b"], "recognition", "accept", {"record_id": "ct-1"}))  # no consent
    s.block(
        s.tx(
            ks["patient"],
            "consent",
            "grant",
            grant(s, ks, "did", did(ks["doctor_b"]), scope_types=["ImagingStudy"]),
        ),
        s.tx(
            ks["patient"],
            "consent",
            "grant",
            grant(s, ks, "did", did(ks["doctor_c"]), scope_types=["ImagingStudy"]),
        ),
        s.tx(
            ks["patient"],
            "consent",
            "grant",
            grant(s, ks, "did", did(ks["doctor_a"]), scope_types=["ImagingStudy"]),
        ),
    )
    s.block(
        s.tx(ks["doctor_b"], "recognition", "accept", {"record_id": "ct-1"}),
        s.tx(
            ks["doctor_c"], "recognition", "decline", {"record_id": "ct-1"}
        ),  # a decline needs its reason
        s.tx(
            ks["doctor_c"],
            "recognition",
            "decline",
            {"record_id": "ct-1", "reason": "images too noisy for surgical planning"},
        ),
        s.tx(
            ks["doctor_a"], "recognition", "accept", {"record_id": "ct-1"}
        ),  # its own hospital's exam
        s.tx(ks["doctor_b"], "recognition", "accept", {"record_id": "ct-old"}),  # too old
    )
    return (
        "exam mutual recognition: rules and accreditation by a regulator, accept after "
        "consent, decline with a reason",
        s,
    )


def devices_faults(workdir: Path) -> tuple[str, Script]:
    """Medical devices (the `devices` contract): registration by the maker, hand-over,
    maintenance and a fault by the hospital, the procedure a device served; and the
    refusals around them."""
    root = key(901)
    ks = cast(902)
    ks["maker"] = key(920)
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(root, "identity", "register_org", s.org("pump-maker", ks["maker"], "manufacturer"))
    )
    pump = "06901234567809"
    s.block(
        s.tx(
            ks["maker"],
            "supply",
            "register_product",
            {"gtin": pump, "name": "Infusion pump", "kind": "device"},
        )
    )
    udi = f"{pump}/PUMP-9"
    s.block(
        s.tx(ks["maker"], "devices", "register_device", {"udi": udi, "lot": "P-2024-03"}),
        s.tx(ks["maker"], "devices", "register_device", {"udi": udi, "lot": "P-2024-03"}),  # twice
        s.tx(ks["admin_a"], "devices", "register_device", {"udi": f"{pump}/X", "lot": "P"}),
        s.tx(ks["maker"], "devices", "register_device", {"udi": f"{GTIN[:-1]}0/X", "lot": "L"}),
    )
    s.block(
        s.tx(ks["maker"], "devices", "install_device", {"udi": udi, "owner": "hosp-a"}),
        s.tx(
            ks["admin_a"],
            "devices",
            "device_event",
            {"udi": udi, "kind": "maintenance", "note": "calibrated"},
        ),
        s.tx(ks["admin_a"], "records", "register", record("proc-1", ks["patient"], "Procedure")),
    )
    s.block(
        s.tx(ks["admin_a"], "devices", "device_used", {"udi": udi, "record_id": "proc-1"}),
        s.tx(
            ks["admin_a"],
            "devices",
            "device_event",
            {"udi": udi, "kind": "fault", "note": "occlusion alarm"},
        ),
        s.tx(ks["maker"], "devices", "device_event", {"udi": udi, "kind": "fault", "note": "x"}),
        s.tx(ks["admin_b"], "devices", "device_used", {"udi": udi, "record_id": "proc-1"}),
    )
    return "devices: register, install, maintenance, use in a procedure, fault; refusals", s


def identity_basic(workdir: Path) -> tuple[str, Script]:
    root, a_admin, doctor, nurse, patient, new_doc, carrier, fake_doc = (
        key(i) for i in range(1, 9)
    )
    s = Script(workdir, root)
    doc_did = did(doctor)
    s.block(
        s.tx(
            root,
            "identity",
            "register_org",
            {
                "org_id": "hosp-a",
                "name": "Hospital A",
                "org_type": "hospital",
                "admin_public_key": a_admin.public,
            },
        ),
        s.tx(
            root,
            "identity",
            "register_org",
            {
                "org_id": "move-co",
                "name": "Move Co",
                "org_type": "logistics",
                "admin_public_key": carrier.public,
            },
        ),
    )
    s.block(
        s.tx(a_admin, "identity", "add_member", s.member("hosp-a", doctor, "doctor")),
        s.tx(
            a_admin, "identity", "add_member", s.member("hosp-a", nurse, "regulator")
        ),  # wrong org type
        s.tx(
            carrier, "identity", "add_member", s.member("move-co", fake_doc, "doctor")
        ),  # logistics holds no doctors
        s.tx(patient, "identity", "register_patient", {}),
    )
    proof = crypto.sign(new_doc, rotation_message(CHAIN, doc_did, new_doc.public, 0))
    s.block(
        s.tx(doctor, "identity", "rotate_key", {"new_public_key": new_doc.public, "proof": proof}),
        s.tx(a_admin, "identity", "suspend_member", {"did": did(patient)}),  # refused
        build_tx(
            patient,
            chain_id=CHAIN,
            contract="identity",
            action="register_patient",
            payload={},
            nonce=0,
        ),  # replay
        b"\x00not-a-transaction",
    )
    s.block(
        s.tx(doctor, "identity", "register_patient", {}),  # old key: rotated out
        s.tx(a_admin, "identity", "revoke_member", {"did": doc_did, "reason": "left"}),
        s.tx(
            root, "identity", "set_org_roles", {"org_type": "logistics", "roles": ["device"]}
        ),  # refused
        s.tx(
            root,
            "identity",
            "set_org_roles",
            {"org_type": "insurer", "roles": ["org_admin", "device"]},
        ),
    )
    return "identity actions, rejections, replay and rotation", s


def research_federated(workdir: Path) -> tuple[str, Script]:
    root = key(1201)
    ks = cast(1202) | {
        "admin_c": key(1210),
        "admin_s": key(1211),
        "researcher": key(1212),
    }
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(root, "identity", "register_org", s.org("hosp-c", ks["admin_c"])),
        s.tx(root, "identity", "register_org", s.org("uni", ks["admin_s"], "research")),
    )
    s.block(
        s.tx(
            ks["admin_s"], "identity", "add_member", s.member("uni", ks["researcher"], "researcher")
        ),
        s.tx(ks["doctor_a"], "records", "register", record("obs-1", ks["patient"], "Observation")),
        s.tx(ks["doctor_b"], "records", "register", record("obs-2", ks["parent"], "Observation")),
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            record("ethics-1", ks["patient"], "DocumentReference"),
        ),
    )
    study = {
        "study_id": "dm2-vec",
        "title": "diabetes risk",
        "protocol_hash": bytes(range(32, 64)),
        "ethics_record_id": "ethics-1",
        "data_types": ["Observation"],
        "features": ["4548-4", "age"],
        "hospitals": ["hosp-a", "hosp-b", "hosp-c"],
        "rounds_planned": 2,
        "aggregation": "ckks-fedavg",
        "dp_epsilon_milli": 8000,
        "expires_ms": T0 + 365 * DAY_MS,
    }
    s.block(
        s.tx(ks["doctor_a"], "research", "create_study", study),  # not the sponsor's
        s.tx(ks["researcher"], "research", "create_study", study),
    )

    def join(who: str) -> dict[str, Any]:
        return {
            "patient": did(ks[who]),
            "grantee_kind": "study",
            "grantee": "dm2-vec",
            "purposes": ["HRESEARCH"],
            "scope_types": ["Observation"],
            "expires_ms": s.next_time_ms + DAY_MS,
        }

    joined = s.tx(ks["patient"], "consent", "grant", join("patient"))
    s.block(
        joined,
        s.tx(ks["parent"], "consent", "grant", join("parent")),
        s.tx(ks["parent"], "consent", "grant", join("parent") | {"purposes": ["TREAT"]}),
    )

    def cohort(rnd: int, *members: str, **override: Any) -> dict[str, Any]:
        leaves = sorted(research.sample_id("dm2-vec", did(ks[m])) for m in members)
        return {
            "study_id": "dm2-vec",
            "round": rnd,
            "count": len(leaves),
            "root": merkle_root(leaves),
            **override,
        }

    def round_record(rnd: int) -> dict[str, Any]:
        return {
            "study_id": "dm2-vec",
            "round": rnd,
            "global_model_hash": bytes([rnd]) * 32,
            "metrics": [
                {"org_id": org, "accuracy_bp": 9230, "auc_bp": 9500, "n_eval": 10}
                for org in ("hosp-a", "hosp-b", "hosp-c")
            ],
        }

    s.block(
        s.tx(ks["admin_a"], "research", "commit_cohort", cohort(1, "patient", "parent")),  # wrong
        s.tx(ks["admin_a"], "research", "commit_cohort", cohort(1, "patient")),
        s.tx(ks["researcher"], "research", "record_round", round_record(1)),  # B, C missing
        s.tx(ks["admin_b"], "research", "commit_cohort", cohort(1, "parent")),
        s.tx(ks["admin_c"], "research", "commit_cohort", cohort(1)),  # empty
        s.tx(ks["researcher"], "research", "record_round", round_record(1)),
    )
    s.block(s.tx(ks["patient"], "consent", "revoke", {"grant_id": short_id(joined)}))
    s.block(
        s.tx(ks["admin_a"], "research", "commit_cohort", cohort(2)),  # the patient left
        s.tx(ks["admin_b"], "research", "commit_cohort", cohort(2, "parent")),
        s.tx(ks["admin_c"], "research", "commit_cohort", cohort(2)),
        s.tx(ks["admin_a"], "research", "record_round", round_record(2)),  # not the sponsor
        s.tx(ks["researcher"], "research", "record_round", round_record(2)),
        s.tx(
            ks["researcher"],
            "research",
            "record_contributions",
            {
                "study_id": "dm2-vec",
                "method": "leave-one-out",
                "values": [
                    {"org_id": "hosp-a", "value_bp": 150},
                    {"org_id": "hosp-b", "value_bp": 420},
                    {"org_id": "hosp-c", "value_bp": -10},
                ],
            },
        ),
    )
    model = {
        "model_id": "dm2-risk",
        "version": 1,
        "model_hash": bytes([2]) * 32,  # round 2's global model: the study's last
        "card_hash": bytes(range(96, 128)),
        "licence": "Apache-2.0",
        "study_id": "dm2-vec",
    }
    result = {
        "result_id": "res-1",
        "model_id": "dm2-risk",
        "version": 1,
        "input_record_id": "obs-2",
        "output_record_id": "risk-1",
    }
    s.block(
        s.tx(ks["admin_a"], "models", "register", model),  # not the study's sponsor
        s.tx(  # a file the study did not produce
            ks["researcher"], "models", "register", model | {"model_hash": bytes(range(64, 96))}
        ),
        s.tx(ks["researcher"], "models", "register", model),
        s.tx(ks["doctor_a"], "records", "register", record("risk-1", ks["parent"], "Observation")),
        s.tx(ks["doctor_a"], "models", "register_result", result),  # no consent to read obs-2
        s.tx(
            ks["parent"],
            "consent",
            "grant",
            {
                "patient": did(ks["parent"]),
                "grantee_kind": "did",
                "grantee": did(ks["doctor_a"]),
                "purposes": ["TREAT"],
                "scope_types": ["Observation"],
                "expires_ms": s.next_time_ms + DAY_MS,
            },
        ),
        s.tx(ks["doctor_a"], "models", "register_result", result),
    )
    return (
        "federated study: joining by consent, cohorts recomputed by the chain (a wrong one "
        "refused, an empty one, a revoked patient left out), rounds, contributions, a model "
        "with its lineage (another file naming the study refused) and an AI result after "
        "consent; joins counted per study",
        s,
    )


def claims_settlement(workdir: Path) -> tuple[str, Script]:
    from medchain.contracts.claims.model import GTIN_SYSTEM, encounter_hash

    root = key(1701)
    names = ("maker", "logistics", "logger", "pharmacy", "insurer", "patient")
    ks = {n: key(1702 + i) for i, n in enumerate(names)}
    s = Script(workdir, root)
    s.block(
        s.tx(root, "identity", "register_org", s.org("acme-pharma", ks["maker"], "manufacturer")),
        s.tx(
            root, "identity", "register_org", s.org("cold-logistics", ks["logistics"], "logistics")
        ),
        s.tx(root, "identity", "register_org", s.org("yifeng", ks["pharmacy"], "pharmacy")),
        s.tx(root, "identity", "register_org", s.org("pingan", ks["insurer"], "insurer")),
        s.tx(ks["patient"], "identity", "register_patient", {}),
    )
    product = {"gtin": GTIN, "name": "Insulin pen 3 ml", "kind": "drug"}
    s.block(
        s.tx(
            ks["logistics"],
            "identity",
            "add_member",
            s.member("cold-logistics", ks["logger"], "device"),
        ),
        s.tx(ks["maker"], "supply", "register_product", product),
    )
    s.block(
        s.tx(
            ks["maker"],
            "supply",
            "register_batch",
            {"gtin": GTIN, "lot": "L1", "expiry": "2030-12-31", "ingredients": []},
        )
    )
    units = [f"{GTIN}/P{i:04d}" for i in range(2)]
    event = supply_events(s, ks)

    logger = did(ks["logger"])
    s.block(event("maker", "commissioning", units, lot="L1"))
    s.block(event("maker", "shipping", units, destination="yifeng", shipment="SH-1", device=logger))
    s.block(event("pharmacy", "receiving", units, shipment="SH-1"))
    s.block(event("pharmacy", "dispensing", units))
    drug = f"{GTIN_SYSTEM}|{GTIN}"
    plan = {
        "plan_id": "basic",
        "covered": [{"code": drug, "unit_cap_fen": 8_000}],
        "copay_bp": 2_000,
        "annual_limit_fen": 10_000,
    }
    patient = did(ks["patient"])
    s.block(
        s.tx(ks["pharmacy"], "claims", "set_plan", plan),  # not an insurer
        s.tx(ks["insurer"], "claims", "set_plan", plan),
    )
    s.block(s.tx(ks["insurer"], "claims", "enrol", {"plan_id": "basic", "patient": patient}))

    def claim(claim_id: str, encounter: str, packs: list[str]) -> dict[str, Any]:
        return {
            "claim_id": claim_id,
            "patient": patient,
            "plan_id": "basic",
            "insurer": "pingan",
            "encounter_hash": encounter_hash("yifeng", encounter),
            "items": [
                {"code": drug, "quantity": len(packs), "unit_price_fen": 9_000, "packs": packs}
            ],
            "claim_hash": CONTENT_HASH,
        }

    s.block(
        s.tx(ks["logistics"], "claims", "submit", claim("C-0", "Encounter/1", units[:1])),
        s.tx(ks["pharmacy"], "claims", "submit", claim("C-1", "Encounter/1", units[:1])),
    )
    s.block(
        s.tx(ks["pharmacy"], "claims", "submit", claim("C-2", "Encounter/2", units[:1])),  # dup
        s.tx(
            ks["insurer"],
            "claims",
            "settle",
            {"claim_id": "C-1", "reference": "P-1", "amount_fen": 6_401},
        ),
    )
    s.block(
        s.tx(ks["pharmacy"], "claims", "submit", claim("C-3", "Encounter/3", units[1:])),  # limit
        s.tx(
            ks["insurer"],
            "claims",
            "settle",
            {"claim_id": "C-1", "reference": "P-1", "amount_fen": 6_400},
        ),
    )
    return (
        "an insulin pen dispensed through the supply chain, claimed (unit cap, co-payment), "
        "claimed again (duplicate refused with its audit event), settled, and a second pen "
        "cut by the annual limit",
        s,
    )


def zk_eligibility(workdir: Path) -> tuple[str, Script]:
    """Zero-knowledge eligibility (the `zk` contract): defaults and accreditation by a
    regulator, a lab's attestation, an insurer's challenge, a refused tampered proof,
    the patient's accepted proof, a replay refused. The range proofs use the prover's
    randomness, so a regenerated vector differs in its tx bytes; replays are exact."""
    from medchain import encoding
    from medchain.contracts.zk import model as zk
    from medchain.crypto import rangeproof

    root = key(2101)
    ks = {
        n: key(2102 + i)
        for i, n in enumerate(
            ("admin_reg", "inspector", "admin_lab", "tech", "admin_ins", "patient")
        )
    }
    s = Script(workdir, root)
    s.block(
        s.tx(root, "identity", "register_org", s.org("nhc", ks["admin_reg"], "regulator")),
        s.tx(root, "identity", "register_org", s.org("lab-a", ks["admin_lab"], "lab")),
        s.tx(root, "identity", "register_org", s.org("ins-a", ks["admin_ins"], "insurer")),
    )
    s.block(
        s.tx(
            ks["admin_reg"], "identity", "add_member", s.member("nhc", ks["inspector"], "regulator")
        ),
        s.tx(
            ks["admin_lab"],
            "identity",
            "add_member",
            s.member("lab-a", ks["tech"], "lab_technician"),
        ),
        s.tx(ks["patient"], "identity", "register_patient", {}),
    )
    far = T0 + 365 * DAY_MS
    accreditation = {"org_id": "lab-a", "quantities": [zk.HBA1C], "expires_ms": far}
    s.block(
        s.tx(ks["tech"], "zk", "set_defaults", {}),  # not a governor
        s.tx(ks["inspector"], "zk", "set_defaults", {}),
        s.tx(ks["admin_lab"], "zk", "accredit", accreditation),  # not a governor
        s.tx(ks["inspector"], "zk", "accredit", accreditation),
    )
    blinding = 0x5EED
    s.block(
        s.tx(ks["tech"], "records", "register", record("obs-1", ks["patient"], "Observation")),
    )
    attestation = {
        "attestation_id": "att-1",
        "patient": did(ks["patient"]),
        "record_id": "obs-1",
        "quantity": zk.HBA1C,
        "unit": "%",
        "scale": 1,
        "commitment": rangeproof.commit(71, blinding),
    }
    expires = T0 + 30 * DAY_MS
    s.block(
        s.tx(ks["tech"], "zk", "attest", attestation),
        s.tx(
            ks["admin_ins"],
            "zk",
            "challenge",
            {
                "challenge_id": "ch-1",
                "criterion_id": "diabetes-hba1c",
                "patient": did(ks["patient"]),
                "expires_ms": expires,
            },
        ),
    )

    def state(k: str) -> Any:
        raw = s.app.db.get(k)
        return None if raw is None else encoding.decode(raw)

    context = zk.proof_context(
        s.chain_id, state(zk.challenge_key("ch-1")), state(zk.attestation_key("att-1"))
    )
    proof = rangeproof.prove_threshold(71, blinding, "ge", 65, context)
    answer = {"challenge_id": "ch-1", "attestation_id": "att-1", "proofs": [proof]}
    tampered = answer | {"proofs": [proof[:-1] + bytes([proof[-1] ^ 1])]}
    s.block(
        s.tx(ks["patient"], "zk", "prove", tampered),
        s.tx(ks["patient"], "zk", "prove", answer),
        s.tx(ks["patient"], "zk", "prove", answer),  # answered already
    )
    return (
        "zero-knowledge eligibility: defaults and accreditation by a regulator, a lab's "
        "attestation, an insurer's challenge, a tampered proof refused, the proof accepted "
        "once",
        s,
    )


def referral_cross_hospital(workdir: Path) -> tuple[str, Script]:
    """Referral (the `referral` contract): refused refers, the patient's approval issuing
    the package grant through consent, the receiving doctor's request, accept and
    report (granting the referring doctor the report), and a second referral cancelled
    (its grant revoked in the same tx) so the receiving doctor's request is refused."""
    root = key(2201)
    ks = cast(2202)
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(ks["doctor_a"], "records", "register", record("obs-1", ks["patient"], "Observation")),
        s.tx(ks["doctor_a"], "records", "register", record("obs-2", ks["patient"], "Observation")),
        s.tx(
            ks["doctor_a"], "records", "register", record("sr-1", ks["patient"], "ServiceRequest")
        ),
        s.tx(
            ks["doctor_a"], "records", "register", record("sr-2", ks["patient"], "ServiceRequest")
        ),
        s.tx(
            ks["doctor_a"],
            "records",
            "register",
            record("rep-1", ks["patient"], "DiagnosticReport"),
        ),
    )
    s.block(
        s.tx(
            ks["patient"],
            "consent",
            "grant",
            grant(s, ks, "did", did(ks["doctor_a"]), scope_types=["Observation"]),
        )
    )

    def refer(referral_id: str, record_id: str, sr: str, **extra: Any) -> dict[str, Any]:
        return {
            "referral_id": referral_id,
            "patient": did(ks["patient"]),
            "to_org": "hosp-b",
            "reason_code": "http://snomed.info/sct|49436004",
            "urgency": "urgent",
            "record_ids": [record_id],
            "service_request_id": sr,
            "expires_ms": s.next_time_ms + 7 * DAY_MS,
            **extra,
        }

    s.block(
        s.tx(ks["nurse_b"], "referral", "refer", refer("ref-0", "obs-1", "sr-1")),  # a nurse
        s.tx(ks["doctor_a"], "referral", "refer", refer("ref-0", "rep-1", "sr-1")),  # unreadable
        s.tx(
            ks["doctor_a"],
            "referral",
            "refer",
            refer("ref-1", "obs-1", "sr-1", to_doctor=did(ks["doctor_b"])),
        ),
        s.tx(ks["doctor_a"], "referral", "refer", refer("ref-2", "obs-2", "sr-2")),
    )
    s.block(
        s.tx(ks["parent"], "referral", "approve", {"referral_id": "ref-1"}),  # a stranger
        s.tx(ks["patient"], "referral", "approve", {"referral_id": "ref-1"}),
    )
    s.block(
        s.tx(ks["doctor_b"], "exchange", "request", {"record_id": "obs-1", "purpose": "TREAT"}),
        s.tx(ks["patient"], "referral", "approve", {"referral_id": "ref-2"}),
    )
    s.block(
        s.tx(ks["doctor_b"], "referral", "accept", {"referral_id": "ref-1"}),
        s.tx(ks["patient"], "referral", "cancel", {"referral_id": "ref-2"}),
    )
    s.block(
        s.tx(
            ks["admin_b"], "records", "register", record("con-1", ks["patient"], "DiagnosticReport")
        ),
        s.tx(ks["doctor_b"], "exchange", "request", {"record_id": "obs-2", "purpose": "TREAT"}),
    )
    s.block(
        s.tx(ks["nurse_b"], "referral", "report", {"referral_id": "ref-1", "record_id": "con-1"}),
        s.tx(ks["doctor_b"], "referral", "report", {"referral_id": "ref-1", "record_id": "con-1"}),
    )
    s.block(
        s.tx(ks["doctor_a"], "exchange", "request", {"record_id": "con-1", "purpose": "TREAT"}),
    )
    return (
        "referral across two hospitals: a nurse's and an unreadable package's refer refused, "
        "a stranger's approval refused, the patient's approval issuing the package grant, "
        "the receiving doctor's request, accept and report (the referring doctor then reads "
        "the report), and a cancelled referral whose receiving side is refused",
        s,
    )


def token_incentives(workdir: Path) -> tuple[str, Script]:
    """Incentive token (the `token` contract): a claim before any rule, rules refused
    from a hospital and set by the consortium admin, a record's reward claimed once
    (a duplicate, another hospital's record, a missing one refused), a transfer to
    the patient, refused over-spend and stranger's transfer, a burn, an over-cap claim."""
    root = key(2301)
    ks = cast(2302)
    s = Script(workdir, root)
    hospitals(s, root, ks)
    s.block(
        s.tx(ks["doctor_a"], "records", "register", record("obs-1", ks["patient"], "Observation")),
        s.tx(ks["doctor_a"], "records", "register", record("obs-2", ks["patient"], "Observation")),
        s.tx(ks["doctor_b"], "records", "register", record("obs-3", ks["patient"], "Observation")),
    )

    def claim(who: str, fact: str, org: str) -> bytes:
        payload = {"basis": "record", "fact_id": fact, "org_id": org}
        return s.tx(ks[who], "token", "claim_reward", payload)

    rules = {"cap": 15, "amounts": {"record": 10, "exam": 40, "fl": 0}}
    s.block(
        claim("admin_a", "obs-1", "hosp-a"),  # no rule yet
        s.tx(ks["admin_a"], "token", "set_rules", rules),  # not a governor
        s.tx(root, "token", "set_rules", rules),
    )
    patient = did(ks["patient"])
    s.block(
        claim("doctor_a", "obs-1", "hosp-a"),
        claim("admin_a", "obs-1", "hosp-a"),  # rewarded already
        claim("admin_a", "obs-3", "hosp-a"),  # hosp-b's record
        claim("admin_a", "obs-9", "hosp-a"),  # not in state
        claim("admin_b", "obs-3", "hosp-b"),  # over the cap of 15
    )
    to_patient = {"sender": "org:hosp-a", "recipient": patient, "amount": 4}
    s.block(
        s.tx(ks["doctor_a"], "token", "transfer", to_patient),  # not the org admin
        s.tx(ks["admin_a"], "token", "transfer", to_patient),
        s.tx(
            ks["patient"],
            "token",
            "transfer",
            {"sender": patient, "recipient": "org:hosp-b", "amount": 5},  # holds 4
        ),
        s.tx(ks["patient"], "token", "burn", {"account": patient, "amount": 3}),
        s.tx(ks["admin_a"], "token", "burn", {"account": "org:hosp-a", "amount": 5}),
        claim("admin_b", "obs-3", "hosp-b"),  # 2 in circulation now: 12 fits the cap
    )
    return (
        "incentive token: rules by a governor only, a record's reward minted once to its "
        "custodian, refused duplicate / foreign / missing / over-cap claims, a transfer to "
        "the patient, a refused over-spend and stranger's transfer, a burn making room",
        s,
    )


def governance_vote(workdir: Path) -> tuple[str, Script]:
    """Governance (the `governance` contract) on a chain whose genesis says "vote" and
    founds three hospitals: the admin's direct set_validator refused, a validator
    proposed and voted (a stranger's vote, an unknown proposal, an early execute
    refused), a second proposal below quorum closed rejected, a late vote and an
    execute inside the timelock refused, then the validator change executed."""
    root = key(2401)
    admins = {org: key(2402 + i) for i, org in enumerate(("hosp-a", "hosp-b", "hosp-c"))}
    orgs = [
        {
            "org_id": org,
            "name": org,
            "org_type": "hospital",
            "admin": {"name": org, "suite": "sm", "public_key": k.public.hex()},
        }
        for org, k in admins.items()
    ]
    s = Script(workdir, root, orgs=orgs, params={"governance": "vote"})
    change = {"pub_key": bytes(range(32)), "power": 1, "name": "node-x"}
    a, b, c = admins["hosp-a"], admins["hosp-b"], admins["hosp-c"]

    def vote(k: crypto.KeyPair, pid: int, choice: str) -> bytes:
        return s.tx(k, "governance", "vote", {"proposal_id": pid, "choice": choice})

    def execute(k: crypto.KeyPair, pid: int) -> bytes:
        return s.tx(k, "governance", "execute", {"proposal_id": pid})

    admit = s.org("lab-x", key(2410), "lab") | {"kind": "admit_org"}
    s.block(
        s.tx(root, "identity", "set_validator", change),  # governed by vote: refused
        s.tx(root, "governance", "propose", {"action": {"kind": "set_validator", **change}}),
        s.tx(a, "governance", "propose", {"action": admit, "description": "a lab joins"}),
    )
    s.block(
        vote(a, 1, "yes"),
        vote(b, 1, "no"),
        vote(b, 1, "yes"),  # changed its mind
        vote(root, 1, "yes"),  # no organisation: not a voter
        vote(c, 9, "yes"),  # no such proposal
        vote(c, 2, "yes"),  # 100 of 300: below quorum
        execute(c, 1),  # still under vote
    )
    while len(s.blocks) < 21:
        s.block()
    s.block(vote(c, 1, "yes"), execute(c, 1), execute(a, 2))  # late; timelock; rejected
    while len(s.blocks) < 31:
        s.block()
    s.block(execute(c, 1), execute(c, 1))  # executed; already executed
    return (
        "governance by vote: the admin alone refused, a validator added by two of three "
        "hospitals after the vote and timelock, a proposal below quorum rejected, refused "
        "stranger's, late, unknown and early votes and executes",
        s,
    )


def htlc_swap(workdir: Path) -> tuple[str, Script]:
    """Cross-chain lock (the `htlc` contract) on this chain against an offer on a second
    solo chain, alliance-b, built here too: the governor registers alliance-b's node
    key (a hospital's attempt refused), a header signed by another key refused and
    the real one verified (twice: ALREADY_EXISTS), a second lock with the wrong
    hashlock refused and one whose state proof checks out escrowing tokens, a wrong
    preimage refused, the claim paying the patient (a second claim refused), and a
    plain lock refunded after its timeout (not before)."""
    root, root_b, header_key = key(2501), key(2502), key(2503)
    ks = cast(2504)
    buyer, patient = ks["doctor_a"], ks["patient"]
    preimage = bytes(range(100, 132))
    b = Script(workdir, root_b, chain_id="alliance-b")
    b.block(b.tx(root_b, "identity", "register_org", b.org("hosp-b", ks["admin_b"])))
    b.block(
        b.tx(ks["admin_b"], "identity", "add_member", b.member("hosp-b", buyer, "doctor")),
        b.tx(patient, "identity", "register_patient", {}),
    )
    b.block(b.tx(ks["admin_b"], "records", "register", record("rec-b1", patient, "Observation")))
    offer = {"kind": "grant", "records": ["rec-b1"], "purposes": ["TREAT"], "duration_ms": DAY_MS}
    first = {
        "lock_id": "swap-v",
        "hashlock": crypto.sm3(preimage),
        "recipient": did(buyer),
        "asset": offer,
        "timeout_height": 44,
    }
    assert b.block(b.tx(patient, "htlc", "lock", first))[0].code == 0
    height = len(b.blocks)
    roots = b.app.db.roots(height)
    assert roots is not None
    lock_key = htlc.lock_key("swap-v")
    proof = proofs.state_proof(
        "alliance-b", roots, b.app.db.state_node, lock_key, b.app.db.get(lock_key)
    )
    block_b = b.app.db.block(height)
    assert block_b is not None
    header = {
        "chain_id": "alliance-b",
        "height": height,
        "block_hash": block_b["hash"],
        "app_hash": roots["app_hash"],
        "time_ms": roots["time_ms"],
    }
    signed = crypto.sign(header_key, solo_header_bytes(**header))
    forged = crypto.sign(key(2599), solo_header_bytes(**header))

    s = Script(workdir, root)
    hospitals(s, root, ks)
    rules = {"cap": 1000, "amounts": {"record": 500, "exam": 0, "fl": 0}}
    s.block(
        s.tx(buyer, "records", "register", record("obs-1", patient, "Observation")),
        s.tx(root, "token", "set_rules", rules),
    )
    s.block(
        s.tx(
            buyer,
            "token",
            "claim_reward",
            {"basis": "record", "fact_id": "obs-1", "org_id": "hosp-a"},
        )
    )
    pay = {"sender": "org:hosp-a", "recipient": did(buyer), "amount": 500}
    s.block(s.tx(ks["admin_a"], "token", "transfer", pay))
    registration = {
        "chain_id": "alliance-b",
        "engine": "solo",
        "suite": "sm",
        "public_key": header_key.public,
    }
    s.block(
        s.tx(ks["admin_a"], "htlc", "register_counterparty", registration),  # not a governor
        s.tx(root, "htlc", "register_counterparty", registration),
    )
    relayed = {"chain_id": "alliance-b", "solo": {"header": header, "signature": signed}}
    s.block(
        s.tx(
            ks["nurse_b"],
            "htlc",
            "update_client",
            relayed | {"solo": {"header": header, "signature": forged}},
        ),
        s.tx(ks["nurse_b"], "htlc", "update_client", relayed),
        s.tx(ks["nurse_b"], "htlc", "update_client", relayed),  # already verified
    )
    counterpart = {
        "chain": "alliance-b",
        "lock_id": "swap-v",
        "asset": offer,
        "proof": htlc_relay.proof_payload(proof),
    }
    second = {
        "lock_id": "swap-v",
        "hashlock": crypto.sm3(preimage),
        "recipient": did(patient),
        "asset": {"kind": "token", "amount": 200},
        "timeout_height": len(s.blocks) + 6,
        "counterpart": counterpart,
    }
    s.block(
        s.tx(buyer, "htlc", "lock", second | {"hashlock": bytes(32)}),  # another hashlock
        s.tx(buyer, "htlc", "lock", second),
    )
    s.block(
        s.tx(ks["nurse_b"], "htlc", "claim", {"lock_id": "swap-v", "preimage": bytes(32)}),
        s.tx(ks["nurse_b"], "htlc", "claim", {"lock_id": "swap-v", "preimage": preimage}),
        s.tx(ks["nurse_b"], "htlc", "claim", {"lock_id": "swap-v", "preimage": preimage}),
    )
    plain = {
        "lock_id": "plain-1",
        "hashlock": bytes(32),
        "recipient": did(patient),
        "asset": {"kind": "token", "amount": 50},
        "timeout_height": len(s.blocks) + 2,
    }
    s.block(
        s.tx(buyer, "htlc", "lock", plain),
        s.tx(patient, "htlc", "refund", {"lock_id": "plain-1"}),  # before the timeout
    )
    s.block()
    s.block()
    s.block(
        s.tx(patient, "htlc", "refund", {"lock_id": "plain-1"}),
        s.tx(patient, "htlc", "refund", {"lock_id": "plain-1"}),  # already refunded
    )
    return (
        "htlc: a counterparty registered by a governor only, a forged header refused and the "
        "real one verified once, a second lock proven against the other chain's offer (a "
        "wrong hashlock refused), a wrong preimage refused, the claim paying the patient, a "
        "plain lock refunded only after its timeout",
        s,
    )


def mixed_suites(workdir: Path) -> tuple[str, Script]:
    """SM2, SM9 and hybrid (sm2+mldsa) members side by side (issue 21): hosp-a's SM2
    admin publishes its KGC's SM9 master keys and adds an sm9 doctor, hosp-b has a
    hybrid admin and an SM2 doctor, a hybrid patient; the sm9 doctor registers a
    record, the patient grants hosp-b's doctor, who requests it, the sm9 doctor
    releases, the request is acknowledged; an SM2 nurse rotates to sm9 under her
    own DID; refused: an sm9 first admin, a consortium admin publishing, a key of
    another KGC, an sm9 patient; a new master key then stops both sm9 keys. The KGC
    secrets are fixed scalars; the hybrid keys' ML-DSA halves are random (PQClean
    has no seeded keygen), so only their stored signatures replay."""
    root, admin_a, doctor_b, patient, nurse = (key(i) for i in range(2501, 2506))
    kgc = crypto.Sm9Master(
        (2511 * 0x1F3D5B79).to_bytes(32, "big"), (2512 * 0x1F3D5B79).to_bytes(32, "big")
    )
    kgc2 = crypto.Sm9Master(
        (2513 * 0x1F3D5B79).to_bytes(32, "big"), (2514 * 0x1F3D5B79).to_bytes(32, "big")
    )
    rogue = crypto.Sm9Master(
        (2515 * 0x1F3D5B79).to_bytes(32, "big"), (2516 * 0x1F3D5B79).to_bytes(32, "big")
    )
    admin_b, patient_h = crypto.generate_keypair("sm2+mldsa"), crypto.generate_keypair("sm2+mldsa")
    doctor_a = kgc.issue("did:medchain:hosp-a:dr-li")
    s = Script(workdir, root)

    def sm9_member(k: crypto.KeyPair, *roles: str) -> dict[str, Any]:
        return {"org_id": "hosp-a", "public_key": k.public, "suite": "sm9", "roles": list(roles)}

    def masters(m: crypto.Sm9Master) -> dict[str, Any]:
        return {
            "sign_master_public": m.sign_master_public,
            "enc_master_public": m.enc_master_public,
        }

    hybrid_org = s.org("hosp-b", admin_b) | {"admin_suite": "sm2+mldsa"}
    sm9_org = s.org("hosp-c", doctor_a) | {"admin_suite": "sm9"}
    s.block(
        s.tx(root, "identity", "register_org", s.org("hosp-a", admin_a)),
        s.tx(root, "identity", "register_org", hybrid_org),
        s.tx(root, "identity", "register_org", sm9_org),  # no master key yet: refused
        s.tx(patient_h, "identity", "register_patient", {}),
        s.tx(patient, "identity", "register_patient", {}),
    )
    s.block(
        s.tx(admin_a, "identity", "set_sm9_master", masters(kgc)),
        s.tx(root, "identity", "set_sm9_master", masters(rogue)),  # no organisation: refused
        s.tx(admin_a, "identity", "add_member", sm9_member(doctor_a, "doctor")),
        s.tx(
            admin_a,
            "identity",
            "add_member",
            sm9_member(rogue.issue("did:medchain:hosp-a:dr-rogue"), "doctor"),
        ),  # another KGC's key: refused
        s.tx(admin_a, "identity", "add_member", s.member("hosp-a", nurse, "nurse")),
        s.tx(admin_b, "identity", "add_member", s.member("hosp-b", doctor_b, "doctor")),
        s.tx(kgc.issue("did:medchain:hosp-a:pt-1"), "identity", "register_patient", {}),
    )
    patient_did = did_for_key("sm2+mldsa", patient_h.public)
    s.block(
        s.tx(
            doctor_a,
            "records",
            "register",
            record("scan-1", patient, "DiagnosticReport") | {"patient": patient_did},
        ),
    )
    consent = {
        "patient": patient_did,
        "grantee_kind": "did",
        "grantee": did(doctor_b),
        "purposes": ["TREAT"],
        "expires_ms": s.next_time_ms + DAY_MS,
        "scope_types": ["DiagnosticReport"],
    }
    s.block(s.tx(patient_h, "consent", "grant", consent))
    request = s.tx(doctor_b, "exchange", "request", {"record_id": "scan-1", "purpose": "TREAT"})
    s.block(request)
    nurse_sm9 = kgc.issue(did(nurse))
    proof = crypto.sign(nurse_sm9, rotation_message(CHAIN, did(nurse), nurse_sm9.public, 0))
    rotate = {"new_public_key": nurse_sm9.public, "new_suite": "sm9", "proof": proof}
    s.block(
        s.tx(doctor_a, "exchange", "release", {"session_id": short_id(request)}),
        s.tx(nurse, "identity", "rotate_key", rotate),
    )
    ack = {"session_id": short_id(request), "content_hash": CONTENT_HASH}
    s.block(s.tx(doctor_b, "exchange", "ack", ack))
    s.block(s.tx(admin_a, "identity", "set_sm9_master", masters(kgc2)))
    s.block(
        s.tx(doctor_a, "identity", "revoke_member", {"did": did_for_key("sm9", doctor_a.public)}),
        s.tx(nurse_sm9, "identity", "revoke_member", {"did": did(nurse)}),
    )  # both under the replaced master key: refused
    return (
        "SM2, SM9 and hybrid members side by side: an sm9 custodian doctor releases a "
        "hybrid patient's record to an SM2 doctor of a hybrid-admin hospital; sm9 rules "
        "refused; a new master key stops the old sm9 keys",
        s,
    )


SCRIPTS: dict[str, Callable[[Path], tuple[str, Script]]] = {
    "identity_basic": identity_basic,
    "consent_revocation": consent_revocation,
    "exchange_refusal": exchange_refusal,
    "records_erasure": records_erasure,
    "records_batch": records_batch,
    "supply_recall_cold_chain": supply_recall_cold_chain,
    "supervision_gaps": supervision_gaps,
    "supervision_finality": supervision_finality,
    "recognition_exams": recognition_exams,
    "devices_faults": devices_faults,
    "research_federated": research_federated,
    "claims_settlement": claims_settlement,
    "zk_eligibility": zk_eligibility,
    "referral_cross_hospital": referral_cross_hospital,
    "token_incentives": token_incentives,
    "governance_vote": governance_vote,
    "htlc_swap": htlc_swap,
    "mixed_suites": mixed_suites,
}


def with_expected(doc: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """`doc` with `expected` replayed from its genesis and blocks."""
    return doc | {"expected": replay_with_application(doc, workdir / "replay.db")}


def main(argv: list[str]) -> None:
    import medchain

    print(f"state machine from {Path(medchain.__file__).parent}", file=sys.stderr)
    expected_only = "--expected-only" in argv
    names = [a for a in argv if not a.startswith("--")] or list(SCRIPTS)
    for name in names:
        path = HERE / f"{name}.json"
        with tempfile.TemporaryDirectory() as d:
            if expected_only:
                old = json.loads(path.read_text())
                doc = with_expected({k: v for k, v in old.items() if k != "expected"}, Path(d))
                if "--new-genesis" in argv:
                    # An intended change of the genesis state only: every height
                    # after it must write and answer exactly as before.
                    def kept(e: dict[str, Any]) -> Any:
                        return (e["codes"], e["results"], e["writes_digest"])

                    assert [kept(e) for e in old["expected"][1:]] == [
                        kept(e) for e in doc["expected"][1:]
                    ], f"{name}: a block's codes, events or writes changed"
                else:
                    was = [(e["app_hash"], e.get("codes", [])) for e in old["expected"]]
                    now = [(e["app_hash"], e["codes"]) for e in doc["expected"]]
                    assert was == now, f"{name}: app hashes or codes changed"
            else:
                description, s = SCRIPTS[name](Path(d))
                doc = with_expected(
                    {
                        "description": description,
                        "genesis": s.genesis,
                        "blocks": [
                            {"time_ms": T0 + 1000 * i, "txs": [t.hex() for t in txs]}
                            for i, txs in enumerate(s.blocks, 1)
                        ],
                    },
                    Path(d),
                )
        path.write_text(json.dumps(doc, indent=1) + "\n")
        summary = [e["codes"] for e in doc["expected"][1:]]
        print(f"{name}: {len(doc['blocks'])} blocks, codes {summary}")


if __name__ == "__main__":
    main(sys.argv[1:])
