"""The edge's HTTP face (FastAPI): create_edge_app (app.py) includes the
module-level routers of routes/ (the custodian API and its FHIR R4 API), whose
dependencies are in deps.py, and audits every refusal (audit.py). Same router
style and error answers as the node's gateway.
"""
