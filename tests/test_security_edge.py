"""Issue 12, the custodian edge: what erasure leaves on disk, what a record carries
past a role, what search tells a stranger, replayed requests and rotated-out keys.

Each test here failed on the code before its fix. Real node, real edge, real
SQLite files; nothing mocked.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_exchange_e2e import Consortium, fetch, running_consortium

from medchain import crypto

ERASE_ME = "ERASE-ME-7f3a9c41"  # a code only the erased record carries
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "urn:oid:1.2.3.4", "code": ERASE_ME}]},
    "effectiveDateTime": "2024-03-01",
    "valueString": f"distinctive result {ERASE_ME}",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Consortium]:
    yield from running_consortium(tmp_path)


def files_holding(root: Path, secret: bytes) -> list[str]:
    """Every file under `root` (database, WAL, shared memory, blobs, anything) that
    contains `secret` anywhere in its bytes."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and secret in path.read_bytes()
    )


def vault_secrets(vault_db: Path, record_id: str) -> dict[str, bytes]:
    """A record's secrets as the vault's own tables hold them (read before erasure)."""
    conn = sqlite3.connect(f"file:{vault_db}?mode=ro", uri=True)
    try:
        cid, salt = conn.execute(
            "SELECT cid, salt FROM records WHERE record_id = ?", (record_id,)
        ).fetchone()
        wrapped = conn.execute("SELECT recipient, wrapped FROM wrapped_keys WHERE cid = ?", (cid,))
        found = {f"wrapped key for {bytes(r).hex()[:12]}": bytes(w) for r, w in wrapped}
        codes = conn.execute(
            "SELECT code FROM search_codes WHERE record_id = ?", (record_id,)
        ).fetchall()
    finally:
        conn.close()
    assert [c for (c,) in codes] == [ERASE_ME]
    return {"salt": bytes(salt), **found}


def test_erasure_leaves_no_key_salt_or_index_bytes_anywhere_on_disk(world: Consortium) -> None:
    patient = world.did("patient")
    r = world.upload("admin_a", json.dumps(OBSERVATION).encode(), patient, record_id="obs-erase")
    assert r.status_code == 201, r.text
    world.grant("doctor_b", ["Observation"])
    assert fetch(world, "doctor_b", "obs-erase")  # a grantee's wrapped key is now stored too
    root = world.edge.vault.root
    secrets = vault_secrets(root / "vault.db", "obs-erase")
    assert len(secrets) == 4  # salt, custodian (KEK) copy, patient's and grantee's keys
    wrapped_for_patient = world.edge.vault.wrapped_key("obs-erase", world.keys["patient"].public)
    secrets["data key"] = crypto.unwrap_key(world.keys["patient"], wrapped_for_patient)
    secrets["plaintext"] = ERASE_ME.encode()
    assert files_holding(root, secrets["salt"])  # the scan does see what is there

    world.ok("patient", "records", "erase", {"record_id": "obs-erase"})
    deadline = time.monotonic() + 20
    while httpx.get(f"{world.edge_url}/edge/v1/receipts/obs-erase").status_code != 200:
        assert time.monotonic() < deadline, "the edge issued no purge receipt"
        time.sleep(0.1)

    left = {name: files_holding(root, secret) for name, secret in secrets.items()}
    assert left == {name: [] for name in secrets}
