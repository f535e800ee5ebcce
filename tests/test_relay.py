"""Two running networks: a business chain and a regulator chain (each a solo node
with its gateway), and the relay between them, in-process and as a process
killed with SIGKILL mid-stream. Then a CometBFT business localnet: the Python
header-hash and commit checks against its real headers, and the regulator
contract refusing what the business validators did not finalise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from support.consortium import run_in_rounds
from support.ledger import Ledger, did_of, patient_registration
from support.regulator import regulator_chain
from support.servers import free_port
from support.synthetic_cometbft import SyntheticChain, sign, signers

from medchain import crypto
from medchain.consensus.solo import SoloEngine
from medchain.contracts.supervision import model as m
from medchain.core.merkle import leaf_hash, merkle_root
from medchain.core.tx import DEFAULT_MAX_TX_BYTES, build_tx
from medchain.crypto import cometbft
from medchain.exceptions import Code
from medchain.gateway.limits import Limits
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet
from medchain.network.relay import (
    CometRpc,
    Relay,
    block_digests,
    block_parts,
    comet_source,
    verify_stream,
)
from medchain.node import GatewayServer
from medchain.sdk.client import Client
from medchain.sdk.keystore import Keystore

SOURCE = "business-1"


@dataclass
class Networks:
    business: Client
    regulator: Client
    biz: Ledger
    reg: Ledger
    relayer: crypto.KeyPair
    inspector: crypto.KeyPair
    keys: dict[str, crypto.KeyPair]

    def load(self, n: int) -> None:
        """n patient self-registrations on the business chain, submitted at once."""
        raws = [patient_registration(self.business.chain_id) for _ in range(n)]
        self.business.submit_batch(raws)

    def wait_relayed(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            head = self.business.status()["height"]
            stream = self.regulator.value(m.stream_key(SOURCE))
            if stream is not None and stream["height"] >= head:
                return dict(stream)
            assert time.monotonic() < deadline, f"relay stuck at {stream} (head {head})"
            time.sleep(0.1)

    def digest_heights(self) -> list[int]:
        prefix = f"supervision/digest/{SOURCE}/"
        items = self.regulator.scan(prefix, limit=1000)["items"]
        parts = [i["key"].rsplit("/", 2) for i in items]
        return [int(height) for _, height, part in parts if part == "0000"]


def serve(ledger: Ledger, stack: list[Any], operator: crypto.KeyPair) -> Client:
    """A node for `ledger` where `operator` (the relayer) may read raw blocks and state,
    and a client that signs its reads with that key."""
    engine = SoloEngine(ledger.app, block_interval=0.05)
    engine.start()
    operators = frozenset({(operator.suite, operator.public)})
    # Thousands of txs and self-registrations from 127.0.0.1: no request limits here.
    limits = Limits.unlimited()
    gateway = GatewayServer(engine, port=free_port(), operators=operators, limits=limits)
    gateway.start()
    stack += [gateway, engine]
    return Client(gateway.url, key=operator)


@pytest.fixture
def nets(tmp_path: Path) -> Iterator[Networks]:
    keys = {n: crypto.generate_keypair() for n in ("admin_a", "doctor", "attending", "patient")}
    biz = Ledger(tmp_path / "business.db", crypto.generate_keypair(), chain_id=SOURCE)
    biz.add_org("hosp-a", keys["admin_a"])
    biz.add_staff(keys["admin_a"], "hosp-a", keys["doctor"], ["doctor"])
    biz.add_staff(keys["admin_a"], "hosp-a", keys["attending"], ["doctor", "attending"])
    biz.add_patient(keys["patient"])
    reg = Ledger(
        tmp_path / "regulator.db",
        crypto.generate_keypair(),
        profile="regulator",
        chain_id="regulator-1",
    )
    reg_admin, inspector, relayer = (crypto.generate_keypair() for _ in range(3))
    reg.add_org("nhc", reg_admin, "regulator")
    reg.add_staff(reg_admin, "nhc", inspector, ["regulator"])
    reg.add_staff(reg_admin, "nhc", relayer, ["device"])
    r = reg.run(
        inspector,
        "authorize_relayer",
        {"source": SOURCE, "relayer": did_of(relayer)},
        "supervision",
    )
    assert r.code == 0, r.log
    stack: list[Any] = []
    business, regulator = serve(biz, stack, relayer), serve(reg, stack, relayer)
    yield Networks(business, regulator, biz, reg, relayer, inspector, keys)
    for part in stack:
        part.stop()


def test_relay_mirrors_the_business_chain_under_load(nets: Networks) -> None:
    stop = threading.Event()
    relay = Relay(nets.business, nets.regulator, nets.relayer, SOURCE, batch=20)
    thread = threading.Thread(target=relay.run, args=(stop,), daemon=True)
    thread.start()
    try:
        for _ in range(5):
            nets.load(60)
            time.sleep(0.2)
        stream = nets.wait_relayed()
    finally:
        stop.set()
        thread.join(10)
    head = nets.business.status()["height"]
    assert stream["height"] == head and nets.digest_heights() == list(range(head + 1))
    assert verify_stream(nets.business, nets.regulator, SOURCE) == []
    stored = nets.regulator.value(m.digest_key(SOURCE, head))
    assert stored["app_hash"] == nets.business.block(head)["app_hash"]


def test_break_glass_on_the_business_chain_alerts_the_regulator(nets: Networks) -> None:
    k = nets.keys
    patient = did_of(k["patient"])
    r = nets.business.send(
        k["doctor"],
        "consent",
        "break_glass",
        {"patient": patient, "reason": "unconscious, no relatives reachable"},
    )
    request_id = r["events"][0]["attributes"]["request_id"]
    nets.business.send(k["attending"], "consent", "approve_break_glass", {"request_id": request_id})
    Relay(nets.business, nets.regulator, nets.relayer, SOURCE).step()
    [alert] = nets.regulator.alerts("open", "break_glass")
    assert alert["subject"] == did_of(k["doctor"]) and alert["patient"] == patient


def test_killed_relay_resumes_without_gap_or_duplicate(nets: Networks, tmp_path: Path) -> None:
    home = tmp_path / "relay-home"
    Keystore(home / "keys").save("relayer", nets.relayer, "test-passphrase", 1000)
    nets.load(200)
    cmd = [
        sys.executable,
        "-m",
        "medchain.cli",
        "relay",
        "--business",
        nets.business.url,
        "--regulator",
        nets.regulator.url,
        "--key",
        "relayer",
        "--source",
        SOURCE,
        "--home",
        str(home),
        "--batch",
        "3",
    ]
    env = {**os.environ, "MEDCHAIN_PASSPHRASE": "test-passphrase"}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while (nets.regulator.value(m.stream_key(SOURCE)) or {}).get("height", -1) < 3:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # mid-stream, maybe mid-submission
    first.wait(10)
    nets.load(50)  # the business chain goes on meanwhile
    done = subprocess.run([*cmd, "--once"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    head = nets.business.status()["height"]
    assert nets.digest_heights() == list(range(head + 1))  # every height once, in order
    assert verify_stream(nets.business, nets.regulator, SOURCE) == []


def test_tampered_digests_are_refused_or_detected(nets: Networks) -> None:
    relay = Relay(nets.business, nets.regulator, nets.relayer, SOURCE)
    relay.step()
    nets.load(5)
    time.sleep(0.3)
    stream = relay.stream()
    height = stream.height + 1
    [honest] = block_digests(SOURCE, nets.business.block(height))
    # 1. altered after the running hash was computed: the contract refuses it
    forged = honest | {"app_hash": b"\x07" * 32}
    r = nets.regulator.send(
        nets.relayer,
        "supervision",
        "digest",
        forged | {"running_hash": m.running_hash(stream.running_hash, honest)},
    )
    assert r["code_name"] == "INVALID_STATE" and "running hash" in r["log"]
    # 2. a relay that lies consistently: accepted, but the cross-check finds it
    r = nets.regulator.send(
        nets.relayer,
        "supervision",
        "digest",
        forged | {"running_hash": m.running_hash(stream.running_hash, forged)},
    )
    assert r["code_name"] == "OK"
    problems = verify_stream(nets.business, nets.regulator, SOURCE)
    assert problems == [f"height {height}: relayed digest differs from the business block"]


def test_supervision_from_the_cli(nets: Networks, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medchain.cli import app

    k = nets.keys
    r = nets.business.send(
        k["doctor"],
        "consent",
        "break_glass",
        {"patient": did_of(k["patient"]), "reason": "cardiac arrest in ER"},
    )
    request_id = r["events"][0]["attributes"]["request_id"]
    nets.business.send(k["attending"], "consent", "approve_break_glass", {"request_id": request_id})
    Relay(nets.business, nets.regulator, nets.relayer, SOURCE).step()
    home = tmp_path / "home"
    Keystore(home / "keys").save("relayer", nets.relayer, "test-passphrase", 1000)
    Keystore(home / "keys").save("inspector", nets.inspector, "test-passphrase", 1000)
    runner = CliRunner(env={"MEDCHAIN_PASSPHRASE": "test-passphrase"})
    unsigned = runner.invoke(app, ["supervise", "alerts", "--regulator", nets.regulator.url])
    assert unsigned.exit_code != 0  # alerts name patients and doctors: a signed read
    as_inspector = ["--key", "inspector", "--home", str(home)]
    alerts = runner.invoke(
        app, ["supervise", "alerts", "--regulator", nets.regulator.url, *as_inspector]
    )
    assert alerts.exit_code == 0 and "break_glass" in alerts.output
    checked = runner.invoke(
        app,
        [
            "supervise",
            "verify-stream",
            "--business",
            nets.business.url,
            "--regulator",
            nets.regulator.url,
            "--source",
            SOURCE,
            "--key",
            "relayer",
            "--home",
            str(home),
        ],
    )
    assert checked.exit_code == 0 and "verified" in checked.output
    out = tmp_path / "audit.csv"
    exported = runner.invoke(
        app,
        [
            "supervise",
            "export",
            "--node",
            nets.business.url,
            "--from",
            "0",
            "--to",
            str(2**50),
            "--org",
            "hosp-a",
            "--out",
            str(out),
            "--key",
            "relayer",
            "--home",
            str(home),
        ],
    )
    assert exported.exit_code == 0, exported.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("seq,height,time") and any("break_glass" in x for x in lines)


def test_blocks_with_many_audit_events_are_split_and_verified(nets: Networks) -> None:
    from medchain.network.relay import PART_BYTES

    k = nets.keys
    patient = did_of(k["patient"])
    raws = []
    nonce = nets.business.account(k["doctor"])["next_nonce"]
    for i in range(400):  # 400 break-glass requests with long reasons: ~200 KB of events
        raws.append(
            build_tx(
                k["doctor"],
                chain_id=SOURCE,
                contract="consent",
                action="break_glass",
                nonce=nonce + i,
                payload={"patient": patient, "reason": f"emergency {i:04d} " + "x" * 400},
            )
        )
    nets.business.submit_batch(raws)
    nets.business.wait_committed([crypto.sm3(r).hex() for r in raws])
    relay = Relay(nets.business, nets.regulator, nets.relayer, SOURCE)
    while relay.step():
        pass
    head = nets.business.status()["height"]
    sizes = [len(block_digests(SOURCE, nets.business.block(h))) for h in range(head + 1)]
    assert max(sizes) > 1, "the load did not make a block bigger than one digest"
    assert verify_stream(nets.business, nets.regulator, SOURCE) == []
    stream = nets.regulator.value(m.stream_key(SOURCE))
    assert m.complete_height(stream) == head and stream["digests"] == sum(sizes)
    assert PART_BYTES < 64 * 1024


# -- a CometBFT business network: finality checked by the regulator chain ------------

COMET_IP = "127.0.26.1"  # apart from the other localnet tests (3, 5, 14-18, 22, 23), benches
COMET_SOURCE = "hospitals"
REGULATOR_IP = "127.0.27.1"  # a one-validator regulator network


def follow_of(rpc_url: str, from_height: int = -1) -> dict[str, Any]:
    """`cometbft` of authorize_relayer for the business localnet (the RPC closed after)."""
    with CometRpc(rpc_url) as rpc:
        return comet_source(rpc, from_height)


@dataclass
class LightBlock:
    """Header, commit and validator set of one height, as a business node's CometBFT
    RPC served them, with the block id hash its /block answer names."""

    header: cometbft.Header
    commit: cometbft.Commit
    validators: list[cometbft.Validator]
    block_id_hash: bytes


@dataclass
class CometBusiness:
    net: Localnet
    relayer: crypto.KeyPair
    keys: dict[str, crypto.KeyPair]
    captured: list[LightBlock]

    def client(self, node: int = 0, key: crypto.KeyPair | None = None) -> Client:
        return Client(self.net.gateways[node], tls=self.net.client_tls, key=key or self.relayer)

    @property
    def rpc(self) -> str:
        return self.net.nodes[1].rpc


@pytest.fixture(scope="module")
def comet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CometBusiness]:
    """A 4-validator business localnet with hosp-a's doctors and a patient, and the
    light blocks of heights 2 and 3 captured from it for the verification tests."""
    try:
        binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    relayer = crypto.generate_keypair()
    net = Localnet(tmp_path_factory.mktemp("comet") / "localnet")
    net.create(4, COMET_IP, operators=[("relay", relayer.suite, relayer.public)])
    try:
        net.up()
        net.wait_serving(120)
        keys = {"root": net.admin_key()} | {
            n: crypto.generate_keypair() for n in ("admin_a", "doctor", "attending", "patient")
        }
        node = Client(net.gateways[0], tls=net.client_tls)
        org = {"org_id": "hosp-a", "name": "hosp-a", "org_type": "hospital"}
        org["admin_public_key"] = keys["admin_a"].public
        run_in_rounds(node, keys, [
            ("root", "identity", "register_org", org),
            ("patient", "identity", "register_patient", {}),
        ])  # fmt: skip
        run_in_rounds(node, keys, [
            ("admin_a", "identity", "add_member",
             {"org_id": "hosp-a", "public_key": keys[m].public, "roles": roles})
            for m, roles in (("doctor", ["doctor"]), ("attending", ["doctor", "attending"]))
        ])  # fmt: skip
        rpc = CometRpc(net.nodes[0].rpc)
        captured = []
        for height in (2, 3):
            header, commit = rpc.signed_header(height)
            block = rpc._get("block", height=height)
            captured.append(
                LightBlock(
                    header,
                    commit,
                    rpc.validators(height),
                    bytes.fromhex(block["block_id"]["hash"]),
                )
            )
        rpc.close()
        yield CometBusiness(net, relayer, keys, captured)
    finally:
        net.down()


def test_python_header_hash_and_commit_check_agree_with_cometbft(comet: CometBusiness) -> None:
    for block in comet.captured:
        assert cometbft.header_hash(block.header) == block.block_id_hash
        assert block.commit.block_id.hash == block.block_id_hash
        assert cometbft.validators_hash(block.validators) == block.header.validators_hash
        signed = cometbft.verify_commit(
            block.header.chain_id, block.header, block.commit, block.validators
        )
        assert signed * 3 > sum(v.power for v in block.validators) * 2


@pytest.mark.parametrize(
    "field",
    ["app_hash", "time", "height", "data_hash", "last_results_hash", "proposer_address",
     "next_validators_hash", "last_block_id"],
)  # fmt: skip
def test_an_altered_header_field_is_refused(comet: CometBusiness, field: str) -> None:
    block = comet.captured[0]
    h = block.header
    altered_values: dict[str, Any] = {
        "app_hash": bytes(32),
        "time": cometbft.Timestamp(h.time.seconds, h.time.nanos + 1),
        "height": h.height + 1,
        "data_hash": bytes(32),
        "last_results_hash": bytes(32),
        "proposer_address": bytes(20),
        "next_validators_hash": bytes(32),
        "last_block_id": cometbft.BlockId(bytes(32), 1, bytes(32)),
    }
    altered = msgspec.structs.replace(h, **{field: altered_values[field]})
    with pytest.raises(cometbft.BadCommit):
        cometbft.verify_commit(h.chain_id, altered, block.commit, block.validators)


def _without(commit: cometbft.Commit, *slots: int) -> cometbft.Commit:
    """The commit with the given validators' signatures absent."""
    sigs = [
        cometbft.CommitSig(1, b"", cometbft.Timestamp(-62135596800), b"") if i in slots else s
        for i, s in enumerate(commit.signatures)
    ]
    return msgspec.structs.replace(commit, signatures=sigs)


