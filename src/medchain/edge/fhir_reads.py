"""FHIR read, search and history of the records a custodian holds.

Every resource served is first put on chain with the caller's own signed
request (`exchange.access`, through CustodianEdge._authorise), which decides
it by consent and role and audits it; only the page a request asks for is
decided (and audited), with the patients it includes. Records of patients the
caller has no standing with (CustodianEdge.has_standing) are left out unseen:
such a caller gets the same answer whether or not anything matches.

Each page says how many of its matches the chain withheld. `Bundle.total` is
given only where it counts nothing the chain has not vouched for: to custodian
staff (the matches their organisation holds); on a page whose matches the chain
all released, when every patient of the search's matches is among theirs (the
chain let the caller read this type of those patients' records); and in a search
whose matches all fit on its first page (the matches served). Otherwise it is
left out, as FHIR allows: counting matches the chain was never asked about would
tell a caller with standing for one thing how many records of another kind a
patient has. A page past the end decides nothing and gives no total. A resource is served
with `meta.versionId` (its place in its supersede chain) and `meta.lastUpdated`
(the block time its version was registered), the same bytes by read, search
and history.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from medchain.contracts.consent.model import break_glass_by_prefix, by_grantee_prefix
from medchain.contracts.exchange.model import MAX_ACCESS_RECORDS
from medchain.contracts.records.model import CUSTODIAN_ROLES, ERASED
from medchain.edge.custodian import CustodianEdge, NotHere, Refused
from medchain.edge.search_index import SearchIndex, Version
from medchain.edge.vault import VaultError
from medchain.fhir.export import iso
from medchain.fhir.search import index_entry
from medchain.fhir.search_params import index_format
from medchain.fhir.search_query import SearchQuery
from medchain.sdk.client import ClientError
from medchain.sdk.signing import RequestSigner

# Past this many distinct patients among a search's matches, the patients the caller
# may have standing with are listed from the chain first (grants to them, their roles
# or org; their break-glass), instead of asking about every patient in turn.
BROAD_SEARCH_PATIENTS = 50
SCAN_LIMIT = 1000


@dataclass
class SearchPage:
    """One page of a search: the total, its matches and included patients as served,
    and how many of the page's resources the chain withheld."""

    total: int | None  # None: not given (see the module's docstring)
    matching: int = 0  # matches among the patients the caller has standing with (paging)
    size: int = 0  # matches this page took from the list (served or withheld)
    matches: list[dict[str, Any]] = field(default_factory=list)
    included: list[dict[str, Any]] = field(default_factory=list)
    withheld: int = 0


INDEX_FORMAT = "search_index_format"  # vault meta: index_format() it was built with
_reindex_lock = threading.Lock()


def index_of(edge: CustodianEdge) -> SearchIndex:
    """The search index over this edge's vault, rebuilt first (once) if it was built
    with other search parameters than this edge's (see reindex)."""
    index = SearchIndex(lambda: edge.vault.index_db)
    if edge.vault.get_meta(INDEX_FORMAT) != index_format():
        with _reindex_lock:
            if edge.vault.get_meta(INDEX_FORMAT) != index_format():
                reindex(edge, index)
                edge.vault.set_meta(INDEX_FORMAT, index_format())
    return index


def reindex(edge: CustodianEdge, index: SearchIndex) -> int:
    """Index every record the vault holds again, with this edge's search parameters
    (a vault from before every type was served, or before a parameter was added):
    each record is read once; its owner and status come from the search tables, or
    from the chain for a record they never described. How many it indexed."""
    added = 0
    for record_id, owner, current in index.held_records():
        try:
            resource = json.loads(edge.vault.plaintext(record_id))
        except (ValueError, VaultError):
            continue  # Binary, or not held whole any more
        entry = index_entry(resource) if isinstance(resource, dict) else None
        if entry is None:
            continue
        listed = current is not None
        if owner is None or current is None:
            try:
                record = edge.node.record(record_id)
            except ClientError:
                continue  # never registered (an interrupted import): nothing to serve
            owner, current = record["patient"], record["status"] == "active"
        index.add(record_id, owner, entry, current, listed)
        added += 1
    return added


def with_meta(resource: dict[str, Any], version: Version) -> dict[str, Any]:
    """The resource as served: meta.versionId and meta.lastUpdated set (other meta kept),
    keys in sorted order like the stored canonical JSON, so every route gives the same
    bytes."""
    meta = {
        **resource.get("meta", {}),
        "versionId": str(version.version),
        "lastUpdated": iso(version.updated_ms),
    }
    return dict(sorted({**resource, "meta": dict(sorted(meta.items()))}.items()))


