"""What an integrator uses: the node client (signed reads, tx submission),
the signed-request format (signing.py, also used by the gateway and the edge to
verify), the encrypted keystore and TLS trust.

Layer: sdk. Imports contracts, core, crypto, encoding and exceptions; never the
gateway, edge, node, network, CLI or demo.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
