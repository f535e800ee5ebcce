"""Consent decision and audit query latency on a chain of realistic size, in one run.

With `--grants` consent grants and `--events` audit events in a real on-disk
SQLite chain database (ChainDB, WAL, synchronous=FULL), this measures

1. `medchain.contracts.consent.decide` (may member X read record R now, for
   this purpose?) over a fixed-seed mix of queries that end allowed, the
   patient's own record, denied with no grant, denied by a revoked grant and
   denied by an expired grant (goal: p99 <= 5 ms);
2. `ChainDB.audit(patient=..., limit=100)` (goal: p99 <= 50 ms) and
   `ChainDB.audit(actor=..., limit=100)`;
3. whole exchanges (request, signed fetch from a custodian edge, decrypt,
   acknowledge) through real HTTP servers on the embedded engine over the
   filled chain, with `medchain node`'s 200 ms block interval (goal: <= 1.2 s).

Baselines from the same database in the same run: one raw `ChainDB.get` of an
existing key, SM3 of 1 KB, and one tx submitted and committed on the same node.

The state is written with the contracts' own key functions and value shapes
(identity members, records, consent grants and their two index rows, exchange
sessions; role policy from the real genesis), through `ChainDB.commit_block`
in synthetic blocks of about `--block-rows` rows. The blocks carry tx results
and events but no signed txs, and member keys are random bytes (nobody can
sign as a synthetic member; genesis admin keys are real and derived from the
seed). decide() runs at the end of a two-year synthetic history.

    .venv/bin/python bench/consent_exchange.py                       # full size, several minutes
    .venv/bin/python bench/consent_exchange.py --grants 20000 --events 20000 --queries 2000
    .venv/bin/python bench/consent_exchange.py --keep /tmp/consent-db   # keep (and reuse) the DB
    .venv/bin/python bench/consent_exchange.py --json
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import math
import random
import socket
import sqlite3
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console
from rich.table import Table

from medchain import crypto, encoding
from medchain.consensus.application import Application
from medchain.consensus.solo import SoloEngine
from medchain.contracts.consent import decide
from medchain.contracts.consent import model as consent
from medchain.contracts.exchange.model import SESSION_MS, session_key
from medchain.contracts.identity import model as identity
from medchain.contracts.records.model import patient_index_key, record_key
from medchain.core.block import Block, TxResult
from medchain.core.context import Event
from medchain.core.execution import seal_block
from medchain.core.genesis import Genesis, parse_genesis
from medchain.core.tx import key_id
from medchain.edge.custodian import CustodianEdge
from medchain.edge.requester import fetch_record, upload_record
from medchain.edge.vault import Vault
from medchain.exceptions import Code
from medchain.gateway.limits import Limits
from medchain.node import EdgeServer, GatewayServer
from medchain.sdk.client import Client
from medchain.storage.chain_db import AUDIT_COLUMNS, ChainDB

CHAIN_ID = "bench-consent"
DEFAULT_GRANTS = 1_000_000
DEFAULT_EVENTS = 1_000_000
DEFAULT_QUERIES = 10_000
DEFAULT_BLOCK_ROWS = 50_000
DEFAULT_SEED = 1

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
GENESIS_TIME_MS = 1_704_067_200_000  # 2024-01-01T00:00Z
HISTORY_MS = 730 * DAY_MS
NOW_MS = GENESIS_TIME_MS + HISTORY_MS + HOUR_MS  # when every decide() is asked

DECIDE_GOAL_MS = 5.0
AUDIT_GOAL_MS = 50.0
AUDIT_LIMIT = 100
SCAN_LIMIT = 1000  # Context.scan's default, which the exchange contract uses
BASELINE_CALLS = 10_000
PAYLOAD_1KB = bytes(range(256)) * 4

# Shares of the audit events; the exchange kinds take what is left.
REGISTERED_SHARE = 0.30  # one records.registered per record
GRANTED_SHARE = 0.15  # consent.granted for this share of events (a subset of the grants)
REFUSED_SHARE = 0.08  # of exchange requests
RELEASED_SHARE = 0.85  # of opened sessions
ACKED_SHARE = 0.90  # of released sessions

# Who patients grant to and how.
GRANT_KINDS = (("did", 0.80), ("org", 0.12), ("role", 0.08))
REVOKED_SHARE = 0.10
EXPIRED_SHARE = 0.15
SCOPE_RECORDS_SHARE = 0.40  # else resource types
PURPOSE_SETS = (
    (("TREAT",), 0.65),
    (("ETREAT", "TREAT"), 0.20),
    (("HOPERAT", "TREAT"), 0.10),
    (("PUBHLTH", "TREAT"), 0.05),
)
RECORD_TYPES = (
    ("Observation", 25),
    ("Encounter", 15),
    ("DiagnosticReport", 12),
    ("MedicationRequest", 10),
    ("Condition", 8),
    ("DocumentReference", 8),
    ("Procedure", 5),
    ("Immunization", 4),
    ("ImagingStudy", 4),
    ("AllergyIntolerance", 3),
    ("Patient", 2),
    ("Bundle", 2),
    ("Binary", 2),
)
PATIENT_WEIGHT_ALPHA = 1.3  # Pareto: most patients a handful of grants, a few hundreds
PATIENT_WEIGHT_CAP = 60.0

ALLOWED, OWN, NO_GRANT, REVOKED, EXPIRED = "allowed", "own record", "no grant", "revoked", "expired"
QUERY_MIX = ((ALLOWED, 0.40), (OWN, 0.10), (NO_GRANT, 0.30), (REVOKED, 0.10), (EXPIRED, 0.10))
NO_CONSENT = "no active consent covers this record and purpose"
OWN_RECORD = "the patient's own record"

stderr = Console(stderr=True)


# -- population -----------------------------------------------------------------


class Member(NamedTuple):
    did: str
    org_id: str | None
    roles: tuple[str, ...]
    public_key: bytes


class RecordSpec(NamedTuple):
    record_id: str
    resource_type: str
    custodian: str
    registered_by: str


class GrantSpec(NamedTuple):
    grant_id: str
    kind: str
    grantee: str
    purposes: tuple[str, ...]
    scope_records: tuple[str, ...]
    scope_types: tuple[str, ...]
    revoked: bool
    expired: bool  # expires before NOW_MS
    logged: bool  # has a consent.granted (and consent.revoked) event in the audit table


class ExchangeSpec(NamedTuple):
    record: int  # index into the patient's records
    requester: str
    purpose: str
    basis: str  # the decision's reason; NO_CONSENT for a refused request
    steps: int  # 0 refused, 1 opened, 2 released, 3 acknowledged
    releaser: str


@dataclass(frozen=True)
class Sizes:
    grants: int
    events: int
    patients: int
    doctors: int
    nurses: int
    researchers: int
    hospitals: int
    research_orgs: int
    records: int


@dataclass
class Population:
    """Every member, record, grant and exchange the fill writes, for picking queries."""

    sizes: Sizes
    staff: list[Member]
    patients: list[Member]
    hospitals: list[str]
    research_orgs: list[str]
    records: list[list[RecordSpec]]
    grants: list[list[GrantSpec]]
    exchanges: list[list[ExchangeSpec]]
    by_did: dict[str, Member] = field(default_factory=dict)
    staff_by_role: dict[str, list[Member]] = field(default_factory=dict)
    staff_by_org: dict[str, list[Member]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for m in self.staff + self.patients:
            self.by_did[m.did] = m
        for m in self.staff:
            self.staff_by_org.setdefault(m.org_id or "", []).append(m)
            for role in m.roles:
                self.staff_by_role.setdefault(role, []).append(m)

    def audit_events(self) -> int:
        registered = sum(len(r) for r in self.records)
        granted = sum(g.logged * (1 + g.revoked) for gs in self.grants for g in gs)
        exchanged = sum(max(1, x.steps) for xs in self.exchanges for x in xs)
        return registered + granted + exchanged

    def state_writes(self) -> int:
        members = 2 * (len(self.staff) + len(self.patients))
        sessions = sum(x.steps > 0 for xs in self.exchanges for x in xs)
        grants = 3 * sum(len(g) for g in self.grants)
        return members + 2 * sum(len(r) for r in self.records) + grants + sessions


def derive_sizes(args: argparse.Namespace) -> Sizes:
    patients = args.patients or max(50, args.grants // 10)
    doctors = args.doctors or max(10, patients // 20)
    hospitals = max(2, doctors // 100)
    return Sizes(
        grants=args.grants,
        events=args.events,
        patients=patients,
        doctors=doctors,
        nurses=max(5, doctors // 2),
        researchers=max(2, doctors // 25),
        hospitals=hospitals,
        research_orgs=max(1, hospitals // 10),
        records=round(args.events * REGISTERED_SHARE),
    )


def _pick(rng: random.Random, table: Sequence[tuple[Any, float]]) -> Any:
    r = rng.random()
    for value, share in table:
        r -= share
        if r < 0:
            return value
    return table[-1][0]


def _member(rng: random.Random, org_id: str | None, roles: tuple[str, ...]) -> Member:
    public = rng.randbytes(64)  # not a curve point: decide() and audit never read keys
    return Member(identity.did_for_key("sm", public), org_id, roles, public)


def _allocate(rng: random.Random, total: int, weights: Sequence[float], base: int) -> list[int]:
    """`total` items over len(weights) owners: `base` each, the rest drawn by weight."""
    n = len(weights)
    base = base if total >= base * n else 0
    counts = [base] * n
    for i in rng.choices(range(n), weights=weights, k=total - base * n):
        counts[i] += 1
    return counts


def policy_types(member: Member) -> frozenset[str]:
    """Resource types the member's roles may see (the genesis role policy)."""
    return frozenset(t for r in member.roles for t in consent.DEFAULT_ROLE_POLICY.get(r, ()))


