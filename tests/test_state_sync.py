"""State sync: snapshots made by a node, restored by a new one through the ABCI
snapshot calls, checked chunk by chunk and against the verified app hash; and a
fifth node joining a real 4-validator localnet from a snapshot."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.consortium import run_in_rounds
from support.ledger import Ledger, did_of, patient_registration, signed_get
from support.network import LOCALNET_NODES
from tendermint.abci import types_pb2 as abci

from medchain import crypto, encoding
from medchain.consensus import snapshots
from medchain.consensus.abci.server import AbciApplication
from medchain.consensus.application import Application
from medchain.consensus.cometbft_engine import CometEngine
from medchain.consensus.snapshots import (
    FORMAT,
    MAX_CHUNKS,
    MAX_METADATA_BYTES,
    RESTORE_BYTES_PER_KEY,
    Metadata,
    SnapshotStore,
    chunk_hash,
    snapshot_hash,
)
from medchain.core import proofs
from medchain.core.block import Block
from medchain.core.tx import build_tx
from medchain.exceptions import Code
from medchain.network.cometbft import CometBFTNotFound, binary
from medchain.network.localnet import Localnet, rpc
from medchain.sdk.client import Client, ClientError
from medchain.storage.chain_db import ChainDB

Offer = abci.ResponseOfferSnapshot
Apply = abci.ResponseApplySnapshotChunk


@pytest.fixture
def source(tmp_path: Path) -> tuple[Ledger, AbciApplication]:
    """A chain with organisations, staff and patients over a few blocks, and its
    snapshot at the last height, cut into small chunks."""
    ledger = Ledger(tmp_path / "source.db", crypto.generate_keypair())
    for i in range(3):
        org_admin = crypto.generate_keypair()
        ledger.add_org(f"hosp-{i}", org_admin)
        ledger.add_staff(org_admin, f"hosp-{i}", crypto.generate_keypair(), ["doctor"])
    patients = [crypto.generate_keypair() for _ in range(20)]
    ledger.commit([ledger.tx(p, "identity", "register_patient", {}) for p in patients])
    store = SnapshotStore(tmp_path / "snapshots", interval=1, chunk_bytes=512)
    store.write(ledger.app.db.open_export())
    return ledger, AbciApplication(ledger.app, store)


def _joiner(tmp_path: Path, max_bytes: int = 1 << 30) -> AbciApplication:
    return AbciApplication(Application(ChainDB(tmp_path / "joiner.db")), None, max_bytes)


def _offer(joiner: AbciApplication, snap: abci.Snapshot, app_hash: bytes) -> int:
    return int(
        joiner.offer_snapshot(abci.RequestOfferSnapshot(snapshot=snap, app_hash=app_hash)).result
    )


def _chunks(server: AbciApplication, snap: abci.Snapshot) -> list[bytes]:
    return [
        server.load_snapshot_chunk(
            abci.RequestLoadSnapshotChunk(height=snap.height, format=snap.format, chunk=i)
        ).chunk
        for i in range(snap.chunks)
    ]


def _apply(joiner: AbciApplication, index: int, chunk: bytes, sender: str = "peer-x") -> Apply:
    return joiner.apply_snapshot_chunk(
        abci.RequestApplySnapshotChunk(index=index, chunk=chunk, sender=sender)
    )


def _forge(snap: abci.Snapshot, chunks: list[bytes], keys: int | None = None) -> abci.Snapshot:
    """A snapshot of `chunks` with consistent chunk hashes and the real app hash."""
    meta = Metadata.decode(snap.metadata)
    hashes = tuple(chunk_hash(c) for c in chunks)
    forged = Metadata(
        meta.height,
        meta.app_hash,
        meta.results_root,
        meta.time_ms,
        meta.block_hash,
        meta.keys if keys is None else keys,
        hashes,
    )
    return abci.Snapshot(
        height=snap.height,
        format=FORMAT,
        chunks=len(chunks),
        hash=snapshot_hash(hashes),
        metadata=forged.encode(),
    )


def test_a_new_node_restores_state_and_goes_on_with_the_same_app_hash(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    ledger, server = source
    db = ledger.app.db
    [snap] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    assert (snap.height, snap.format) == (db.height, FORMAT) and snap.chunks > 3
    joiner = _joiner(tmp_path)
    assert _offer(joiner, snap, db.app_hash) == Offer.ACCEPT
    for i, chunk in enumerate(_chunks(server, snap)):
        assert _apply(joiner, i, chunk).result == Apply.ACCEPT
    info = joiner.info(abci.RequestInfo())
    assert (info.last_block_height, info.last_block_app_hash) == (db.height, db.app_hash)
    restored = joiner.app.db
    assert list(restored.scan("", 10**6)) == list(db.scan("", 10**6))
    assert restored.snapshot_base == db.height and restored.block(db.height) is None
    # A proof from the restored node checks against the verified app hash.
    key = next(k for k, _ in restored.scan("identity/", 1))
    roots = restored.roots(restored.height)
    assert roots is not None
    doc = proofs.state_proof(
        joiner.app.chain_id, roots, restored.state_node, key, restored.get(key)
    )
    assert key in proofs.verify(doc, db.app_hash)
    # Offered again (the node stopped before CometBFT recorded the restore), the same
    # snapshot is accepted without writing anything.
    assert _offer(joiner, snap, db.app_hash) == Offer.ACCEPT
    assert _apply(joiner, 0, b"").result == Apply.ACCEPT
    assert joiner.info(abci.RequestInfo()).last_block_height == db.height
    # The next block gives both nodes the same app hash.
    patient = crypto.generate_keypair()
    tx = build_tx(
        patient,
        chain_id=ledger.chain_id,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )
    block = Block(
        ledger.chain_id, db.height + 1, db.block_time_ms() + 1000, (tx,), db.last_block_hash
    )
    want = ledger.app.finalize_block(block)
    got = joiner.app.finalize_block(block)
    assert got.app_hash == want.app_hash and got.tx_results[0].code == Code.OK


def test_a_corrupted_or_oversized_chunk_is_refused_and_fetched_again(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    ledger, server = source
    [snap] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    chunks = _chunks(server, snap)
    joiner = _joiner(tmp_path)
    assert _offer(joiner, snap, ledger.app.db.app_hash) == Offer.ACCEPT
    assert _apply(joiner, 0, chunks[0]).result == Apply.ACCEPT
    for bad in (
        chunks[1][:-1] + bytes([chunks[1][-1] ^ 1]),
        b"\xff" * 10,
        chunks[1] + b"\x00" * (17 << 20),
    ):
        resp = _apply(joiner, 1, bad)
        assert resp.result == Apply.RETRY
        assert list(resp.refetch_chunks) == [1] and list(resp.reject_senders) == ["peer-x"]
    assert joiner.app.db.height == -1
    for i, chunk in enumerate(chunks[1:], start=1):
        assert _apply(joiner, i, chunk).result == Apply.ACCEPT
    assert joiner.app.db.app_hash == ledger.app.db.app_hash


def test_a_forged_snapshot_is_rejected_and_nothing_is_written(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    """An attacker's snapshot: consistent chunk hashes, metadata naming the real app
    hash, but one state value changed. It passes every chunk check, and the rebuilt
    state's app hash gives it away."""
    ledger, server = source
    db = ledger.app.db
    [snap] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    chunks = _chunks(server, snap)
    pairs = encoding.decode(chunks[-1])
    pairs[-1][1] = pairs[-1][1] + b"!"
    chunks[-1] = encoding.encode(pairs)
    forged = _forge(snap, chunks)
    joiner = _joiner(tmp_path)
    assert _offer(joiner, forged, db.app_hash) == Offer.ACCEPT
    answers = [_apply(joiner, i, c, f"peer-{i % 2}") for i, c in enumerate(chunks)]
    results = [a.result for a in answers]
    assert results == [Apply.ACCEPT] * (len(chunks) - 1) + [Apply.REJECT_SNAPSHOT]
    # Every peer that sent a chunk of it offered the forgery: all are rejected.
    assert list(answers[-1].reject_senders) == ["peer-0", "peer-1"]
    assert joiner.app.db.height == -1 and list(joiner.app.db.scan("", 10)) == []
    # Offers that do not fit are refused before any chunk is fetched.
    assert _offer(joiner, snap, bytes(32)) == Offer.REJECT  # not the verified app hash
    wrong_hash = abci.Snapshot(**{**_fields(snap), "hash": bytes(32)})
    assert _offer(joiner, wrong_hash, db.app_hash) == Offer.REJECT
    garbage = abci.Snapshot(**{**_fields(snap), "metadata": b"\xa1\x00"})
    assert _offer(joiner, garbage, db.app_hash) == Offer.REJECT
    other_format = abci.Snapshot(**{**_fields(snap), "format": 7})
    assert _offer(joiner, other_format, db.app_hash) == Offer.REJECT_FORMAT
    # A node already holding a chain aborts state sync.
    assert _offer(server, snap, db.app_hash) == Offer.ABORT


