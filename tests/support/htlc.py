"""Network A of the cross-chain swap tests: hosp-a earns tokens for a registered
record and pays its researcher (the buyer); the patient and the relayer are members."""

from __future__ import annotations

from medchain import crypto
from medchain.exceptions import Code
from support.ledger import Ledger, did_of


def fund_buyer(a: Ledger, k: dict[str, crypto.KeyPair], cap: int) -> None:
    """hosp-a's reward for record rec-a1 (1000 tokens under `cap`) paid to the buyer."""
    a.add_org("hosp-a", k["hosp_a"])
    a.add_staff(k["hosp_a"], "hosp-a", k["buyer"], ["doctor"])
    for who in ("patient", "relayer"):
        a.add_patient(k[who])
    record = {
        "record_id": "rec-a1",
        "patient": did_of(k["patient"]),
        "resource_type": "Observation",
        "cid": "b" + "a" * 58,
        "content_hash": bytes(32),
    }
    assert a.run(k["hosp_a"], "register", record, "records").code == Code.OK
    rules = {"cap": cap, "amounts": {"record": 1000, "exam": 0, "fl": 0}}
    assert a.run(a.admin, "set_rules", rules, "token").code == Code.OK
    reward = {"basis": "record", "fact_id": "rec-a1", "org_id": "hosp-a"}
    assert a.run(k["hosp_a"], "claim_reward", reward, "token").code == Code.OK
    pay = {"sender": "org:hosp-a", "recipient": did_of(k["buyer"]), "amount": 1000}
    assert a.run(k["hosp_a"], "transfer", pay, "token").code == Code.OK
