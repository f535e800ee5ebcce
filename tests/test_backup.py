"""Backups, restores, schema versions and migrations (issue 16 point 5), on real files:
real SQLite chain DBs and vaults, a real solo engine, a running gateway and edge."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from support.consortium import running_consortium
from support.ledger import patient_registration
from support.servers import medchain
from test_state_sync import committed_code, header_app_hash, wait_until

from medchain import backup, crypto
from medchain.consensus.application import Application
from medchain.consensus.solo import SoloEngine
from medchain.edge.custodian import CustodianEdge
from medchain.edge.vault import RecordNotFound, Vault, verify_purge_receipt
from medchain.network.cometbft import CometBFTNotFound
from medchain.network.cometbft import binary as cometbft_binary
from medchain.network.localnet import Localnet, rpc
from medchain.node import NodeHome, open_solo
from medchain.sqlite_schema import SchemaMigrationFailed, SchemaTooNew, schema_version
from medchain.storage.chain_db import ChainDB

CHAIN = "medchain-backup"
T0 = 1_764_000_000_000

# chain.db as 582ac5c..a72200f wrote it (app hash v2; the audit index had no time index).
CHAIN_DB_BEFORE_VERSIONS = """
CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE blocks (
    height INTEGER PRIMARY KEY, hash BLOB NOT NULL, header BLOB NOT NULL, txs BLOB NOT NULL,
    results BLOB NOT NULL, app_hash BLOB NOT NULL
);
CREATE TABLE txs (
    tx_id BLOB PRIMARY KEY, height INTEGER NOT NULL, idx INTEGER NOT NULL,
    code INTEGER NOT NULL, result BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE state_nodes (hash BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE roots (
    height INTEGER PRIMARY KEY, state_root BLOB NOT NULL, results_root BLOB NOT NULL,
    app_hash BLOB NOT NULL, time_ms INTEGER NOT NULL
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, height INTEGER NOT NULL, time_ms INTEGER NOT NULL,
    tx_id BLOB NOT NULL, code INTEGER NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,
    patient TEXT, record_id TEXT, attributes BLOB NOT NULL
);
CREATE INDEX audit_by_patient ON audit (patient, seq) WHERE patient IS NOT NULL;
CREATE INDEX audit_by_actor ON audit (actor, seq);
CREATE INDEX audit_by_record ON audit (record_id, seq) WHERE record_id IS NOT NULL;
"""
CHAIN_TABLES = ("state", "meta", "blocks", "txs", "state_nodes", "roots", "audit")

# vault.db as a1fc953 wrote it: no patient keys or packs, the first search index.
VAULT_DB_BEFORE_VERSIONS = """
CREATE TABLE records (
    record_id TEXT PRIMARY KEY, cid TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
    content_hash BLOB NOT NULL, salt BLOB NOT NULL
);
CREATE TABLE wrapped_keys (
    cid TEXT NOT NULL, recipient BLOB NOT NULL, wrapped BLOB NOT NULL,
    PRIMARY KEY (cid, recipient)
) WITHOUT ROWID;
CREATE TABLE receipts (record_id TEXT PRIMARY KEY, receipt BLOB NOT NULL);
CREATE TABLE erasures (
    record_id TEXT PRIMARY KEY, cid TEXT NOT NULL, erased_at_ms INTEGER NOT NULL
);
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE search (
    record_id TEXT PRIMARY KEY, patient TEXT NOT NULL, resource_type TEXT NOT NULL, date TEXT
);
CREATE INDEX search_by_patient ON search (patient, resource_type, date);
CREATE INDEX search_by_type ON search (resource_type, date);
CREATE TABLE search_codes (record_id TEXT NOT NULL, system TEXT NOT NULL, code TEXT NOT NULL);
CREATE INDEX search_codes_by_code ON search_codes (code, system);
CREATE INDEX search_codes_by_record ON search_codes (record_id);
CREATE TABLE patients (
    system TEXT NOT NULL, identifier TEXT NOT NULL, did TEXT NOT NULL,
    PRIMARY KEY (system, identifier)
) WITHOUT ROWID;
"""
VAULT_TABLES = ("records", "wrapped_keys", "receipts", "erasures", "meta", "search", "patients")


def solo_home(root: Path) -> NodeHome:
    home = NodeHome(root)
    home.write_genesis(CHAIN, "root", crypto.generate_keypair(), genesis_time_ms=T0)
    (root / "operators.json").write_text("[]")
    return home


def engine_of(db_path: Path, home: NodeHome) -> SoloEngine:
    """A solo engine over a chain DB, not started: the test makes each block."""
    app = Application(ChainDB(db_path))
    app.init_chain(home.genesis())
    return SoloEngine(app)


def add_blocks(engine: SoloEngine, blocks: int, txs: int = 3) -> None:
    for _ in range(blocks):
        height = engine.app.db.height + 1
        out = engine.produce_block(
            [patient_registration(CHAIN) for _ in range(txs)], time_ms=T0 + 1000 * height
        )
        assert all(r.code == 0 for r in out.tx_results)


def committed_consistently(db_path: Path) -> int:
    """The copy's height, after checking it is one committed block's state: its meta
    height and app hash are those of its last block and state root, nothing beyond."""
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    db = ChainDB(db_path)
    try:
        height = db.height
        top = db.query("SELECT max(height) FROM blocks")[0][0]
        assert top == height and db.query("SELECT max(height) FROM roots")[0][0] == height
        block = db.block(height)
        assert block is not None and block["app_hash"] == db.app_hash
        assert db.query("SELECT count(*) FROM txs WHERE height > ?", (height,))[0][0] == 0
        return height
    finally:
        db.close()


def test_sm3_of_chunks_is_sm3_of_their_join() -> None:
    abc = "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"  # GB/T 32905
    assert crypto.sm3_chunks([b"a", b"", b"bc"]).hex() == abc == crypto.sm3(b"abc").hex()
    data = bytes(range(256)) * 5000
    assert crypto.sm3_chunks(data[i : i + 4096] for i in range(0, len(data), 4096)) == (
        crypto.sm3(data)
    )


def test_solo_backup_restores_to_the_same_app_hash_and_the_node_goes_on(tmp_path: Path) -> None:
    home = solo_home(tmp_path / "home")
    engine = engine_of(home.db_path, home)
    add_blocks(engine, 5)
    height, app_hash = engine.app.db.height, engine.app.db.app_hash
    seen: list[tuple[str, int, int]] = []
    manifest = backup.backup_node(home.root, tmp_path / "bk", lambda *p: seen.append(p))
    engine.app.db.close()
    assert manifest.chain_height == height == 5
    assert manifest.schema_versions == {"data/chain.db": 1}
    assert {"data/chain.db", "genesis.json", "operators.json"} <= set(manifest.files)
    assert seen and seen[-1][1] == seen[-1][2]  # progress reached the end

    backup.restore(tmp_path / "bk", tmp_path / "new", "node")
    for path in [tmp_path / "bk", tmp_path / "new", *(tmp_path / "new").rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    restored = NodeHome(tmp_path / "new")
    solo = open_solo(restored, block_interval=0.05)
    try:
        assert (solo.app.db.height, solo.app.db.app_hash) == (height, app_hash)
        tx = solo.submit(patient_registration(CHAIN))
        committed = solo.wait_for(tx.tx_id, timeout=20)
        assert committed is not None and committed.height > height
        assert committed.result.code == 0
    finally:
        solo.stop()


def test_a_backup_taken_while_blocks_commit_is_one_committed_height(tmp_path: Path) -> None:
    home = solo_home(tmp_path / "home")
    engine = engine_of(home.db_path, home)
    add_blocks(engine, 40, txs=20)  # several backup steps of pages
    before = engine.app.db.height
    writes: list[int] = []

    def write_between_steps(_name: str, done: int, total: int) -> None:
        if done < total and len(writes) < 3:  # between steps of the copy: commit blocks
            add_blocks(engine, 2, txs=20)
            writes.append(engine.app.db.height)

    monkey_step = backup.PAGES_PER_STEP
    backup.PAGES_PER_STEP = 8
    try:
        manifest = backup.backup_node(home.root, tmp_path / "bk", write_between_steps)
    finally:
        backup.PAGES_PER_STEP = monkey_step
    assert writes and writes[-1] > before  # blocks really were committed during the copy
    copy = tmp_path / "bk" / "data" / "chain.db"
    assert committed_consistently(copy) == before == manifest.chain_height
    live_root = engine.app.db.roots(before)
    copied = ChainDB(copy)
    assert copied.app_hash == (live_root or {}).get("app_hash")
    copied.close()


def test_restore_refuses_an_altered_or_incomplete_backup_and_writes_nothing(
    tmp_path: Path,
) -> None:
    home = solo_home(tmp_path / "home")
    engine = engine_of(home.db_path, home)
    add_blocks(engine, 2)
    backup.backup_node(home.root, tmp_path / "bk", lambda *_: None)
    genesis = tmp_path / "bk" / "genesis.json"
    genesis.write_text(genesis.read_text().replace(CHAIN, CHAIN + "x"))
    with pytest.raises(backup.BackupError, match=r"genesis\.json does not match its SM3"):
        backup.restore(tmp_path / "bk", tmp_path / "new", "node")
    genesis.unlink()
    with pytest.raises(backup.BackupError, match=r"genesis\.json is in the manifest but not"):
        backup.restore(tmp_path / "bk", tmp_path / "new", "node")
    assert not (tmp_path / "new").exists()
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.backup_node(home.root, tmp_path / "bk")
    (tmp_path / "elsewhere").write_text("{}")
    genesis.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(backup.BackupError, match="symbolic link"):
        backup.verify(tmp_path / "bk")
    doc = json.loads((tmp_path / "bk" / backup.MANIFEST).read_text())
    doc["files"]["../escape"] = {"sm3": "00", "size": 0}
    (tmp_path / "bk" / backup.MANIFEST).write_text(json.dumps(doc))
    with pytest.raises(backup.BackupError, match="outside the backup"):
        backup.verify(tmp_path / "bk")


def test_a_chain_db_from_before_schema_versions_migrates_and_keeps_its_app_hash(
    tmp_path: Path,
) -> None:
    home = solo_home(tmp_path / "home")
    engine = engine_of(home.db_path, home)
    add_blocks(engine, 4)
    height, app_hash = engine.app.db.height, engine.app.db.app_hash
    engine.app.db.close()
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.executescript(CHAIN_DB_BEFORE_VERSIONS)
    conn.execute("ATTACH ? AS current", (str(home.db_path),))
    for table in CHAIN_TABLES:
        conn.execute(f"INSERT INTO {table} SELECT * FROM current.{table}")
    conn.execute("DETACH current")
    assert schema_version(conn) == 0
    conn.close()

    migrated = engine_of(old, home)
    assert schema_version(sqlite3.connect(old)) == 1
    assert (
        sqlite3.connect(old)
        .execute("SELECT 1 FROM sqlite_schema WHERE name = 'audit_by_time'")
        .fetchone()
    )
    assert (migrated.app.db.height, migrated.app.db.app_hash) == (height, app_hash)
    # The next block gives the same app hash on the migrated file and on the current one.
    control = engine_of(home.db_path, home)
    txs = [patient_registration(CHAIN) for _ in range(3)]
    a = migrated.produce_block(txs, time_ms=T0 + 99_000)
    b = control.produce_block(txs, time_ms=T0 + 99_000)
    assert a.app_hash == b.app_hash and a.block.height == height + 1


def test_a_vault_from_before_schema_versions_migrates_and_opens_its_records(
    tmp_path: Path,
) -> None:
    custodian, patient = crypto.generate_keypair(), crypto.generate_keypair()
    current = Vault(tmp_path / "current", custodian)
    current.store("rec-1", b'{"resourceType": "Observation"}', patient.public)
    current.close()
    root = tmp_path / "old"
    root.mkdir()
    (root / "blobs").mkdir()
    for path in (tmp_path / "current" / "blobs").iterdir():
        (root / "blobs" / path.name).write_bytes(path.read_bytes())
    (root / "kek.sm2").write_bytes((tmp_path / "current" / "kek.sm2").read_bytes())
    conn = sqlite3.connect(root / "vault.db", isolation_level=None)
    conn.executescript(VAULT_DB_BEFORE_VERSIONS)
    conn.execute("ATTACH ? AS current", (str(tmp_path / "current" / "vault.db"),))
    for table in VAULT_TABLES:
        conn.execute(f"INSERT INTO {table} SELECT * FROM current.{table}")
    conn.execute("INSERT INTO search_codes VALUES ('rec-1', 'http://loinc.org', '2339-0')")
    conn.execute("DETACH current")
    conn.close()

    vault = Vault(root, custodian)
    assert vault.plaintext("rec-1") == b'{"resourceType": "Observation"}'
    check = sqlite3.connect(root / "vault.db")
    assert schema_version(check) == 1
    names = {row[0] for row in check.execute("SELECT name FROM sqlite_schema")}
    assert "search_codes" not in names and {"packed_blobs", "search_values"} <= names
    vault.store("rec-2", b"{}", patient.public)  # the new tables take writes
    assert vault.count() == 2


def test_a_chain_db_from_before_app_hash_v2_is_refused_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        CHAIN_DB_BEFORE_VERSIONS.replace("CREATE TABLE roots", "CREATE TABLE unused_roots")
    )
    conn.close()
    with pytest.raises(SchemaMigrationFailed, match="before app hash v2"):
        ChainDB(path)
    tables = {row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_schema")}
    assert "roots" not in tables  # nothing was written


@pytest.mark.parametrize("kind", ["chain", "vault"])
def test_a_database_from_a_newer_medchain_is_refused(tmp_path: Path, kind: str) -> None:
    custodian = crypto.generate_keypair()
    path = tmp_path / "chain.db" if kind == "chain" else tmp_path / "vault" / "vault.db"
    if kind == "chain":
        ChainDB(path).close()
    else:
        Vault(tmp_path / "vault", custodian).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(SchemaTooNew, match=r"schema version 7, but this MedChain knows .* 1"):
        if kind == "chain":
            ChainDB(path)
        else:
            Vault(tmp_path / "vault", custodian)
    assert schema_version(sqlite3.connect(path)) == 7  # left as it was


def test_an_erasure_after_the_backup_is_applied_again_by_the_restore(tmp_path: Path) -> None:
    consortium = running_consortium(tmp_path)
    world = next(consortium)
    try:
        vault_root = world.edge.vault.root
        manifest = backup.backup_edge(vault_root, tmp_path / "edge-bk")  # edge running
        assert manifest.kind == "edge" and manifest.schema_versions["vault.db"] == 1
        assert manifest.synced_height is not None and not manifest.missing_blobs
        cid = world.node.record("report-1")["cid"]
        assert f"blobs/{cid}" in manifest.files

        world.ok("patient", "records", "erase", {"record_id": "report-1", "reason": "my right"})
        deadline = time.monotonic() + 10
        while world.edge.vault.has("report-1"):  # the running edge purges it
            assert time.monotonic() < deadline, "edge did not purge the erased record"
            time.sleep(0.1)

        target = tmp_path / "restored"
        backup.restore(tmp_path / "edge-bk", target, "edge")
        old = Vault(target, world.keys["admin_a"])
        assert old.has("report-1")  # the old backup brings the erased record's key back...
        old.close()
        edge = CustodianEdge(
            Vault(target, world.keys["admin_a"]), world.keys["admin_a"], world.node
        )
        assert edge.sync() >= 1  # ...until the restore's sync erases it again
        assert not edge.vault.has("report-1")
        with pytest.raises(RecordNotFound):
            edge.vault.plaintext("report-1")
        assert not (target / "blobs" / cid).exists()
        assert verify_purge_receipt(edge.vault.receipt("report-1"), world.keys["admin_a"].public)
        assert edge.vault.has("rx-1") and edge.vault.plaintext("rx-1")
        salt = world.node.record("report-1")  # still on chain as erased
        assert salt["status"] == "erased"
        edge.vault.close()
    finally:
        consortium.close()


def test_the_cli_backs_up_and_restores_a_node_home_and_refuses_a_tampered_one(
    tmp_path: Path,
) -> None:
    home = solo_home(tmp_path / "home")
    engine = engine_of(home.db_path, home)
    add_blocks(engine, 3)
    app_hash = engine.app.db.app_hash
    out = medchain("backup", "--home", str(home.root), "--out", str(tmp_path / "bk"))
    assert out.returncode == 0, out.stderr
    assert "chain height 3" in out.stdout and "data/chain.db v1" in out.stdout
    again = medchain("backup", "--home", str(home.root), "--out", str(tmp_path / "bk"))
    assert again.returncode != 0 and "not empty" in again.stdout + again.stderr

    ok = medchain("restore", "--from", str(tmp_path / "bk"), "--home", str(tmp_path / "new"))
    assert ok.returncode == 0, ok.stderr
    restored = ChainDB(tmp_path / "new" / "data" / "chain.db")
    assert (restored.height, restored.app_hash) == (3, app_hash)
    restored.close()

    keys = tmp_path / "bk" / "operators.json"
    keys.write_text('[{"suite": "sm", "public_key": "00"}]')  # an operator slipped in
    bad = medchain("restore", "--from", str(tmp_path / "bk"), "--home", str(tmp_path / "new2"))
    assert bad.returncode != 0
    assert "operators.json does not match its SM3" in bad.stdout + bad.stderr
    assert not (tmp_path / "new2").exists()


def test_edge_restore_command_reapplies_erasures_and_leaves_nothing_on_a_wrong_key(
    tmp_path: Path,
) -> None:
    consortium = running_consortium(tmp_path)
    world = next(consortium)
    try:
        out = medchain(
            "edge", "backup", "--vault-dir", str(world.edge.vault.root),
            "--out", str(tmp_path / "bk"),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        world.ok("patient", "records", "erase", {"record_id": "rx-1", "reason": "my right"})
        home = NodeHome(tmp_path / "home")
        home.keystore.save("hosp-a", world.keys["admin_a"], "correct horse", iterations=1000)
        home.keystore.save("other", world.keys["doctor_b"], "correct horse", iterations=1000)
        url = world.node.url
        common = ("--from", str(tmp_path / "bk"), "--home", str(home.root), "--node", url)

        wrong = medchain("edge", "restore", *common, "--vault-dir", str(tmp_path / "v1"),
                         "--key", "other")  # fmt: skip
        assert wrong.returncode != 0 and "not made for the key" in wrong.stdout + wrong.stderr
        assert not (tmp_path / "v1").exists()  # nothing left that could serve rx-1

        ok = medchain("edge", "restore", *common, "--vault-dir", str(tmp_path / "v2"),
                      "--key", "hosp-a")  # fmt: skip
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "re-applied 1 erasures" in ok.stdout
        vault = Vault(tmp_path / "v2", world.keys["admin_a"])
        assert not vault.has("rx-1") and vault.has("report-1")
        vault.close()
    finally:
        consortium.close()


COMET_FIRST_IP = "127.0.41.1"  # apart from the other localnet tests (3, 5-8, 14-18, 22-31, 77)


def commit_via(rpcs: list[str], raws: list[bytes]) -> None:
    """Send txs to these CometBFT RPCs in turn; wait until each is committed with code 0."""
    with httpx.Client(timeout=30) as http:
        for i, raw in enumerate(raws):
            body = {
                "jsonrpc": "2.0",
                "id": i,
                "method": "broadcast_tx_sync",
                "params": {"tx": base64.b64encode(raw).decode()},
            }
            assert http.post(rpcs[i % len(rpcs)], json=body).json()["result"]["code"] == 0
    for raw in raws:
        tx_hash = "0x" + hashlib.sha256(raw).hexdigest()
        wait_until(lambda h=tx_hash: committed_code(rpcs[0], h) is not None, 120, "a commit")
        assert committed_code(rpcs[0], tx_hash) == 0


def test_a_restored_cometbft_node_catches_up_by_block_sync(tmp_path: Path) -> None:
    """A validator's machine is lost: its backup (taken with CometBFT stopped, so its
    block store comes along) is restored on a new machine as a full node, which
    block-syncs the blocks made since and agrees with the validators."""
    try:
        cometbft_binary()
    except CometBFTNotFound as e:
        pytest.skip(str(e))
    net = Localnet(tmp_path / "localnet")
    net.create(4, COMET_FIRST_IP)
    try:
        net.up()
        net.wait_serving(120)
        rpcs = [node.rpc for node in net.nodes]
        commit_via(rpcs, [patient_registration(net.chain_id) for _ in range(20)])
        lost = net.nodes[3]
        with pytest.raises(backup.BackupError, match="CometBFT is running"):
            backup.backup_node(lost.home, tmp_path / "refused", with_cometbft_data=True)
        net.stop_node(3)
        manifest = backup.backup_node(lost.home, tmp_path / "bk", with_cometbft_data=True)
        assert manifest.chain_height is not None and manifest.chain_height > 0
        assert not any("priv_validator" in name for name in manifest.files)
        txs = [patient_registration(net.chain_id) for _ in range(20)]
        commit_via(rpcs[:3], txs)  # three validators of four go on

        backup.restore(tmp_path / "bk", tmp_path / "localnet" / "node4", "node")
        joiner = net.add_node(state_sync=False)  # keeps the restored config, data and DB
        net.start_node(joiner)
        target = int(rpc(net.nodes[0].rpc, "status")["sync_info"]["latest_block_height"])
        assert target > manifest.chain_height
        joined = net.nodes[joiner]
        wait_until(
            lambda: int(rpc(joined.rpc, "status")["sync_info"]["latest_block_height"]) > target,
            180,
            "the restored node to catch up",
        )
        assert header_app_hash(joined.rpc, target) == header_app_hash(net.nodes[0].rpc, target)
        restored_db = ChainDB(joined.home / "medchain" / "chain.db")
        assert restored_db.height >= target
        assert restored_db.roots(target) == ChainDB(
            net.nodes[0].home / "medchain" / "chain.db"
        ).roots(target)
    finally:
        net.down()


def test_an_edge_backup_during_writes_names_only_blobs_it_holds(tmp_path: Path) -> None:
    custodian, patient = crypto.generate_keypair(), crypto.generate_keypair()
    vault = Vault(tmp_path / "vault", custodian)
    for i in range(30):
        vault.store(f"rec-{i}", f'{{"n": {i}}}'.encode(), patient.public)
    happened: list[str] = []

    def meanwhile(name: str, done: int, total: int) -> None:
        if name == "vault.db" and done == total and not happened:  # snapshot taken
            # An erasure shreds the blob first, then deletes the rows; its WAL scrub waits
            # for the copy's read transaction, so here the blob is gone, the row is not.
            (vault.root / "blobs" / vault.cid("rec-3")).unlink()
            vault.store("late", b'{"late": true}', patient.public)  # after the snapshot
            happened.append(name)

    manifest = backup.backup_edge(vault.root, tmp_path / "bk", meanwhile)
    assert happened
    cid_3 = (
        sqlite3.connect(tmp_path / "bk" / "vault.db")
        .execute("SELECT cid FROM records WHERE record_id = 'rec-3'")
        .fetchone()[0]
    )
    assert manifest.missing_blobs == (cid_3,)
    backup.restore(tmp_path / "bk", tmp_path / "restored", "edge")
    restored = Vault(tmp_path / "restored", custodian)
    assert not restored.has("late")  # after the snapshot: not in this backup
    for i in range(30):
        if i != 3:
            assert restored.plaintext(f"rec-{i}") == f'{{"n": {i}}}'.encode()
    assert restored.has("rec-3")  # the chain's erasure, re-applied at sync, removes it
    restored.erase("rec-3", now_ms=T0)
    assert not restored.has("rec-3")
