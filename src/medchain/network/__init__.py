"""Processes between nodes and chains: CometBFT configuration and the node
process (cometbft.py), a local multi-validator network (localnet.py), and the
relay that feeds the regulator chain (relay.py).

Layer: network. Imports sdk, contracts, core, crypto, encoding and exceptions; not
the node, gateway, edge, CLI or demo.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
