"""governance contract: weighted proposals, votes and their execution at a height.

Authority:
  propose   an org admin of an active member organisation, or a consortium admin;
            at most MAX_OPEN_PER_PROPOSER proposals of one organisation (a consortium
            admin: of that admin) under vote at once
  vote      an org admin, for its organisation, if that organisation is in the
            proposal's electorate; once per organisation, changeable until the
            vote ends (end_height)
  execute   any registered member, once the vote has ended: a proposal below quorum
            or threshold is recorded rejected (never applied); an accepted one is
            applied only from executable_height = end_height + timelock

Why an `execute` transaction rather than an end-of-block hook: core's apply_block
runs transactions only (no hook), and one would scan pending proposals in every
block of every node. An execute tx is one bounded step, signed and audited like
any other, its refusal (the timelock) visible to whoever sent it; the height rule
makes the outcome the same whoever sends it and whenever, once allowed.

An accepted change goes through the same functions the direct actions use
(identity.admit_org, change_validator, write_org_roles, set_org_status;
consent.write_role_policy; token.apply_rules; htlc.follow_counterparty), so a validator change emits
identity's validator event and the ABCI layer hands it to CometBFT.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import msgspec

from medchain.contracts.base import ActionHandler, signer_member, unauthorized
from medchain.contracts.consent.handler import write_role_policy
from medchain.contracts.governance import model
from medchain.contracts.governance.payloads import (
    Action,
    ActivateContract,
    AdmitOrg,
    ChangeOrgRoles,
    ChangeParams,
    ChangeRolePolicy,
    ChangeTokenRules,
    ChangeValidator,
    Execute,
    Propose,
    RegisterCounterparty,
    SetOrgStatus,
    Vote,
)
from medchain.contracts.htlc.handler import follow_counterparty
from medchain.contracts.identity import handler as identity
from medchain.contracts.payload import Payload, decode_payload
from medchain.contracts.token.handler import apply_rules
from medchain.core.context import Context
from medchain.exceptions import Code, InvalidTransaction


class GovernanceHandler(ActionHandler):
    """The `governance` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "propose": Propose,
        "vote": Vote,
        "execute": Execute,
    }

    def propose(self, p: Propose, ctx: Context) -> None:
        """A member organisation's admin (or a consortium admin) puts one change to the vote."""
        caller = signer_member(ctx)
        is_admin = "consortium_admin" in caller["roles"]
        if not is_admin and "org_admin" not in caller["roles"]:
            raise unauthorized("only an organisation's admin or a consortium admin may propose")
        settings = model.params(ctx.get)
        proposal_id = int(ctx.get(model.COUNTER_KEY) or 0) + 1
        end = ctx.height + settings["voting_period"]
        # Counted per organisation (a consortium admin, who has none, per DID): an org
        # admin can add more org admins, so a per-DID limit would not bound a flood.
        self._limit_open(ctx, caller["org_id"] or caller["did"], proposal_id, end)
        electorate = model.electorate(ctx.scan, ctx.get, settings["base_weight"])
        # Plain maps, lists and bytes (as stored); execute decodes it back through Propose.
        action = cast(dict[str, Any], msgspec.msgpack.decode(msgspec.msgpack.encode(p.action)))
        proposal = model.Proposal(
            proposal_id=proposal_id,
            kind=str(action["kind"]),
            action=action,
            description=p.description,
            proposer=caller["did"],
            proposer_org=caller["org_id"],
            created_height=ctx.height,
            end_height=end,
            executable_height=end + settings["timelock"],
            params=settings,
            electorate=electorate,
            total_weight=sum(electorate.values()),
            votes={},
            tally=model.Tally(yes=0, no=0, abstain=0),
            status=model.OPEN,
            closed_height=None,
            closed_by=None,
            outcome="",
        )
        ctx.put(model.COUNTER_KEY, proposal_id)
        ctx.put(model.proposal_key(proposal_id), proposal)
        ctx.emit(
            "governance.proposed",
            proposal_id=str(proposal_id),
            kind=proposal["kind"],
            end_height=str(end),
            executable_height=str(proposal["executable_height"]),
            total_weight=str(proposal["total_weight"]),
            actor=caller["did"],
        )

    def _limit_open(self, ctx: Context, proposer: str, proposal_id: int, end: int) -> None:
        """At most MAX_OPEN_PER_PROPOSER of a proposer's (an organisation's, or a
        consortium admin's) proposals under vote at once: a flood of proposals costs
        the flooder its own right to propose."""
        record = ctx.get(model.proposer_key(proposer)) or {"open": {}}
        under_vote = {pid: end for pid, end in record["open"].items() if end > ctx.height}
        if len(under_vote) >= model.MAX_OPEN_PER_PROPOSER:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"you already have {len(under_vote)} proposals under vote; wait until one "
                f"ends (height {min(under_vote.values())})",
            )
        under_vote[str(proposal_id)] = end
        ctx.put(model.proposer_key(proposer), model.Proposer(open=under_vote))

    def _proposal(self, ctx: Context, proposal_id: int) -> model.Proposal:
        return cast(
            model.Proposal,
            dict(ctx.require(model.proposal_key(proposal_id), f"proposal {proposal_id}")),
        )

    def vote(self, p: Vote, ctx: Context) -> None:
        """An organisation's admin casts (or changes) its organisation's weighted vote."""
        caller = signer_member(ctx)
        org_id = caller["org_id"]
        if org_id is None or "org_admin" not in caller["roles"]:
            raise unauthorized("only an organisation's admin votes, for its organisation")
        proposal = self._proposal(ctx, p.proposal_id)
        if proposal["status"] != model.OPEN or ctx.height >= proposal["end_height"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"the vote on proposal {p.proposal_id} ended at height {proposal['end_height']}",
            )
        weight = proposal["electorate"].get(org_id)
        if weight is None:
            raise unauthorized(
                f"{org_id} was not an active member when proposal {p.proposal_id} was made, "
                "so it does not vote on it"
            )
        tally = cast(dict[str, int], proposal["tally"])
        previous = proposal["votes"].get(org_id)
        if previous is not None:
            tally[previous] -= weight
        tally[p.choice] += weight
        proposal["votes"][org_id] = p.choice
        ctx.put(model.proposal_key(p.proposal_id), proposal)
        ctx.emit(
            "governance.voted",
            proposal_id=str(p.proposal_id),
            org_id=org_id,
            choice=p.choice,
            weight=str(weight),
            actor=caller["did"],
        )

    def execute(self, p: Execute, ctx: Context) -> None:
        """Close a proposal whose vote ended: rejected below quorum or threshold, else
        applied once its timelock has passed (refused before, saying from when)."""
        caller = signer_member(ctx)
        proposal = self._proposal(ctx, p.proposal_id)
        if proposal["status"] != model.OPEN:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"proposal {p.proposal_id} is already {proposal['status']}"
            )
        if ctx.height < proposal["end_height"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"proposal {p.proposal_id} is still under vote until height "
                f"{proposal['end_height']}",
            )
        outcome = model.outcome(proposal)
        if outcome == "accepted" and ctx.height < proposal["executable_height"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"proposal {p.proposal_id} was accepted but its timelock runs until height "
                f"{proposal['executable_height']}; execute it from then",
            )
        if outcome == "accepted":
            self._apply(ctx, proposal)
        proposal["status"] = model.EXECUTED if outcome == "accepted" else model.REJECTED
        proposal["outcome"] = outcome
        proposal["closed_height"] = ctx.height
        proposal["closed_by"] = caller["did"]
        ctx.put(model.proposal_key(p.proposal_id), proposal)
        tally = proposal["tally"]
        ctx.emit(
            f"governance.{proposal['status']}",
            proposal_id=str(p.proposal_id),
            kind=proposal["kind"],
            outcome=outcome,
            yes=str(tally["yes"]),
            no=str(tally["no"]),
            abstain=str(tally["abstain"]),
            total_weight=str(proposal["total_weight"]),
            actor=caller["did"],
        )

    def _apply(self, ctx: Context, proposal: model.Proposal) -> None:
        """Make the accepted change through the owning contract's own function. A change
        that state no longer allows (the org exists, a validator would hold a third)
        refuses this tx, and the proposal stays open: propose again if still wanted."""
        action: Action = decode_payload({"action": proposal["action"]}, Propose).action
        actor = f"governance/proposal/{proposal['proposal_id']}"
        if isinstance(action, AdmitOrg):
            identity.admit_org(ctx, action)
        elif isinstance(action, SetOrgStatus):
            identity.set_org_status(ctx, action.org_id, action.status, action.reason, actor)
        elif isinstance(action, ChangeValidator):
            identity.change_validator(ctx, action.pub_key, action.power, action.name)
        elif isinstance(action, ChangeOrgRoles):
            identity.write_org_roles(ctx, action.org_type, action.roles, actor)
        elif isinstance(action, ChangeRolePolicy):
            write_role_policy(ctx, action.role, action.resource_types, actor)
        elif isinstance(action, ChangeTokenRules):
            amounts = action.amounts
            apply_rules(
                ctx,
                action.cap,
                {"record": amounts.record, "exam": amounts.exam, "fl": amounts.fl},
                actor,
            )
        elif isinstance(action, RegisterCounterparty):
            follow_counterparty(ctx, action, actor)
        elif isinstance(action, ChangeParams):
            self._set_params(ctx, action)
        elif isinstance(action, ActivateContract):
            self._activate(ctx, action, proposal["proposal_id"])

    def _set_params(self, ctx: Context, change: ChangeParams) -> None:
        """New governance parameters, for proposals made from the next tx on (a proposal
        keeps the parameters it was made under)."""
        current = model.params(ctx.get)
        updated = model.Params(
            base_weight=_or(change.base_weight, current["base_weight"]),
            quorum_bps=_or(change.quorum_bps, current["quorum_bps"]),
            threshold_bps=_or(change.threshold_bps, current["threshold_bps"]),
            voting_period=_or(change.voting_period, current["voting_period"]),
            timelock=_or(change.timelock, current["timelock"]),
            updated_height=ctx.height,
        )
        ctx.put(model.PARAMS_RECORD_KEY, updated)

    def _activate(self, ctx: Context, action: ActivateContract, proposal_id: int) -> None:
        """Record the decided contract version and from when. The node software decides
        which handlers it runs; this record is the consortium's decision, queryable."""
        from_height = action.from_height or ctx.height
        if from_height < ctx.height:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"from_height {from_height} is already past ({ctx.height})"
            )
        ctx.put(
            model.activation_key(action.contract),
            model.Activation(
                contract=action.contract,
                version=action.version,
                from_height=from_height,
                proposal_id=proposal_id,
            ),
        )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
