"""Insurance claims through real transactions on a real ledger: plans as data,
a pack dispensed through the supply chain claimed once and refused the second
time (with its audit event), zk criteria, co-payment and the annual limit by
block year, who may submit and settle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.ledger import DATA, Ledger, did_of
from support.regulator import regulator_chain
from support.servers import free_port
from support.supply_chain import GTIN, Chain
from test_zk import accredit as zk_accredit
from test_zk import attest as zk_attest
from test_zk import challenge as zk_challenge
from test_zk import make_proofs as zk_make_proofs
from test_zk import ok as zk_ok
from test_zk import prove as zk_prove
from test_zk import zk as zk_run

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.claims import model as m
from medchain.contracts.claims.model import ClaimedItem, adjudicate
from medchain.contracts.zk import model as zk_model
from medchain.exceptions import Code
from medchain.fhir.claims import claim_response, explanation_of_benefit, read_claim
from medchain.fhir.validate import InvalidFhir
from medchain.gateway.limits import Limits
from medchain.network.relay import Relay
from medchain.node import GatewayServer
from medchain.sdk.client import Client

DRUG = f"{m.GTIN_SYSTEM}|{GTIN}"
VISIT = "http://www.nhsa.gov.cn/service|110200001"  # an outpatient consultation
HBA1C_CRITERION = "diabetes-hba1c"
DAY_MS = 86_400_000


class World:
    """The supply chain's cast, an insurer with a plan, an enrolled patient whose
    prescription record the insurer may read for payment, and dispensed pens."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.chain = Chain(ledger)
        self.k = self.chain.k
        for name in ("insurer", "insurer_clerk", "patient", "stranger_patient", "doctor"):
            self.k[name] = crypto.generate_keypair()
        ledger.add_org("pingan", self.k["insurer"], "insurer")
        ledger.add_staff(self.k["insurer"], "pingan", self.k["insurer_clerk"], ["org_admin"])
        ledger.add_staff(self.k["hospital"], "hosp-a", self.k["doctor"], ["doctor"])
        ledger.add_patient(self.k["patient"])
        ledger.add_patient(self.k["stranger_patient"])
        self.patient = did_of(self.k["patient"])
        self.n = 0

    def run(self, who: str, action: str, payload: dict[str, Any], contract: str = "claims") -> Any:
        return self.ledger.run(self.k[who], action, payload, contract)

    def ok(self, who: str, action: str, payload: dict[str, Any], contract: str = "claims") -> Any:
        r = self.run(who, action, payload, contract)
        assert r.code == Code.OK, r.log
        return r

    def plan(self, limit_fen: int = 1_000_000, criteria: tuple[str, ...] = ()) -> None:
        self.ok(
            "insurer",
            "set_plan",
            {
                "plan_id": "basic-2027",
                "covered": [
                    {"code": DRUG, "unit_cap_fen": 8_000, "required_criteria": list(criteria)},
                    {"code": VISIT, "unit_cap_fen": 5_000},
                ],
                "copay_bp": 2_000,
                "annual_limit_fen": limit_fen,
            },
        )
        self.ok("insurer_clerk", "enrol", {"plan_id": "basic-2027", "patient": self.patient})

    def record(self, record_id: str = "rx-1") -> str:
        self.ok(
            "hospital",
            "register",
            {
                "record_id": record_id,
                "patient": self.patient,
                "resource_type": "MedicationRequest",
                "cid": "b" + "a" * 58,
                "content_hash": bytes(32),
            },
            "records",
        )
        return record_id

    def grant_insurer(self, purposes: list[str]) -> None:
        self.ok(
            "patient",
            "grant",
            {
                "patient": self.patient,
                "grantee_kind": "org",
                "grantee": "pingan",
                "purposes": purposes,
                "scope_types": ["MedicationRequest"],
                "expires_ms": self.ledger.app.db.block_time_ms() + DAY_MS,
            },
            "consent",
        )

    def dispensed(self, serials: int = 4) -> list[str]:
        """Pens commissioned, shipped cold, received and dispensed by the pharmacy."""
        units = self.chain.setup_batch(serials=serials)
        ship = {"destination": "yifeng", "shipment": "SH-1", "device": did_of(self.k["logger"])}
        assert self.chain.event("maker", "shipping", units, **ship).code == Code.OK
        t = self.ledger.app.db.block_time_ms()
        self.chain.ok("logger", "readings", {"shipment": "SH-1", "readings": [[t - 1000, 45]]})
        assert self.chain.event("pharmacy", "receiving", units, shipment="SH-1").code == Code.OK
        assert self.chain.event("pharmacy", "dispensing", units[:2]).code == Code.OK
        return units

    def claim(
        self,
        packs: list[str],
        who: str = "pharmacy",
        encounter: str = "Encounter/rx-1",
        price: int = 9_000,
        **extra: Any,
    ) -> dict[str, Any]:
        self.n += 1
        provider = {"pharmacy": "yifeng", "hospital": "hosp-a"}.get(who, "yifeng")
        payload = {
            "claim_id": f"CLM-{self.n}",
            "patient": self.patient,
            "plan_id": "basic-2027",
            "insurer": "pingan",
            "encounter_hash": m.encounter_hash(provider, encounter),
            "items": [
                {"code": DRUG, "quantity": len(packs), "unit_price_fen": price, "packs": packs}
            ],
            "claim_hash": bytes(range(32)),
        }
        return payload | extra

    def state(self, key: str) -> Any:
        return self.ledger.state(key)


