"""`medchain portal`: the personal web pages as a local app on 127.0.0.1.

The app holds one user's key, unlocked from their key file on their own machine,
and signs every read and transaction with it through the SDK's Client, so no
private key ever reaches a server. Pages are rendered on the server side of this
local app (Jinja2), need no JavaScript and no front-end build, and come in
English and Simplified Chinese. docs/web.md says why it is built this way.

Layer: portal. Imports sdk (client, keystore, proofs), edge (the requester's side of
an exchange), contracts, core and crypto; never gateway, node or cli. Only the cli
imports it.
"""