def covers(g: GrantSpec, record: RecordSpec, purpose: str) -> bool:
    return purpose in g.purposes and (
        record.record_id in g.scope_records or record.resource_type in g.scope_types
    )


def candidates(member: Member) -> set[tuple[str, str]]:
    """The (kind, grantee) index prefixes decide() scans for this member."""
    found = {("did", member.did)} | {("role", r) for r in member.roles}
    if member.org_id:
        found.add(("org", member.org_id))
    return found


class PopulationBuilder:
    """Draws the population from one seeded RNG, so a run can be repeated exactly."""

    def __init__(self, sizes: Sizes, seed: int) -> None:
        self.sizes = sizes
        self.rng = random.Random(seed)
        self.hospitals = [f"hosp-{i:03d}" for i in range(sizes.hospitals)]
        self.research_orgs = [f"research-{i:02d}" for i in range(sizes.research_orgs)]
        self.doctors_at: dict[str, list[Member]] = {}
        self.staff_at: dict[str, list[Member]] = {}
        self.by_role: dict[str, list[Member]] = {}
        self.record_types = [t for t, _ in RECORD_TYPES]
        self.record_weights = [w for _, w in RECORD_TYPES]

    def build(self) -> Population:
        s, rng = self.sizes, self.rng
        staff = self._staff()
        patients = [_member(rng, None, ("patient",)) for _ in range(s.patients)]
        weights = [
            min(rng.paretovariate(PATIENT_WEIGHT_ALPHA), PATIENT_WEIGHT_CAP)
            for _ in range(s.patients)
        ]
        record_counts = _allocate(rng, s.records, weights, 1)
        grant_counts = _allocate(rng, s.grants, weights, 1)
        logged_share = min(1.0, s.events * GRANTED_SHARE / max(1, s.grants))
        records, grants = [], []
        for i in range(s.patients):
            hospital = rng.choice(self.hospitals)
            team = rng.sample(self.doctors_at[hospital], min(3, len(self.doctors_at[hospital])))
            team = team[: rng.randint(1, len(team))]
            recs = [self._record(hospital) for _ in range(record_counts[i])]
            records.append(recs)
            grants.append(
                [self._grant(recs, hospital, team, logged_share) for _ in range(grant_counts[i])]
            )
        pop = Population(
            s, staff, patients, self.hospitals, self.research_orgs, records, grants, []
        )
        pop.exchanges = self._exchanges(pop, weights, s.events - pop.audit_events())
        return pop

    def _staff(self) -> list[Member]:
        s, rng = self.sizes, self.rng
        staff: list[Member] = []
        for count, role, orgs in (
            (s.doctors, "doctor", self.hospitals),
            (s.nurses, "nurse", self.hospitals),
            (s.researchers, "researcher", self.research_orgs),
        ):
            for i in range(count):
                m = _member(rng, orgs[i % len(orgs)], (role,))
                staff.append(m)
                self.by_role.setdefault(role, []).append(m)
                self.staff_at.setdefault(orgs[i % len(orgs)], []).append(m)
                if role == "doctor":
                    self.doctors_at.setdefault(orgs[i % len(orgs)], []).append(m)
        return staff

    def _record(self, hospital: str) -> RecordSpec:
        rng = self.rng
        custodian = hospital if rng.random() < 0.8 else rng.choice(self.hospitals)
        kind = rng.choices(self.record_types, self.record_weights)[0]
        author = rng.choice(self.staff_at[custodian])
        return RecordSpec(rng.randbytes(12).hex(), kind, custodian, author.did)

    def _grant(
        self,
        recs: list[RecordSpec],
        hospital: str,
        team: list[Member],
        logged_share: float,
    ) -> GrantSpec:
        rng = self.rng
        kind: str = _pick(rng, GRANT_KINDS)
        purposes: tuple[str, ...] = _pick(rng, PURPOSE_SETS)
        if kind == "did":
            r = rng.random()
            if r < 0.70:
                grantee = rng.choice(team)
            elif r < 0.85:
                grantee = rng.choice(self.by_role["doctor"])
            elif r < 0.95:
                grantee = rng.choice(self.by_role["nurse"])
            else:
                grantee = rng.choice(self.by_role["researcher"])
                purposes = ("HRESEARCH",)
            name, visible = grantee.did, policy_types(grantee)
        elif kind == "org":
            r = rng.random()
            if r < 0.80:
                name = hospital
            elif r < 0.90:
                name = rng.choice(self.hospitals)
            else:
                name, purposes = rng.choice(self.research_orgs), ("HRESEARCH",)
            visible = frozenset(consent.CLINICAL)
        else:
            name = rng.choice(("doctor", "doctor", "nurse", "researcher"))
            if name == "researcher":
                purposes = ("HRESEARCH",)
            visible = frozenset(consent.DEFAULT_ROLE_POLICY[name])
        scope_records: tuple[str, ...] = ()
        scope_types: tuple[str, ...] = ()
        if recs and rng.random() < SCOPE_RECORDS_SHARE:
            chosen = rng.sample(recs, rng.randint(1, min(3, len(recs))))
            scope_records = tuple(sorted({r.record_id for r in chosen}))
        else:
            pool = sorted(visible)
            scope_types = tuple(sorted(rng.sample(pool, rng.randint(1, min(5, len(pool))))))
        return GrantSpec(
            grant_id=rng.randbytes(16).hex(),
            kind=kind,
            grantee=name,
            purposes=purposes,
            scope_records=scope_records,
            scope_types=scope_types,
            revoked=rng.random() < REVOKED_SHARE,
            expired=rng.random() < EXPIRED_SHARE,
            logged=rng.random() < logged_share,
        )

    def _exchanges(
        self, pop: Population, weights: list[float], budget: int
    ) -> list[list[ExchangeSpec]]:
        """Requests, releases and acks, `budget` audit events in all."""
        rng = self.rng
        exchanges: list[list[ExchangeSpec]] = [[] for _ in pop.patients]
        while budget > 0:
            for p in rng.choices(range(len(pop.patients)), weights=weights, k=budget):
                if budget <= 0:
                    break
                recs = pop.records[p]
                if not recs:
                    continue
                x = self._exchange(pop, p, recs)
                x = x._replace(steps=min(x.steps, budget))
                exchanges[p].append(x)
                budget -= max(1, x.steps)
        return exchanges

    def _exchange(self, pop: Population, p: int, recs: list[RecordSpec]) -> ExchangeSpec:
        rng = self.rng
        if rng.random() < REFUSED_SHARE:
            i = rng.randrange(len(recs))
            doctor = rng.choice(self.by_role["doctor"]).did
            return ExchangeSpec(i, doctor, "TREAT", NO_CONSENT, 0, "")
        steps = 1 + (rng.random() < RELEASED_SHARE)
        steps += steps == 2 and rng.random() < ACKED_SHARE
        usable = [g for g in pop.grants[p] if not (g.revoked or g.expired)]
        if usable:
            g = rng.choice(usable)
            requester = pick_grantee(rng, pop, g)
            visible = policy_types(requester)
            scoped = [
                i
                for i, r in enumerate(recs)
                if r.resource_type in visible and covers(g, r, g.purposes[0])
            ]
            if scoped:
                i = rng.choice(scoped)
                return ExchangeSpec(
                    i,
                    requester.did,
                    g.purposes[0],
                    f"grant {g.grant_id}",
                    steps,
                    recs[i].registered_by,
                )
        i = rng.randrange(len(recs))
        patient = pop.patients[p].did
        return ExchangeSpec(i, patient, "TREAT", OWN_RECORD, steps, recs[i].registered_by)


