"""Cross-chain atomic exchange: hash-time locks checked by light clients of the
counterparty chain."""

from medchain.contracts.htlc.handler import HtlcHandler

__all__ = ["HtlcHandler"]