@pytest.fixture
def world(ledger: Ledger) -> World:
    return World(ledger)


def test_dispensed_pen_claimed_once_paid_and_refused_the_second_time(world: World) -> None:
    world.plan()
    units = world.dispensed()
    world.grant_insurer(["HPAYMT"])
    rx = world.record()
    first = world.claim([units[0]], record_ids=[rx])
    r = world.ok("pharmacy", "submit", first)
    submitted = dict(r.events[0].attributes)
    assert submitted["outcome"] == m.COMPLETE and submitted["patient"] == world.patient
    claim = world.state(m.claim_key(first["claim_id"]))
    # 90.00 yuan capped at 80.00, 20 % co-payment: the plan pays 64.00
    (item,) = claim["items"]
    assert (item["claimed_fen"], item["allowed_fen"], item["copay_fen"], item["payable_fen"]) == (
        9_000,
        8_000,
        1_600,
        6_400,
    )
    assert item["adjudication"] == m.APPROVED and "capped at 8000" in item["reasons"][0]
    assert claim["status"] == m.ADJUDICATED and claim["provider"] == "yifeng"
    assert world.state(m.by_patient_prefix(world.patient) + first["claim_id"]) == 1
    assert world.state(m.pack_key(units[0])) == first["claim_id"]

    too_much = {"claim_id": first["claim_id"], "reference": "PAY-1", "amount_fen": 6_401}
    assert world.run("insurer_clerk", "settle", too_much).code == Code.INVALID_STATE
    assert world.run("pharmacy", "settle", too_much | {"amount_fen": 6_400}).code == (
        Code.UNAUTHORIZED
    )
    world.ok("insurer_clerk", "settle", too_much | {"amount_fen": 6_400})
    paid = world.state(m.claim_key(first["claim_id"]))
    assert paid["status"] == m.PAID and paid["payment"]["amount_fen"] == 6_400
    again = world.run("insurer_clerk", "settle", too_much | {"amount_fen": 1})
    assert again.code == Code.INVALID_STATE and "paid" in again.log

    # the same pen in a new encounter's claim: refused, with the refusal's audit event
    second = world.run("pharmacy", "submit", world.claim([units[0]], encounter="Encounter/2"))
    assert second.code == Code.ALREADY_EXISTS and "pack already claimed" in second.log
    (event,) = second.events
    alert = dict(event.attributes)
    assert event.type == "claims.duplicate_suspected"
    assert alert["earlier_claim"] == first["claim_id"] and alert["subject"] == units[0]
    assert alert["patient"] == world.patient and alert["actor"] == did_of(world.k["pharmacy"])
    assert world.state(m.claim_key(f"CLM-{world.n}")) is None
    # the same encounter with another pen: refused too
    same_visit = world.run("pharmacy", "submit", world.claim([units[1]]))
    assert same_visit.code == Code.ALREADY_EXISTS and "encounter already claimed" in same_visit.log
    # a pen not yet dispensed, and one dispensed by another pharmacy, are not claimable
    held = world.run("pharmacy", "submit", world.claim([units[2]], encounter="Encounter/3"))
    assert held.code == Code.INVALID_STATE and "was not dispensed by yifeng" in held.log


