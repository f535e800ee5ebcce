"""Insurance claim settlement: plans as data, claims adjudicated on chain."""

from medchain.contracts.claims.handler import ClaimsHandler

__all__ = ["ClaimsHandler"]
