"""The custodian's edge: keeps records, answers exchanges, purges on erasure.

It runs at a hospital, lab or pharmacy next to its vault, and treats the chain
as the only authority:

  prepare,     validate (FHIR R4) a record, then encrypt a batch into the vault
  commit       and register it on chain in as few blocks as possible; what the
               chain refuses is discarded again (add_record: one record;
               edge/importer.py: whole files).
  deliver      for a session the chain opened: only to a request signed by
               the session's requester, only after the chain accepted this
               custodian's `exchange.release` (which re-runs the consent
               decision, so a revocation in any earlier block stops it), and
               only as ciphertext plus a data key wrapped for the requester.
  _authorise   FHIR reads (edge/fhir_reads.py: read, search, history): the
               reader's signed request goes on chain first (exchange.access),
               which decides and audits every record.
  sync         follows committed blocks; a `records.erased` tombstone for one
               of its records destroys the keys and blob and keeps a signed
               purge receipt.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from medchain import crypto, encoding
from medchain.contracts.consent.model import (
    ACTIVE,
    APPROVED,
    break_glass_by_prefix,
    break_glass_key,
    by_grantee_prefix,
    grant_key,
    guardian_key,
)
from medchain.contracts.identity.model import SM9_SUITE, Org, sm9_key_problem
from medchain.contracts.records.model import (
    CUSTODIAN_ROLES,
    MAX_BATCH_RECORDS,
    RESOURCE_TYPES,
    batch_root,
    edge_log_key,
)
from medchain.edge.audit_log import EdgeAuditLog
from medchain.edge.height_watch import HeightWatcher, WaitersFull
from medchain.edge.replay import ReplayCache, ReplayedRequest
from medchain.edge.vault import (
    NewRecord,
    RecordNotFound,
    StoredRecord,
    TamperedBlob,
    Vault,
    VaultError,
    content_hash,
)
from medchain.exceptions import MedChainError
from medchain.fhir import strict
from medchain.fhir.search import IndexEntry, exam_of, index_entry, nested_types
from medchain.fhir.validate import InvalidFhir, validate_resource
from medchain.gateway.limits import MAX_RECORD_BYTES
from medchain.sdk.client import Client, ClientError
from medchain.sdk.signing import RequestSigner

if TYPE_CHECKING:
    from medchain.edge.validation_pool import ValidationPool

log = logging.getLogger("medchain.edge.exchange")
SYNC_HEIGHT = "synced_height"
# How far behind the requester's node this edge's node may be when a request that
# names a height (a fetch, or X-MedChain-Height on an upload or FHIR read) arrives.
CATCH_UP_BLOCKS, CATCH_UP_SECONDS = 3, 3.0
# How many requests may wait for a height at once (the rest are answered Busy at once,
# with Retry-After BUSY_RETRY_AFTER seconds), whoever signed them.
MAX_HEIGHT_WAITERS, BUSY_RETRY_AFTER = 8, 1


class EdgeError(MedChainError):
    """A request the edge will not serve, with a stable `code`.

    No HTTP status here: the edge's apps map codes to answers in one table
    (edge/http/errors.py), so the same refusal reads the same over REST and FHIR.
    """

    code = "EDGE_ERROR"

    def __init__(
        self, message: str, hint: str = "", issues: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
        # (element path, message) pairs, e.g. from the FHIR validator (InvalidFhir.issues)
        self.issues = issues or []


class Refused(EdgeError):
    """The chain says the signer may not have this."""

    code = "UNAUTHORIZED"


class NotHere(EdgeError):
    """No such record, session or importer at this edge."""

    code = "NOT_FOUND"


class Conflict(EdgeError):
    """The request conflicts with the record's or session's state."""

    code = "INVALID_STATE"


class BadRecord(EdgeError):
    """The record is not valid FHIR, too large, or does not match its claim."""

    code = "INVALID_RECORD"


class Tampered(EdgeError):
    """A stored blob no longer matches its CID: the vault is damaged."""

    code = "TAMPERED_BLOB"


class Busy(EdgeError):
    """Too many requests wait for this edge's node at once: retry after a moment."""

    code = "EDGE_BUSY"