def pick_grantee(rng: random.Random, pop: Population, g: GrantSpec) -> Member:
    """A member the grant names: the DID itself, or someone with the role or in the org."""
    if g.kind == "did":
        return pop.by_did[g.grantee]
    if g.kind == "role":
        return rng.choice(pop.staff_by_role[g.grantee])
    return rng.choice(pop.staff_by_org[g.grantee])


# -- genesis and fill -----------------------------------------------------------


def genesis_key(seed: int, name: str) -> crypto.KeyPair:
    """A real SM2 key derived from the seed, so a kept database keeps its admins."""
    return crypto.keypair_from_private("sm", crypto.sm3(f"{CHAIN_ID}/{seed}/{name}".encode()))


def build_genesis(pop: Population, seed: int) -> Genesis:
    """Consortium admin plus every hospital and research org, each with a real admin key."""
    orgs = [(o, "hospital") for o in pop.hospitals] + [(o, "research") for o in pop.research_orgs]
    return parse_genesis(
        {
            "chain_id": CHAIN_ID,
            "genesis_time_ms": GENESIS_TIME_MS,
            "consortium_admins": [
                {
                    "name": "root",
                    "suite": "sm",
                    "public_key": genesis_key(seed, "root").public.hex(),
                }
            ],
            "orgs": [
                {
                    "org_id": org_id,
                    "name": org_id,
                    "org_type": org_type,
                    "admin": {
                        "name": f"{org_id} admin",
                        "suite": "sm",
                        "public_key": genesis_key(seed, org_id).public.hex(),
                    },
                }
                for org_id, org_type in orgs
            ],
        }
    )


