"""What every demo story shares: the cast (organisations, staff, patients), the
demo chain's id and keystore settings, and DemoRun, which signs as anyone in the
cast and notes each step's outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from medchain import crypto
from medchain.contracts.identity.model import did_for_key
from medchain.edge.requester import (
    ExchangeFailed,
    fetch_record,
)
from medchain.node import NodeHome
from medchain.sdk.client import Client, ClientError

DEMO_CHAIN_ID = "medchain-demo"
DEMO_PASSPHRASE = "medchain-demo"
DEMO_KDF_ITERATIONS = 20_000

ORGS = [
    ("pumch", "Peking Union Medical College Hospital", "hospital"),
    ("ruijin", "Ruijin Hospital, Shanghai", "hospital"),
    ("yifeng-pharmacy", "Yifeng Pharmacy No. 12", "pharmacy"),
    ("nhc-supervision", "Health Commission Supervision Bureau", "regulator"),
    ("tonghua-pharma", "Tonghua Insulin Works", "manufacturer"),
    ("sino-api", "Sino API Ingredients", "manufacturer"),
    ("coldlink", "ColdLink Logistics", "logistics"),
]
STAFF = [
    ("dr-li", "pumch", ["doctor"]),
    ("dr-zhou", "pumch", ["doctor", "attending"]),
    ("nurse-wang", "pumch", ["nurse"]),
    ("dr-chen", "ruijin", ["doctor"]),
    ("pharmacist-zhao", "yifeng-pharmacy", ["pharmacist"]),
    ("inspector-sun", "nhc-supervision", ["regulator"]),
    ("logger-07", "coldlink", ["device"]),
]
PATIENTS = ["patient-zhang", "patient-liu"]


def org_of(name: str) -> str:
    """The organisation a cast member (or a key named after one, e.g. dr-chen-2)
    belongs to; "" for patients and keys of no organisation."""
    for person, org_id, _ in STAFF:
        if name == person or name.startswith(f"{person}-"):
            return org_id
    for org_id, _, _ in ORGS:
        if name == f"{org_id}-admin":
            return org_id
    return ""


@dataclass
class DemoRun:
    """Keys made during the demo and a log of what happened."""

    client: Client
    home: NodeHome
    console: Console
    keys: dict[str, crypto.KeyPair] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    readers: dict[str, Client] = field(default_factory=dict)
    # On a network: each organisation's own node (failing over to the others), and a
    # wait until those nodes have committed a height (read what was just written).
    nodes: dict[str, Client] = field(default_factory=dict)
    caught_up: Callable[[int], None] | None = None

    def node_of(self, name: str) -> Client:
        """The client of `name`'s organisation's own node on a network demo (the
        default client for patients, the regulator and everyone on a solo node)."""
        return self.nodes.get(org_of(name), self.client)

    def key(self, name: str) -> crypto.KeyPair:
        """`name`'s key, made and saved to the demo keystore on first use."""
        if name not in self.keys:
            self.keys[name] = crypto.generate_keypair()
            self.home.keystore.save(name, self.keys[name], DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
        return self.keys[name]

    def reader(self, name: str) -> Client:
        """A client of the demo node that signs its reads as `name`, so the node answers
        what `name` may see (gateway/policy.py)."""
        if name not in self.readers:
            node = self.node_of(name)
            self.readers[name] = Client(node.urls, tls=node.tls, key=self.key(name))
        return self.readers[name]

    def step(
        self,
        what: str,
        signer: str,
        contract: str,
        action: str,
        payload: dict[str, Any],
        expect_ok: bool = True,
    ) -> dict[str, Any] | None:
        """Send one signed tx as `signer` and note whether the chain did as expected."""
        try:
            out = self.node_of(signer).send(self.key(signer), contract, action, payload)
        except ClientError as e:
            self.note(what, f"refused {e.code}", e.message, expect_ok is False)
            return None
        code = out.get("code_name", "PENDING")
        if self.caught_up is not None and out.get("height") is not None:
            self.caught_up(int(out["height"]))
        self.note(
            what,
            f"block {out.get('height')} {code}",
            out.get("log") or "",
            (code == "OK") == expect_ok,
        )
        return out

    def did(self, name: str) -> str:
        """`name`'s did:key, from its demo key."""
        key = self.key(name)
        return did_for_key(key.suite, key.public)

    def exchange(self, what: str, who: str, record_id: str, purpose: str, expect_ok: bool) -> None:
        """One whole exchange (request, fetch, decrypt, verify, ack) as `who`."""
        try:
            got = fetch_record(self.reader(who), self.key(who), record_id, purpose)
        except ExchangeFailed as e:
            self.note(what, f"refused {e.code}", e.message, not expect_ok)
            return
        ms = sum(got.timings.values()) * 1000
        detail = f"decrypted {len(got.plaintext)} bytes of {got.resource_type} in {ms:.0f} ms"
        self.note(what, "OK", detail, expect_ok)

    def expect_refusal(self, what: str, attempt: Callable[[], Any]) -> None:
        """Run `attempt` and note it as expected only if the chain refuses it."""
        try:
            out = attempt()
        except ClientError as e:
            self.note(what, f"refused {e.code}", e.message, True)
            return
        code = out.get("code_name")
        self.note(what, f"block {out.get('height')} {code}", out.get("log") or "", code != "OK")

    def note(self, what: str, outcome: str, detail: str, as_expected: bool) -> None:
        """Print one step's outcome and keep it for the closing table."""
        mark = "[green]✔[/]" if as_expected else "[red]✘ unexpected[/]"
        self.rows.append((what, f"{mark} {outcome}", detail[:90]))
        self.console.print(f"  {mark} {what}: {outcome} {detail[:90]}")
