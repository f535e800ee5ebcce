"""Cross-hospital referral and consultation."""

from medchain.contracts.referral.handler import ReferralHandler

__all__ = ["ReferralHandler"]