class BlockWriter:
    """Gathers state writes and tx results; commits a synthetic block every `block_rows` rows."""

    def __init__(self, db: ChainDB, rng: random.Random, block_rows: int, total_rows: int) -> None:
        self.db = db
        self.rng = rng
        self.block_rows = block_rows
        self.total_rows = total_rows
        blocks = max(1, math.ceil(total_rows / block_rows))
        self.step_ms = HISTORY_MS // blocks
        self.writes: dict[str, bytes | None] = {}
        self.results: list[TxResult] = []
        self.events = 0
        self.rows_done = 0
        self.next_report = 1
        self.started = time.perf_counter()
        self.height = db.height + 1  # of the block being gathered
        self.time_ms = GENESIS_TIME_MS + self.height * self.step_ms

    def put(self, key: str, value: Any) -> None:
        self.writes[key] = encoding.encode(value)

    def emit(self, kind: str, attrs: dict[str, str], code: Code = Code.OK, log: str = "") -> None:
        """One tx result carrying one event, as a contract's `ctx.emit` makes it."""
        event = Event(kind, tuple(sorted(attrs.items())))
        self.results.append(TxResult(self.rng.randbytes(32), code, log, (event,)))
        self.events += 1

    def tick(self) -> None:
        if len(self.writes) + self.events >= self.block_rows:
            self.commit()

    def commit(self) -> None:
        if not self.writes and not self.results:
            return
        db = self.db
        block = Block(CHAIN_ID, self.height, self.time_ms, (), db.last_block_hash, "bench")
        writes = dict(self.writes)
        sealed = seal_block(block, tuple(self.results), writes, db.state_node, db.state_root)
        db.commit_block(sealed)
        self.rows_done += len(self.writes) + self.events
        self.writes, self.results, self.events = {}, [], 0
        self.height += 1
        self.time_ms += self.step_ms
        tenth = min(10, self.rows_done * 10 // self.total_rows)
        if tenth >= self.next_report:
            stderr.print(
                f"fill {10 * tenth:3d}%: {self.rows_done:,} of {self.total_rows:,} rows, "
                f"height {block.height}, {time.perf_counter() - self.started:.0f} s"
            )
            self.next_report = tenth + 1


def _fake_cid(rng: random.Random) -> str:
    return "bafkrei" + base64.b32encode(rng.randbytes(35)).decode().lower()[:52]


def write_member(w: BlockWriter, m: Member) -> None:
    member = identity.new_member(m.did, m.org_id, list(m.roles), "sm", m.public_key, w.height)
    w.put(identity.did_key(m.did), member)
    w.put(identity.pubkey_key(key_id("sm", m.public_key)), {"did": m.did, "status": "active"})


def write_record(w: BlockWriter, patient: str, r: RecordSpec) -> None:
    """records.register: the record row, its patient index row, records.registered."""
    cid = _fake_cid(w.rng)
    w.put(
        record_key(r.record_id),
        {
            "record_id": r.record_id,
            "patient": patient,
            "custodian": r.custodian,
            "cid": cid,
            "resource_type": r.resource_type,
            "content_hash": w.rng.randbytes(32),
            "status": "active",
            "supersedes": None,
            "registered_by": r.registered_by,
            "created_height": w.height,
            "created_time_ms": w.time_ms,
        },
    )
    w.put(patient_index_key(patient, r.record_id), {"record_id": r.record_id})
    w.emit(
        "records.registered",
        {
            "record_id": r.record_id,
            "patient": patient,
            "custodian": r.custodian,
            "resource_type": r.resource_type,
            "cid": cid,
            "actor": r.registered_by,
        },
    )


def write_grant(w: BlockWriter, patient: str, g: GrantSpec) -> None:
    """consent.grant (and consent.revoke): the grant row and its two index rows."""
    t = w.time_ms
    if g.expired:
        expires = w.rng.randint(t + HOUR_MS, max(t + HOUR_MS, GENESIS_TIME_MS + HISTORY_MS))
    else:
        expires = NOW_MS + w.rng.randint(30 * DAY_MS, 3 * 365 * DAY_MS)
    grant: dict[str, Any] = {
        "grant_id": g.grant_id,
        "patient": patient,
        "grantee_kind": g.kind,
        "grantee": g.grantee,
        "purposes": list(g.purposes),
        "scope_records": list(g.scope_records),
        "scope_types": list(g.scope_types),
        "expires_ms": expires,
        "status": "active",
        "granted_by": patient,
        "granted_height": w.height,
        "granted_time_ms": t,
    }
    if g.revoked:
        grant.update(status="revoked", revoked_height=w.height, revoked_by=patient)
    w.put(consent.grant_key(g.grant_id), grant)
    w.put(consent.by_patient_key(patient, g.grant_id), {"grant_id": g.grant_id})
    w.put(consent.by_grantee_key(g.kind, g.grantee, patient, g.grant_id), {"grant_id": g.grant_id})
    if g.logged:
        w.emit(
            "consent.granted",
            {
                "grant_id": g.grant_id,
                "patient": patient,
                "grantee": f"{g.kind}:{g.grantee}",
                "purposes": ",".join(g.purposes),
                "expires_ms": str(expires),
                "actor": patient,
            },
        )
        if g.revoked:
            w.emit(
                "consent.revoked", {"grant_id": g.grant_id, "patient": patient, "actor": patient}
            )


def write_exchange(
    w: BlockWriter, pop: Population, patient: str, r: RecordSpec, x: ExchangeSpec
) -> None:
    """exchange.request (opened or refused), then release and ack, as one session."""
    where = {"record_id": r.record_id, "patient": patient}
    if x.steps == 0:
        w.emit(
            "exchange.refused",
            {
                **where,
                "stage": "request",
                "custodian": r.custodian,
                "actor": x.requester,
                "purpose": x.purpose,
                "reason": x.basis,
            },
            Code.UNAUTHORIZED,
            f"access refused: {x.basis}",
        )
        return
    session_id = w.rng.randbytes(16).hex()
    session: dict[str, Any] = {
        "session_id": session_id,
        **where,
        "custodian": r.custodian,
        "requester": x.requester,
        "requester_key": pop.by_did[x.requester].public_key,
        "purpose": x.purpose,
        "basis": x.basis,
        "status": "open",
        "opened_height": w.height,
        "opened_time_ms": w.time_ms,
        "expires_ms": w.time_ms + SESSION_MS,
    }
    w.emit(
        "exchange.opened",
        {
            "session_id": session_id,
            **where,
            "custodian": r.custodian,
            "actor": x.requester,
            "purpose": x.purpose,
            "basis": x.basis,
        },
    )
    if x.steps >= 2:
        session.update(status="released", released_by=x.releaser, released_height=w.height)
        w.emit(
            "exchange.released",
            {"session_id": session_id, **where, "requester": x.requester, "actor": x.releaser},
        )
    if x.steps >= 3:
        session.update(status="closed", acked_height=w.height)
        w.emit(
            "exchange.acknowledged",
            {"session_id": session_id, **where, "actor": x.requester, "status": "closed"},
        )
    w.put(session_key(session_id), session)


def fill(db: ChainDB, pop: Population, block_rows: int, seed: int) -> int:
    """Members first, then every patient's records, grants and exchanges, interleaved
    across the whole history in a random order (a patient's own activities stay in
    order: records, then grants, then exchanges). Returns the rows written."""
    total = pop.state_writes() + pop.audit_events()
    rng = random.Random(seed + 1)
    w = BlockWriter(db, rng, block_rows, total)
    for m in pop.staff + pop.patients:
        write_member(w, m)
        w.tick()
    order = array("i")
    for p in range(len(pop.patients)):
        n = len(pop.records[p]) + len(pop.grants[p]) + len(pop.exchanges[p])
        order.extend([p] * n)
    rng.shuffle(order)
    cursor = [0] * len(pop.patients)
    for p in order:
        i, cursor[p] = cursor[p], cursor[p] + 1
        did, recs, grants = pop.patients[p].did, pop.records[p], pop.grants[p]
        if i < len(recs):
            write_record(w, did, recs[i])
        elif i < len(recs) + len(grants):
            write_grant(w, did, grants[i - len(recs)])
        else:
            x = pop.exchanges[p][i - len(recs) - len(grants)]
            write_exchange(w, pop, did, recs[x.record], x)
        w.tick()
    w.commit()
    return total


# -- measurement helpers ----------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table: latencies of one operation."""

    name: str
    samples_ns: Sequence[int]
    goal_ms: float | None = None
    note: str = ""

    def ms(self, pct: float) -> float:
        """Nearest-rank percentile in ms."""
        ordered = sorted(self.samples_ns)
        rank = max(1, math.ceil(pct / 100 * len(ordered)))
        return ordered[rank - 1] / 1e6

    @property
    def met(self) -> bool | None:
        return None if self.goal_ms is None else self.ms(99) <= self.goal_ms


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chain:
    """The filled database and what was put in it; what every section measures against."""

    db: ChainDB
    app: Application
    path: Path
    pop: Population
    seed: int
    fill_seconds: float
    rows: int
    reused: bool


Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]