class Replayed(EdgeError):
    """This edge already accepted this exact signed request."""

    code = "REPLAYED_REQUEST"


@dataclass(frozen=True)
class Delivery:
    """What a requester receives: ciphertext and a key only it can unwrap."""

    session_id: str
    record_id: str
    resource_type: str
    cid: str
    ciphertext: bytes
    wrapped_key: bytes
    salt: bytes

    def to_json(self) -> dict[str, str]:
        """The delivery as the edge's HTTP answer sends it (bytes as hex)."""
        return {
            "session_id": self.session_id,
            "record_id": self.record_id,
            "resource_type": self.resource_type,
            "cid": self.cid,
            "ciphertext": self.ciphertext.hex(),
            "wrapped_key": self.wrapped_key.hex(),
            "salt": self.salt.hex(),
        }


@dataclass(frozen=True)
class Source:
    """Where a converted record came from: the HIS input and the mapping that made it."""

    input: bytes
    mapping_id: str
    mapping_hash: bytes


@dataclass(frozen=True)
class Prepared:
    """A validated record, ready to be encrypted, stored and registered."""

    record_id: str
    resource_type: str
    content: bytes
    index: IndexEntry | None
    exam: tuple[str, int] | None
    supersedes: str | None = None
    source: Source | None = None
    carried: tuple[str, ...] = ()  # record types nested inside (see carried_types)


@dataclass
class Intake:
    """What an upload or import stored and registered, and what it turned away."""

    imported: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The intake as the edge's HTTP answer sends it, each refusal with its reason."""
        return {
            "imported": self.imported,
            "rejected": [{"record_id": r, "reason": why} for r, why in self.rejected],
        }


Call = tuple[str, str, dict[str, Any]]
# A register_batch tx stays well under the chain's 64 KiB tx limit.
MAX_BATCH_ENTRY_BYTES = 48 * 1024


def _registration(patient: str, item: Prepared, stored: StoredRecord) -> Call:
    """The records.register (or supersede) call for a stored record."""
    fields: dict[str, Any] = {
        "resource_type": item.resource_type,
        "cid": stored.cid,
        "content_hash": stored.content_hash,
    }
    if item.exam is not None:
        fields["exam_code"], fields["performed_ms"] = item.exam
    if item.carried:
        fields["carried_types"] = list(item.carried)
    if item.source is not None:
        fields["derived_from"] = {
            "mapping_id": item.source.mapping_id,
            "mapping_hash": item.source.mapping_hash,
            "input_hash": content_hash(stored.salt, item.source.input),
        }
    if item.supersedes is None:
        return "records", "register", {"record_id": item.record_id, "patient": patient, **fields}
    payload = {"record_id": item.supersedes, "new_record_id": item.record_id, **fields}
    return "records", "supersede", payload


def _registrations(patient: str, stored: list[tuple[Prepared, StoredRecord]]) -> list[list[Call]]:
    """The calls that register a patient's stored records, grouped: new records in
    records.register_batch txs (one signature and one SM3 Merkle root per up to
    MAX_BATCH_RECORDS records), each supersede and a lone new record on its own.
    Each group lists the single calls of its records, in order, with the batch call
    (if any) first: the fallback, should the chain refuse the batch as a whole."""
    groups: list[list[Call]] = []
    batch: list[Call] = []
    size = 0
    for item, record in stored:
        call = _registration(patient, item, record)
        if call[1] != "register":
            groups.append([call])
            continue
        entry_size = len(encoding.encode(call[2]))
        if len(batch) == MAX_BATCH_RECORDS or size + entry_size > MAX_BATCH_ENTRY_BYTES:
            groups.append(batch)
            batch, size = [], 0
        batch.append(call)
        size += entry_size
    if batch:
        groups.append(batch)
    return [_with_batch_call(patient, group) for group in groups]


