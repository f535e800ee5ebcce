"""`medchain htlc`: cross-chain atomic exchange between two MedChain networks.

A governor of each network registers the other (its solo node's header key, or its
CometBFT validator set). The party with the secret locks first (`lock --secret
FILE` makes the preimage and keeps it in FILE); the other party locks second,
naming the first lock (`--counterpart-node/--counterpart-lock`): its chain checks
that lock through its light client. Claims publish the preimage; `relay` carries it
(and headers) between the networks, and `claim --from-node/--from-lock` does the
same by hand when no relayer does. `refund` after the timeout height.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from medchain import crypto
from medchain.cli.common import (
    DEFAULT_HOME,
    DEFAULT_URL,
    Home,
    NodeUrl,
    client_failed,
    comma_list,
    console,
    fail,
    load_key,
)
from medchain.cli.health import Key, send_or_fail, submit_or_fail
from medchain.cli.scripting import emit
from medchain.sdk.client import Client, ClientError

htlc_app = typer.Typer(
    help="Cross-chain atomic exchange: hash-time locks checked by light clients.",
    no_args_is_help=True,
)
DAY_MS = 86_400_000
SECRET_FORMAT = "medchain/htlc-secret/v1"
OtherNode = Annotated[str, typer.Option("--other", help="a gateway URL of the other network")]


def register(app: typer.Typer) -> None:
    """Add the `htlc` command group."""
    app.add_typer(htlc_app, name="htlc")


@htlc_app.command("register-counterparty")
def register_counterparty(
    other: OtherNode,
    key: Key,
    expect_key: Annotated[
        str,
        typer.Option(help="solo: the header key (hex) the other network's operators publish"),
    ] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Follow the other network from its current root (a consortium admin or regulator).
    The root is read from the other network's gateway: compare it with what its
    operators publish (--expect-key does it for a solo node)."""
    from medchain.network.htlc_relay import Side

    try:
        payload = Side(Client(other)).registration()
    except ClientError as e:
        client_failed(e)
    if expect_key and payload.get("public_key", b"").hex() != expect_key.lower():
        fail(
            f"{other} signs headers with {payload.get('public_key', b'').hex()}, not {expect_key}",
            "ask the other network's operators which key is theirs",
        )
    out = send_or_fail(node, home, key, "htlc", "register_counterparty", payload)
    root = payload.get("public_key", payload.get("header_hash", b"")).hex()
    console.print(
        f"{payload['chain_id']} ({payload['engine']}) followed from root {root} at height "
        f"{out['height']}."
    )


