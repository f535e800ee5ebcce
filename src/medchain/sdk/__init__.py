"""What an integrator uses: the node client (signed reads, tx submission, retries),
typed contract actions checked before signing (actions.py), proofs checked offline
(proofs.py), SMART on FHIR tokens for an edge (smart.py), the signed-request format
(signing.py, also used by the gateway and the edge to verify), the encrypted
keystore and TLS trust. `medchain.client` re-exports the public names; docs/sdk.md
is the guide.

Layer: sdk. Imports contracts, core, crypto, encoding and exceptions; never the
gateway, edge, node, network, CLI or demo.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
