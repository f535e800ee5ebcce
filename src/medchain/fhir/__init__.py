"""HL7 FHIR R4: ledger facts as FHIR resources (fhir.resources R4B models).

It also turns hospital data into FHIR R4: HL7 v2 messages (hl7v2), CSV exports
(csv_map, mappings/), with validation and search indexing for the edge.

Layer: fhir, a standards library. Imports core, contracts, encoding, crypto and
exceptions only: no storage, engine, SDK, edge, gateway, CLI or demo.
The layer rule is one table in tests/test_architecture.py (MAY_IMPORT).
"""
