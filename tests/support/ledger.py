"""A real Application on a SQLite file, driven one block at a time, and the
signed reads tests send to a gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medchain import crypto, encoding
from medchain.consensus.application import Application
from medchain.contracts.identity.model import did_for_key
from medchain.core.block import Block, BlockResult, TxResult
from medchain.core.genesis import parse_genesis
from medchain.core.tx import build_tx, key_id
from medchain.exceptions import Code
from medchain.storage.chain_db import ChainDB

CHAIN_ID = "medchain-test"
REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


class Ledger:
    """An Application on a real SQLite file; each `run` commits one block."""

    def __init__(
        self,
        path: Path,
        admin: crypto.KeyPair,
        profile: str = "business",
        chain_id: str = CHAIN_ID,
        **params: int,
    ) -> None:
        self.admin = admin
        self.chain_id = chain_id
        self.genesis = parse_genesis(
            {
                "chain_id": chain_id,
                "genesis_time_ms": 1_700_000_000_000,
                "consortium_admins": [
                    {"name": "root", "suite": admin.suite, "public_key": admin.public.hex()}
                ],
                "params": params,
                "profile": profile,
            }
        )
        self.app = Application(ChainDB(path))
        self.app.init_chain(self.genesis)

    def nonce(self, key: crypto.KeyPair) -> int:
        raw = self.app.db.get("nonce/" + key_id(key.suite, key.public).hex())
        return 0 if raw is None else int(encoding.decode(raw))

    def tx(
        self,
        key: crypto.KeyPair,
        contract: str,
        action: str,
        payload: dict[str, Any],
        nonce: int | None = None,
    ) -> bytes:
        return build_tx(
            key,
            chain_id=self.chain_id,
            contract=contract,
            action=action,
            payload=payload,
            nonce=self.nonce(key) if nonce is None else nonce,
        )

    def commit(self, txs: list[bytes]) -> BlockResult:
        db = self.app.db
        block = Block(
            self.chain_id, db.height + 1, db.block_time_ms() + 1000, tuple(txs), db.last_block_hash
        )
        result = self.app.finalize_block(block)
        self.app.commit(result)
        return result

    def run(
        self, key: crypto.KeyPair, action: str, payload: dict[str, Any], contract: str = "identity"
    ) -> TxResult:
        return self.commit([self.tx(key, contract, action, payload)]).tx_results[0]

    def add_org(self, org_id: str, admin: crypto.KeyPair, org_type: str = "hospital") -> None:
        """The consortium admin admits an organisation with `admin` as its org admin."""
        payload = {
            "org_id": org_id,
            "name": org_id,
            "org_type": org_type,
            "admin_public_key": admin.public,
        }
        result = self.run(self.admin, "register_org", payload)
        assert result.code == Code.OK, result.log

    def add_staff(
        self, admin: crypto.KeyPair, org_id: str, member: crypto.KeyPair, roles: list[str]
    ) -> None:
        """An org admin adds a member with `roles`."""
        payload = {"org_id": org_id, "public_key": member.public, "roles": roles}
        result = self.run(admin, "add_member", payload)
        assert result.code == Code.OK, result.log

    def add_patient(self, patient: crypto.KeyPair) -> None:
        result = self.run(patient, "register_patient", {})
        assert result.code == Code.OK, result.log

    def state(self, key: str) -> Any:
        raw = self.app.db.get(key)
        return None if raw is None else encoding.decode(raw)


def patient_registration(chain_id: str) -> bytes:
    """A valid, independent tx: a fresh key registering itself as a patient."""
    return build_tx(
        crypto.generate_keypair(),
        chain_id=chain_id,
        contract="identity",
        action="register_patient",
        payload={},
        nonce=0,
    )


def did_of(key: crypto.KeyPair) -> str:
    return did_for_key(key.suite, key.public)


def signed_get(
    client: Any,
    key: crypto.KeyPair,
    path: str,
    params: dict[str, Any] | None = None,
    purpose: str = "",
    chain_id: str = CHAIN_ID,
) -> Any:
    """GET `path` through a TestClient (or httpx.Client) as a read signed by `key`."""
    from medchain.sdk.signing import sign_request, with_query

    query = {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (params or {}).items()
    }
    target = with_query(path, query)
    return client.get(target, headers=sign_request(key, chain_id, "GET", target, purpose=purpose))


class SignedReads:
    """A TestClient (or httpx.Client) whose GETs are signed by `key`; other calls pass."""

    def __init__(self, client: Any, key: crypto.KeyPair, chain_id: str = CHAIN_ID) -> None:
        self.client, self.key, self.chain_id = client, key, chain_id

    def get(self, path: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        if kw:
            raise TypeError(f"signed reads take only params, not {sorted(kw)}")
        return signed_get(self.client, self.key, path, params, chain_id=self.chain_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)
