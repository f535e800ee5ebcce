"""Records: hashes and locations of health records; the records stay off chain."""

from medchain.contracts.records.handler import RecordsHandler

__all__ = ["RecordsHandler"]
