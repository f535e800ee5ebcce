"""Identity: organisations, members, roles, DIDs, key rotation, revocation.

The handler lives in `identity.handler`; this package exports only the
vocabulary, so other contracts can use it without importing the handler.
"""

from medchain.contracts.identity.model import ORG_TYPES, ROLES, did_for_key

__all__ = ["ORG_TYPES", "ROLES", "did_for_key"]