def state_reader(db: ChainDB) -> tuple[Get, Scan]:
    """get/scan that decode stored values as Context.get/Context.scan do."""

    def get(key: str) -> Any:
        raw = db.get(key)
        return None if raw is None else encoding.decode(raw)

    def scan(prefix: str) -> Iterator[tuple[str, Any]]:
        for k, raw in db.scan(prefix, SCAN_LIMIT):
            yield k, encoding.decode(raw)

    return get, scan


@dataclass
class Reads:
    gets: int = 0
    scans: int = 0
    scanned: int = 0


def counting_reader(db: ChainDB, reads: Reads) -> tuple[Get, Scan]:
    """state_reader that also counts gets, scans and rows scanned (for the notes)."""
    get0, scan0 = state_reader(db)

    def get(key: str) -> Any:
        reads.gets += 1
        return get0(key)

    def scan(prefix: str) -> Iterator[tuple[str, Any]]:
        reads.scans += 1
        for item in scan0(prefix):
            reads.scanned += 1
            yield item

    return get, scan


# -- 1. decide() ------------------------------------------------------------------


class Query(NamedTuple):
    category: str
    member: str
    record_id: str
    purpose: str
    via: str = ""  # kind of the grant the query was built from


def _covered_records(
    recs: list[RecordSpec], g: GrantSpec, member: Member, purpose: str
) -> list[RecordSpec]:
    visible = policy_types(member)
    return [r for r in recs if r.resource_type in visible and covers(g, r, purpose)]


def _pick_query(rng: random.Random, pop: Population, category: str) -> Query | None:
    """One query that must end as `category` by the population's grants, or None."""
    p = rng.randrange(len(pop.patients))
    patient, recs, grants = pop.patients[p], pop.records[p], pop.grants[p]
    if not recs:
        return None
    if category == OWN:
        return Query(category, patient.did, rng.choice(recs).record_id, "TREAT")
    if category == NO_GRANT:
        member = rng.choice(pop.staff_by_role["doctor" if rng.random() < 0.9 else "nurse"])
        names = candidates(member)
        if any((g.kind, g.grantee) in names for g in grants):
            return None
        visible = [r for r in recs if r.resource_type in policy_types(member)]
        if not visible:
            return None
        return Query(category, member.did, rng.choice(visible).record_id, "TREAT")
    pool = {
        ALLOWED: [g for g in grants if not (g.revoked or g.expired)],
        REVOKED: [g for g in grants if g.revoked],
        EXPIRED: [g for g in grants if g.expired and not g.revoked],
    }[category]
    if not pool:
        return None
    g = rng.choice(pool)
    member = pick_grantee(rng, pop, g)
    purpose = rng.choice(g.purposes)
    scoped = _covered_records(recs, g, member, purpose)
    if not scoped:
        return None
    record = rng.choice(scoped)
    if category != ALLOWED:
        names = candidates(member)
        if any(
            (o.kind, o.grantee) in names
            and not (o.revoked or o.expired)
            and covers(o, record, purpose)
            for o in grants
        ):
            return None  # another grant would allow it
    return Query(category, member.did, record.record_id, purpose, g.kind)


def pick_queries(pop: Population, n: int, seed: int) -> list[Query]:
    rng = random.Random(seed + 2)
    wanted = [_pick(rng, QUERY_MIX) for _ in range(n)]
    queries = []
    for category in wanted:
        for _ in range(10_000):
            q = _pick_query(rng, pop, category)
            if q is not None:
                queries.append(q)
                break
        else:
            raise SystemExit(f"could not find a {category!r} query; is the population too small?")
    return queries


def _outcome_ok(category: str, allowed: bool, reason: str) -> bool:
    if category == ALLOWED:
        return allowed and reason.startswith("grant ")
    if category == OWN:
        return allowed and reason == OWN_RECORD
    return not allowed and reason == NO_CONSENT