def served(edge: CustodianEdge, index: SearchIndex, record_id: str) -> dict[str, Any]:
    """A held record as the FHIR API serves it (after the chain allowed it)."""
    return with_meta(edge._resource(record_id), index.version(record_id, edge.node.record))


def read(
    edge: CustodianEdge, signer: RequestSigner, resource_type: str, record_id: str, path: str
) -> dict[str, Any]:
    """FHIR read of the current version of a record held here, if the chain says the
    reader may; the same 404 for an absent record and for one whose patient the caller
    has no standing with."""
    me = edge.caller_member(signer)
    index = index_of(edge)
    held = edge.vault.indexed(record_id)
    old = index.held(record_id) if held is None else None
    if old is not None and old[0] == resource_type and edge.has_standing(me, old[1]):
        current = current_version(edge, record_id)["record_id"]
        raise NotHere(
            f"{resource_type}/{record_id} was superseded by {resource_type}/{current}",
            f"read {resource_type}/{current}, or {resource_type}/{record_id}/_history",
        )
    if held is None or held[0] != resource_type or not edge.has_standing(me, held[1]):
        raise NotHere(f"no {resource_type}/{record_id} here")
    edge._authorise(signer, "GET", path, [record_id])
    return served(edge, index, record_id)


def current_version(edge: CustodianEdge, record_id: str) -> dict[str, Any]:
    """The chain's registration of the latest version of a record's resource."""
    current = edge.node.record(record_id)
    while current.get("superseded_by"):
        current = edge.node.record(current["superseded_by"])
    return current


def _learn_versions(
    edge: CustodianEdge,
    index: SearchIndex,
    query: SearchQuery,
    standing: Callable[[list[tuple[str, str]]], list[tuple[str, str]]],
) -> None:
    """Learn from the chain when the candidates of a _lastUpdated search or sort that
    the caller could see were registered (once per record; the caller learns nothing
    by it, and cannot make the edge look up records it has no standing for)."""
    plain = replace(query, last_updated=[], sort=[("_id", False)])
    learn_versions(edge, index, standing(index.matches(plain)))


def learn_versions(edge: CustodianEdge, index: SearchIndex, records: list[tuple[str, str]]) -> None:
    """Learn the versions of these (record id, owner DID) the index does not know yet,
    one chain lookup per patient (their records' registrations) rather than per record;
    what that leaves unknown is looked up one by one when served (index.version)."""
    missing = set(index.without_version([record_id for record_id, _ in records]))
    for owner in sorted({owner for record_id, owner in records if record_id in missing}):
        index.learn(edge.node.patient_records(owner))


def standing_candidates(edge: CustodianEdge, me: dict[str, Any]) -> set[str] | None:
    """The patients the member may have standing with, listed from the chain's grant
    and break-glass indexes (None: custodian staff, who have it with every patient).
    A guardianship cannot be listed by guardian: a guardian names the ward
    (patient=...) in a search across many patients."""
    if me["org_id"] == edge.org_id and CUSTODIAN_ROLES & set(me["roles"]):
        return None
    found = {str(me["did"])}
    grantees = [("did", me["did"])] + [("role", role) for role in me["roles"]]
    if me["org_id"]:
        grantees.append(("org", me["org_id"]))
    prefixes = [by_grantee_prefix(kind, grantee, "")[:-1] for kind, grantee in grantees]
    prefixes.append(break_glass_by_prefix(me["did"], "")[:-1])
    for prefix in prefixes:
        for item in edge.node.scan(prefix, SCAN_LIMIT)["items"]:
            found.add(str(item["key"])[len(prefix) :].split("/", 1)[0])
    return found


