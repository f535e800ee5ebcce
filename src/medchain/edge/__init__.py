"""What runs at a custodian (hospital, pharmacy, lab): the record vault and friends.

The vault (records encrypted at rest), the custodian service that registers
records and releases keys to open sessions, importers, the requester's side of an
exchange, the edge's audit log, and its HTTP apps (http/).

Layer: edge. Imports gateway (its error table, limits and JSON rendering), sdk,
the standards libraries fhir and gs1 (EPCIS documents captured at the edge),
contracts, core, crypto, encoding, files, sqlite_schema (schema versions) and
exceptions; never the node, network, CLI or demo, and nothing below it imports
the edge.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
