"""The engines that order transactions and commit blocks: the Application both
drive (application.py), CheckTx's view (check_state.py), the solo engine and its
mempool (solo.py, mempool.py), the CometBFT ABCI server (abci/), and the node's
read tables derived from contract state (projections.py).

Layer: consensus. Imports storage, contracts, core, encoding and exceptions; never
the SDK, gateway, edge, node, network, CLI or demo (the gateway reads through an
engine, not the other way round).
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