def test_forged_missing_or_too_few_signatures_are_refused(comet: CometBusiness) -> None:
    """A forged or misplaced signature is not counted (it does not void the commit:
    see verify_commit); what is left must still carry more than 2/3 of the power."""
    block = comet.captured[1]
    h, commit, vals = block.header, block.commit, block.validators
    signed = [i for i, s in enumerate(commit.signatures) if s.flag == cometbft.FLAG_COMMIT]
    assert len(signed) >= 3
    all_signed = cometbft.verify_commit(h.chain_id, h, commit, vals)
    assert all_signed == len(signed)

    def flipped(index: int) -> cometbft.CommitSig:
        sig = commit.signatures[index]
        return msgspec.structs.replace(
            sig, signature=bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
        )

    sigs = list(commit.signatures)
    sigs[signed[0]] = flipped(signed[0])
    one_forged = msgspec.structs.replace(commit, signatures=sigs)
    if len(signed) == 4:
        assert cometbft.verify_commit(h.chain_id, h, one_forged, vals) == 3
    sigs[signed[1]] = flipped(signed[1])
    with pytest.raises(cometbft.BadCommit, match="not more than 2/3"):
        cometbft.verify_commit(
            h.chain_id, h, msgspec.structs.replace(commit, signatures=sigs), vals
        )
    moved = list(commit.signatures)  # valid signatures in other validators' slots
    moved[signed[0]], moved[signed[1]] = moved[signed[1]], moved[signed[0]]
    with pytest.raises(cometbft.BadCommit, match="not more than 2/3"):
        cometbft.verify_commit(
            h.chain_id, h, msgspec.structs.replace(commit, signatures=moved), vals
        )
    three_of_four = _without(commit, *signed[3:])
    assert cometbft.verify_commit(h.chain_id, h, three_of_four, vals) == 3  # 3/4 > 2/3
    with pytest.raises(cometbft.BadCommit, match="not more than 2/3"):
        cometbft.verify_commit(h.chain_id, h, _without(commit, *signed[2:]), vals)  # 2/4