def measure_decide(chain: Chain, args: argparse.Namespace, report: Report) -> None:
    """decide() per query; member and record are read (and decoded) before the clock."""
    db, pop = chain.db, chain.pop
    queries = pick_queries(pop, args.queries, chain.seed)
    get, scan = state_reader(db)
    for q in pick_queries(pop, 100, chain.seed + 100):  # warm up the statements, untimed
        decide(
            get,
            scan,
            get(identity.did_key(q.member)),
            get(record_key(q.record_id)),
            q.purpose,
            NOW_MS,
        )
    by_category: dict[str, list[int]] = {c: [] for c, _ in QUERY_MIX}
    with_reads: list[int] = []
    clock = time.perf_counter_ns
    for q in queries:
        t0 = clock()
        member = get(identity.did_key(q.member))
        record = get(record_key(q.record_id))
        t1 = clock()
        decide(get, scan, member, record, q.purpose, NOW_MS)
        t2 = clock()
        by_category[q.category].append(t2 - t1)
        with_reads.append(t2 - t0)
    # Again, untimed: check every outcome and count the reads decide() made.
    reads: dict[str, Reads] = {c: Reads() for c, _ in QUERY_MIX}
    for q in queries:
        cget, cscan = counting_reader(db, reads[q.category])
        member, record = get(identity.did_key(q.member)), get(record_key(q.record_id))
        d = decide(cget, cscan, member, record, q.purpose, NOW_MS)
        if not _outcome_ok(q.category, d.allowed, d.reason):
            report.failures.append(f"{q.category} query ended {d.allowed} ({d.reason}): {q}")
    mix = Counter(q.category for q in queries)
    for category, _ in QUERY_MIX:
        r, n = reads[category], max(1, mix[category])
        report.rows.append(
            Row(
                f"decide: {category}",
                by_category[category],
                DECIDE_GOAL_MS,
                f"{mix[category]} queries; per call {r.gets / n:.1f} gets, "
                f"{r.scans / n:.1f} scans, {r.scanned / n:.1f} rows scanned",
            )
        )
    everything = [t for c, _ in QUERY_MIX for t in by_category[c]]
    report.rows.append(Row("decide: all queries", everything, DECIDE_GOAL_MS, "the mix above"))
    report.rows.append(
        Row(
            "get member + record, then decide",
            with_reads,
            DECIDE_GOAL_MS,
            "as the exchange contract does, from ids",
        )
    )
    report.facts["query_mix"] = {c: mix[c] for c, _ in QUERY_MIX}
    via = Counter(q.via for q in queries if q.via)
    report.notes.append(
        "query mix: "
        + ", ".join(f"{mix[c]} {c}" for c, _ in QUERY_MIX)
        + "; grants the allowed, revoked and expired queries were built from: "
        + ", ".join(f"{kind} ({n})" for kind, n in sorted(via.items()))
    )


# -- 2. audit queries -------------------------------------------------------------


def _query_plan(path: Path, column: str) -> str:
    sql = (
        f"EXPLAIN QUERY PLAN SELECT {AUDIT_COLUMNS} FROM audit WHERE {column} = ? AND seq > ? "
        "ORDER BY seq LIMIT ?"
    )
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return "; ".join(str(row[-1]) for row in conn.execute(sql, ("x", 0, AUDIT_LIMIT)))


def measure_audit(chain: Chain, args: argparse.Namespace, report: Report) -> None:
    """ChainDB.audit for random patients, then random doctors, first page of 100."""
    rng = random.Random(chain.seed + 3)
    patients = [rng.choice(chain.pop.patients).did for _ in range(args.queries)]
    doctors = [rng.choice(chain.pop.staff_by_role["doctor"]).did for _ in range(args.queries)]
    db = chain.db

    def by_patient(did: str) -> list[dict[str, Any]]:
        return db.audit(patient=did, limit=AUDIT_LIMIT)

    def by_actor(did: str) -> list[dict[str, Any]]:
        return db.audit(actor=did, limit=AUDIT_LIMIT)

    for column, audit, dids in (("patient", by_patient, patients), ("actor", by_actor, doctors)):
        for did in dids[:100]:  # untimed warm-up of the statement
            audit(did)
        samples, returned, full = [], 0, 0
        clock = time.perf_counter_ns
        for did in dids:
            t0 = clock()
            rows = audit(did)
            samples.append(clock() - t0)
            returned += len(rows)
            full += len(rows) == AUDIT_LIMIT
            if any(r[column] != did for r in rows):
                report.failures.append(f"audit({column}={did}) returned another {column}")
        who = "random patients" if column == "patient" else "random doctors"
        report.rows.append(
            Row(
                f"audit({column}=…, limit={AUDIT_LIMIT})",
                samples,
                AUDIT_GOAL_MS if column == "patient" else None,
                f"{len(dids)} {who}; {returned / len(dids):.1f} rows on average, {full} full pages",
            )
        )
        report.notes.append(f"plan of audit({column}=…): {_query_plan(chain.path, column)}")


# -- baselines --------------------------------------------------------------------


def measure_baseline(chain: Chain, args: argparse.Namespace, report: Report) -> None:
    """A raw point read of an existing key (random grants) and SM3 of 1 KB."""
    rng = random.Random(chain.seed + 4)
    grants = [gs for gs in chain.pop.grants if gs]
    keys = [
        consent.grant_key(rng.choice(rng.choice(grants)).grant_id) for _ in range(BASELINE_CALLS)
    ]
    db, clock = chain.db, time.perf_counter_ns
    for key in keys[:100]:
        db.get(key)
    reads = []
    for key in keys:
        t0 = clock()
        value = db.get(key)
        reads.append(clock() - t0)
        if value is None:
            report.failures.append(f"baseline key {key} is missing")
    report.rows.append(
        Row("baseline: ChainDB.get (raw, no decode)", reads, None, "random existing grant keys")
    )
    hashes = []
    for _ in range(BASELINE_CALLS):
        t0 = clock()
        crypto.sm3(PAYLOAD_1KB)
        hashes.append(clock() - t0)
    report.rows.append(Row("baseline: SM3 of 1 KB", hashes, None, "medchain.crypto.sm3"))


# -- end-to-end exchange on the embedded engine -------------------------------------


EXCHANGE_GOAL_MS = 1200.0  # the MedRec figure
NODE_BLOCK_INTERVAL = 0.2  # `medchain node`'s default
EXCHANGE_RECORD = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
    "valueQuantity": {
        "value": 6.8,
        "unit": "%",
        "system": "http://unitsofmeasure.org",
        "code": "%",
    },
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _must(out: dict[str, Any], what: str) -> dict[str, Any]:
    if out.get("code") != 0:
        raise SystemExit(f"exchange setup: {what} failed: {out}")
    return out


