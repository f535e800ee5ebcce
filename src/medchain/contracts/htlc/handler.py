"""htlc contract: light clients of counterparty chains, and hash-time locks.

Authority:
  register_counterparty  a consortium admin or a regulator: which chain to follow
                         and the root to trust it from (its solo node key, or a
                         CometBFT validator set and header); on a chain governed
                         by vote only an accepted proposal
  update_client          any member (a relayer is not trusted: the light client
                         checks each header's signatures itself)
  lock                   the owner of the asset: the token account's DID, or the
                         patient of every record a grant offer covers
  claim                  any member, with the preimage, up to the timeout height;
                         the asset goes to the lock's recipient
  refund                 any member, after the timeout height; the asset goes back
                         (a grant offer simply lapses)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import msgspec

from medchain import crypto
from medchain.contracts import lightclient
from medchain.contracts.base import (
    ActionHandler,
    governor_member,
    patient_member,
    signer_member,
    unauthorized,
)
from medchain.contracts.consent.handler import issue_grant
from medchain.contracts.governance.mode import require_admin_governance
from medchain.contracts.htlc import model
from medchain.contracts.htlc.payloads import (
    ClaimPayload,
    CounterpartIn,
    GrantAsset,
    LockPayload,
    RefundPayload,
    RegisterCounterpartyPayload,
    StateProof,
    TokenAsset,
    UpdateClientPayload,
)
from medchain.contracts.identity import model as identity
from medchain.contracts.payload import Payload, invalid
from medchain.contracts.records.model import ACTIVE as RECORD_ACTIVE
from medchain.contracts.records.model import record_key
from medchain.contracts.token.handler import move
from medchain.core.context import Context
from medchain.core.proofs import FORMAT as PROOF_FORMAT
from medchain.crypto import cometbft
from medchain.exceptions import Code, InvalidTransaction


class HtlcHandler(ActionHandler):
    """The `htlc` system contract, version 1."""

    namespace = model.NAMESPACE
    payloads: Mapping[str, type[Payload]] = {
        "register_counterparty": RegisterCounterpartyPayload,
        "update_client": UpdateClientPayload,
        "lock": LockPayload,
        "claim": ClaimPayload,
        "refund": RefundPayload,
    }

    # -- light clients --------------------------------------------------------

    def register_counterparty(self, p: RegisterCounterpartyPayload, ctx: Context) -> None:
        """Trust in another chain starts from a root the governors took out of band;
        everything after it is checked against that root. Which chains' states this
        chain trusts is consortium-wide: on a chain governed by vote only an accepted
        proposal registers one (governance calls follow_counterparty)."""
        caller = governor_member(ctx)
        require_admin_governance(ctx.get, "register or replace a counterparty chain")
        follow_counterparty(ctx, p, caller["did"])

    def update_client(self, p: UpdateClientPayload, ctx: Context) -> None:
        """Keep one more app hash of the counterparty, if a header it would have to
        have signed vouches for it; the oldest kept root goes when there are too many."""
        caller = signer_member(ctx)
        client = cast(
            model.Client,
            dict(ctx.require(model.client_key(p.chain_id), f"counterparty {p.chain_id!r}")),
        )
        if client["engine"] == lightclient.SOLO:
            if p.solo is None:
                raise invalid(f"{p.chain_id} is a solo chain: send its signed header (solo)")
            root = lightclient.verify_solo_header(
                p.chain_id,
                client["suite"],
                client["public_key"],
                msgspec.to_builtins(p.solo.header, builtin_types=(bytes,)),
                p.solo.signature,
            )
        else:
            if p.cometbft is None:
                raise invalid(f"{p.chain_id} is a CometBFT chain: send header and commit")
            root = self._follow_cometbft(client, p, ctx)
        kept = client["heights"]
        if root.height in kept:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS, f"{p.chain_id} at height {root.height} is already verified"
            )
        if len(kept) >= model.ROOTS_KEPT and root.height < kept[0]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"height {root.height} is older than every root kept; relay a newer header",
            )
        kept = sorted([*kept, root.height])
        while len(kept) > model.ROOTS_KEPT:
            ctx.delete(model.root_key(p.chain_id, kept.pop(0)))
        client["heights"] = kept
        client["height"] = max(client["height"], root.height)
        ctx.put(model.client_key(p.chain_id), client)
        stored: model.Root = {"app_hash": root.app_hash, "time_ms": root.time_ms}
        ctx.put(model.root_key(p.chain_id, root.height), stored)
        ctx.emit(
            "htlc.client_updated",
            chain=p.chain_id,
            height=str(root.height),
            app_hash=root.app_hash.hex(),
            actor=caller["did"],
        )

    def _follow_cometbft(
        self, client: model.Client, p: UpdateClientPayload, ctx: Context
    ) -> lightclient.TrustedRoot:
        """A header final under the followed set; the set it announces is followed only
        from the newest header on, so an old header relayed late cannot roll it back."""
        assert p.cometbft is not None
        header, commit = p.cometbft.header, p.cometbft.commit
        trusted_ms = client.get("trusted_ms", ctx.time_ms)
        if ctx.time_ms - trusted_ms > model.TRUSTING_PERIOD_MS:
            raise lightclient.not_trusted(
                f"the light client of {p.chain_id} expired: no header verified for "
                f"{model.TRUSTING_PERIOD_MS // 86_400_000} days, so its validator set may have "
                "left; register the counterparty again from a header you trust"
            )
        root = lightclient.verify_cometbft_header(p.chain_id, client["validators"], header, commit)
        client["trusted_ms"] = ctx.time_ms
        registered = client.get("header_hash", b"")
        # The registered hash binds the root header's own height: client["height"] moves
        # on with the state heights verified, so comparing against it refused ordinary
        # headers (header h relayed after header h+1). Clients registered before
        # root_height was kept fall back to their registration height.
        root_height = client.get("root_height", client["height"])
        if (
            header.height == root_height
            and registered
            and cometbft.header_hash(header) != registered
        ):
            raise lightclient.not_trusted(
                f"header {header.height} is not the one registered as the trusted root"
            )
        announced = lightclient.announced_set(header, p.cometbft.next_validators)
        if announced is not None and root.height >= client["height"]:
            client["validators"] = announced
        return root

    # -- locks ----------------------------------------------------------------

    def lock(self, p: LockPayload, ctx: Context) -> None:
        """Escrow the asset under the hashlock; a second lock first has its chain check
        the first one on the other chain through the light client."""
        caller = signer_member(ctx)
        locker = caller["did"]
        key = model.lock_key(p.lock_id)
        if ctx.get(key) is not None:
            raise InvalidTransaction(
                Code.ALREADY_EXISTS, f"lock {p.lock_id!r} exists; pick a new lock id"
            )
        if not ctx.height < p.timeout_height <= ctx.height + model.MAX_TIMEOUT_BLOCKS:
            raise invalid(
                f"timeout_height must be after this block ({ctx.height}) and at most "
                f"{model.MAX_TIMEOUT_BLOCKS} blocks ahead"
            )
        if p.recipient == locker:
            raise invalid("recipient is the locker")
        recipient = ctx.get(identity.did_key(p.recipient))
        if recipient is None or recipient["status"] != identity.ACTIVE:
            raise InvalidTransaction(Code.NOT_FOUND, f"{p.recipient} is not an active member")
        asset: dict[str, Any] = msgspec.to_builtins(p.asset)
        counterpart = (
            None if p.counterpart is None else self._check_counterpart(p, p.counterpart, ctx)
        )
        lock: model.Lock = {
            "lock_id": p.lock_id,
            "locker": locker,
            "recipient": p.recipient,
            "hashlock": p.hashlock,
            "asset": asset,
            "timeout_height": p.timeout_height,
            "status": model.LOCKED,
            "height": ctx.height,
            "time_ms": ctx.time_ms,
        }
        if counterpart is not None:
            lock["counterpart"] = counterpart
        if isinstance(p.asset, TokenAsset):
            move(ctx, locker, model.escrow(p.lock_id), p.asset.amount, f"htlc lock {p.lock_id}")
        else:
            _own_records(ctx, locker, p.asset)
        ctx.put(key, lock)
        ctx.put(model.by_height_key(ctx.height, p.lock_id), {"lock_id": p.lock_id})
        extra = {"patient": locker} if isinstance(p.asset, GrantAsset) else {}
        if counterpart is not None:
            extra |= {"counterpart": f"{counterpart['chain']}/{counterpart['lock_id']}"}
        ctx.emit(
            "htlc.locked",
            lock_id=p.lock_id,
            hashlock=p.hashlock.hex(),
            recipient=p.recipient,
            asset=asset["kind"],
            timeout_height=str(p.timeout_height),
            actor=locker,
            **extra,
        )

    def _check_counterpart(
        self, p: LockPayload, cp: CounterpartIn, ctx: Context
    ) -> model.Counterpart:
        """The other chain holds, at a height its light client verified, an open lock
        with this hashlock that pays this locker the agreed asset, locked by this
        lock's recipient, with a deadline at least MIN_DEADLINE_MARGIN blocks further
        off than this one's: so the locker can always claim there once this lock is
        claimed here."""
        if cp.chain == ctx.chain_id:
            raise invalid("the counterpart is on another chain")
        client = ctx.require(model.client_key(cp.chain), f"counterparty {cp.chain!r}")
        height = cp.proof.height
        found = ctx.get(model.root_key(cp.chain, height))
        if found is None:
            raise InvalidTransaction(
                Code.NOT_FOUND,
                f"no verified header of {cp.chain} at height {height}: relay it first "
                "(medchain htlc update-client, or any relayer)",
            )
        root = lightclient.TrustedRoot(height, found["app_hash"], found["time_ms"])
        other = lightclient.verify_state_proof(
            cp.chain, root, model.lock_key(cp.lock_id), _proof_document(cp.proof)
        )
        if other is None:
            raise InvalidTransaction(
                Code.NOT_FOUND, f"{cp.chain} holds no lock {cp.lock_id!r} at height {height}"
            )
        mismatch = _terms_mismatch(other, p, cp, ctx.signer.did or "")
        if mismatch:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"counterpart lock {cp.chain}/{cp.lock_id}: {mismatch}"
            )
        theirs = other["timeout_height"] - client["height"]
        ours = p.timeout_height - ctx.height
        if theirs < ours + model.MIN_DEADLINE_MARGIN:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"counterpart lock {cp.chain}/{cp.lock_id} times out in {theirs} blocks, "
                f"this one in {ours}: lock here with a timeout at most "
                f"{theirs - model.MIN_DEADLINE_MARGIN} blocks ahead",
            )
        return {
            "chain": cp.chain,
            "lock_id": cp.lock_id,
            "height": height,
            "timeout_height": other["timeout_height"],
            "asset": other["asset"],
        }

    def claim(self, p: ClaimPayload, ctx: Context) -> None:
        """Whoever shows the preimage completes the lock for its recipient; the
        preimage is stored and emitted, so the other side of the swap can use it."""
        caller = signer_member(ctx)
        key, lock = self._open_lock(ctx, p.lock_id)
        if ctx.height > lock["timeout_height"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"lock {p.lock_id!r} timed out at height {lock['timeout_height']}; it can "
                "only be refunded",
            )
        if crypto.sm3(p.preimage) != lock["hashlock"]:
            raise InvalidTransaction(
                Code.INVALID_PROOF, "the preimage does not hash (SM3) to the lock's hashlock"
            )
        asset = lock["asset"]
        extra: dict[str, str] = {}
        if asset["kind"] == model.TOKEN:
            move(
                ctx,
                model.escrow(p.lock_id),
                lock["recipient"],
                asset["amount"],
                f"htlc claim {p.lock_id}",
            )
        else:
            # Not re-checked against the records now: a patient who erased or corrected
            # a record after locking must not be able to make this claim fail once the
            # other side is claimed (the grant then simply covers less).
            offer = msgspec.convert(asset, GrantAsset)
            lock["grant_id"] = issue_grant(
                ctx,
                patient=lock["locker"],
                grantee_kind="did",
                grantee=lock["recipient"],
                purposes=offer.purposes,
                scope_records=offer.records,
                scope_types=[],
                expires_ms=ctx.time_ms + offer.duration_ms,
                granted_by=lock["locker"],
            )
            extra = {"patient": lock["locker"], "grant_id": lock["grant_id"]}
        lock["status"], lock["preimage"] = model.CLAIMED, p.preimage
        lock["closed_by"], lock["closed_height"] = caller["did"], ctx.height
        ctx.put(key, lock)
        ctx.emit(
            "htlc.claimed",
            lock_id=p.lock_id,
            preimage=p.preimage.hex(),
            recipient=lock["recipient"],
            actor=caller["did"],
            **extra,
        )

    def refund(self, p: RefundPayload, ctx: Context) -> None:
        """After the timeout the asset goes back to the locker (a grant offer lapses)."""
        caller = signer_member(ctx)
        key, lock = self._open_lock(ctx, p.lock_id)
        if ctx.height <= lock["timeout_height"]:
            raise InvalidTransaction(
                Code.INVALID_STATE,
                f"lock {p.lock_id!r} may be claimed until height {lock['timeout_height']} "
                f"(now {ctx.height}); refund after it",
            )
        if lock["asset"]["kind"] == model.TOKEN:
            move(
                ctx,
                model.escrow(p.lock_id),
                lock["locker"],
                lock["asset"]["amount"],
                f"htlc refund {p.lock_id}",
            )
        lock["status"] = model.REFUNDED
        lock["closed_by"], lock["closed_height"] = caller["did"], ctx.height
        ctx.put(key, lock)
        extra = {"patient": lock["locker"]} if lock["asset"]["kind"] == model.GRANT else {}
        ctx.emit(
            "htlc.refunded", lock_id=p.lock_id, locker=lock["locker"], actor=caller["did"], **extra
        )

    def _open_lock(self, ctx: Context, lock_id: str) -> tuple[str, model.Lock]:
        key = model.lock_key(lock_id)
        lock = cast(model.Lock, dict(ctx.require(key, f"lock {lock_id!r}")))
        if lock["status"] != model.LOCKED:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"lock {lock_id!r} is already {lock['status']}"
            )
        return key, lock


def follow_counterparty(ctx: Context, p: RegisterCounterpartyPayload, actor: str) -> None:
    """Start (or restart, forgetting the roots kept) the light client of `p.chain_id`
    and emit `htlc.counterparty_registered`. register_counterparty calls it after its
    authority checks, and so does an accepted governance proposal (with its own ctx)."""
    writer = replace(ctx, namespace=model.NAMESPACE)
    if p.chain_id == ctx.chain_id:
        raise invalid("a chain is not its own counterparty")
    old = writer.get(model.client_key(p.chain_id))
    for height in old["heights"] if old is not None else []:
        writer.delete(model.root_key(p.chain_id, height))
    client: model.Client = {
        "chain_id": p.chain_id,
        "engine": p.engine,
        "height": p.height,
        "heights": [],
        "registered_by": actor,
    }
    if p.engine == lightclient.SOLO:
        if p.suite not in crypto.SUITES:
            raise invalid(f"unknown suite {p.suite!r}; known: {sorted(crypto.SUITES)}")
        client["suite"], client["public_key"] = p.suite, p.public_key
    else:
        client["validators"] = lightclient.stored_set(p.validators)
        client["header_hash"] = p.header_hash
        client["root_height"] = p.height
        client["trusted_ms"] = ctx.time_ms
    writer.put(model.client_key(p.chain_id), client)
    writer.emit(
        "htlc.counterparty_registered",
        chain=p.chain_id,
        engine=p.engine,
        height=str(p.height),
        actor=actor,
    )


def _own_records(ctx: Context, patient: str, offer: GrantAsset) -> None:
    """A grant offer covers only active records of the signing patient."""
    patient_member(ctx, patient)
    for record_id in offer.records:
        record = ctx.get(record_key(record_id))
        if record is None or record["patient"] != patient:
            raise unauthorized(f"{record_id!r} is not a record of {patient}")
        if record["status"] != RECORD_ACTIVE:
            raise InvalidTransaction(
                Code.INVALID_STATE, f"record {record_id!r} is {record['status']}"
            )


def _terms_mismatch(other: Any, p: LockPayload, cp: CounterpartIn, locker: str) -> str:
    """What in the proven counterpart lock is not what this second lock answers."""
    if not isinstance(other, dict):
        return "not a lock"
    expected = {
        "status": model.LOCKED,
        "hashlock": p.hashlock,
        "recipient": locker,
        "locker": p.recipient,
        "asset": msgspec.to_builtins(cp.asset),
    }
    for field, value in expected.items():
        if other.get(field) != value:
            return f"its {field} is not {value!r}" if field != "asset" else "its asset differs"
    return ""


def _proof_document(proof: StateProof) -> dict[str, Any]:
    """The payload's proof as the medchain-proof/v1 JSON document core/proofs checks."""
    return {
        "format": PROOF_FORMAT,
        "kind": "state",
        "chain_id": proof.chain_id,
        "height": proof.height,
        "key": proof.key,
        "value": None if proof.value is None else proof.value.hex(),
        "state_proof": {
            "key_hash": proof.key_hash.hex(),
            "siblings": [s.hex() for s in proof.siblings],
            "leaf_key": None if proof.leaf_key is None else proof.leaf_key.hex(),
            "leaf_value_hash": None
            if proof.leaf_value_hash is None
            else proof.leaf_value_hash.hex(),
        },
        "results_root": proof.results_root.hex(),
        "app_hash": proof.app_hash.hex(),
    }
