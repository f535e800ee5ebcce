"""The system contracts: one package per contract (payloads.py, model.py,
handler.py), payload.py and base.py that they share, registry.py mapping
(name, version) to a handler.

Layer: contracts. Imports core, encoding, crypto and exceptions only, and of core
only the Context, the signed tx and the genesis: a contract reads and writes state
through the Context it is handed, under its own namespace. The registry is the
one bridge core's execution calls with its state view (signer lookup, genesis).
No clock, randomness or I/O.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
