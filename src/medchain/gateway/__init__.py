"""The node's HTTP API (FastAPI): app.py, routes/<area>.py, deps.py, signed-request
auth (auth.py), request limits (limits.py), read policy (policy.py) and one error
table (errors.py).

Layer: gateway. Imports consensus (the engine it reads and submits through), sdk
(the signed-request format), fhir, contracts, core, crypto, encoding and
exceptions; never storage directly, the edge, node, network, CLI or demo. The
edge's HTTP apps reuse this package's error table, limits and JSON rendering.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