def test_a_header_of_another_chain_is_refused(comet: CometBusiness) -> None:
    block = comet.captured[0]
    h = block.header
    with pytest.raises(cometbft.BadCommit, match="chain"):
        cometbft.verify_commit("another-chain", h, block.commit, block.validators)
    renamed = msgspec.structs.replace(h, chain_id="another-chain")
    with pytest.raises(cometbft.BadCommit):  # the votes were signed for the real chain id
        cometbft.verify_commit("another-chain", renamed, block.commit, block.validators)


def test_a_validator_set_not_followed_is_refused(comet: CometBusiness) -> None:
    block = comet.captured[0]
    h = block.header
    stranger = cometbft.Validator(crypto.primitives.ed25519_generate_keypair()[1], 1)
    for other in (
        [*block.validators[:-1], stranger],  # one member swapped
        [msgspec.structs.replace(v, power=2) for v in block.validators],  # re-weighted
        block.validators[:-1],  # one left out
    ):
        with pytest.raises(cometbft.BadCommit, match="another validator set"):
            cometbft.verify_commit(h.chain_id, h, block.commit, other)


def test_relay_with_finality_alerts_and_refuses_what_was_not_finalised(
    comet: CometBusiness, tmp_path: Path
) -> None:
    """Relayed from genesis with each block's signed header and commit: a break glass
    raises the alert; a relayer that drops or invents an event, alters a result or an
    app hash, or sends a commit signed by too little power is refused by the contract
    itself (no cross-check needed), even with a running hash that matches its lie."""
    k, biz = comet.keys, comet.client(1)
    follow = follow_of(comet.rpc)
    with regulator_chain(tmp_path / "reg.db", comet.relayer, COMET_SOURCE, follow) as reg:
        nobody = f"http://127.0.0.1:{free_port()}"  # a node that is down: passed over
        rpcs = [nobody, comet.rpc]
        relay = Relay(biz, reg.client, comet.relayer, COMET_SOURCE, 1, business_rpc=rpcs)
        node = comet.client(0, key=k["doctor"])
        patient = did_of(k["patient"])
        asked = node.send(
            k["doctor"], "consent", "break_glass", {"patient": patient, "reason": "unconscious"}
        )
        request_id = asked["events"][0]["attributes"]["request_id"]
        approved = node.send(
            k["attending"], "consent", "approve_break_glass", {"request_id": request_id}
        )
        assert approved["code_name"] == "OK", approved
        while relay.stream().height < asked["height"] - 1:
            relay.step()
        # The break-glass block, honest and forged.
        stream = relay.stream()
        height = stream.height + 1
        while biz.status()["height"] < height + 1:
            time.sleep(0.1)
        [(body, extra)] = relay._parts(height, comet=True)
        honest = body | extra
        assert any(e["type"] == "consent.break_glass_requested" for e in body["events"])
        fin = honest["finality"]
        dropped = [e for e in body["events"] if e["type"] != "consent.break_glass_requested"]
        results = honest["results"]
        flipped = [dict(results[0]) | {"code": 11}, *results[1:]]
        signed = [i for i, s in enumerate(fin["commit"]["signatures"]) if s["flag"] == 2]
        weak_sigs = [
            s | {"flag": 1, "signature": b"", "validator_address": b""} if i in signed[2:] else s
            for i, s in enumerate(fin["commit"]["signatures"])
        ]
        forgeries = {
            "audit events are not exactly": honest | {"events": dropped},
            "are not exactly those": honest
            | {"events": [*body["events"], {"tx": 0, "type": "x", "attributes": {"actor": "y"}}]},
            "are not the ones the app hash commits to": honest | {"results": flipped},
            "do not give header": honest | {"app_hash": bytes(32)},
            "not more than 2/3": honest
            | {"finality": fin | {"commit": fin["commit"] | {"signatures": weak_sigs}}},
            "carries its finality": {k: v for k, v in honest.items() if k != "finality"},
        }
        for why, forged in forgeries.items():
            digest_fields = {k: v for k, v in forged.items() if k in body}
            running = m.running_hash(stream.running_hash, digest_fields)
            r = reg.client.send(
                comet.relayer, "supervision", "digest", forged | {"running_hash": running}
            )
            assert r["code_name"] == "INVALID_STATE" and why in r["log"], (why, r["log"])
        relay.batch = 50
        while relay.step():
            pass
        assert relay.stream().height >= approved["height"]
        assert verify_stream(biz, reg.client, COMET_SOURCE, relay.rpc) == []
        relay.close()
        [alert] = Client(reg.client.url, key=reg.inspector).alerts("open", "break_glass")
        assert alert["subject"] == did_of(k["doctor"]) and alert["patient"] == patient


