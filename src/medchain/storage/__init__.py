"""The SQLite chain database (chain_db.py): state, blocks, tx and audit indexes,
one SQLite transaction per block; and the protocol of the read tables derived
from state that it keeps in the same transaction (projection.py).

Layer: storage. Imports core, encoding, sqlite_schema (schema versions) and
exceptions only; engines and the node open it, nothing below them does.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