def _fields(snap: abci.Snapshot) -> dict[str, Any]:
    return {
        "height": snap.height,
        "format": snap.format,
        "chunks": snap.chunks,
        "hash": snap.hash,
        "metadata": snap.metadata,
    }


def test_old_snapshots_are_pruned(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "c.db", crypto.generate_keypair())
    store = SnapshotStore(tmp_path / "snapshots", interval=2, keep=2)
    (store.root / ".4.tmp").mkdir()  # a node killed while writing a snapshot
    for _ in range(8):
        ledger.add_patient(crypto.generate_keypair())
        store.after_commit(ledger.app.db)
        store.wait()
    assert store.heights() == [8, 6]
    assert sorted(p.name for p in store.root.iterdir()) == ["6", "8"]


# -- a fifth node joins a real localnet --------------------------------------

FIRST_IP = "127.0.18.1"  # apart from the other localnet tests and benches
SNAPSHOT_INTERVAL = 10
PATIENTS = 150  # each registers and grants consent; as many again only register


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, RuntimeError, KeyError):
            if condition():
                return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def header_app_hash(url: str, height: int) -> str:
    """The app hash after block `height`, from the signed header of height + 1 (once
    the node at `url` has that block: it may be one behind the node that answered)."""
    wait_until(
        lambda: int(rpc(url, "status")["sync_info"]["latest_block_height"]) > height,
        60,
        f"{url} to have block {height + 1}",
    )
    return str(rpc(url, "block", height=height + 1)["block"]["header"]["app_hash"]).lower()


