"""Model registry and AI-result provenance."""

from medchain.contracts.models.handler import ModelsHandler

__all__ = ["ModelsHandler"]
