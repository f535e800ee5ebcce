"""Drug and device traceability at the edge: GS1 identifiers and EPCIS event hashes.

`gs1` turns what a scanner reads (element strings, Digital Link URIs) into a checked
`Pack` and the ledger keys for it; `epcis` gives the standard CBV 2.0 hash of each event
in an EPCIS document and the few facts the supply contract needs from it.

Layer: gs1, a standards library. Imports core, contracts, encoding, crypto and
exceptions only: no storage, engine, SDK, edge, gateway, CLI or demo.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
