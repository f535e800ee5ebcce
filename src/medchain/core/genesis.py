"""Genesis: the agreed starting point of a chain.

A genesis file is JSON (people edit it); what reaches state is its canonical
CBOR form, so every node derives the same genesis app hash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from medchain import crypto, encoding
from medchain.core.tx import DEFAULT_MAX_TX_BYTES
from medchain.exceptions import MedChainError

_CHAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ORG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")


class GenesisError(MedChainError, ValueError):
    """The genesis file is not valid; the message says which field."""


ADMIN_GOVERNANCE, VOTE_GOVERNANCE = "admin", "vote"
GOVERNANCE_MODES = frozenset({ADMIN_GOVERNANCE, VOTE_GOVERNANCE})


@dataclass(frozen=True)
class Params:
    """Consensus parameters every node must share."""

    max_tx_bytes: int = DEFAULT_MAX_TX_BYTES
    max_block_txs: int = 5000
    max_block_bytes: int = 16 * 1024 * 1024
    # Who changes consortium-wide settings after genesis: "admin" (development, the
    # demo: the consortium admin acts directly) or "vote" (a deployment: only an
    # accepted governance proposal may; the admin can only propose).
    governance: str = ADMIN_GOVERNANCE

    def __post_init__(self) -> None:
        if self.governance not in GOVERNANCE_MODES:
            raise GenesisError(f"params.governance: one of {sorted(GOVERNANCE_MODES)}")

    def to_dict(self) -> dict[str, int | str]:
        """The parameters as stored at genesis and written in genesis.json; `governance`
        appears only when not "admin", so chains made before it keep their genesis hash."""
        doc: dict[str, int | str] = {
            "max_tx_bytes": self.max_tx_bytes,
            "max_block_txs": self.max_block_txs,
            "max_block_bytes": self.max_block_bytes,
        }
        if self.governance != ADMIN_GOVERNANCE:
            doc["governance"] = self.governance
        return doc


# A business chain runs the health-record contracts; a regulator chain (its own
# genesis and validators) runs supervision over relayed business-chain digests.
BUSINESS, REGULATOR = "business", "regulator"
PROFILES = frozenset({BUSINESS, REGULATOR})


@dataclass(frozen=True)
class GenesisKey:
    """A named public key in genesis."""

    name: str
    suite: str
    public_key: bytes

    def to_dict(self) -> dict[str, Any]:
        """The key as genesis.json holds it (public key as hex)."""
        return {"name": self.name, "suite": self.suite, "public_key": self.public_key.hex()}


@dataclass(frozen=True)
class GenesisOrg:
    """A founding consortium member organisation and its first admin."""

    org_id: str
    name: str
    org_type: str
    admin: GenesisKey

    def to_dict(self) -> dict[str, Any]:
        """The organisation as genesis.json holds it."""
        return {
            "org_id": self.org_id,
            "name": self.name,
            "org_type": self.org_type,
            "admin": self.admin.to_dict(),
        }


@dataclass(frozen=True)
class Genesis:
    """A parsed, validated genesis document."""

    chain_id: str
    genesis_time_ms: int
    consortium_admins: tuple[GenesisKey, ...]
    orgs: tuple[GenesisOrg, ...] = ()
    validators: tuple[dict[str, Any], ...] = ()
    params: Params = field(default_factory=Params)
    profile: str = BUSINESS  # which system contracts the chain runs
    # Founding override of which roles each kind of organisation may hold
    # ((kind, roles) pairs); kinds not named keep the identity contract's defaults.
    org_roles: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The genesis document; `profile` and `org_roles` appear only when not the defaults."""
        doc = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "params": self.params.to_dict(),
            "consortium_admins": [k.to_dict() for k in self.consortium_admins],
            "orgs": [o.to_dict() for o in self.orgs],
            "validators": list(self.validators),
        }
        if self.profile != BUSINESS:
            doc["profile"] = self.profile
        if self.org_roles:
            doc["org_roles"] = {kind: list(roles) for kind, roles in self.org_roles}
        return doc

    def to_json(self) -> str:
        """genesis.json as `medchain init` writes it (sorted keys, so every node's copy
        has the same bytes)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @property
    def hash(self) -> bytes:
        """SM3 of the canonical CBOR of the genesis document."""
        return crypto.sm3(encoding.encode(self.to_dict()))


def _key(d: Any, where: str) -> GenesisKey:
    if not isinstance(d, dict):
        raise GenesisError(f"{where}: expected an object with name, suite, public_key")
    try:
        name, suite, public_hex = d["name"], d.get("suite", "sm"), d["public_key"]
        public = bytes.fromhex(public_hex)
    except (KeyError, TypeError, ValueError) as e:
        raise GenesisError(f"{where}: {e}") from None
    try:
        size = crypto.get_suite(suite).public_key_size
    except crypto.UnknownSuite as e:
        raise GenesisError(f"{where}: {e}") from None
    if len(public) != size or not isinstance(name, str) or not name:
        raise GenesisError(f"{where}: public_key must be {size} bytes of hex; name non-empty")
    return GenesisKey(name, suite, public)


def parse_genesis(doc: Any) -> Genesis:
    """Validate a genesis document (parsed JSON) and build a Genesis."""
    if not isinstance(doc, dict):
        raise GenesisError("genesis must be a JSON object")
    chain_id = doc.get("chain_id")
    if not isinstance(chain_id, str) or not _CHAIN_ID.fullmatch(chain_id):
        raise GenesisError("chain_id: 1-64 letters, digits, '.', '_' or '-'")
    time_ms = doc.get("genesis_time_ms")
    if type(time_ms) is not int or time_ms < 0:
        raise GenesisError("genesis_time_ms: a non-negative integer (ms since 1970)")
    admins = tuple(
        _key(k, f"consortium_admins[{i}]") for i, k in enumerate(doc.get("consortium_admins", []))
    )
    if not admins:
        raise GenesisError("consortium_admins: at least one key is required")
    orgs = []
    for i, o in enumerate(doc.get("orgs", [])):
        where = f"orgs[{i}]"
        if not isinstance(o, dict) or not _ORG_ID.fullmatch(str(o.get("org_id", ""))):
            raise GenesisError(f"{where}.org_id: lower-case letters, digits and '-'")
        orgs.append(
            GenesisOrg(
                o["org_id"],
                str(o.get("name", o["org_id"])),
                str(o.get("org_type", "")),
                _key(o.get("admin"), f"{where}.admin"),
            )
        )
    p = doc.get("params", {})
    try:
        fields: dict[str, Any] = {k: v if k == "governance" else int(v) for k, v in p.items()}
        params = Params(**fields)
    except (TypeError, ValueError) as e:
        raise GenesisError(f"params: {e}") from None
    validators = tuple(
        _validator(v, f"validators[{i}]") for i, v in enumerate(doc.get("validators", []))
    )
    profile = doc.get("profile", BUSINESS)
    if profile not in PROFILES:
        raise GenesisError(f"profile: one of {sorted(PROFILES)}")
    org_roles = _org_roles(doc.get("org_roles", {}))
    return Genesis(chain_id, time_ms, admins, tuple(orgs), validators, params, profile, org_roles)


def _org_roles(d: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """{"<org kind>": ["<role>", ...]}; the identity contract checks the vocabulary."""
    if not isinstance(d, dict):
        raise GenesisError("org_roles: an object mapping an organisation kind to its roles")
    pairs = []
    for kind, roles in sorted(d.items()):
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise GenesisError(f"org_roles.{kind}: a list of role names")
        pairs.append((str(kind), tuple(sorted(set(roles)))))
    return tuple(pairs)


def _validator(v: Any, where: str) -> dict[str, Any]:
    """{"name", "pub_key" (hex of a 32-byte Ed25519 key), "power" (>= 1)}."""
    try:
        name, pub_key, power = str(v.get("name", "")), bytes.fromhex(v["pub_key"]), v["power"]
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise GenesisError(f"{where}: needs pub_key (hex) and power: {e}") from None
    if len(pub_key) != 32 or type(power) is not int or power < 1:
        raise GenesisError(f"{where}: pub_key must be 32 bytes of hex and power >= 1")
    return {"name": name, "pub_key": pub_key.hex(), "power": power}


def load_genesis(text: str) -> Genesis:
    """Parse genesis JSON text."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenesisError(f"genesis is not valid JSON: {e}") from None
    return parse_genesis(doc)