def test_an_encounter_is_claimed_once_whatever_the_insurer(world: World) -> None:
    """A patient covered by two insurers: the hospital may not bill the same visit to
    both (the packs' index is global already; the encounter's must be too)."""
    world.plan()
    world.k["taikang"] = crypto.generate_keypair()
    world.ledger.add_org("taikang", world.k["taikang"], "insurer")
    second_plan = {
        "plan_id": "extra-2027",
        "covered": [{"code": VISIT, "unit_cap_fen": 5_000}],
        "copay_bp": 0,
        "annual_limit_fen": 1_000_000,
    }
    world.ok("taikang", "set_plan", second_plan)
    world.ok("taikang", "enrol", {"plan_id": "extra-2027", "patient": world.patient})
    visit = world.claim([], who="hospital", encounter="Encounter/v-1")
    visit["items"] = [{"code": VISIT, "quantity": 1, "unit_price_fen": 3_000}]
    first = world.ok("hospital", "submit", visit)
    assert dict(first.events[0].attributes)["outcome"] == m.COMPLETE
    again = visit | {"claim_id": "CLM-taikang", "plan_id": "extra-2027", "insurer": "taikang"}
    refused = world.run("hospital", "submit", again)
    assert refused.code == Code.ALREADY_EXISTS, refused.log
    assert "encounter already claimed" in refused.log
    (event,) = refused.events
    assert event.type == "claims.duplicate_suspected"
    assert dict(event.attributes)["earlier_claim"] == visit["claim_id"]
    assert world.state(m.claim_key("CLM-taikang")) is None


def test_records_need_the_patients_payment_consent(world: World) -> None:
    world.plan()
    units = world.dispensed()
    rx = world.record()
    world.grant_insurer(["TREAT"])  # not for payment
    refused = world.run("pharmacy", "submit", world.claim([units[0]], record_ids=[rx]))
    assert refused.code == Code.UNAUTHORIZED and "HPAYMT" in refused.log
    world.grant_insurer(["HPAYMT"])
    world.ok("pharmacy", "submit", world.claim([units[0]], record_ids=[rx]))
    other = world.run("pharmacy", "submit", world.claim([units[1]], record_ids=["nope"]))
    assert other.code == Code.NOT_FOUND


