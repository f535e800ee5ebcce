"""Helpers shared by test modules: a ledger on real SQLite, running servers, a
consortium with a node and an edge, a supply chain cast and the vector replay.

Test modules import these from here, never from each other; tests/conftest.py
holds only fixtures and the audit hook that keeps tests inside the repository.
"""
