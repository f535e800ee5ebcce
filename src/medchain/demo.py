"""`medchain demo`: a small consortium doing real transactions on a real node.

Two hospitals, a pharmacy and a regulator join; staff are added by their
org admins; patients register themselves; a doctor rotates a key; a nurse is
suspended then revoked. Along the way the chain refuses a replay, a stale
key, a revoked member and unauthorised actions, and the demo shows each
refusal with its error code.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from medchain import crypto
from medchain.client import Client, ClientError
from medchain.contracts.identity.model import did_for_key, rotation_message
from medchain.core.tx import build_tx
from medchain.node import GatewayServer, NodeHome, open_solo

DEMO_CHAIN_ID = "medchain-demo"
DEMO_PASSPHRASE = "medchain-demo"
DEMO_KDF_ITERATIONS = 20_000

ORGS = [
    ("pumch", "Peking Union Medical College Hospital", "hospital"),
    ("ruijin", "Ruijin Hospital, Shanghai", "hospital"),
    ("yifeng-pharmacy", "Yifeng Pharmacy No. 12", "pharmacy"),
    ("nhc-supervision", "Health Commission Supervision Bureau", "regulator"),
]
STAFF = [
    ("dr-li", "pumch", ["doctor"]),
    ("nurse-wang", "pumch", ["nurse"]),
    ("dr-chen", "ruijin", ["doctor"]),
    ("pharmacist-zhao", "yifeng-pharmacy", ["pharmacist"]),
    ("inspector-sun", "nhc-supervision", ["regulator"]),
]
PATIENTS = ["patient-zhang", "patient-liu"]


@dataclass
class DemoRun:
    """Keys made during the demo and a log of what happened."""

    client: Client
    home: NodeHome
    console: Console
    keys: dict[str, crypto.KeyPair] = field(default_factory=dict)
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def key(self, name: str) -> crypto.KeyPair:
        if name not in self.keys:
            self.keys[name] = crypto.generate_keypair()
            self.home.keystore.save(name, self.keys[name], DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
        return self.keys[name]

    def step(
        self,
        what: str,
        signer: str,
        contract: str,
        action: str,
        payload: dict[str, Any],
        expect_ok: bool = True,
    ) -> dict[str, Any] | None:
        try:
            out = self.client.send(self.key(signer), contract, action, payload)
        except ClientError as e:
            self._log(what, f"refused {e.code}", e.message, expect_ok is False)
            return None
        code = out.get("code_name", "PENDING")
        self._log(
            what,
            f"block {out.get('height')} {code}",
            out.get("log") or "",
            (code == "OK") == expect_ok,
        )
        return out

    def expect_refusal(self, what: str, attempt: Callable[[], Any]) -> None:
        try:
            out = attempt()
        except ClientError as e:
            self._log(what, f"refused {e.code}", e.message, True)
            return
        code = out.get("code_name")
        self._log(what, f"block {out.get('height')} {code}", out.get("log") or "", code != "OK")

    def _log(self, what: str, outcome: str, detail: str, as_expected: bool) -> None:
        mark = "[green]✔[/]" if as_expected else "[red]✘ unexpected[/]"
        self.rows.append((what, f"{mark} {outcome}", detail[:90]))
        self.console.print(f"  {mark} {what}: {outcome} {detail[:90]}")


def run_demo_transactions(run: DemoRun) -> None:
    """The demo story, as real signed transactions through the gateway."""
    for org_id, name, org_type in ORGS:
        run.step(
            f"consortium admits {name}",
            "consortium-admin",
            "identity",
            "register_org",
            {
                "org_id": org_id,
                "name": name,
                "org_type": org_type,
                "admin_public_key": run.key(f"{org_id}-admin").public,
                "admin_name": f"{org_id} administrator",
            },
        )
    for person, org_id, roles in STAFF:
        run.step(
            f"{org_id} admin adds {person} as {'/'.join(roles)}",
            f"{org_id}-admin",
            "identity",
            "add_member",
            {
                "org_id": org_id,
                "public_key": run.key(person).public,
                "roles": roles,
                "name": person,
            },
        )
    for patient in PATIENTS:
        run.step(f"{patient} registers themself", patient, "identity", "register_patient", {})

    run.step(
        "pharmacist tries to add a doctor (not an org admin)",
        "pharmacist-zhao",
        "identity",
        "add_member",
        {"org_id": "yifeng-pharmacy", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )
    run.step(
        "pumch admin tries to make a regulator",
        "pumch-admin",
        "identity",
        "add_member",
        {"org_id": "pumch", "public_key": run.key("mallory").public, "roles": ["regulator"]},
        expect_ok=False,
    )
    run.step(
        "ruijin admin tries to add staff to pumch",
        "ruijin-admin",
        "identity",
        "add_member",
        {"org_id": "pumch", "public_key": run.key("mallory").public, "roles": ["doctor"]},
        expect_ok=False,
    )

    # Replay: resubmit the exact bytes of an already committed transaction.
    replay = build_tx(
        run.key("patient-zhang"),
        chain_id=DEMO_CHAIN_ID,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )
    run.expect_refusal(
        "replay of patient-zhang's registration", lambda: run.client.submit_raw(replay)
    )

    # Key rotation: dr-chen moves to a new key; the old key stops working.
    old = run.key("dr-chen")
    new = crypto.generate_keypair()
    did = did_for_key(old.suite, old.public)
    nonce = run.client.account(old)["next_nonce"]
    proof = crypto.sign(new, rotation_message(DEMO_CHAIN_ID, did, new.public, nonce))
    run.step(
        "dr-chen rotates to a new key",
        "dr-chen",
        "identity",
        "rotate_key",
        {"new_public_key": new.public, "proof": proof},
    )
    run.home.keystore.save("dr-chen-2", new, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
    run.keys["dr-chen-2"] = new
    run.step(
        "dr-chen signs with the rotated-out key",
        "dr-chen",
        "identity",
        "revoke_member",
        {"did": did},
        expect_ok=False,
    )

    nurse_did = did_for_key("sm", run.key("nurse-wang").public)
    run.step(
        "pumch admin suspends nurse-wang",
        "pumch-admin",
        "identity",
        "suspend_member",
        {"did": nurse_did, "reason": "badge lost"},
    )
    run.step(
        "suspended nurse-wang tries to act",
        "nurse-wang",
        "identity",
        "revoke_member",
        {"did": nurse_did},
        expect_ok=False,
    )
    run.step(
        "pumch admin revokes nurse-wang",
        "pumch-admin",
        "identity",
        "revoke_member",
        {"did": nurse_did, "reason": "left the hospital"},
    )
    run.step(
        "pumch admin tries to reinstate a revoked member",
        "pumch-admin",
        "identity",
        "reinstate_member",
        {"did": nurse_did},
        expect_ok=False,
    )


def run_demo(home_dir: Path, port: int, keep_running: bool, console: Console) -> bool:
    """Reset `home_dir`, start a node with a gateway, run the demo; True if all as expected."""
    if home_dir.exists():
        shutil.rmtree(home_dir)
    home = NodeHome(home_dir)
    admin = crypto.generate_keypair()
    home.keystore.save("consortium-admin", admin, DEMO_PASSPHRASE, DEMO_KDF_ITERATIONS)
    home.write_genesis(DEMO_CHAIN_ID, "consortium-admin", admin)
    engine = open_solo(home, block_interval=0.05)
    server = GatewayServer(engine, port=port)
    server.start()
    console.print(f"[bold]MedChain demo[/] node on {server.url} (home {home_dir})")
    run = DemoRun(Client(server.url), home, console, keys={"consortium-admin": admin})
    try:
        run_demo_transactions(run)
        ok = all("✔" in r[1] for r in run.rows)
        status = run.client.status()
        table = Table(title="MedChain demo: what happened")
        for col in ("step", "outcome", "detail"):
            table.add_column(col)
        for row in run.rows:
            table.add_row(*row)
        console.print(table)
        console.print(
            f"chain [bold]{status['chain_id']}[/] at height {status['height']}, "
            f"app hash {status['app_hash'][:16]}…"
        )
        console.print(f"Keys are in {home_dir / 'keys'} (passphrase: {DEMO_PASSPHRASE!r}).")
        console.print(
            f"Look at: {server.url}/docs (API), {server.url}/v1/status, "
            f"{server.url}/v1/identity/orgs, {server.url}/v1/blocks/latest"
        )
        if keep_running:
            console.print("Node keeps running; Ctrl-C to stop.")
            while engine.failure is None:
                time.sleep(1)
        return ok
    except KeyboardInterrupt:
        return True
    finally:
        server.stop()
        engine.stop()
