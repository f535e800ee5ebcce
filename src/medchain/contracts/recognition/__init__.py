"""Cross-hospital exam mutual recognition."""

from medchain.contracts.recognition.handler import RecognitionHandler

__all__ = ["RecognitionHandler"]
