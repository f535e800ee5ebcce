"""Maps (contract name, version) to its handler, and owns signer lookup."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from medchain import encoding
from medchain.contracts.claims import ClaimsHandler
from medchain.contracts.consent import ConsentHandler
from medchain.contracts.consent import handler as consent
from medchain.contracts.consent.model import NAMESPACE as CONSENT_NAMESPACE
from medchain.contracts.devices import DevicesHandler
from medchain.contracts.exchange import ExchangeHandler
from medchain.contracts.governance.handler import GovernanceHandler
from medchain.contracts.htlc import HtlcHandler
from medchain.contracts.identity import handler as identity
from medchain.contracts.identity.model import NAMESPACE as IDENTITY_NAMESPACE
from medchain.contracts.models import ModelsHandler
from medchain.contracts.recognition import RecognitionHandler
from medchain.contracts.records import RecordsHandler
from medchain.contracts.referral import ReferralHandler
from medchain.contracts.research.handler import ResearchHandler
from medchain.contracts.supervision import handler as supervision
from medchain.contracts.supervision.model import NAMESPACE as SUPERVISION_NAMESPACE
from medchain.contracts.supply import SupplyHandler
from medchain.contracts.token import TokenHandler
from medchain.contracts.zk import ZkHandler
from medchain.core.context import Context, Signer
from medchain.core.execution import Handler
from medchain.core.genesis import BUSINESS, REGULATOR, Genesis
from medchain.core.state import StateView
from medchain.core.tx import SignedTx
from medchain.exceptions import Code, InvalidTransaction


class ContractRegistry:
    """The system contracts this node runs; every node must run the same set."""

    def __init__(
        self, handlers: Iterable[tuple[str, int, Handler]], profile: str = BUSINESS
    ) -> None:
        self.profile = profile
        self._handlers: dict[tuple[str, int], Handler] = {}
        for name, version, h in handlers:
            if (name, version) in self._handlers:
                raise ValueError(f"contract {name} v{version} registered twice")
            self._handlers[(name, version)] = h

    @property
    def contracts(self) -> list[tuple[str, int]]:
        """(name, version) of every contract this chain runs, sorted."""
        return sorted(self._handlers)

    def handler(self, contract: str, version: int) -> Handler:
        """The handler of a contract version; UNKNOWN_CONTRACT naming the known ones."""
        try:
            return self._handlers[(contract, version)]
        except KeyError:
            known = ", ".join(f"{n} v{v}" for n, v in self.contracts)
            raise InvalidTransaction(
                Code.UNKNOWN_CONTRACT, f"no contract {contract} v{version}; known: {known}"
            ) from None

    def authenticate(self, state: StateView, tx: SignedTx, open_action: bool) -> Signer:
        """The tx's signer as the identity contract knows it (key status decides)."""

        def get(key: str) -> Any:
            raw = state.get(key)
            return None if raw is None else encoding.decode(raw)

        did = identity.authenticate(get, tx.signer_key_id, open_action)
        e = tx.envelope
        return Signer(tx.signer_key_id, e.signer, e.suite, did)

    def init_genesis(self, state: StateView, genesis: Genesis) -> None:
        """Write the founding identities and each contract's genesis state."""
        ctx = Context(
            state,
            IDENTITY_NAMESPACE,
            genesis.chain_id,
            0,
            genesis.genesis_time_ms,
            b"",
            Signer(b"", b"", "", None),
        )
        identity.init_genesis(
            ctx,
            [(k.name, k.suite, k.public_key) for k in genesis.consortium_admins],
            [
                (o.org_id, o.name, o.org_type, (o.admin.name, o.admin.suite, o.admin.public_key))
                for o in genesis.orgs
            ],
            [(v["name"], bytes.fromhex(v["pub_key"]), v["power"]) for v in genesis.validators],
            dict(genesis.org_roles),
        )
        if self.profile == BUSINESS:
            consent.init_genesis(replace(ctx, namespace=CONSENT_NAMESPACE))
        else:
            state.set(PROFILE_KEY, encoding.encode(self.profile))
            supervision.init_genesis(replace(ctx, namespace=SUPERVISION_NAMESPACE))


PROFILE_KEY = "chain/profile"


def default_registry() -> ContractRegistry:
    """The registry every MedChain business-chain node runs at this software version."""
    return registry_for(BUSINESS)


def registry_for(profile: str) -> ContractRegistry:
    """The system contracts of a business chain, or of a regulator chain."""
    if profile == REGULATOR:
        return ContractRegistry(
            [
                ("identity", 1, identity.IdentityHandler()),
                ("supervision", 1, supervision.SupervisionHandler()),
            ],
            REGULATOR,
        )
    return ContractRegistry(
        [
            ("identity", 1, identity.IdentityHandler()),
            ("records", 1, RecordsHandler()),
            ("consent", 1, ConsentHandler()),
            ("exchange", 1, ExchangeHandler()),
            ("recognition", 1, RecognitionHandler()),
            ("supply", 1, SupplyHandler()),
            ("devices", 1, DevicesHandler()),
            ("research", 1, ResearchHandler()),
            ("models", 1, ModelsHandler()),
            ("zk", 1, ZkHandler()),
            ("referral", 1, ReferralHandler()),
            ("claims", 1, ClaimsHandler()),
            ("governance", 1, GovernanceHandler()),
            ("htlc", 1, HtlcHandler()),
            ("token", 1, TokenHandler()),
        ]
    )
