"""The edge's HTTP face (FastAPI): the custodian API (app.py), its FHIR R4 API
(fhir.py) and the audit of every refusal (audit.py). Same router style and
error answers as the node's gateway.
"""
