"""A drug supply chain cast on a Ledger: maker, ingredient supplier, cold-chain
carrier and its logger, pharmacies, a regulator and a hospital."""

from __future__ import annotations

from typing import Any

from medchain import crypto
from medchain.exceptions import Code
from support.ledger import Ledger

GTIN = "06901234567892"  # a valid GS1 check digit


def evh(n: int) -> str:
    return f"ni:///sha-256;{n:064x}?ver=CBV2.0"


class Chain:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.k = {
            n: crypto.generate_keypair()
            for n in (
                "maker",
                "api_supplier",
                "logistics",
                "logger",
                "pharmacy",
                "regulator",
                "nmpa_admin",
                "hospital",
                "other_pharmacy",
            )
        }
        ledger.add_org("acme-pharma", self.k["maker"], "manufacturer")
        ledger.add_org("api-co", self.k["api_supplier"], "manufacturer")
        ledger.add_org("cold-logistics", self.k["logistics"], "logistics")
        ledger.add_staff(self.k["logistics"], "cold-logistics", self.k["logger"], ["device"])
        ledger.add_org("yifeng", self.k["pharmacy"], "pharmacy")
        ledger.add_org("other-pharmacy", self.k["other_pharmacy"], "pharmacy")
        ledger.add_org("nmpa", self.k["nmpa_admin"], "regulator")
        ledger.add_staff(self.k["nmpa_admin"], "nmpa", self.k["regulator"], ["regulator"])
        ledger.add_org("hosp-a", self.k["hospital"], "hospital")
        self.n = 0

    def run(self, who: str, action: str, payload: dict[str, Any]) -> Any:
        return self.ledger.run(self.k[who], action, payload, "supply")

    def ok(self, who: str, action: str, payload: dict[str, Any]) -> Any:
        r = self.run(who, action, payload)
        assert r.code == Code.OK, r.log
        return r

    def event(self, who: str, step: str, epcs: list[str], **extra: Any) -> Any:
        self.n += 1
        payload = {
            "event_hash": evh(self.n),
            "biz_step": step,
            "event_time_ms": self.ledger.app.db.block_time_ms(),
            "epcs": epcs,
            **extra,
        }
        return self.run(who, "record_event", payload)

    def state(self, key: str) -> Any:
        return self.ledger.state(key)

    def setup_batch(self, lot: str = "L2401", serials: int = 4) -> list[str]:
        self.ok("api_supplier", "register_ingredient", {"lot_id": "API-77", "substance": "insulin"})
        self.ok(
            "maker",
            "register_product",
            {
                "gtin": GTIN,
                "name": "Insulin pen 3 ml",
                "kind": "drug",
                "temp_min_c10": 20,
                "temp_max_c10": 80,
                "max_excursion_ms": 10_000,
            },
        )
        self.ok(
            "maker",
            "register_batch",
            {"gtin": GTIN, "lot": lot, "expiry": "2030-12-31", "ingredients": ["API-77"]},
        )
        units = [f"{GTIN}/S{i:04d}" for i in range(serials)]
        assert self.event("maker", "commissioning", units, lot=lot).code == Code.OK
        return units