def measure_exchange(chain: Chain, args: argparse.Namespace, report: Report) -> None:
    """Whole exchanges through real HTTP servers over the filled chain: the solo engine
    with `medchain node`'s block interval, its gateway, and a custodian edge. Each one:
    exchange.request (a block), signed fetch (the custodian's exchange.release, a
    block; key re-wrap; ciphertext), decrypt + hash check, exchange.ack (a block).
    Baseline: one tx submitted and waited for (one block), on the same node."""
    engine = SoloEngine(chain.app, block_interval=NODE_BLOCK_INTERVAL)
    engine.start()
    k = {n: crypto.generate_keypair() for n in ("admin_a", "admin_b", "doctor_b", "patient")}
    # Benches drive every request from one address: no request limits (gateway/limits.py).
    # bench-a's edge reads raw state as its org key: an operator of the node.
    operators = frozenset({(k["admin_a"].suite, k["admin_a"].public)})
    gateway = GatewayServer(
        engine, port=_free_port(), operators=operators, limits=Limits.unlimited()
    )
    gateway.start()
    node = Client(gateway.url, key=k["admin_a"])
    root = genesis_key(chain.seed, "root")
    try:
        for org_id, admin in (("bench-a", "admin_a"), ("bench-b", "admin_b")):
            payload = {
                "org_id": org_id,
                "name": org_id,
                "org_type": "hospital",
                "admin_public_key": k[admin].public,
            }
            _must(node.send(root, "identity", "register_org", payload), "register_org")
        staff = {"org_id": "bench-b", "public_key": k["doctor_b"].public, "roles": ["doctor"]}
        _must(node.send(k["admin_b"], "identity", "add_member", staff), "add_member")
        _must(node.send(k["patient"], "identity", "register_patient", {}), "register_patient")
        with tempfile.TemporaryDirectory(prefix="medchain-edge-") as vault_dir:
            edge = CustodianEdge(Vault(Path(vault_dir), k["admin_a"]), k["admin_a"], node)
            edge_server = EdgeServer(edge, "127.0.0.1", _free_port(), limits=Limits.unlimited())
            edge_server.start()
            try:
                _run_exchanges(node, edge_server.url, k, args, report)
            finally:
                edge_server.stop()
    finally:
        gateway.stop()
        engine.stop()


def _run_exchanges(
    node: Client,
    edge_url: str,
    k: dict[str, crypto.KeyPair],
    args: argparse.Namespace,
    report: Report,
) -> None:
    endpoint = {"org_id": "bench-a", "edge_url": edge_url}
    _must(node.send(k["admin_a"], "identity", "set_endpoint", endpoint), "set_endpoint")
    patient = identity.did_for_key(k["patient"].suite, k["patient"].public)
    body = json.dumps(EXCHANGE_RECORD).encode()
    r = upload_record(k["admin_a"], node.chain_id, edge_url, body, patient, "bench-hba1c")
    if r.status_code != 201:
        raise SystemExit(f"exchange setup: upload failed: {r.text}")
    now = node.block_time_ms()
    grant = {
        "patient": patient,
        "grantee_kind": "did",
        "grantee": identity.did_for_key(k["doctor_b"].suite, k["doctor_b"].public),
        "purposes": ["TREAT"],
        "scope_types": ["Observation"],
        "expires_ms": now + DAY_MS,
    }
    _must(node.send(k["patient"], "consent", "grant", grant), "grant")
    doctor = Client(node.url, key=k["doctor_b"])  # the requester reads as itself
    fetch_record(doctor, k["doctor_b"], "bench-hba1c")  # untimed warm-up
    totals: list[int] = []
    steps: dict[str, list[int]] = {"request": [], "fetch": [], "decrypt": [], "ack": []}
    for i in range(args.exchanges):
        t0 = time.perf_counter_ns()
        got = fetch_record(doctor, k["doctor_b"], "bench-hba1c")
        totals.append(time.perf_counter_ns() - t0)
        for step, seconds in got.timings.items():
            steps[step].append(int(seconds * 1e9))
        if json.loads(got.plaintext) != EXCHANGE_RECORD | {"id": "bench-hba1c"}:  # edge sets id
            report.failures.append(f"exchange {i} decrypted something else")
    blocks = f"{NODE_BLOCK_INTERVAL * 1000:.0f} ms block interval"
    report.rows.append(
        Row(
            "exchange end to end (solo engine)",
            totals,
            EXCHANGE_GOAL_MS,
            f"{args.exchanges} exchanges over HTTP, 3 blocks each, {blocks}",
        )
    )
    notes = {
        "request": "exchange.request committed (1 block)",
        "fetch": "signed fetch: release committed (1 block), re-wrap, ciphertext",
        "decrypt": "unwrap, SM4-GCM open, salted SM3 check",
        "ack": "exchange.ack committed (1 block)",
    }
    for step, samples in steps.items():
        report.rows.append(Row(f"  exchange: {step}", samples, None, notes[step]))
    commits = []
    for _ in range(args.exchanges):
        fresh = crypto.generate_keypair()
        t0 = time.perf_counter_ns()
        _must(node.send(fresh, "identity", "register_patient", {}), "register_patient")
        commits.append(time.perf_counter_ns() - t0)
    report.rows.append(
        Row("baseline: one tx submitted and committed", commits, None, f"same node, {blocks}")
    )


Section = Callable[[Chain, argparse.Namespace, Report], None]

# Each section adds rows to the one table; the exchange runs last, since it
# commits new blocks on top of the filled chain.
SECTIONS: list[Section] = [measure_decide, measure_audit, measure_baseline, measure_exchange]


# -- run --------------------------------------------------------------------------