def _with_batch_call(patient: str, calls: list[Call]) -> list[Call]:
    if len(calls) < 2 or calls[0][1] != "register":
        return calls
    entries = [{k: v for k, v in c[2].items() if k != "patient"} for c in calls]
    payload = {"patient": patient, "root": batch_root(patient, entries), "records": entries}
    return [("records", "register_batch", payload), *calls]


# Nested resources that only describe who or what took part (the drug of a
# prescription, the prescriber, the lab): part of their parent's meaning, not a
# clinical fact about the patient of their own, so no role policy governs them.
DESCRIPTIVE_TYPES = frozenset(
    {"Medication", "Substance", "Practitioner", "PractitionerRole", "Organization", "Location"}
)


def carried_types(resource: dict[str, Any], record_id: str) -> tuple[str, ...]:
    """The record types a resource carries inside it (contained resources, bundle
    entries), for registration; BadRecord if it carries a type nobody governs.

    A reader sees everything a record holds, so the role policy and type-scoped
    grants must cover every clinical type in it, not only the top-level one: a
    MedicationRequest with a contained HIV Condition is not a pharmacist's to
    read. We register such records with their carried types (the chain's
    decision requires all of them) rather than refusing them, because contained
    resources are common and legitimate in FHIR; the reader who may see every
    part still gets the whole record. A nested type outside the governed
    clinical types and the descriptive ones (Specimen, Questionnaire, ...) is
    refused, since no role policy could say who may see it.
    """
    nested = nested_types(resource) - DESCRIPTIVE_TYPES
    ungoverned = sorted(nested - RESOURCE_TYPES)
    if ungoverned:
        raise BadRecord(
            f"{record_id}: carries {', '.join(ungoverned)} inside, which no role policy governs",
            "store such resources as records of their own, or leave them out",
        )
    return tuple(sorted(nested - {resource.get("resourceType")}))


def prepare_record(
    data: Any, record_id: str, supersedes: str | None = None, source: Source | None = None
) -> Prepared:
    """Validate one FHIR resource parsed from JSON into a record to store: pure, so
    it also runs in a validation worker process (edge/validation_pool.py)."""
    try:
        resource_type, content, resource = validate_resource(data, record_id)
    except InvalidFhir as e:
        raise BadRecord(f"{record_id}: {e}", "send valid FHIR R4 JSON", e.issues) from None
    return Prepared(
        record_id,
        resource_type,
        content,
        index_entry(resource),
        exam_of(resource),
        supersedes,
        source,
        carried_types(resource, record_id),
    )


def active_public_key(member: dict[str, Any]) -> bytes:
    """The member's current (active) public key, from its identity record."""
    for k in member["keys"]:
        if k["status"] == "active":
            return bytes.fromhex(k["public_key"])
    raise Refused(f"{member['did']} has no active key")


def wrapping_key(member: dict[str, Any]) -> bytes:
    """The SM2 public key a member's data keys are wrapped to: its active key, or that
    key's SM2 half for a hybrid sm2+mldsa key (as the suite wraps; the member's
    hybrid key file opens it). Refused for a key of a suite that cannot receive one."""
    for k in member["keys"]:
        if k["status"] == "active":
            public = bytes.fromhex(k["public_key"])
            if k["suite"] == crypto.DEFAULT_SUITE:
                return public
            if k["suite"] == "sm2+mldsa":
                return public[:SM2_PUBLIC_BYTES]
            raise Refused(
                f"{member['did']}'s key (suite {k['suite']}) cannot receive data keys",
                "the patient rotates to an sm or sm2+mldsa key (identity.rotate_key)",
            )
    raise Refused(f"{member['did']} has no active key")


SM2_PUBLIC_BYTES = 64