def test_relay_follows_a_validator_set_change(comet: CometBusiness, tmp_path: Path) -> None:
    """The consortium adds a fifth validator (power 1 of 5; the four running ones still
    sign more than 2/3): the relay hands the regulator chain the new set with the header
    that announces it, the contract checks it against next_validators_hash and checks
    the next headers against it; a relayer offering another set is refused."""
    biz = comet.client(1)
    start = biz.status()["height"] - 2
    follow = follow_of(comet.rpc, start)
    with regulator_chain(tmp_path / "reg.db", comet.relayer, COMET_SOURCE, follow, start) as reg:
        relay = Relay(biz, reg.client, comet.relayer, COMET_SOURCE, 1, business_rpc=comet.rpc)
        relay.step()
        new_key = crypto.primitives.ed25519_generate_keypair()[1]
        admin = comet.client(0, key=comet.keys["root"])
        r = admin.send(
            comet.keys["root"], "identity", "set_validator", {"pub_key": new_key, "power": 1}
        )
        assert r["code_name"] == "OK", r
        changed = r["height"] + 2  # CometBFT applies an update two heights later
        rpc = relay.rpc
        assert rpc is not None
        while rpc.latest_height() < changed + 1:
            time.sleep(0.2)
        assert len(rpc.validators(changed + 1)) == 5
        # The header that announces the set (next_validators_hash) proves block changed-2.
        while relay.stream().height < changed - 3:
            relay.step()
        stream = relay.stream()
        [(body, extra)] = relay._parts(stream.height + 1, comet=True)
        honest = body | extra
        assert honest["finality"]["next_validators"], "this header announces no new set"
        old_set = reg.client.value(m.finality_key(COMET_SOURCE))["validators"]
        forged = honest | {
            "finality": honest["finality"]
            | {"next_validators": [{"pub_key": bytes.fromhex(v["pub_key"]), "power": 1}
                                   for v in old_set]}
        }  # fmt: skip
        running = m.running_hash(stream.running_hash, body)
        refused = reg.client.send(
            comet.relayer, "supervision", "digest", forged | {"running_hash": running}
        )
        assert refused["code_name"] == "INVALID_STATE" and "new validator set" in refused["log"]
        while relay.stream().height < changed + 1:
            relay.step()
        followed = reg.client.value(m.finality_key(COMET_SOURCE))["validators"]
        assert new_key.hex() in {v["pub_key"] for v in followed} and len(followed) == 5
        assert verify_stream(biz, reg.client, COMET_SOURCE, relay.rpc) == []
        relay.close()