def _file_bytes(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _fill_params(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    return {"sizes": asdict(sizes), "seed": args.seed, "block_rows": args.block_rows}


def open_chain(args: argparse.Namespace, directory: Path) -> Chain:
    """Build the population, then fill a new database or reuse a kept one of the same params."""
    sizes = derive_sizes(args)
    t0 = time.perf_counter()
    pop = PopulationBuilder(sizes, args.seed).build()
    gc.collect()
    gc.freeze()  # the population is the bench's, not the node's: keep it out of GC passes
    stderr.print(
        f"population: {sizes.patients:,} patients, {len(pop.staff):,} staff, "
        f"{sizes.hospitals} hospitals, {sum(map(len, pop.records)):,} records, "
        f"{sum(map(len, pop.grants)):,} grants, {pop.audit_events():,} audit events "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    path = directory / "chain.db"
    params_file = directory / "consent_exchange.json"
    params = _fill_params(args, sizes)
    if path.exists():
        saved = json.loads(params_file.read_text()) if params_file.exists() else None
        db = ChainDB(path)
        if saved is None or saved["params"] != params or saved["height"] != db.height:
            raise SystemExit(f"{path} was not filled by this script with these options")
        stderr.print(f"reusing {path} (height {db.height})")
        return Chain(
            db, Application(db), path, pop, args.seed, saved["fill_seconds"], saved["rows"], True
        )
    db = ChainDB(path)
    app = Application(db)
    t0 = time.perf_counter()
    app.init_chain(build_genesis(pop, args.seed))
    rows = fill(db, pop, args.block_rows, args.seed)
    seconds = time.perf_counter() - t0
    params_file.write_text(
        json.dumps({"params": params, "height": db.height, "fill_seconds": seconds, "rows": rows})
    )
    return Chain(db, app, path, pop, args.seed, seconds, rows, False)


def count_rows(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in ("state", "audit", "txs", "blocks")
        }


def _spread(values: Sequence[int]) -> str:
    ordered = sorted(values)
    med = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return f"median {med}, p99 {p99}, max {ordered[-1]}"


def describe(chain: Chain, counts: dict[str, int], report: Report) -> None:
    pop = chain.pop
    per_patient: Counter[str] = Counter()
    per_doctor: Counter[str] = Counter()
    with closing(sqlite3.connect(f"file:{chain.path}?mode=ro", uri=True)) as conn:
        for patient, n in conn.execute("SELECT patient, count(*) FROM audit GROUP BY patient"):
            per_patient[patient] = n
        doctors = pop.staff_by_role["doctor"]
        doctor_dids = {m.did for m in doctors}
        for actor, n in conn.execute("SELECT actor, count(*) FROM audit GROUP BY actor"):
            if actor in doctor_dids:
                per_doctor[actor] = n
    size = _file_bytes(chain.path)
    wal = _file_bytes(chain.path.with_name(chain.path.name + "-wal"))
    report.facts.update(
        fill_seconds=round(chain.fill_seconds, 1),
        fill_reused=chain.reused,
        rows_written=chain.rows,
        db_bytes=size,
        wal_bytes=wal,
        height=chain.db.height,
        table_rows=counts,
    )
    report.notes[:0] = [
        f"fill: {chain.fill_seconds:.0f} s{' (earlier run, reused)' if chain.reused else ''}, "
        f"{chain.rows:,} rows ({chain.rows / chain.fill_seconds:,.0f}/s), "
        f"{chain.db.height} blocks; database {size / 2**20:,.0f} MiB + WAL {wal / 2**20:,.0f} MiB",
        f"tables: {counts['state']:,} state rows, {counts['audit']:,} audit rows, "
        f"{counts['txs']:,} tx results",
        f"grants per patient: {_spread([len(g) for g in pop.grants])}; "
        f"audit rows per patient: {_spread([per_patient[m.did] for m in pop.patients])}; "
        f"per doctor (as actor): {_spread([per_doctor[m.did] for m in doctors])}",
    ]


def print_report(report: Report) -> None:
    table = Table(title="Consent decision and audit queries (ms; nearest-rank percentiles)")
    for col in ("measure", "n", "p50", "p95", "p99", "max", "goal p99", "p50 / get", "notes"):
        table.add_column(col, justify="left" if col in ("measure", "notes") else "right")
    base = next(r for r in report.rows if r.name.startswith("baseline: ChainDB.get")).ms(50)
    for row in report.rows:
        goal = "" if row.goal_ms is None else f"≤ {row.goal_ms:g}" + (" ✓" if row.met else " ✗")
        table.add_row(
            row.name,
            f"{len(row.samples_ns):,}",
            *(f"{row.ms(p):.3f}" for p in (50, 95, 99, 100)),
            goal,
            f"{row.ms(50) / base:.1f}x",
            row.note,
        )
    console = Console(width=max(Console().width, 160))
    console.print(table)
    for note in report.notes:
        console.print(f"[dim]{note}[/dim]")


def report_json(report: Report) -> str:
    return json.dumps(
        {
            **report.facts,
            "rows": [
                {
                    "name": r.name,
                    "n": len(r.samples_ns),
                    **{f"p{p}_ms": round(r.ms(p), 4) for p in (50, 95, 99)},
                    "max_ms": round(r.ms(100), 4),
                    "goal_p99_ms": r.goal_ms,
                    "met": r.met,
                }
                for r in report.rows
            ],
            "failures": report.failures,
        }
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--grants", type=int, default=DEFAULT_GRANTS, help="consent grants in state")
    p.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="audit events")
    p.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="timed calls per measure")
    p.add_argument("--patients", type=int, help="default: grants / 10 (100,000 at full size)")
    p.add_argument("--doctors", type=int, help="default: patients / 20 (5,000 at full size)")
    p.add_argument(
        "--block-rows",
        type=int,
        default=DEFAULT_BLOCK_ROWS,
        help="state writes + events per synthetic block",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of every random choice")
    p.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="put the database in DIR and keep it; a later run with the same options reuses it",
    )
    p.add_argument("--exchanges", type=int, default=30, help="timed end-to-end exchanges")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = p.parse_args(argv)
    if args.grants < 100 or args.events < 100 or args.queries < 1 or args.block_rows < 100:
        p.error("--grants and --events must be at least 100, --queries at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    with ExitStack() as stack:
        if args.keep is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medchain-")))
        else:
            directory = args.keep
            directory.mkdir(parents=True, exist_ok=True)
        chain = open_chain(args, directory)
        stack.callback(chain.db.close)
        counts = count_rows(chain.path)
        if counts["audit"] != chain.pop.audit_events():
            report.failures.append(
                f"audit table has {counts['audit']:,} rows, expected {chain.pop.audit_events():,}"
            )
        for section in SECTIONS:
            stderr.print(f"{section.__name__} …")
            section(chain, args, report)
        describe(chain, counts, report)
    if args.json:
        print(report_json(report))
    else:
        print_report(report)
    if report.failures:
        for failure in report.failures[:20]:
            stderr.print(f"[red]{failure}[/red]")
        stderr.print(f"[bold red]FAILED: {len(report.failures)} checks[/bold red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