def test_annual_limit_counts_by_block_year(world: World) -> None:
    world.plan(limit_fen=10_000)  # 100.00 yuan a year
    units = world.dispensed()
    first = world.ok("pharmacy", "submit", world.claim([units[0]], encounter="E/1"))
    assert dict(first.events[0].attributes)["payable_fen"] == "6400"
    r = world.ok("pharmacy", "submit", world.claim([units[1]], encounter="E/2"))
    assert dict(r.events[0].attributes)["outcome"] == m.PARTIAL
    claim = world.state(m.claim_key(f"CLM-{world.n}"))
    assert claim["payable_fen"] == 3_600 and claim["items"][0]["adjudication"] == m.REDUCED
    assert "annual limit of 10000 fen reached: 3600 of 6400 paid" in claim["items"][0]["reasons"]
    year = m.block_year(world.ledger.app.db.block_time_ms())
    assert world.state(m.spent_key("pingan", "basic-2027", world.patient, year)) == 10_000
    # a visit, nothing left this year: denied, and the encounter stays claimable
    visit = world.claim([], encounter="E/3")
    visit["items"] = [{"code": VISIT, "quantity": 1, "unit_price_fen": 3_000}]
    r = world.ok("hospital", "submit", visit)
    assert dict(r.events[0].attributes)["outcome"] == m.DENIED
    assert world.state(m.claim_key(visit["claim_id"]))["status"] == m.DENIED
    assert world.state(m.encounter_key("hosp-a", visit["encounter_hash"])) is None


def test_adjudication_rules_are_pure_integer_arithmetic() -> None:
    plan: m.Plan = {
        "plan_id": "p",
        "insurer": "i",
        "covered": [
            {"code": DRUG, "unit_cap_fen": 8_000, "required_criteria": [HBA1C_CRITERION]},
            {"code": VISIT, "unit_cap_fen": 5_000, "required_criteria": []},
        ],
        "copay_bp": 3_333,
        "annual_limit_fen": 1_000_000,
        "set_by": "",
        "version": 1,
        "height": 1,
    }
    lines = [
        ClaimedItem(VISIT, 1, 1_001, ()),
        ClaimedItem(DRUG, 1, 7_000, ("x",)),
        ClaimedItem("http://x.org|other", 2, 100, ()),
    ]
    without = adjudicate(plan, lines, frozenset(), 0)
    assert [i["adjudication"] for i in without.items] == [m.APPROVED, m.DENIED, m.DENIED]
    # 1001 * 3333 / 10000 = 333.6: the co-payment rounds down, the plan pays 668
    assert without.items[0]["copay_fen"] == 333 and without.payable_fen == 668
    assert without.outcome == m.PARTIAL
    assert "criteria not proven: diabetes-hba1c" in without.items[1]["reasons"]
    assert "not covered" in without.items[2]["reasons"][0]
    proven = adjudicate(plan, lines[:2], frozenset({HBA1C_CRITERION}), 0)
    assert proven.outcome == m.COMPLETE and proven.payable_fen == 668 + 7_000 - 2_333
    nothing_left = adjudicate(plan, lines[:2], frozenset({HBA1C_CRITERION}), 1_000_000)
    assert nothing_left.outcome == m.DENIED and nothing_left.payable_fen == 0