def test_a_regulator_registers_a_cometbft_source_from_the_cli(
    comet: CometBusiness, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from medchain.cli import app

    with regulator_chain(tmp_path / "reg.db", comet.relayer, "elsewhere") as reg:
        home = tmp_path / "home"
        Keystore(home / "keys").save("inspector", reg.inspector, "test-passphrase", 1000)
        runner = CliRunner(env={"MEDCHAIN_PASSPHRASE": "test-passphrase"})
        args = ["supervise", "authorize-relayer", did_of(comet.relayer), "--regulator"]
        args += [reg.client.url, "--key", "inspector", "--home", str(home)]
        args += ["--source", COMET_SOURCE, "--business-rpc", comet.rpc]
        done = runner.invoke(app, args)
        assert done.exit_code == 0, done.output
        followed = reg.client.value(m.finality_key(COMET_SOURCE))
        with CometRpc(comet.rpc) as rpc:
            header, _ = rpc.signed_header(1)
            assert followed["chain_id"] == header.chain_id
            keys = {bytes.fromhex(v["pub_key"]) for v in followed["validators"]}
            assert keys == {v.pub_key for v in rpc.validators(1)}
        assert header.validators_hash.hex().upper() in done.output.replace("\n", "")


def test_chunk_roots_hash_up_to_the_results_root() -> None:
    for n in (0, 1, 2, 31, 32, 33, 64, 65, 100, 257):
        leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
        assert merkle_root(m.chunk_roots(leaves)) == merkle_root(leaves), n


def test_a_block_too_big_for_one_digest_is_relayed_in_parts_each_checked(
    comet: CometBusiness, tmp_path: Path
) -> None:
    """200 break-glass requests with long reasons: blocks of several parts, each
    checked against the chunk roots bound to the signed app hash; a later part with
    an altered result is refused."""
    k, biz = comet.keys, comet.client(1)
    start = biz.status()["height"] - 2  # header start + 2 is committed
    follow = follow_of(comet.rpc, start)
    with regulator_chain(tmp_path / "reg.db", comet.relayer, COMET_SOURCE, follow, start) as reg:
        node = comet.client(0, key=k["doctor"])
        nonce = node.account(k["doctor"])["next_nonce"]
        raws = [
            build_tx(
                k["doctor"],
                chain_id=node.chain_id,
                contract="consent",
                action="break_glass",
                nonce=nonce + i,
                payload={"patient": did_of(k["patient"]), "reason": f"{i:04d} " + "x" * 400},
            )
            for i in range(200)
        ]
        node.submit_batch(raws)
        committed = node.wait_committed([crypto.sm3(r).hex() for r in raws], timeout=120)
        last = max(c["height"] for c in committed)
        while biz.status()["height"] < last + 1:
            time.sleep(0.1)
        relay = Relay(biz, reg.client, comet.relayer, COMET_SOURCE, 1, business_rpc=comet.rpc)
        biggest = max(range(start + 1, last + 1), key=lambda h: len(biz.block(h)["txs"]))
        while relay.stream().height < biggest - 1:
            relay.step()
        parts = relay._parts(biggest, comet=True)
        assert len(parts) > 1, "the load did not make a block bigger than one digest"
        assert len(biz.block(biggest)["txs"]) > m.RESULTS_CHUNK  # several chunks of results
        stream = relay.stream()
        running = stream.running_hash
        for body, extra in parts[:2]:
            running = m.running_hash(running, body)
            digest = body | extra | {"running_hash": running}
            if body["part"] == 1:
                altered = [dict(digest["results"][0]) | {"code": 14}, *digest["results"][1:]]
                r = reg.client.send(
                    comet.relayer, "supervision", "digest", digest | {"results": altered}
                )
                assert r["code_name"] == "INVALID_STATE", r
                assert "not the ones the app hash commits to" in r["log"]
            r = reg.client.send(comet.relayer, "supervision", "digest", digest)
            assert r["code_name"] == "OK", r
        relay.batch = 50

        def complete() -> int:
            return m.complete_height(reg.client.value(m.stream_key(COMET_SOURCE)))

        while complete() < last:  # the rest of the big block's parts first
            relay.step()
        assert verify_stream(biz, reg.client, COMET_SOURCE, relay.rpc) == []
        relay.close()


@pytest.mark.parametrize(
    ("powers", "signing", "enough"),
    [
        ((1, 1, 1), {0, 1}, False),  # exactly 2/3
        ((1, 1, 1), {0, 1, 2}, True),
        ((3, 1, 1, 1), {0, 1}, False),  # 4 of 6: exactly 2/3
        ((3, 1, 1, 1), {0, 1, 2}, True),  # 5 of 6
        ((3, 1, 1, 1), {1, 2, 3}, False),  # 3 of 6: a majority of validators, not of power
    ],
)
def test_more_than_two_thirds_of_the_power_must_sign(
    powers: tuple[int, ...], signing: set[int], enough: bool
) -> None:
    """Synthetic commits (fixed ed25519 keys) for the weightings a localnet of equal
    validators cannot show; the encoding is the one the real headers above checked."""
    chain = SyntheticChain("synthetic-1", signers(*powers))
    header = chain.header(5, bytes(32))
    commit = sign(chain.chain_id, header, chain.keys, signing)
    validators = [k.validator for k in chain.keys]
    if enough:
        assert cometbft.verify_commit(chain.chain_id, header, commit, validators) > 0
    else:
        with pytest.raises(cometbft.BadCommit, match="not more than 2/3"):
            cometbft.verify_commit(chain.chain_id, header, commit, validators)


def test_relay_writes_to_a_cometbft_regulator_network(comet: CometBusiness, tmp_path: Path) -> None:
    """The regulator network itself on CometBFT (one validator here): the relay's
    calls are the same, and the regulator's validators check the business commits."""
    regnet = Localnet(tmp_path / "regulator")
    regnet.create(
        1,
        REGULATOR_IP,
        operators=[("relay", comet.relayer.suite, comet.relayer.public)],
        profile="regulator",
        chain_id="regulator-cometbft",
    )
    try:
        regnet.up()
        regnet.wait_serving(120)
        keys = {n: crypto.generate_keypair() for n in ("nhc", "inspector")}
        keys |= {"root": regnet.admin_key(), "relayer": comet.relayer}
        reg = Client(regnet.gateways[0], tls=regnet.client_tls, key=comet.relayer)
        org = {"org_id": "nhc", "name": "nhc", "org_type": "regulator"}
        org["admin_public_key"] = keys["nhc"].public
        run_in_rounds(reg, keys, [("root", "identity", "register_org", org)])
        run_in_rounds(reg, keys, [
            ("nhc", "identity", "add_member",
             {"org_id": "nhc", "public_key": keys[m].public, "roles": roles})
            for m, roles in (("inspector", ["regulator"]), ("relayer", ["device"]))
        ])  # fmt: skip
        biz = comet.client(1)
        start = biz.status()["height"] - 2
        follow = follow_of(comet.rpc, start)
        authorize = {
            "source": COMET_SOURCE,
            "relayer": did_of(comet.relayer),
            "from_height": start,
            "cometbft": follow,
        }
        run_in_rounds(reg, keys, [("inspector", "supervision", "authorize_relayer", authorize)])
        relay = Relay(biz, reg, comet.relayer, COMET_SOURCE, 10, business_rpc=comet.rpc)
        while relay.stream().height < start + 5:
            relay.step()
        assert verify_stream(biz, reg, COMET_SOURCE, relay.rpc) == []
        relay.close()
        assert reg.status()["engine"] == "cometbft"
    finally:
        regnet.down()


# -- synthetic CometBFT chains (fixed ed25519 keys): fast checks of the finality rules --

BODY_FIELDS = frozenset(m.digest_body("", 0, b"", b"", b"", 0, 0, []))


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value, builtin_types=(bytes,))


