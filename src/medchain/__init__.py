"""MedChain: a permissioned consortium ledger for health data."""

__version__ = "0.1.0"
