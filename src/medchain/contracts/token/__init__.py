"""The `token` system contract: a capped incentive token minted only by governed rules."""

from medchain.contracts.token.handler import TokenHandler

__all__ = ["TokenHandler"]