class SyntheticRegulator:
    """An in-process regulator chain following a synthetic CometBFT source."""

    def __init__(self, path: Path, chain: SyntheticChain, from_height: int = -1) -> None:
        self.ledger = Ledger(path, crypto.generate_keypair(), profile="regulator")
        admin, self.inspector, self.relayer = (crypto.generate_keypair() for _ in range(3))
        self.ledger.add_org("nhc", admin, "regulator")
        self.ledger.add_staff(admin, "nhc", self.inspector, ["regulator"])
        self.ledger.add_staff(admin, "nhc", self.relayer, ["device"])
        follow = {
            "chain_id": chain.chain_id,
            "validators": [_plain(k.validator) for k in chain.keys],
        }
        authorize = {
            "source": COMET_SOURCE,
            "relayer": did_of(self.relayer),
            "from_height": from_height,
            "cometbft": follow,
        }
        r = self.ledger.run(self.inspector, "authorize_relayer", authorize, "supervision")
        assert r.code == 0, r.log
        self.running = m.GENESIS_RUNNING_HASH

    def send(self, digest: dict[str, Any], **changes: Any) -> Any:
        """`digest` with `changes`, under a running hash that matches them (a relayer
        lying consistently)."""
        payload = digest | changes
        running = m.running_hash(self.running, {k: payload[k] for k in BODY_FIELDS})
        raw = self.ledger.tx(
            self.relayer, "supervision", "digest", payload | {"running_hash": running}
        )
        assert len(raw) <= DEFAULT_MAX_TX_BYTES, len(raw)
        r = self.ledger.commit([raw]).tx_results[0]
        if r.code == 0:
            self.running = running
        return r