class CustodianEdge:
    """One organisation's edge service over its vault and a node's API."""

    def __init__(self, vault: Vault, operator: crypto.KeyPair, node: Client) -> None:
        self.vault, self.operator, self.node = vault, operator, node
        account = node.account(operator)
        if account["did"] is None or account["status"] != "active":
            raise Refused(
                f"the edge's operator key is {account['status']} on chain",
                "add it as staff of your organisation (identity.add_member) first",
            )
        self.operator_did: str = account["did"]
        self.org_id: str = node.member(self.operator_did)["org_id"]
        if self.org_id is None:
            raise Refused("the edge's operator key is not staff of an organisation")
        self._send_lock = threading.Lock()
        # Worker processes that validate imports beside this one (set by whoever runs
        # the edge: edge/validation_pool.py); None validates in the request's thread.
        self.validation: ValidationPool | None = None
        self._replays = ReplayCache()
        self.audit_log = EdgeAuditLog(vault.root / "audit-log.db")
        self._anchor_lock = threading.Lock()
        self._sync_lock = threading.Lock()  # the background loop and a caller: one at a time
        self._heights = HeightWatcher(lambda: int(node.status()["height"]), MAX_HEIGHT_WAITERS)
        if vault.get_meta(SYNC_HEIGHT, -1) < 0:
            vault.set_meta(SYNC_HEIGHT, node.status()["height"])
        strict.prepare(sorted(RESOURCE_TYPES))  # once per process: not on the first upload

    def _register(self, calls: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Sign and submit many calls under the nonce lock, then wait for their blocks
        outside it, so concurrent imports share blocks instead of queueing."""
        if not calls:
            return []
        with self._send_lock:
            answers = self.node.submit_batch(self.node.sign_batch(self.operator, calls))
        return self.node.outcomes(answers)

    def _send(self, contract: str, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Sign as the operator and wait for the block; one at a time (nonces)."""
        with self._send_lock:
            return self.node.send(self.operator, contract, action, payload)

    # -- who is asking -------------------------------------------------------

    def caller_member(self, signer: RequestSigner) -> dict[str, Any]:
        """The identity record of the active member who signed a request, or Refused."""
        account = self.node.account_of(signer.suite, signer.public_key)
        if account["did"] is None or account["status"] != "active":
            raise Refused(f"the signing key is {account['status']} on chain")
        return self.node.member(account["did"])

    def accept_once(self, signer: RequestSigner, method: str, path: str) -> None:
        """Let a signed request that changes state act once: Replayed if this edge
        already accepted it (see edge/replay.py)."""
        try:
            self._replays.accept_once(signer, method, path)
        except ReplayedRequest as e:
            raise Replayed(str(e), "sign the request again to repeat it") from None

    def staff_of_this_org(self, signer: RequestSigner) -> str:
        """The DID of an active staff member of this organisation, or Refused."""
        member = self.caller_member(signer)
        if member["org_id"] != self.org_id or not CUSTODIAN_ROLES & set(member["roles"]):
            raise Refused(f"only staff of {self.org_id} may store records here")
        return str(member["did"])

    def link_patient(self, system: str, identifier: str, did: str) -> None:
        """Link a HIS patient identifier to a registered patient's DID."""
        self.patient_key(did)
        self.vault.link_patient(system, identifier, did)

    # -- records -------------------------------------------------------------

    def prepare(
        self,
        content: bytes,
        record_id: str | None = None,
        resource_type: str | None = None,
        supersedes: str | None = None,
        source: Source | None = None,
    ) -> Prepared:
        """Validate one record (FHIR R4 JSON, or bytes as Binary) before anything is stored."""
        if len(content) > MAX_RECORD_BYTES:
            raise BadRecord(f"record is larger than {MAX_RECORD_BYTES} bytes")
        record_id = record_id or f"{self.org_id}-{secrets.token_hex(10)}"
        if resource_type == "Binary":
            return Prepared(record_id, "Binary", content, None, None, supersedes, source)
        try:
            data = json.loads(content)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRecord(f"{record_id}: not JSON: {e}", "send valid FHIR R4 JSON") from None
        return self.prepare_resource(data, record_id, supersedes, source)

    def prepare_resource(
        self,
        data: Any,
        record_id: str,
        supersedes: str | None = None,
        source: Source | None = None,
    ) -> Prepared:
        """Validate one FHIR resource already parsed from JSON (imports have it so)."""
        return prepare_record(data, record_id, supersedes, source)

    def patient_key(self, patient: str) -> bytes:
        """The active public key of a registered patient, from the chain; NotHere if
        `patient` is no registered patient."""
        try:
            owner = self.node.member(patient)
        except ClientError:
            raise NotHere(f"{patient} is not a registered patient") from None
        if "patient" not in owner["roles"]:
            raise NotHere(f"{patient} is not a registered patient")
        return wrapping_key(owner)

    def commit(self, patient: str, items: list[Prepared]) -> Intake:
        """Encrypt and store prepared records, register them all in as few blocks as
        possible, and keep only what the chain accepted."""
        return self.commit_many([(patient, items)])[patient]

    def commit_many(
        self,
        plan: list[tuple[str, list[Prepared]]],
        owner_keys: Mapping[str, bytes] | None = None,
    ) -> dict[str, Intake]:
        """commit for several patients at once, pipelined: each patient's records are
        sealed into the vault and their registrations submitted before the next
        patient's are sealed, and only then does it wait for the blocks, so sealing,
        submission and the chain's blocks overlap. A patient's new records go in
        records.register_batch txs under one shared patient key (Vault.store_many);
        should the chain refuse a batch, its records are registered one by one, so
        each is accepted or refused on its own as before. `owner_keys`: patients'
        keys the caller already read from the chain (patient_key), e.g. while it
        validated."""
        intakes: dict[str, Intake] = {}
        groups: list[tuple[Intake, list[Call], dict[str, tuple[Prepared, StoredRecord]]]] = []
        answers: list[dict[str, Any]] = []
        for patient, items in plan:
            known = owner_keys.get(patient) if owner_keys is not None else None
            owner_key = known if known is not None else self.patient_key(patient)
            for record_id in sorted(self.vault.held([i.record_id for i in items])):
                if not self._on_chain(record_id):
                    self.vault.discard(record_id)  # left over from an interrupted import
            intake = intakes.setdefault(patient, Intake())
            new = [NewRecord(i.record_id, i.content, owner_key, patient, i.index) for i in items]
            stored_items = []
            together = len(new) > 1  # one shared patient key, one pack file
            outcomes = self.vault.store_many(new, share_patient_key=together, pack=together)
            for item, stored in zip(items, outcomes, strict=True):
                if isinstance(stored, VaultError):
                    intake.rejected.append((item.record_id, str(stored)))
                    continue
                stored_items.append((item, stored))
            by_id = {item.record_id: (item, stored) for item, stored in stored_items}
            patient_groups = _registrations(patient, stored_items)
            groups += [(intake, group, by_id) for group in patient_groups]
            answers += self._submit([group[0] for group in patient_groups])
        retry: list[tuple[Intake, list[Call], dict[str, tuple[Prepared, StoredRecord]]]] = []
        for (intake, group, by_id), result in zip(groups, self.node.outcomes(answers), strict=True):
            singles = group[1:] if group[0][1] == "register_batch" else group
            if len(singles) < len(group) and result.get("code") != 0:
                retry.append((intake, singles, by_id))
                continue
            for call in singles:
                self._keep(intake, by_id, call, result)
        if retry:
            answers = self._submit([call for _, calls, _ in retry for call in calls])
            results = iter(self.node.outcomes(answers))
            for intake, calls, by_id in retry:
                for call in calls:
                    self._keep(intake, by_id, call, next(results))
        return intakes

    def _submit(self, calls: list[Call]) -> list[dict[str, Any]]:
        """Sign and submit calls under the nonce lock; the answers to wait on later."""
        if not calls:
            return []
        with self._send_lock:
            return self.node.submit_batch(self.node.sign_batch(self.operator, calls))

    def _keep(
        self,
        intake: Intake,
        by_id: dict[str, tuple[Prepared, StoredRecord]],
        call: Call,
        result: dict[str, Any],
    ) -> None:
        """Note the chain's answer for the record a call registers: keep it, or discard
        it from the vault if refused."""
        payload = call[2]
        item, stored = by_id[str(payload.get("new_record_id", payload["record_id"]))]
        if result.get("code") != 0:
            self.vault.discard(item.record_id)
            intake.rejected.append((item.record_id, f"chain refused: {result.get('log')}"))
            return
        if item.supersedes is not None and self.vault.has(item.supersedes):
            self.vault.unindex(item.supersedes)
        intake.imported.append(
            {
                "record_id": item.record_id,
                "resource_type": item.resource_type,
                "cid": stored.cid,
                "height": result.get("height"),
            }
        )

    def _on_chain(self, record_id: str) -> bool:
        try:
            self.node.record(record_id)
        except ClientError as e:
            if e.status == 404:
                return False
            raise
        return True

    def add_record(
        self,
        content: bytes,
        patient: str,
        record_id: str | None = None,
        resource_type: str | None = None,
        supersedes: str | None = None,
    ) -> dict[str, Any]:
        """Validate, encrypt, store and register one record (or a new version of the
        record `supersedes`)."""
        intake = self.commit(patient, [self.prepare(content, record_id, resource_type, supersedes)])
        if intake.rejected:
            raise Conflict(intake.rejected[0][1])
        return intake.imported[0]

    # -- exchange ------------------------------------------------------------

    def deliver(
        self, session_id: str, signer: RequestSigner, opened_at: int | None = None
    ) -> Delivery:
        """Ciphertext and a re-wrapped key for the session's requester, after release."""
        if opened_at is not None:
            self.catch_up(opened_at)
        try:
            session = self.node.session(session_id)
        except ClientError as e:
            raise NotHere(f"no exchange session {session_id!r} on chain: {e.message}") from None
        if session["custodian"] != self.org_id:
            raise NotHere(f"session {session_id} is for custodian {session['custodian']}")
        if bytes.fromhex(session["requester_key"]) != signer.public_key:
            raise Refused("only the session's requester may fetch this record")
        # The key that opened the session must still be the requester's active key:
        # a key rotated out (lost, stolen) collects nothing it asked for earlier.
        member = self.caller_member(signer)
        if active_public_key(member) != signer.public_key:
            raise Refused("the signing key is no longer the requester's active key")
        if session["status"] != "open":
            raise Conflict(
                f"session {session_id} is {session['status']}",
                "request a new session with exchange.request",
            )
        record_id = session["record_id"]
        try:
            cid = self.vault.cid(record_id)
            ciphertext = self.vault.ciphertext(cid)  # before release: never burn a session
        except RecordNotFound as e:
            raise NotHere(str(e)) from None
        except TamperedBlob as e:
            raise Tampered(str(e), "the custodian must restore this blob from backup") from None
        sm9_to = self._sm9_recipient(signer, member)  # before release: never burn a session
        result = self._send("exchange", "release", {"session_id": session_id})
        if result.get("code") != 0:
            raise Refused(f"the chain refused the release: {result.get('log')}")
        record = self.node.record(record_id)
        # What the chain's audit trail already holds (session, record, requester's DID),
        # so an operator can match this edge's deliveries to it; never the content or keys.
        log.info(
            "released record %s for session %s",
            record_id,
            session_id,
            extra={
                "session_id": session_id,
                "record_id": record_id,
                "requester": session["requester"],
            },
        )
        return Delivery(
            session_id=session_id,
            record_id=record_id,
            resource_type=record["resource_type"],
            cid=cid,
            ciphertext=ciphertext,
            wrapped_key=self.vault.release_key(
                record_id, signer.public_key, signer.suite, sm9_to
            ),
            salt=self.vault.salt(record_id),
        )

    def _sm9_recipient(
        self, signer: RequestSigner, member: dict[str, Any]
    ) -> tuple[bytes, str] | None:
        """For an sm9 requester, its org's published SM9 encryption master key and its
        DID (what the data key is wrapped to); None for other suites that can receive
        a wrapped key, Refused for one that cannot (pq, intl). The chain has
        checked that an sm9 key names its holder's DID under its org's master key."""
        if signer.suite != SM9_SUITE:
            if crypto.get_suite(signer.suite).wrap_key is None:
                # Checked before the release tx: a release that cannot be delivered
                # would spend the session and log an access that never happened.
                raise Refused(
                    f"a key of suite {signer.suite} cannot receive data keys",
                    "request with an sm, sm2+mldsa or sm9 key (identity.rotate_key)",
                )
            return None
        org = self.node.org(str(member["org_id"])) if member["org_id"] else None
        if org is not None:  # the node answers hex; the rule reads bytes
            for field in ("sm9_sign_master", "sm9_enc_master"):
                if field in org:
                    org[field] = bytes.fromhex(org[field])
        # As for a rotated-out key: a key under a replaced master collects nothing.
        problem = sm9_key_problem(cast(Org | None, org), str(member["did"]), signer.public_key)
        if problem is not None or org is None:
            raise Refused(problem or "an sm9 key belongs to an organisation's staff")
        return org["sm9_enc_master"], str(member["did"])

    def catch_up(self, height: int) -> None:
        """Wait (briefly) until this edge's node has committed `height`, the block
        holding what a request depends on (the session a fetch names; the grant a
        FHIR read needs, the member or patient an upload names): on a network the
        requester's node may commit a block moments before ours, and an answer from
        the state before it would be a wrong refusal. The wait comes before the chain
        has said who asks, so it is cheap whoever asks: one shared poll of the node
        (edge/height_watch.py), a height more than a few blocks ahead is not waited
        for, and past MAX_HEIGHT_WAITERS waiting at once the edge answers Busy."""
        try:
            self._heights.wait_for(height, CATCH_UP_SECONDS, CATCH_UP_BLOCKS)
        except WaitersFull as e:
            raise Busy(
                f"this edge is busy waiting for its node ({e})",
                f"retry after {BUSY_RETRY_AFTER} s (Retry-After), or without X-MedChain-Height",
            ) from None

    # -- FHIR reads (every one authorised and audited on chain) -------------------

    def _authorise(
        self, signer: RequestSigner, method: str, path: str, ids: list[str]
    ) -> dict[str, str]:
        """Put the reader's signed request on chain (exchange.access); the ids it may
        have, each with the basis, and raise Refused with the reasons if none. The
        purpose is the one the reader signed: the chain re-verifies it, so the edge
        cannot record another."""
        action, payload = signer.access_call(method, path, ids)
        result = self._send("exchange", action, payload)
        if result.get("code") != 0:
            raise Refused(f"the chain refused the read: {result.get('log')}")
        allowed, refused = {}, []
        for event in result["events"]:
            attrs = event["attributes"]
            if event["type"] == "exchange.accessed":
                allowed[attrs["record_id"]] = attrs["basis"]
            elif event["type"] == "exchange.refused":
                refused.append(f"{attrs['record_id']}: {attrs['reason']}")
        if not allowed:
            raise Refused(
                "access refused: " + "; ".join(refused),
                "ask the patient for consent, or use break-glass in an emergency",
            )
        return allowed

    def has_standing(self, member: dict[str, Any], patient: str) -> bool:
        """Whether the caller has any relationship with this patient: the patient,
        a guardian, staff of this custodian, the grantee (as a DID, role or org) of
        a live grant of theirs, or a doctor with an approved break-glass for them.

        Only such a caller may learn that a record of the patient exists here
        (a refusal with reasons, a withheld count); to anyone else the edge answers
        exactly as if there were nothing, so self-registering a key and searching
        by code or guessing ids reveals nothing about who is treated for what.
        """
        did = member["did"]
        if did == patient:
            return True
        if member["org_id"] == self.org_id and CUSTODIAN_ROLES & set(member["roles"]):
            return True
        if self.node.value(guardian_key(patient, did)) is not None:
            return True
        now_ms = self.node.block_time_ms()
        grantees = [("did", did)] + [("role", role) for role in member["roles"]]
        if member["org_id"]:
            grantees.append(("org", member["org_id"]))
        for kind, grantee in grantees:
            for item in self.node.scan(by_grantee_prefix(kind, grantee, patient), 1000)["items"]:
                grant = self.node.value(grant_key(item["value"]["grant_id"]))
                if grant and grant["status"] == ACTIVE and now_ms < grant["expires_ms"]:
                    return True
        for item in self.node.scan(break_glass_by_prefix(did, patient), 1000)["items"]:
            request = self.node.value(break_glass_key(item["value"]["request_id"]))
            if request and request["status"] == APPROVED and now_ms < request["expires_ms"]:
                return True
        return False

    def _resource(self, record_id: str) -> dict[str, Any]:
        try:
            resource: dict[str, Any] = json.loads(self.vault.plaintext(record_id))
        except TamperedBlob as e:
            raise Tampered(str(e), "the custodian must restore this blob from backup") from None
        return resource

    # -- erasure -------------------------------------------------------------

    def purge(self, record_id: str) -> dict[str, Any]:
        """Destroy a record the chain has tombstoned; the signed purge receipt."""
        try:
            record = self.node.record(record_id)
        except ClientError:
            raise NotHere(f"no record {record_id!r} on chain") from None
        if record["custodian"] != self.org_id:
            raise NotHere(f"record {record_id!r} is held by {record['custodian']}")
        if record["status"] != "erased":
            raise Conflict(
                f"record {record_id!r} is {record['status']} on chain",
                "the patient or the custodian's org admin must submit records.erase first",
            )
        if not self.vault.has(record_id):
            return self.vault.receipt(record_id)
        receipt = self.vault.erase(record_id)
        log.info("purged record %s", record_id, extra={"record_id": record_id})
        return receipt

    def sync(self) -> int:
        """Act on blocks committed since the last sync; returns how many records it purged."""
        with self._sync_lock:
            return self._sync()

    def _sync(self) -> int:
        purged = 0
        height = self.node.status()["height"]
        for h in range(self.vault.get_meta(SYNC_HEIGHT) + 1, height + 1):
            for result in self.node.block(h)["results"]:
                for event in result["events"]:
                    attrs = event["attributes"]
                    if (
                        event["type"] == "records.erased"
                        and attrs.get("custodian") == self.org_id
                        and self.vault.has(attrs["record_id"])
                    ):
                        self.vault.erase(attrs["record_id"])
                        purged += 1
            self.vault.set_meta(SYNC_HEIGHT, h)
        return purged + self.vault.finish_erasures()

    def anchor_audit_log(self) -> int:
        """Anchor the audit log's new entries on chain (one tx); how many it anchored.

        If the chain already holds a run this edge had not marked (it stopped
        between the commit and the mark), that run is checked against the local
        entries and marked first; a mismatch means the log was altered.
        """
        with self._anchor_lock:
            return self._anchor_next_run()

    def _anchor_next_run(self) -> int:
        head = self.node.value(edge_log_key(self.org_id))
        if head is not None and head["last_seq"] > self.audit_log.anchored_through():
            local = self.audit_log.run_of(head["first_seq"], head["last_seq"])
            if local.root.hex() != head["root"]:  # the node answers bytes as hex
                raise EdgeError(
                    f"the local audit log no longer matches its anchor at {head['last_seq']}",
                    "restore audit-log.db from backup; report to the regulator",
                )
            self.audit_log.mark_anchored(local)
        run = self.audit_log.next_run()
        if run is None:
            return 0
        payload = {"first_seq": run.first_seq, "last_seq": run.last_seq, "root": run.root}
        result = self._send("records", "anchor_log", payload)
        if result.get("code") != 0:
            raise EdgeError(f"the chain refused the audit-log anchor: {result.get('log')}")
        self.audit_log.mark_anchored(run)
        return run.last_seq - run.first_seq + 1

    def status(self) -> dict[str, Any]:
        """Which organisation this edge serves, how many records it holds and how far it
        has followed the chain, for GET /edge/v1/status."""
        return {
            "org_id": self.org_id,
            "operator": self.operator_did,
            "records": self.vault.count(),
            "synced_height": self.vault.get_meta(SYNC_HEIGHT),
        }
