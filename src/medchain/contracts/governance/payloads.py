"""Governance payloads: propose (one change, of a closed set of kinds), vote, execute.

A proposed change reuses the payload type of the action it stands for
(identity.register_org, identity.set_validator, identity.set_org_roles,
consent.set_role_policy, token.set_rules, htlc.register_counterparty), tagged with
its `kind`, so a proposal is checked by exactly the rules the direct action is, before any vote.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from medchain.contracts.consent.payloads import SetRolePolicy
from medchain.contracts.governance.model import BPS, MAX_BASE_WEIGHT, MAX_PERIOD, Choice
from medchain.contracts.htlc.payloads import RegisterCounterpartyPayload
from medchain.contracts.identity.payloads import OrgId, RegisterOrg, SetOrgRoles, SetValidator
from medchain.contracts.payload import Payload, whole
from medchain.contracts.token.payloads import SetRulesPayload

ProposalId = Annotated[int, msgspec.Meta(ge=1, le=10**12)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]
Reason = Annotated[str, msgspec.Meta(max_length=500)]
ContractName = Annotated[str, msgspec.Meta(pattern=whole(r"[a-z][a-z0-9_]{1,31}"))]
Basis = Annotated[int, msgspec.Meta(ge=1, le=BPS)]
# yes must be MORE than the threshold's share: at BPS nothing could pass again, not even
# a proposal to lower it, and on a vote chain nobody else may change it.
Threshold = Annotated[int, msgspec.Meta(ge=1, le=BPS - 1)]
Period = Annotated[int, msgspec.Meta(ge=1, le=MAX_PERIOD)]
Timelock = Annotated[int, msgspec.Meta(ge=0, le=MAX_PERIOD)]
BaseWeight = Annotated[int, msgspec.Meta(ge=0, le=MAX_BASE_WEIGHT)]

_TAG = "kind"


class AdmitOrg(RegisterOrg, frozen=True, kw_only=True, tag="admit_org", tag_field=_TAG):
    """Admit an organisation of a fixed kind with its first admin (identity.register_org)."""


class SetOrgStatus(Payload, frozen=True, kw_only=True, tag="set_org_status", tag_field=_TAG):
    """Suspend (for now), revoke (remove for good) or reinstate an organisation."""

    org_id: OrgId
    status: Literal["active", "suspended", "revoked"]
    reason: Reason = ""


class ChangeValidator(SetValidator, frozen=True, kw_only=True, tag="set_validator", tag_field=_TAG):
    """Add, re-weight or (power 0) remove a validator (identity.set_validator)."""


class ChangeOrgRoles(SetOrgRoles, frozen=True, kw_only=True, tag="set_org_roles", tag_field=_TAG):
    """Which roles a kind of organisation may hold (identity.set_org_roles)."""


class ChangeRolePolicy(
    SetRolePolicy, frozen=True, kw_only=True, tag="set_role_policy", tag_field=_TAG
):
    """The resource types a staff role may ever see (consent.set_role_policy)."""


class ChangeTokenRules(
    SetRulesPayload, frozen=True, kw_only=True, tag="set_token_rules", tag_field=_TAG
):
    """The token's cap and reward per basis (token.set_rules)."""


class RegisterCounterparty(
    RegisterCounterpartyPayload,
    frozen=True,
    kw_only=True,
    tag="register_counterparty",
    tag_field=_TAG,
):
    """Follow (or re-root) a counterparty chain's light client (htlc.register_counterparty)."""


class ChangeParams(Payload, frozen=True, kw_only=True, tag="set_params", tag_field=_TAG):
    """New governance parameters; those left out keep their value. The chain's mode
    ("admin" or "vote") is fixed at genesis and is not among them."""

    base_weight: BaseWeight | None = None
    quorum_bps: Basis | None = None
    threshold_bps: Threshold | None = None
    voting_period: Period | None = None
    timelock: Timelock | None = None

    def __post_init__(self) -> None:
        if all(
            v is None
            for v in (
                self.base_weight,
                self.quorum_bps,
                self.threshold_bps,
                self.voting_period,
                self.timelock,
            )
        ):
            raise ValueError("set_params must change at least one parameter")


class ActivateContract(Payload, frozen=True, kw_only=True, tag="activate_contract", tag_field=_TAG):
    """Record that the consortium runs `version` of `contract` from `from_height`
    (0: the height the proposal executes at)."""

    contract: ContractName
    version: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    from_height: Annotated[int, msgspec.Meta(ge=0)] = 0


Action = (
    AdmitOrg
    | SetOrgStatus
    | ChangeValidator
    | ChangeOrgRoles
    | ChangeRolePolicy
    | ChangeTokenRules
    | RegisterCounterparty
    | ChangeParams
    | ActivateContract
)


class Propose(Payload, frozen=True, kw_only=True):
    """governance.propose: one change and why; the vote opens at once."""

    action: Action
    description: Description = ""


class Vote(Payload, frozen=True, kw_only=True):
    """governance.vote: the signer's organisation's choice (a later vote replaces it)."""

    proposal_id: ProposalId
    choice: Choice


class Execute(Payload, frozen=True, kw_only=True):
    """governance.execute: close a proposal whose vote ended: apply it if accepted and
    its timelock passed, record it rejected if it fell below quorum or threshold."""

    proposal_id: ProposalId