def test_a_garbage_signature_is_not_counted_and_two_leave_too_little_power() -> None:
    """A Byzantine validator's signature that CometBFT accepted (ZIP-215) and OpenSSL
    refuses must not stall the relay: it is not counted, the rest must be > 2/3."""
    chain = SyntheticChain("synthetic-1", signers(1, 1, 1, 1))
    header = chain.header(5, bytes(32))
    validators = [k.validator for k in chain.keys]
    one = sign(chain.chain_id, header, chain.keys, forged=frozenset({3}))
    assert cometbft.verify_commit(chain.chain_id, header, one, validators) == 3
    two = sign(chain.chain_id, header, chain.keys, forged=frozenset({2, 3}))
    with pytest.raises(cometbft.BadCommit, match="not more than 2/3"):
        cometbft.verify_commit(chain.chain_id, header, two, validators)


def test_the_genesis_digest_has_cometbfts_empty_block_ids_and_time_0(tmp_path: Path) -> None:
    chain = SyntheticChain("synthetic-1", signers(1, 1, 1, 1))
    reg = SyntheticRegulator(tmp_path / "reg.db", chain)
    genesis = chain.digest(COMET_SOURCE, 0, [], reg.running)
    forgeries = {
        "no previous block and time 0": {"time_ms": 5},
        "has no previous block": {"prev_block_hash": bytes(32)},
        "block_hash is not CometBFT's block id": {"block_hash": bytes(32)},
    }
    for why, changes in forgeries.items():
        r = reg.send(genesis, **changes)
        assert r.code == Code.INVALID_STATE and why in r.log, (why, r.log)
    assert reg.send(genesis).code == Code.OK