def commit_all(net: Localnet, raws: list[bytes]) -> None:
    """Send txs straight to the validators' CometBFT RPC (round robin; a gateway would
    hold patient self-registrations to its per-address rate) and wait until every one
    is committed with code 0."""
    urls = [n.rpc for n in net.nodes]
    with httpx.Client(timeout=30) as http:
        for i, raw in enumerate(raws):
            body = {
                "jsonrpc": "2.0",
                "id": i,
                "method": "broadcast_tx_sync",
                "params": {"tx": base64.b64encode(raw).decode()},
            }
            reply = http.post(urls[i % len(urls)], json=body).json()
            assert reply["result"]["code"] == 0, reply
        for raw in raws:
            tx_hash = "0x" + hashlib.sha256(raw).hexdigest()
            wait_until(
                lambda h=tx_hash: committed_code(urls[0], h) is not None,  # type: ignore[misc]
                120,
                f"tx {tx_hash} to commit",
            )
            assert committed_code(urls[0], tx_hash) == 0, tx_hash


def committed_code(url: str, tx_hash: str) -> int | None:
    """The code of a committed tx by its CometBFT hash; None while it is not committed."""
    try:
        return int(rpc(url, "tx", hash=tx_hash)["tx_result"].get("code", 0))
    except RuntimeError:
        return None


@pytest.fixture(scope="module")
def localnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Localnet]:
    try:
        binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    net = Localnet(tmp_path_factory.mktemp("state-sync") / "localnet")
    net.create(LOCALNET_NODES, FIRST_IP, snapshot_interval=SNAPSHOT_INTERVAL)
    try:
        net.up()
        net.wait_serving(120)
        yield net
    finally:
        net.down()