def search(edge: CustodianEdge, signer: RequestSigner, query: SearchQuery, path: str) -> SearchPage:
    """One page of a FHIR search: its matches (and the patients it includes) that the
    chain lets the reader have, decided and audited on chain as this page is served."""
    me = edge.caller_member(signer)
    standing: dict[str, bool] = {}

    def has_standing(patient: str) -> bool:
        if patient not in standing:
            standing[patient] = edge.has_standing(me, patient)
        return standing[patient]

    def visible_of(matches: list[tuple[str, str]]) -> list[tuple[str, str]]:
        patients = {owner for _, owner in matches} - set(standing)
        if len(patients) > BROAD_SEARCH_PATIENTS:
            candidates = standing_candidates(edge, me)
            for patient in patients:
                if candidates is None:
                    standing[patient] = True
                elif patient not in candidates:
                    standing[patient] = False
        return [(rid, owner) for rid, owner in matches if has_standing(owner)]

    if not all(has_standing(owner) for owner in query.owners):
        return SearchPage(0 if query.offset == 0 else None)
    index = index_of(edge)
    if query.last_updated or any(key == "_lastUpdated" for key, _ in query.sort):
        _learn_versions(edge, index, query, visible_of)
    visible = visible_of(index.matches(query))
    staff = me["org_id"] == edge.org_id and bool(CUSTODIAN_ROLES & set(me["roles"]))
    owners: dict[str, str] = {}
    page: list[str] = []
    included: list[str] = []
    brought: dict[str, list[str]] = {}  # included patient -> the page's records naming it
    for record_id, owner in visible[query.offset : query.offset + query.count]:
        brings: list[str] = []
        for param in query.include:
            for ref in index.values(record_id, param):
                patient_id = ref.removeprefix("Patient/")
                held = edge.vault.indexed(patient_id)
                if (
                    ref.startswith("Patient/")
                    and held is not None
                    and held[0] == "Patient"
                    and has_standing(held[1])
                ):
                    brought.setdefault(patient_id, []).append(record_id)
                    if (
                        patient_id not in page
                        and patient_id not in included
                        and patient_id not in brings
                    ):
                        brings.append(patient_id)
                        owners[patient_id] = held[1]
        # One exchange.access decides a page: it holds at most MAX_ACCESS_RECORDS ids,
        # so a page that includes patients may end early (its next link follows on).
        if page and len(page) + len(included) + 1 + len(brings) > MAX_ACCESS_RECORDS:
            break
        page.append(record_id)
        owners[record_id] = owner
        included += [p for p in brings if p != record_id]
    if not page:
        # Nothing on this page to decide: past the end, no count (an unaudited total
        # of undecided matches would be an oracle); at the start, there is none.
        if query.offset > 0:
            return SearchPage(len(visible) if staff else None, len(visible))
        return SearchPage(0)
    try:
        allowed = edge._authorise(signer, "GET", path, page + included)
    except Refused as e:
        if not e.message.startswith("access refused"):
            raise  # the chain refused the access tx itself (stale, replayed): not a decision
        allowed = {}
    # An included patient is served only beside a match the chain released: a patient
    # brought by a withheld match would say what that match was about.
    shown = [p for p in included if p in allowed and any(r in allowed for r in brought[p])]
    learn_versions(edge, index, [(r, owners[r]) for r in page + shown if r in allowed])
    matches = [served(edge, index, r) for r in page if r in allowed]
    whole = query.offset == 0 and len(page) == len(visible)
    # Every match on the page released, and every patient of the matches among them:
    # the chain let the caller read this type of these patients' records.
    released = {owners[r] for r in page if r in allowed}
    vouched = bool(released) and len(matches) == len(page) and {o for _, o in visible} <= released
    return SearchPage(
        len(visible) if staff or vouched else (len(matches) if whole else None),
        len(visible),
        len(page),
        matches,
        [served(edge, index, r) for r in shown],
        sum(1 for r in page if r not in allowed) + sum(1 for p in included if p not in shown),
    )


def history(
    edge: CustodianEdge,
    signer: RequestSigner,
    resource_type: str,
    record_id: str,
    path: str,
    version_id: str | None = None,
) -> list[dict[str, Any]]:
    """Every version of the resource a record is a version of, newest first (or only
    `version_id`). The chain decides on the current version: who may read it may read
    what it superseded (earlier versions are no longer active records, which the chain
    serves no one); the signed request on chain names the history path it read."""
    me = edge.caller_member(signer)
    index = index_of(edge)
    held = index.held(record_id)
    if held is None or held[0] != resource_type or not edge.has_standing(me, held[1]):
        raise NotHere(f"no {resource_type}/{record_id} here")
    current = current_version(edge, record_id)
    chain, step = [], current
    while True:
        if step.get("status") != ERASED:  # an erased version is never served, purged or not
            chain.append(step["record_id"])
        if step.get("supersedes") is None:
            break
        step = edge.node.record(step["supersedes"])
    versions = [(rid, index.version(rid, edge.node.record)) for rid in chain]
    if version_id is not None:
        versions = [(rid, v) for rid, v in versions if str(v.version) == version_id]
        if not versions:
            raise NotHere(f"no version {version_id} of {resource_type}/{record_id} here")
    held_here = [(rid, v) for rid, v in versions if edge.vault.has(rid)]
    if not held_here:
        raise NotHere(f"no version of {resource_type}/{record_id} is held here")
    edge._authorise(signer, "GET", path, [current["record_id"]])
    return [with_meta(edge._resource(rid), v) for rid, v in held_here]