def test_block_hashes_are_the_block_ids_the_signed_headers_name(tmp_path: Path) -> None:
    """Relayed after height 1: the first digest has no relayed block to continue, yet
    its previous block hash, block hash and time are bound to the signed headers."""
    chain = SyntheticChain("synthetic-1", signers(1, 1, 1, 1))
    for height in (0, 1):  # headers 1 and 2
        chain.digest(COMET_SOURCE, height, [], m.GENESIS_RUNNING_HASH)
    reg = SyntheticRegulator(tmp_path / "reg.db", chain, from_height=1)
    block2 = chain.digest(COMET_SOURCE, 2, [], reg.running)
    forgeries = {
        "prev_block_hash is not the block id header 2 names": {"prev_block_hash": bytes(32)},
        "block_hash is not CometBFT's block id of block 2": {"block_hash": bytes(32)},
        "time_ms is not header 2's time": {"time_ms": block2["time_ms"] + 1},
    }
    for why, changes in forgeries.items():
        r = reg.send(block2, **changes)
        assert r.code == Code.INVALID_STATE and why in r.log, (why, r.log)
    assert reg.send(block2).code == Code.OK
    stored = reg.ledger.state(m.digest_key(COMET_SOURCE, 2))
    assert stored["block_hash"] == cometbft.header_hash(chain.headers[2])
    assert stored["prev_block_hash"] == cometbft.header_hash(chain.headers[1])


def test_part_0_of_a_block_signed_by_200_validators_fits_one_transaction(
    tmp_path: Path,
) -> None:
    """200 validators (the most the contract follows) sign, and the header announces
    200 new ones: part 0 takes the finality's real size off its results, so every part
    fits the 64 KiB tx limit and the regulator chain accepts each."""
    chain = SyntheticChain("synthetic-200", signers(*[1] * 200))
    chain.next_keys[2] = signers(*[1] * 200, seed=50)  # header 2 announces a new set
    reg = SyntheticRegulator(tmp_path / "reg.db", chain)
    for height, count in ((0, 0), (1, 300)):
        results = [
            {
                "tx_id": crypto.sm3(i.to_bytes(4, "big")),
                "code": 0,
                "events": [
                    {"type": "records.read", "attributes": {"actor": f"did:dr{i}", "n": "x" * 120}}
                ],
            }
            for i in range(count)
        ]
        block, finality = chain.gateway_block(height, results)
        parts = block_parts(COMET_SOURCE, block, finality)
        assert len(parts) > 1 or height == 0
        for body, extra in parts:
            r = reg.send(body | extra)
            assert r.code == Code.OK, r.log
    followed = reg.ledger.state(m.finality_key(COMET_SOURCE))["validators"]
    assert {v["pub_key"] for v in followed} == {k.validator.pub_key for k in chain.next_keys[2]}


@pytest.mark.parametrize(
    "changes",
    [{"height": -1}, {"time_ms": -5}, {"tx_count": -1}, {"height": 2**63}, {"tx_count": 2**63}],
)
def test_out_of_range_heights_counts_and_times_are_refused_as_payload(
    tmp_path: Path, changes: dict[str, int]
) -> None:
    chain = SyntheticChain("synthetic-1", signers(1, 1, 1, 1))
    reg = SyntheticRegulator(tmp_path / "reg.db", chain)
    r = reg.send(chain.digest(COMET_SOURCE, 0, [], reg.running), **changes)
    assert r.code == Code.INVALID_PAYLOAD, r.log


def test_a_validator_twice_is_refused_before_any_state_is_written(tmp_path: Path) -> None:
    chain = SyntheticChain("synthetic-1", signers(1, 1, 1))
    twice = [_plain(chain.keys[0].validator)] * 2
    reg = SyntheticRegulator(tmp_path / "reg.db", chain)
    payload = {
        "source": "other",
        "relayer": did_of(reg.relayer),
        "cometbft": {"chain_id": chain.chain_id, "validators": twice},
    }
    r = reg.ledger.run(reg.inspector, "authorize_relayer", payload, "supervision")
    assert r.code == Code.INVALID_PAYLOAD and "each ed25519 public key once" in r.log, r.log
    assert reg.ledger.state(m.relayer_key("other", did_of(reg.relayer))) is None
