"""Consent: patient grants and revocations, guardians, and role policy."""

from medchain.contracts.consent.handler import ConsentHandler
from medchain.contracts.consent.policy import Decision, decide

__all__ = ["ConsentHandler", "Decision", "decide"]
