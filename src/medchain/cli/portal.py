"""`medchain portal`: the personal web pages on 127.0.0.1, signing with your key file.

The key file is unlocked here, in this process on your machine; the pages sign
reads and transactions with it through the SDK. The printed link signs in the
browser that opens it (see medchain.portal.guard for why a link, not just the port).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medchain.cli.common import (
    DEFAULT_URL,
    NodeUrl,
    console,
    fail,
    passphrase,
    serve_until_interrupted,
)
from medchain.sdk.client import Client, ClientError
from medchain.sdk.keystore import KeystoreError, decrypt_key

DEFAULT_PORTAL_PORT = 8780


def register(app: typer.Typer) -> None:
    """Add `medchain portal`."""
    app.command("portal")(portal)


def portal(
    key: Annotated[
        Path, typer.Option("--key", exists=True, dir_okay=False, help="your key file (JSON)")
    ],
    node: NodeUrl = DEFAULT_URL,
    port: Annotated[
        int, typer.Option(help="port on 127.0.0.1", min=1, max=65535)
    ] = DEFAULT_PORTAL_PORT,
    edge: Annotated[
        str | None,
        typer.Option(
            help="your organisation's edge URL, for the admin pages (default: from chain)"
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=URL: a business chain relayed to this regulator chain and its node, "
            "whose public status gives the regulator's stream page the chain's height "
            "(repeat for each)"
        ),
    ] = None,
    trust: Annotated[
        str | None,
        typer.Option(
            help="the explorer's trust root: a solo node's header_key.json, a CometBFT "
            "genesis.json, or HEIGHT:HASH of a CometBFT header (see docs/web.md)"
        ),
    ] = None,
) -> None:
    """Serve your patient, clinician, admin, regulator and explorer pages on
    127.0.0.1, signing with your key; open the link it prints."""
    from medchain.portal.app import PortalServer
    from medchain.portal.trust import Untrusted, load_root, set_root

    try:
        doc = json.loads(key.read_text())
        signer = decrypt_key(doc, passphrase(name=str(doc.get("name") or key.stem)))
    except (ValueError, AttributeError) as e:
        fail(f"{key} is not a key file: {e}", "give the JSON file `medchain keys new` wrote")
    except KeystoreError as e:
        fail(str(e), "check the passphrase (MEDCHAIN_PASSPHRASE) and the file")
    server = PortalServer(Client(node, key=signer), signer, port, edge)
    for item in source or []:
        name, sep, url = item.partition("=")
        if not (sep and name and url.startswith(("http://", "https://"))):
            fail(f"--source {item}: not NAME=URL", "e.g. --source medchain-1=https://10.0.0.5:8700")
        server.app.state.regulator_sources[name] = url
    if trust is not None:
        client = server.portal.node
        try:
            root = load_root(trust, lambda h: client.get(f"/v1/chain/signed-header/{h}"))
        except (ValueError, OSError, KeyError, ClientError, Untrusted) as e:
            fail(f"--trust {trust!r}: {e}", "give a header key file, a genesis.json or HEIGHT:HASH")
        set_root(server.app, root)
    try:
        server.start()
    except RuntimeError as e:
        fail(str(e), "choose another --port")
    console.print(f"Portal for {server.portal.did} on {server.url}", soft_wrap=True)
    # Unwrapped, so the link can be copied whole from any terminal width.
    console.print(
        f"Open this link in your browser (it signs you in): {server.launch_url}", soft_wrap=True
    )
    serve_until_interrupted(server.stop)
