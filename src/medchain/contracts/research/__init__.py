"""Federated research studies: cohorts under consent, rounds, contributions."""

from medchain.contracts.research.handler import ResearchHandler

__all__ = ["ResearchHandler"]
