"""`medchain sm9`: an organisation's SM9 key generation centre (KGC) from the shell.

The org admin creates the KGC (`kgc-init`: two master secrets, sealed at rest
under a passphrase as the keystore seals keys), publishes its master public keys
on chain (`publish`: identity.set_sm9_master), and issues each sm9 member a key
file for a DID (`issue`: a normal keystore file of suite sm9 that signs as that DID
and opens data keys wrapped to it). An issued key is then added with
`medchain tx identity add_member` (suite sm9), or taken by a member with rotate_key,
and used wherever a command takes `--key`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from medchain import crypto
from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_URL,
    Home,
    NodeUrl,
    console,
    fail,
    passphrase,
)
from medchain.cli.health import Key, send_or_fail
from medchain.cli.scripting import Exit, emit, note_tx
from medchain.contracts.identity.model import is_sm9_did_of, sm9_did
from medchain.crypto import primitives, sm9
from medchain.node import NodeHome
from medchain.sdk.keystore import DEFAULT_ITERATIONS, KeystoreError

sm9_app = typer.Typer(
    help="SM9 identity-based keys: an organisation's KGC, its published master keys, "
    "member key files.",
    no_args_is_help=True,
)
KGC_FORMAT = "medchain-sm9-kgc/1"
Org = Annotated[str, typer.Option("--org", help="your organisation's id on chain")]


def register(app: typer.Typer) -> None:
    """Add the `sm9` command group."""
    app.add_typer(sm9_app, name="sm9")


def kgc_path(home: Path, org: str) -> Path:
    """Where an organisation's KGC file lives in a home (beside its keystore)."""
    return NodeHome(home).root / "kgc" / f"{org}.json"


def seal_kgc(org: str, kgc: crypto.Sm9Master, secret: str) -> dict[str, Any]:
    """The KGC file: public halves in clear (publishing needs no passphrase), both
    master secrets SM4-GCM-sealed under a PBKDF2-SM3 key, bound to the public halves
    and the org id (a file swapped to another org does not open)."""
    salt = primitives.random_bytes(16)
    kek = primitives.pbkdf2_sm3(secret.encode(), salt, DEFAULT_ITERATIONS, 16)
    public = {
        "org_id": org,
        "sign_master_public": kgc.sign_master_public.hex(),
        "enc_master_public": kgc.enc_master_public.hex(),
    }
    sealed = primitives.sm4_gcm_seal(kek, kgc.sign_secret + kgc.enc_secret, _aad(public))
    kdf = {"name": "pbkdf2-hmac-sm3", "salt": salt.hex(), "iterations": DEFAULT_ITERATIONS}
    return {"format": KGC_FORMAT, **public, "kdf": kdf, "cipher": "sm4-gcm", "sealed": sealed.hex()}


def open_kgc(doc: dict[str, Any], secret: str) -> crypto.Sm9Master:
    """The KGC from its file; KeystoreError on a wrong passphrase or an altered file."""
    try:
        if doc["format"] != KGC_FORMAT:
            raise KeystoreError(f"not a KGC file (format {doc['format']!r})")
        kdf = doc["kdf"]
        kek = primitives.pbkdf2_sm3(
            secret.encode(), bytes.fromhex(kdf["salt"]), int(kdf["iterations"]), 16
        )
        plain = primitives.sm4_gcm_open(kek, bytes.fromhex(doc["sealed"]), _aad(doc))
    except primitives.DecryptionFailed:
        raise KeystoreError("wrong passphrase, or the KGC file was altered") from None
    except (KeyError, ValueError, TypeError) as e:
        raise KeystoreError(f"malformed KGC file: {e}") from None
    return crypto.Sm9Master(plain[:32], plain[32:])


def _aad(doc: dict[str, Any]) -> bytes:
    fields = ("org_id", "sign_master_public", "enc_master_public")
    return json.dumps([KGC_FORMAT, *(str(doc[f]) for f in fields)]).encode()


def _read_kgc(home: Path, org: str) -> dict[str, Any]:
    path = kgc_path(home, org)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        fail(
            f"no KGC for {org!r} in {path.parent}", f"create it: medchain sm9 kgc-init --org {org}"
        )
    except json.JSONDecodeError as e:
        fail(f"{path} is not valid JSON: {e}")
    if not isinstance(doc, dict) or doc.get("org_id") != org:
        fail(f"{path} is not {org!r}'s KGC file")
    return doc


@sm9_app.command("kgc-init")
def kgc_init(org: Org, home: Home = DEFAULT_HOME) -> None:
    """Create your organisation's SM9 KGC (master key pair file, sealed under a
    passphrase); the org admin runs it once, on a machine it trusts."""
    path = kgc_path(home, org)
    secret = passphrase(confirm=True, name=f"kgc-{org}")
    kgc = crypto.generate_sm9_master()
    doc = seal_kgc(org, kgc, secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{path} exists: one KGC per organisation", "publish it, or move it away first")
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    info = {k: doc[k] for k in ("org_id", "sign_master_public", "enc_master_public")}
    emit(
        info | {"path": str(path)},
        lambda: console.print(
            f"KGC of {org} in {path}; publish it: medchain sm9 publish --org {org}"
        ),
    )


@sm9_app.command("publish")
def publish(org: Org, key: Key, home: Home = DEFAULT_HOME, node: NodeUrl = DEFAULT_URL) -> None:
    """Put the KGC's master public keys on chain (identity.set_sm9_master, signed by an
    org admin's key): anyone can then verify your sm9 members and wrap keys to them."""
    doc = _read_kgc(home, org)
    payload = {
        "sign_master_public": bytes.fromhex(doc["sign_master_public"]),
        "enc_master_public": bytes.fromhex(doc["enc_master_public"]),
    }
    out = send_or_fail(node, home, key, "identity", "set_sm9_master", payload)
    note_tx(out)
    emit(
        out,
        lambda: console.print(f"published {org}'s SM9 master keys at height {out.get('height')}"),
    )


@sm9_app.command("issue")
def issue(
    org: Org,
    did: Annotated[
        str,
        typer.Option(
            "--did",
            help="the member's DID: a new member's is did:medchain:<org>:<name>; a member "
            "rotating to sm9 keeps its own",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="key file name to write")],
    home: Home = DEFAULT_HOME,
) -> None:
    """Extract a member's SM9 private key for DID into a new key file (its own
    passphrase): it signs as that DID and opens data keys wrapped to it. Hand the file
    to the member; add it with identity.add_member (suite sm9) or let them rotate_key."""
    doc = _read_kgc(home, org)
    if not did.startswith("did:medchain:"):
        fail(f"{did!r} is not a did:medchain DID", f"e.g. {sm9_did(org, 'oncall-cardiology')}")
    try:
        kgc = open_kgc(doc, passphrase(name=f"kgc-{org}"))
        key = kgc.issue(did)
        path = NodeHome(home).keystore.save(name, key, passphrase(confirm=True, name=name))
    except KeystoreError as e:
        fail(str(e), code=Exit.BAD_INPUT)
    except (sm9.SM9Error, FileExistsError) as e:
        fail(str(e))
    new_member = is_sm9_did_of(did, org)
    info = {"name": name, "did": did, "suite": "sm9", "public_key": key.public.hex()}
    emit(
        info | {"path": str(path)},
        lambda: console.print(
            f"{name}: sm9 key for {did} ({path}); "
            + (
                "add it: medchain tx identity add_member (suite sm9)"
                if new_member
                else "the member takes it with identity.rotate_key (new_suite sm9)"
            )
        ),
    )