def test_a_new_node_joins_by_state_sync_and_agrees(localnet: Localnet) -> None:
    root = localnet.admin_key()
    tls = localnet.client_tls
    node = Client(localnet.gateways[1], tls=tls, key=root)
    keys: dict[str, crypto.KeyPair] = {"root": root, "admin": crypto.generate_keypair()}
    keys["doctor"] = crypto.generate_keypair()
    org = {"org_id": "hosp-a", "name": "hosp-a", "org_type": "hospital"}
    run_in_rounds(
        node,
        keys,
        [("root", "identity", "register_org", org | {"admin_public_key": keys["admin"].public})],
    )
    member = {"org_id": "hosp-a", "public_key": keys["doctor"].public, "roles": ["doctor"]}
    run_in_rounds(node, keys, [("admin", "identity", "add_member", member)])
    doctor = node.account(keys["doctor"])["did"]
    expires = node.block_time_ms() + 86_400_000
    patients = [crypto.generate_keypair() for _ in range(PATIENTS)]
    registrations = [
        build_tx(
            p,
            chain_id=node.chain_id,
            contract="identity",
            action="register_patient",
            payload={},
            nonce=0,
        )
        for p in patients
    ]
    commit_all(localnet, registrations + [patient_registration(node.chain_id) for _ in patients])
    grants = [
        build_tx(
            p,
            chain_id=node.chain_id,
            contract="consent",
            action="grant",
            payload={
                "patient": did_of(p),
                "grantee_kind": "did",
                "grantee": doctor,
                "purposes": ["TREAT"],
                "scope_types": ["DiagnosticReport"],
                "expires_ms": expires,
            },
            nonce=1,
        )
        for p in patients
    ]
    commit_all(localnet, grants)
    validators = localnet.nodes
    wait_until(
        lambda: (
            int(rpc(validators[0].rpc, "status")["sync_info"]["latest_block_height"])
            > 2 * SNAPSHOT_INTERVAL
        ),
        120,
        "two snapshot intervals",
    )

    joiner = localnet.add_node(state_sync=True)
    localnet.start_node(joiner)
    localnet.wait_serving(150, nodes=[joiner])
    new = localnet.nodes[joiner]
    db = ChainDB(new.home / "medchain" / "chain.db")
    base = db.snapshot_base
    assert base is not None and base > 0 and base % SNAPSHOT_INTERVAL == 0  # not a replay
    # It goes on by block sync; its app's app hash is the validators' at the same heights.
    target = int(rpc(validators[0].rpc, "status")["sync_info"]["latest_block_height"])
    wait_until(lambda: db.height >= target, 90, f"the new node to reach height {target}")
    for height in (base, base + 1, db.height - 1):
        roots = db.roots(height)
        assert roots is not None
        assert roots["app_hash"].hex() == header_app_hash(validators[2].rpc, height)
    # Its gateway serves state, proofs, and says plainly what it lacks.
    client = Client(new.gateway, tls=tls, key=root)
    assert client.account(patients[0])["did"] == did_of(patients[0])
    assert len(client.grants(did_of(patients[3]))) == 1
    proof = client.prove_state("identity/org/hosp-a")
    assert proof["height"] >= base
    assert proofs.verify(proof, bytes.fromhex(header_app_hash(validators[3].rpc, proof["height"])))
    with pytest.raises(ClientError) as gone:
        client.block(base - 1)
    assert gone.value.code == "NOT_FOUND" and "state sync" in gone.value.message
    recent = db.height - 1  # read once: the chain goes on while we ask
    assert client.block(recent)["height"] == recent
    db.close()


