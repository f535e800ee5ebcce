"""Where a custodian edge's vault lives: one per organisation, <home>/vaults/<org_id>.

Before, an edge kept its vault under <home>/edge/<key name>, so the same
organisation's edge started with another key name opened an empty vault (and then
republished the organisation's endpoint on chain, sending requesters to an edge that
holds nothing). Now the vault is found by organisation; a vault at the older
location is still used, and said so, when its key-encryption key opens with this
edge's key (it is this key's, so this organisation's, vault). `--vault-dir` names
the directory outright (a restored backup, a mounted volume).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medchain import crypto
from medchain.edge.custodian import CustodianEdge, EdgeError, Refused
from medchain.edge.vault import Vault
from medchain.sdk.client import Client
from medchain.sdk.tls import ClientTls

VAULTS_DIR = "vaults"
LEGACY_DIR = "edge"  # <home>/edge/<key name>: where vaults were kept before
KEK_FILE = "kek.sm2"  # edge/vault.py: present once a vault was made there
ORG_DIR_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")  # identity's OrgId


@dataclass(frozen=True)
class VaultPlace:
    """The directory an edge opens its vault in, and, when it is the older location,
    the sentence that says so."""

    root: Path
    note: str = ""


def org_of(client: Client, key: crypto.KeyPair) -> str:
    """The organisation `key` is active staff of, from the chain (Refused if none)."""
    account = client.account(key)
    if account["did"] is None or account["status"] != "active":
        raise Refused(
            f"the edge's operator key is {account['status']} on chain",
            "add it as staff of your organisation (identity.add_member) first",
        )
    org_id = client.member(account["did"])["org_id"]
    if org_id is None:
        raise Refused("the edge's operator key is not staff of an organisation")
    return str(org_id)


def org_vault_dir(home: Path, org_id: str) -> Path:
    """<home>/vaults/<org_id>: the default vault directory of an organisation's edge."""
    if not ORG_DIR_NAME.fullmatch(org_id):  # the chain allows no other ids; never a path
        raise EdgeError(f"organisation id {org_id!r} cannot name a vault directory")
    return home / VAULTS_DIR / org_id


def opens_with(root: Path, key: crypto.KeyPair) -> bool:
    """Whether the vault at `root` was made for `key`: its key-encryption key unwraps."""
    try:
        crypto.unwrap_key(key, (root / KEK_FILE).read_bytes())
    except (OSError, crypto.DecryptionFailed, crypto.UnknownSuite):
        return False
    return True


def choose_vault_dir(
    home: Path, org_id: str, key: crypto.KeyPair, given: Path | None = None, name: str = ""
) -> VaultPlace:
    """The vault directory of `org_id`'s edge run with `key` on `home`: `given` if any;
    else <home>/vaults/<org_id> if it holds a vault; else a vault of this key at the
    older <home>/edge/<name> (`name` first, kept in place, with a note); else a new
    <home>/vaults/<org_id>. A vault there made for another key is refused with what
    to do (its records' keys open only with the key that made it)."""
    if given is not None:
        return VaultPlace(given)
    place = org_vault_dir(home, org_id)
    if (place / KEK_FILE).exists():
        if not opens_with(place, key):
            raise EdgeError(
                f"the vault at {place} was made by another key of {org_id}",
                "start the edge with the key that made it, or pass --vault-dir",
            )
        return VaultPlace(place)
    legacy = home / LEGACY_DIR
    olds = sorted(legacy.iterdir()) if legacy.is_dir() else []
    olds.sort(key=lambda p: p.name != name)  # the key's own name first
    for old in olds:
        if old.is_dir() and (old / KEK_FILE).exists() and opens_with(old, key):
            return VaultPlace(
                old,
                f"using {org_id}'s vault at its older location {old}; to move it to "
                f"{place}, stop the edge and move the directory (or keep --vault-dir {old})",
            )
    return VaultPlace(place)


def open_org_edge(
    home: Path,
    key: crypto.KeyPair,
    node_url: str | Sequence[str],
    name: str,
    tls: ClientTls | None = None,
    vault_dir: Path | None = None,
    refuse_empty: bool = False,
) -> tuple[CustodianEdge, VaultPlace]:
    """The edge of the organisation `key` (stored as `name`) is staff of, over the vault
    `choose_vault_dir` picks, and that choice (its note says when it is the older
    location); it reaches the node trusting (and presenting) `tls`, failing over to
    the other nodes of `node_url` when given several (its own first). With
    `refuse_empty` (an edge about to publish its endpoint), an empty or absent vault
    while the chain lists records of the organisation is refused (`refuse_empty_vault`)
    before a new vault directory is made, so a wrong start leaves nothing behind."""
    client = Client(node_url, tls=tls, key=key)  # the edge reads as its org's key
    org_id = org_of(client, key)
    place = choose_vault_dir(home, org_id, key, vault_dir, name)
    if refuse_empty and not (place.root / KEK_FILE).exists():
        _refuse_if_chain_holds(client, org_id, place.root)
    edge = CustodianEdge(Vault(place.root, key), key, client)
    if refuse_empty:
        refuse_empty_vault(edge)
    return edge, place


def chain_record_count(client: Client, org_id: str) -> int:
    """How many live records the chain lists with `org_id` as custodian
    (GET /v1/orgs/<org>/records/count, a read signed by the client's key: the org's
    staff or a node operator)."""
    return int(client.get(f"/v1/orgs/{org_id}/records/count")["records"])


def refuse_empty_vault(edge: CustodianEdge) -> None:
    """Before an edge publishes its endpoint: an empty vault while the chain lists
    records of its organisation means the edge opened the wrong directory (or lost its
    vault), and publishing would send every requester to an edge that holds none of
    them. EdgeError names the directory, the chain's count and what to do."""
    if edge.vault.count() == 0:
        _refuse_if_chain_holds(edge.node, edge.org_id, edge.vault.root)


def _refuse_if_chain_holds(client: Client, org_id: str, root: Path) -> None:
    held = chain_record_count(client, org_id)
    if held > 0:
        raise EdgeError(
            f"the vault this edge opened at {root} is empty, but the chain lists "
            f"{held} record(s) of {org_id}; not publishing this edge's endpoint",
            f"point --vault-dir (or [edge] vault_dir in medchain.toml) at {org_id}'s vault, "
            "or restore its backup into that directory (docs/operations.md)",
        )
