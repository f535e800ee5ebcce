"""The pure state machine: tx envelope, Block, state view, apply_block, the
sparse Merkle state tree and its proofs, genesis.

Layer: core. Imports encoding, crypto and exceptions only: never a contract,
storage, an engine or anything with I/O, and no clock, randomness, threads or
floats, so every node computes the same app hash from the same blocks. Contracts
receive state through the Context (context.py) that apply_block hands them.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