def test_a_snapshot_over_the_memory_cap_or_its_key_count_is_refused_early(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    """A peer's snapshot is charged what restoring it costs in memory (per key, not its
    CBOR bytes) against the operator's cap, and refused as soon as its chunks hold
    more pairs than its metadata said, not after the last chunk."""
    ledger, server = source
    app_hash = ledger.app.db.app_hash
    [snap] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    chunks = _chunks(server, snap)
    keys = Metadata.decode(snap.metadata).keys
    # The metadata's key count alone is over the cap: refused before any chunk.
    small = _joiner(tmp_path / "small", max_bytes=keys * RESTORE_BYTES_PER_KEY - 1)
    assert _offer(small, snap, app_hash) == Offer.REJECT
    # The key count fits but the pairs' own bytes do not: rejected on the way.
    tight = _joiner(tmp_path / "tight", max_bytes=keys * RESTORE_BYTES_PER_KEY + 100)
    assert _offer(tight, snap, app_hash) == Offer.ACCEPT
    results = [_apply(tight, i, c).result for i, c in enumerate(chunks)]
    stopped = results.index(Apply.REJECT_SNAPSHOT)
    assert 0 < stopped < len(chunks) - 1 and set(results[:stopped]) == {Apply.ACCEPT}
    assert tight.app.db.height == -1
    # A snapshot whose chunks hold more pairs than its metadata names (a peer padding
    # it with junk): rejected at the first chunk that passes the count.
    forged = _forge(snap, chunks, keys=len(encoding.decode(chunks[0])))
    joiner = _joiner(tmp_path)
    assert _offer(joiner, forged, app_hash) == Offer.ACCEPT
    assert _apply(joiner, 0, chunks[0]).result == Apply.ACCEPT
    assert _apply(joiner, 1, chunks[1]).result == Apply.REJECT_SNAPSHOT
    assert joiner.app.db.height == -1


def test_a_chunk_out_of_order_is_fetched_again_without_rejecting_its_sender(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    ledger, server = source
    [snap] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    chunks = _chunks(server, snap)
    joiner = _joiner(tmp_path)
    assert _offer(joiner, snap, ledger.app.db.app_hash) == Offer.ACCEPT
    resp = _apply(joiner, 2, chunks[2])
    assert resp.result == Apply.RETRY
    assert list(resp.refetch_chunks) == [2] and list(resp.reject_senders) == []


def test_the_chunk_limit_fits_in_the_metadata_limit() -> None:
    meta = Metadata(1, bytes(32), bytes(32), 2**62, bytes(32), 2**62, (bytes(32),) * MAX_CHUNKS)
    raw = meta.encode()
    assert len(raw) <= MAX_METADATA_BYTES and Metadata.decode(raw) == meta


def test_a_restore_cometbft_never_recorded_is_replaced_by_a_newer_snapshot(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    """Restored at one height, then stopped before CometBFT recorded it: on restart
    peers offer a newer snapshot, and the node takes it instead of aborting."""
    ledger, server = source
    db = ledger.app.db
    [old] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    joiner = _joiner(tmp_path)
    assert _offer(joiner, old, db.app_hash) == Offer.ACCEPT
    for i, chunk in enumerate(_chunks(server, old)):
        assert _apply(joiner, i, chunk).result == Apply.ACCEPT
    for _ in range(2):
        ledger.add_patient(crypto.generate_keypair())
    assert server.snapshots is not None
    server.snapshots.write(db.open_export())
    new = server.list_snapshots(abci.RequestListSnapshots()).snapshots[0]
    assert new.height == db.height > old.height
    # The same process again, as after a restart.
    joiner = AbciApplication(Application(ChainDB(tmp_path / "joiner.db")))
    assert joiner.app.db.snapshot_base == old.height
    assert _offer(joiner, new, db.app_hash) == Offer.ACCEPT
    chunks = _chunks(server, new)
    for i, chunk in enumerate(chunks):
        assert _apply(joiner, i, chunk).result == Apply.ACCEPT
    restored = joiner.app.db
    assert (restored.height, restored.app_hash) == (db.height, db.app_hash)
    assert restored.snapshot_base == db.height
    assert list(restored.scan("", 10**6)) == list(db.scan("", 10**6))
    assert restored.roots(old.height) is None  # the replaced restore is gone


def test_a_snapshot_is_on_disk_before_it_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks and metadata are flushed before the rename that finishes the snapshot,
    and the rename is flushed before it is offered (no truncated chunks after a
    power loss). A spy on the durable-write helper sees the order."""
    ledger = Ledger(tmp_path / "c.db", crypto.generate_keypair())
    ledger.add_patient(crypto.generate_keypair())
    store = SnapshotStore(tmp_path / "snapshots", chunk_bytes=64)
    flushed: list[tuple[str, list[str]]] = []

    def spy(directory: Path, paths: list[Path]) -> None:
        flushed.append((directory.name, sorted(p.name for p in paths)))

    monkeypatch.setattr(snapshots, "make_durable", spy)
    info = store.write(ledger.app.db.open_export())
    files = sorted(p.name for p in (store.root / str(info.height)).iterdir())
    assert len(files) == info.chunks + 1
    assert flushed == [(f".{info.height}.tmp", files), ("snapshots", [])]


def test_the_gateway_of_a_restored_node_marks_the_snapshot_block_hash_unverified(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    """The last block's MedChain hash and time come from the snapshot's metadata,
    which no app hash covers: a restored node says so."""
    from fastapi.testclient import TestClient

    from medchain.gateway.app import create_app

    ledger, server = source
    db = ledger.app.db
    [snap] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    joiner = _joiner(tmp_path)
    assert _offer(joiner, snap, db.app_hash) == Offer.ACCEPT
    for i, chunk in enumerate(_chunks(server, snap)):
        assert _apply(joiner, i, chunk).result == Apply.ACCEPT
    with TestClient(create_app(CometEngine(joiner, "http://127.0.0.1:9"))) as client:
        status = client.get("/v1/status").json()
    assert status["height"] == snap.height
    assert "not verified" in status["last_block_unverified"]
    with TestClient(create_app(CometEngine(server, "http://127.0.0.1:9"))) as client:
        assert client.get("/v1/status").json()["last_block_unverified"] == ""


def test_a_restored_node_says_its_audit_trail_starts_after_its_snapshot(
    source: tuple[Ledger, AbciApplication], tmp_path: Path
) -> None:
    """Audit events before the snapshot height are not on a restored node: its answer
    names the first height it has, so a partial trail is not taken for the whole."""
    from fastapi.testclient import TestClient

    from medchain.gateway.app import create_app

    ledger, server = source
    [snap] = server.list_snapshots(abci.RequestListSnapshots()).snapshots
    joiner = _joiner(tmp_path)
    assert _offer(joiner, snap, ledger.app.db.app_hash) == Offer.ACCEPT
    for i, chunk in enumerate(_chunks(server, snap)):
        assert _apply(joiner, i, chunk).result == Apply.ACCEPT
    reader = ledger.admin  # the consortium admin: registered before the snapshot
    query = {"actor": did_of(reader)}
    period = {"from_ms": "0", "to_ms": str(2**62)}
    answers, heads, notes = {}, {}, {}
    for name, app in (("restored", joiner), ("whole", server)):
        with TestClient(create_app(CometEngine(app, "http://127.0.0.1:9"))) as client:
            r = signed_get(client, reader, "/v1/audit", query, chain_id=ledger.chain_id)
            assert r.status_code == 200, r.text
            answers[name] = r.json()
            # The FHIR AuditEvent search and both exports say it too.
            for what, path, params in (
                ("fhir", "/fhir/AuditEvent", {"agent": did_of(reader)}),
                ("csv", "/v1/audit/export", period),
                ("bundle", "/v1/audit/export", {**period, "format": "fhir"}),
            ):
                got = signed_get(client, reader, path, params, chain_id=ledger.chain_id)
                assert got.status_code == 200, got.text
                heads[name, what] = got.headers["X-MedChain-History-From"]
                if what != "csv":
                    notes[name, what] = [
                        e["resource"]["issue"][0]["diagnostics"]
                        for e in got.json().get("entry", [])
                        if e["search"]["mode"] == "outcome"
                    ]
    assert answers["restored"]["history_from_height"] == snap.height + 1
    assert f"state sync at height {snap.height}" in answers["restored"]["history_note"]
    assert answers["whole"]["history_from_height"] == 0
    assert answers["whole"]["history_note"] == ""
    for what in ("fhir", "csv", "bundle"):
        assert heads["restored", what] == str(snap.height + 1)
        assert heads["whole", what] == "0"
    for what in ("fhir", "bundle"):
        [note] = notes["restored", what]
        assert f"state sync at height {snap.height}" in note
        assert notes["whole", what] == []
