"""Supervision on the regulator chain: relayed digests, rules and alerts."""

from medchain.contracts.supervision.handler import SupervisionHandler

__all__ = ["SupervisionHandler"]