@htlc_app.command("lock")
def lock(
    lock_id: Annotated[str, typer.Argument(help="a new lock id")],
    recipient: Annotated[str, typer.Option(help="DID the asset goes to on claim")],
    key: Key,
    timeout_blocks: Annotated[int, typer.Option(min=1, help="claimable for this many blocks")],
    tokens: Annotated[int, typer.Option(help="lock this many of your tokens")] = 0,
    records: Annotated[str, typer.Option(help="or offer these records (comma separated)")] = "",
    purposes: Annotated[str, typer.Option(help="the offer's purposes of use")] = "TREAT",
    days: Annotated[int, typer.Option(min=1, help="the offer's grant lasts")] = 30,
    secret: Annotated[
        Path | None, typer.Option(help="first lock: make a preimage and keep it in this file")
    ] = None,
    hashlock: Annotated[str, typer.Option(help="or lock under this SM3 hashlock (hex)")] = "",
    counterpart_node: Annotated[
        str, typer.Option(help="second lock: a gateway of the network holding the first lock")
    ] = "",
    counterpart_lock: Annotated[str, typer.Option(help="second lock: the first lock's id")] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Lock tokens, or offer a record package (patients), under a hashlock. A second lock
    names the first (--counterpart-*); its hashlock is taken from it, and the header
    its proof needs is relayed first if no relayer did."""
    from medchain.network.htlc_relay import Side, counterpart

    if (tokens > 0) == bool(records):
        fail("give --tokens or --records")
    asset: dict[str, Any] = (
        {"kind": "token", "amount": tokens}
        if tokens
        else {
            "kind": "grant",
            "records": comma_list(records),
            "purposes": comma_list(purposes),
            "duration_ms": days * DAY_MS,
        }
    )
    signer = load_key(home, key)
    here = Side(Client(node, key=signer))
    try:
        payload: dict[str, Any] = {
            "lock_id": lock_id,
            "recipient": recipient,
            "asset": asset,
            "timeout_height": here.height() + timeout_blocks,
        }
        if counterpart_node or counterpart_lock:
            if not (counterpart_node and counterpart_lock):
                fail("give both --counterpart-node and --counterpart-lock")
            there = Side(Client(counterpart_node, key=signer))
            view = there.lock_view(counterpart_lock)
            if view is None:
                fail(f"{counterpart_node} holds no lock {counterpart_lock!r}")
            payload["hashlock"] = bytes.fromhex(view["hashlock"])
            payload["counterpart"] = counterpart(there, here, counterpart_lock, signer)
        elif hashlock:
            payload["hashlock"] = bytes.fromhex(hashlock)
        elif secret is not None:
            payload["hashlock"] = _new_secret(secret, lock_id)
        else:
            fail("a first lock needs --secret FILE (or --hashlock); a second --counterpart-*")
    except ClientError as e:
        client_failed(e)
    out = submit_or_fail(here.client, signer, "htlc", "lock", payload)
    console.print(
        f"Locked {lock_id} until height {payload['timeout_height']} "
        f"(hashlock {payload['hashlock'].hex()}) at height {out['height']}."
    )


def _new_secret(path: Path, lock_id: str) -> bytes:
    """A fresh 32-byte preimage, written (mode 0600) before anything is locked with it."""
    preimage = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"format": SECRET_FORMAT, "lock_id": lock_id, "preimage": preimage.hex()}, f)
    return crypto.sm3(preimage)


@htlc_app.command("claim")
def claim(
    lock_id: Annotated[str, typer.Argument(help="the lock to complete")],
    key: Key,
    preimage: Annotated[str, typer.Option(help="the preimage (hex)")] = "",
    secret: Annotated[Path | None, typer.Option(help="or the file `lock --secret` wrote")] = None,
    from_node: Annotated[
        str, typer.Option(help="or read it from a claimed lock on this other network")
    ] = "",
    from_lock: Annotated[str, typer.Option(help="that lock's id (default: the same id)")] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Complete a lock for its recipient with the preimage (anyone may, before the
    timeout): the way to finish a swap when no relayer carries the preimage."""
    from medchain.network.htlc_relay import Side

    if secret is not None:
        preimage = json.loads(secret.read_text())["preimage"]
    elif from_node:
        try:
            view = Side(Client(from_node)).lock_view(from_lock or lock_id)
        except ClientError as e:
            client_failed(e)
        if view is None or "preimage" not in view:
            fail(f"{from_node} shows no claimed lock {from_lock or lock_id!r} yet", "try later")
        preimage = view["preimage"]
    if not preimage:
        fail("give --preimage, --secret or --from-node")
    payload = {"lock_id": lock_id, "preimage": bytes.fromhex(preimage)}
    out = send_or_fail(node, home, key, "htlc", "claim", payload)
    console.print(f"{lock_id} claimed at height {out['height']}.")


@htlc_app.command("refund")
def refund(
    lock_id: Annotated[str, typer.Argument(help="a lock past its timeout height")],
    key: Key,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Give a timed-out lock's asset back to its locker (anyone may)."""
    out = send_or_fail(node, home, key, "htlc", "refund", {"lock_id": lock_id})
    console.print(f"{lock_id} refunded at height {out['height']}.")


@htlc_app.command("show")
def show(
    lock_id: Annotated[str, typer.Argument(help="the lock")],
    key: Annotated[str, typer.Option("--key", help="a party's key: show the terms too")] = "",
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """A lock's public view (status, hashlock, deadline, preimage once claimed); with a
    party's --key, who locked what for whom."""
    try:
        if key:
            found = Client(node, key=load_key(home, key)).get(f"/v1/htlc/locks/{lock_id}/terms")
        else:
            found = Client(node).get(f"/v1/htlc/locks/{lock_id}")
    except ClientError as e:
        client_failed(e)
    emit(found)


@htlc_app.command("relay")
def relay(
    a: Annotated[str, typer.Option("--a", help="a gateway URL of network A")],
    b: Annotated[str, typer.Option("--b", help="a gateway URL of network B")],
    key: Key,
    interval: Annotated[float, typer.Option(min=0.05, help="seconds between rounds")] = 0.5,
    once: Annotated[bool, typer.Option("--once", help="one round, then exit")] = False,
    home: Home = DEFAULT_HOME,
    node: NodeUrl = DEFAULT_URL,
) -> None:
    """Carry headers and claimed preimages between two networks until stopped. The
    key needs to be a member of both (any role): it pays for nothing and is trusted
    with nothing. (--node is accepted like everywhere; --a and --b say where.)"""
    from medchain.network.htlc_relay import Relayer, Side

    del node
    signer = load_key(home, key)
    relayer = Relayer(Side(Client(a, key=signer)), Side(Client(b, key=signer)), signer)
    if once:
        try:
            sent = relayer.step()
        except ClientError as e:
            client_failed(e)
        emit({"sent": sent}, lambda: console.print(f"{sent} tx(s) relayed."))
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print(f"Relaying between {a} and {b}; Ctrl-C stops.")
    try:
        relayer.run(stop, interval)
    except KeyboardInterrupt:
        stop.set()
