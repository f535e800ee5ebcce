"""The edge's routes, one module-level router per area (as gateway/routes/):
records and imports, exchange sessions, erasure, the FHIR R4 API, the audit log."""
