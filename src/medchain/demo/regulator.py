"""Story 5, the regulator: a second chain receives every business block's digest
through the relay, raises alerts, and proves a revocation against the app hash it holds."""

from __future__ import annotations

from typing import Any

from medchain import crypto
from medchain.demo.run import (
    DEMO_CHAIN_ID,
    DemoRun,
)
from medchain.sdk.client import Client

REGULATOR_CHAIN_ID = "medchain-demo-regulator"


def run_regulator_story(run: DemoRun, reg_client: Client, business_rpc: str | None = None) -> None:
    """The regulator network: relay every business block, see the alerts, check the
    stream against the business chain, and prove an audit event offline. With
    `business_rpc` (a CometBFT business network) the regulator chain follows its
    validators from genesis and checks each block's signed commit itself."""
    from medchain.core import proofs
    from medchain.network.relay import CometRpc, Relay, comet_source, verify_stream

    relayer, nhc = run.key("relay-nhc"), run.key("nhc-regulator-admin")
    reg_root = run.keys["regulator-root"]
    authorisation: dict[str, Any] = {"source": DEMO_CHAIN_ID, "relayer": run.did("relay-nhc")}
    if business_rpc is not None:
        with CometRpc(business_rpc) as rpc:
            authorisation["cometbft"] = comet_source(rpc)
    steps: list[tuple[crypto.KeyPair, str, str, dict[str, Any]]] = [
        (
            reg_root,
            "identity",
            "register_org",
            {
                "org_id": "nhc",
                "name": "National Health Commission",
                "org_type": "regulator",
                "admin_public_key": nhc.public,
            },
        ),
        (
            nhc,
            "identity",
            "add_member",
            {"org_id": "nhc", "public_key": relayer.public, "roles": ["device"]},
        ),
        (  # the inspector who reads and acknowledges alerts (in the regulator's portal)
            nhc,
            "identity",
            "add_member",
            {
                "org_id": "nhc",
                "public_key": run.key("inspector-sun").public,
                "roles": ["regulator"],
            },
        ),
        (reg_root, "supervision", "authorize_relayer", authorisation),
    ]
    for key, contract, action, payload in steps:
        out = reg_client.send(key, contract, action, payload)
        run.note(
            f"regulator chain: {contract}.{action}",
            out.get("code_name", "?"),
            "",
            out.get("code") == 0,
        )
    # The relay reads raw blocks and state of both chains: an operator of both nodes.
    relay_reads = Client(reg_client.url, tls=reg_client.tls, key=relayer)
    relay = Relay(
        run.reader("relay-nhc"), relay_reads, relayer, DEMO_CHAIN_ID, business_rpc=business_rpc
    )
    relayed = 0
    with relay:
        while n := relay.step():
            relayed += n
        problems = verify_stream(run.reader("relay-nhc"), relay_reads, DEMO_CHAIN_ID, relay.rpc)
    run.note(
        "relay hands the regulator chain a digest of every block",
        "OK" if not problems else "mismatch",
        f"{relayed} digests"
        + (", each block's commit checked by the regulator chain" if business_rpc else "")
        + "; stream verified against the business chain",
        not problems,
    )
    regulator = Client(reg_client.url, tls=reg_client.tls, key=reg_root)
    alerts = regulator.alerts("open")
    rules = sorted({a["rule"] for a in alerts})
    run.note(
        "supervision alerts on the regulator chain", "OK", ", ".join(rules), "break_glass" in rules
    )
    zhang = run.did("patient-zhang")
    revoked = next(
        e
        for e in run.reader("patient-zhang").audit(patient=zhang, limit=1000)["events"]
        if e["kind"] == "consent.revoked"
    )
    doc = run.reader("patient-zhang").prove_tx(revoked["tx_id"])
    digest = regulator.get(f"/v1/supervision/digests/{DEMO_CHAIN_ID}/{doc['height']}")
    what = proofs.verify(doc, bytes.fromhex(digest["app_hash"]))
    run.note(
        "zhang's revocation proved against the app hash the regulator holds", "OK", what[:90], True
    )