def test_zk_criterion_required_by_the_rule(world: World) -> None:
    """Refused without the proof, paid with it: the lab commits the HbA1c, the insurer
    challenges, the patient proves >= 6.5 % on chain without revealing 7.1 %."""
    world.plan(criteria=(HBA1C_CRITERION,))
    units = world.dispensed()
    r = world.ok("pharmacy", "submit", world.claim([units[0]]))
    assert dict(r.events[0].attributes)["outcome"] == m.DENIED
    claim = world.state(m.claim_key("CLM-1"))
    assert claim["items"][0]["reasons"] == [f"criteria not proven: {HBA1C_CRITERION}"]
    assert world.state(m.pack_key(units[0])) is None  # nothing paid: still claimable
    unknown = world.run("pharmacy", "submit", world.claim([units[0]], zk_challenges=["ch-1"]))
    assert unknown.code == Code.NOT_FOUND and "no accepted zk proof" in unknown.log

    ledger, k = world.ledger, world.k
    k["lab"], k["tech"] = crypto.generate_keypair(), crypto.generate_keypair()
    ledger.add_org("lab-a", k["lab"], "lab")
    ledger.add_staff(k["lab"], "lab-a", k["tech"], ["lab_technician"])
    zk_ok(zk_run(ledger, k["regulator"], "set_defaults", {}))
    zk_ok(zk_accredit(ledger, k["regulator"], "lab-a", [zk_model.HBA1C]))
    _, opening = zk_attest(ledger, k["tech"], "att-1", k["patient"], 71)  # 7.1 %
    # a proof answered to someone else (the hospital's challenge) does not count, and
    # the provider is told no more than for a challenge nobody answered: no oracle for
    # whose proofs a challenge id holds
    zk_ok(zk_challenge(ledger, k["doctor"], "ch-hosp", HBA1C_CRITERION, k["patient"]))
    proofs = zk_make_proofs(ledger, "ch-hosp", "att-1", opening)
    zk_ok(zk_prove(ledger, k["patient"], "ch-hosp", "att-1", proofs))
    foreign = world.run("pharmacy", "submit", world.claim([units[0]], zk_challenges=["ch-hosp"]))
    assert foreign.code == unknown.code == Code.NOT_FOUND, foreign.log
    assert foreign.log.replace("ch-hosp", "ch-1") == unknown.log
    # the insurer's own challenge, answered: the pen is paid
    zk_ok(zk_challenge(ledger, k["insurer_clerk"], "ch-ins", HBA1C_CRITERION, k["patient"]))
    proofs = zk_make_proofs(ledger, "ch-ins", "att-1", opening)
    zk_ok(zk_prove(ledger, k["patient"], "ch-ins", "att-1", proofs))
    paid = world.ok("pharmacy", "submit", world.claim([units[0]], zk_challenges=["ch-ins"]))
    assert dict(paid.events[0].attributes)["outcome"] == m.COMPLETE
    assert world.state(m.claim_key(f"CLM-{world.n}"))["payable_fen"] == 6_400
    assert world.state(m.pack_key(units[0])) == f"CLM-{world.n}"


def test_who_may_set_plans_enrol_and_submit(world: World) -> None:
    world.plan()
    units = world.dispensed()
    other_plan = {
        "plan_id": "basic-2027",
        "covered": [{"code": VISIT, "unit_cap_fen": 1}],
        "copay_bp": 0,
        "annual_limit_fen": 1,
    }
    # a hospital cannot publish a plan, nor another insurer take this plan id over
    assert world.run("hospital", "set_plan", other_plan).code == Code.UNAUTHORIZED
    world.k["insurer_b"] = crypto.generate_keypair()
    world.ledger.add_org("other-insurer", world.k["insurer_b"], "insurer")
    assert world.run("insurer_b", "set_plan", other_plan).code == Code.ALREADY_EXISTS
    enrol = {"plan_id": "basic-2027", "patient": did_of(world.k["stranger_patient"])}
    assert world.run("insurer_b", "enrol", enrol).code == Code.UNAUTHORIZED
    assert world.run("pharmacy", "enrol", enrol).code == Code.UNAUTHORIZED
    # a logistics company, its device, a patient and a regulator may not submit claims
    for who in ("logistics", "logger", "patient", "regulator"):
        assert world.run(who, "submit", world.claim([units[0]])).code == Code.UNAUTHORIZED, who
    # a patient not enrolled
    stranger = world.claim([units[0]]) | {"patient": did_of(world.k["stranger_patient"])}
    assert world.run("pharmacy", "submit", stranger).code == Code.NOT_FOUND
    # a pack named twice, or a drug line without its packs: refused before state is read
    doubled = world.claim([units[0], units[0]])
    assert world.run("pharmacy", "submit", doubled).code == Code.INVALID_PAYLOAD
    no_packs = world.claim([])
    no_packs["items"][0]["quantity"] = 1
    assert world.run("pharmacy", "submit", no_packs).code == Code.INVALID_PAYLOAD
    # the hospital did not dispense the pens the pharmacy did
    assert world.run("hospital", "submit", world.claim([units[0]], who="hospital")).code == (
        Code.INVALID_STATE
    )


