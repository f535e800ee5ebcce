"""Identity: organisations, members, roles, DIDs, key rotation, revocation."""

from medchain.contracts.identity.handler import IdentityHandler
from medchain.contracts.identity.model import ORG_TYPES, ROLES, did_for_key

__all__ = ["ORG_TYPES", "ROLES", "IdentityHandler", "did_for_key"]