def test_a_duplicate_claim_relayed_raises_an_alert_on_the_regulator_chain(
    world: World, tmp_path: Path
) -> None:
    world.plan()
    units = world.dispensed()
    world.ok("pharmacy", "submit", world.claim([units[0]]))
    refused = world.run("pharmacy", "submit", world.claim([units[0]], encounter="Encounter/2"))
    assert refused.code == Code.ALREADY_EXISTS
    relayer = crypto.generate_keypair()
    engine = SoloEngine(world.ledger.app, block_interval=0.05)
    engine.start()
    operators = frozenset({(relayer.suite, relayer.public)})
    gateway = GatewayServer(
        engine, port=free_port(), operators=operators, limits=Limits.unlimited()
    )
    gateway.start()
    try:
        source = world.ledger.chain_id
        with regulator_chain(tmp_path / "regulator.db", relayer, source) as reg:
            Relay(Client(gateway.url, key=relayer), reg.client, relayer, source).step()
            [alert] = reg.client.alerts("open", "duplicate_claim")
    finally:
        gateway.stop()
        engine.stop()
    assert alert["subject"] == "yifeng" and alert["patient"] == world.patient
    assert "pack already claimed" in alert["detail"] and units[0] in alert["detail"]


CLAIM = DATA / "fhir" / "claim-insulin-pen.json"


def test_fhir_claim_in_claim_response_and_eob_out(world: World) -> None:
    world.plan()
    units = world.dispensed()
    claim_in = read_claim(json.loads(CLAIM.read_bytes()))
    assert claim_in.items == [
        {"code": DRUG, "quantity": 1, "unit_price_fen": 9_000, "packs": [units[0]]}
    ]
    assert claim_in.encounter == "Encounter/rx-20270302-17"
    payload = world.claim([]) | {
        "claim_id": claim_in.claim_id,
        "items": claim_in.items,
        "encounter_hash": m.encounter_hash("yifeng", claim_in.encounter),
        "claim_hash": claim_in.claim_hash,
    }
    world.ok("pharmacy", "submit", payload)
    world.ok(
        "insurer_clerk",
        "settle",
        {"claim_id": claim_in.claim_id, "reference": "PAY-9", "amount_fen": 6_400},
    )
    claim = world.state(m.claim_key(claim_in.claim_id))
    assert claim["claim_hash"] == claim_in.claim_hash
    response = claim_response(claim)
    assert response["resourceType"] == "ClaimResponse" and response["outcome"] == "complete"
    amounts = {
        a["category"]["coding"][0]["code"]: a["amount"]["value"]
        for a in response["item"][0]["adjudication"]
        if "amount" in a
    }
    assert amounts == {"submitted": 90.0, "eligible": 80.0, "copay": 16.0, "benefit": 64.0}
    assert response["payment"]["amount"]["value"] == 64.0
    assert response["payment"]["identifier"]["value"] == "PAY-9"
    eob = explanation_of_benefit(claim)
    assert eob["resourceType"] == "ExplanationOfBenefit"
    assert eob["patient"]["identifier"]["value"] == world.patient
    assert eob["item"][0]["productOrService"]["coding"][0]["code"] == GTIN
    assert eob["insurance"][0]["coverage"]["identifier"]["value"] == "basic-2027"


def test_an_invalid_claim_or_a_fraction_of_a_fen_is_refused() -> None:
    good = json.loads(CLAIM.read_bytes())
    with pytest.raises(InvalidFhir, match="status"):
        read_claim({k: v for k, v in good.items() if k != "status"})
    fraction = json.loads(CLAIM.read_bytes())
    fraction["item"][0]["unitPrice"]["value"] = 90.005
    with pytest.raises(InvalidFhir, match="whole number of fen"):
        read_claim(fraction)
    with pytest.raises(InvalidFhir, match="expected a Claim"):
        read_claim({"resourceType": "Patient"})
