"""Research studies: vocabulary, state records, keys, cohorts and their proofs.

A study is a sponsor's federated-learning protocol across 2..16 hospitals.
Patients join it through the consent contract (a grant whose grantee kind is
"study", purpose HRESEARCH only). For each round, a hospital's cohort is
exactly the patients who hold an active study grant at that round's block and
an active record at that hospital. The chain recomputes it when the hospital
commits it, so the count and the SM3 Merkle root on chain are the chain's,
not the hospital's word.

A cohort is committed as pseudonymous sample ids, sorted: a sample id is the
SM3 of the study id and the patient's DID (domain-separated), so the cohort
says nothing about who took part to someone who does not already know a DID,
while a patient can compute their own id and check it. Because the leaves are
sorted, absence is provable too: the two adjacent leaves around the missing
id, with paths whose directions are bound to their indices and the count.

Everything here is a pure function of `get`/`scan`, used by the handler, and
by the CLI, the gateway and an auditor offline.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NotRequired, TypedDict, cast

from medchain.contracts.consent import model as consent
from medchain.contracts.records import model as records
from medchain.core.merkle import EMPTY_ROOT, merkle_path, merkle_root, root_from_path
from medchain.crypto import sm3
from medchain.exceptions import Code, InvalidTransaction

NAMESPACE = "research"

# Who may act for an organisation in a study: its admin or its researchers.
STUDY_ROLES = frozenset({"org_admin", "researcher"})
# Which organisations may hold data for a study.
HOSPITAL_TYPES = frozenset({"hospital", "clinic"})
MIN_HOSPITALS, MAX_HOSPITALS = 2, 16
MAX_ROUNDS = 1000
MAX_FEATURES = 64
MAX_TITLE = 200
# How many grants a study may ever receive (consent.grant refuses the next one): the
# chain rereads them all when a cohort is committed (each patient holds at most one
# active study grant).
MAX_STUDY_GRANTS = 20_000
# How many grants one patient may ever make to one study (join, leave, rejoin, renew):
# every grant stays in the study's index, so without this bound one patient could
# grow it past MAX_STUDY_GRANTS and stop every later cohort commit.
MAX_JOINS_PER_PATIENT = 8
# How many record index entries of one patient a cohort check reads.
MAX_PATIENT_RECORDS = 100_000
BASIS_POINTS = 10_000

OPEN, COMPLETED = "open", "completed"
AGGREGATIONS = ("ckks-fedavg", "fedavg")
CONTRIBUTION_METHODS = ("leave-one-out",)
SAMPLE_DOMAIN = b"medchain/research/sample\x00"

Get = Callable[[str], Any]
Scan = Callable[[str], Iterator[tuple[str, Any]]]
# Most entries a cohort read takes under one prefix (a study's grants, a patient's records).
COHORT_READ_LIMIT = max(MAX_STUDY_GRANTS, MAX_PATIENT_RECORDS)


def bounded(scan: Scan) -> Scan:
    """`scan` (which reads at most COHORT_READ_LIMIT + 1 entries) refusing rather than
    silently stopping at the limit: a cohort read from a truncated scan would be wrong
    (on every node alike, in a transaction)."""

    def refusing(prefix: str) -> Iterator[tuple[str, Any]]:
        for n, pair in enumerate(scan(prefix)):
            if n >= COHORT_READ_LIMIT:
                raise InvalidTransaction(
                    Code.INVALID_STATE, f"more than {COHORT_READ_LIMIT} entries under {prefix}"
                )
            yield pair

    return refusing


class Study(TypedDict):
    """`research/study/<study_id>`: the protocol every participant signed up to."""

    study_id: str
    title: str
    sponsor_org: str
    created_by: str
    protocol_hash: bytes
    ethics_record_id: str
    data_types: list[str]
    features: list[str]
    hospitals: list[str]
    rounds_planned: int
    rounds_recorded: int
    aggregation: str
    dp_epsilon_milli: NotRequired[int]  # absent: no differential privacy
    expires_ms: int
    status: str
    created_height: int
    created_time_ms: int
    completed_height: NotRequired[int]


class Cohort(TypedDict):
    """`research/cohort/<study>/<round:06d>/<org>`: one hospital's cohort of one round,
    as the chain recomputed it (sorted sample ids, their count and Merkle root)."""

    study_id: str
    round: int
    org_id: str
    count: int
    root: bytes
    leaves: list[bytes]
    committed_by: str
    height: int
    time_ms: int


class HospitalMetrics(TypedDict):
    """A hospital's evaluation of the round's global model on its own held-out part."""

    org_id: str
    accuracy_bp: int
    auc_bp: int
    n_eval: int


class UpdateHash(TypedDict):
    """SM3 of the (encrypted) update a hospital sent for the round."""

    org_id: str
    hash: bytes


class CohortDigest(TypedDict):
    """A cohort as a round's record names it: whose, how many, which root."""

    org_id: str
    count: int
    root: bytes


class Round(TypedDict):
    """`research/round/<study>/<round:06d>`: what one federated round produced."""

    study_id: str
    round: int
    global_model_hash: bytes
    metrics: list[HospitalMetrics]
    update_hashes: list[UpdateHash]
    cohorts: list[CohortDigest]
    aggregation: str
    dp_epsilon_milli: NotRequired[int]
    recorded_by: str
    height: int
    time_ms: int


class Contribution(TypedDict):
    """`research/contribution/<study>/<org>`: a hospital's share of a completed study:
    samples × rounds from its committed cohorts (the chain's count), and its
    leave-one-out value on the sponsor's validation set (signed basis points)."""

    study_id: str
    org_id: str
    rounds: int
    samples_x_rounds: int  # the sum of its cohort counts over every round
    value_bp: int
    method: str
    recorded_by: str
    height: int


def study_key(study_id: str) -> str:
    """Where a study lives."""
    return f"{NAMESPACE}/study/{study_id}"


def cohort_prefix(study_id: str) -> str:
    """Every committed cohort of a study, by round then organisation."""
    return f"{NAMESPACE}/cohort/{study_id}/"


def cohort_round_prefix(study_id: str, round_no: int) -> str:
    """Every committed cohort of one round."""
    return f"{cohort_prefix(study_id)}{round_no:06d}/"


def cohort_key(study_id: str, round_no: int, org_id: str) -> str:
    """One hospital's cohort of one round."""
    return f"{cohort_round_prefix(study_id, round_no)}{org_id}"


def round_prefix(study_id: str) -> str:
    """Every recorded round of a study, in order."""
    return f"{NAMESPACE}/round/{study_id}/"


def round_key(study_id: str, round_no: int) -> str:
    """One recorded round."""
    return f"{round_prefix(study_id)}{round_no:06d}"


def contribution_prefix(study_id: str) -> str:
    """Every hospital's contribution to a completed study."""
    return f"{NAMESPACE}/contribution/{study_id}/"


def contribution_key(study_id: str, org_id: str) -> str:
    """One hospital's contribution."""
    return f"{contribution_prefix(study_id)}{org_id}"


def sample_id(study_id: str, patient_did: str) -> bytes:
    """A patient's pseudonymous id in one study: the same in every round and at every
    hospital of the study, unlinkable across studies."""
    return sm3(SAMPLE_DOMAIN + study_id.encode() + b"\x00" + patient_did.encode())


def study_grant_active(grant: dict[str, Any], study_id: str, now_ms: int) -> bool:
    """The grant puts its patient in the study now: a study grant for this study,
    active and unexpired, for research only."""
    return bool(
        grant["grantee_kind"] == "study"
        and grant["grantee"] == study_id
        and grant["status"] == consent.ACTIVE
        and now_ms < grant["expires_ms"]
        and grant["purposes"] == ["HRESEARCH"]
    )


def consenting_patients(get: Get, scan: Scan, study_id: str, now_ms: int) -> list[str]:
    """The patients with an active grant to the study at `now_ms`, sorted."""
    patients: set[str] = set()
    for _, entry in scan(consent.grantee_prefix("study", study_id)):
        grant = get(consent.grant_key(entry["grant_id"]))
        if grant is not None and study_grant_active(grant, study_id, now_ms):
            patients.add(grant["patient"])
    return sorted(patients)


def holds_record_at(get: Get, scan: Scan, patient: str, org_id: str) -> bool:
    """The patient has at least one active record in `org_id`'s custody."""
    for _, entry in scan(records.patient_index_prefix(patient)):
        record = get(records.record_key(entry["record_id"]))
        if (
            record is not None
            and record["status"] == records.ACTIVE
            and record["custodian"] == org_id
        ):
            return True
    return False


def cohort_members(get: Get, scan: Scan, study_id: str, org_id: str, now_ms: int) -> list[str]:
    """A hospital's cohort at `now_ms`: consenting patients with an active record there."""
    return [
        p
        for p in consenting_patients(get, scan, study_id, now_ms)
        if holds_record_at(get, scan, p, org_id)
    ]


def cohort_leaves(study_id: str, patients: Sequence[str]) -> list[bytes]:
    """The sorted sample ids a cohort commits to."""
    return sorted(sample_id(study_id, p) for p in patients)


def cohort_root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle root of a cohort's sorted leaves (EMPTY_ROOT for no one)."""
    return merkle_root(leaves)


# --- proofs: inclusion and exclusion of a sample id in a committed cohort --------


class InclusionProof(TypedDict):
    """A leaf at `index` of a cohort and its Merkle path, JSON-ready (hex)."""

    leaf: str
    index: int
    path: list[tuple[bool, str]]  # (sibling on the left, sibling hash)


class ExclusionProof(TypedDict):
    """The sorted cohort's neighbours around an absent sample id: `below` the last
    leaf smaller than it, `above` the first larger (None past either edge; both
    None only for an empty cohort)."""

    below: InclusionProof | None
    above: InclusionProof | None


def inclusion_proof(leaves: Sequence[bytes], index: int) -> InclusionProof:
    """The proof that leaf `index` is in the cohort."""
    return {
        "leaf": leaves[index].hex(),
        "index": index,
        "path": [(left, sibling.hex()) for left, sibling in merkle_path(leaves, index)],
    }


def prove(leaves: Sequence[bytes], sample: bytes) -> InclusionProof | ExclusionProof:
    """An inclusion proof if `sample` is a leaf of the sorted cohort, else an
    exclusion proof (its neighbours in sort order)."""
    position = bisect_left(leaves, sample)  # the first leaf not smaller than it
    if position < len(leaves) and leaves[position] == sample:
        return inclusion_proof(leaves, position)
    return {
        "below": inclusion_proof(leaves, position - 1) if position > 0 else None,
        "above": inclusion_proof(leaves, position) if position < len(leaves) else None,
    }


def _expected_sides(index: int, count: int) -> list[bool] | None:
    """The sibling sides a path from leaf `index` of `count` leaves must have (this
    tree carries an odd last node up without a sibling); None if out of range.
    Checking them binds a path to its index, which is what makes two proven
    leaves provably adjacent."""
    if not 0 <= index < count:
        return None
    sides, i, n = [], index, count
    while n > 1:
        if i ^ 1 < n:
            sides.append((i ^ 1) < i)
        i, n = i // 2, (n + 1) // 2
    return sides


def verify_inclusion(proof: InclusionProof, sample: bytes, root: bytes, count: int) -> bool:
    """The sample id is leaf `proof.index` of the cohort with this root and count."""
    try:
        leaf = bytes.fromhex(proof["leaf"])
        path = [(bool(left), bytes.fromhex(sibling)) for left, sibling in proof["path"]]
    except (KeyError, TypeError, ValueError):
        return False
    if leaf != sample or _expected_sides(proof["index"], count) != [left for left, _ in path]:
        return False
    return root_from_path(leaf, path) == root


def verify_exclusion(proof: ExclusionProof, sample: bytes, root: bytes, count: int) -> bool:
    """The sample id is not in the cohort with this root and count: its proven
    neighbours are adjacent leaves (or an edge leaf) that sort around it."""
    try:
        below, above = proof["below"], proof["above"]
        low = None if below is None else bytes.fromhex(below["leaf"])
        high = None if above is None else bytes.fromhex(above["leaf"])
    except (KeyError, TypeError, ValueError):
        return False
    if below is None or low is None:
        if above is None or high is None:
            return count == 0 and root == EMPTY_ROOT
        return above["index"] == 0 and sample < high and verify_inclusion(above, high, root, count)
    if not (low < sample and verify_inclusion(below, low, root, count)):
        return False
    if above is None or high is None:
        return below["index"] == count - 1
    return (
        above["index"] == below["index"] + 1
        and sample < high
        and verify_inclusion(above, high, root, count)
    )


def verify_cohort_proof(
    proof: InclusionProof | ExclusionProof, sample: bytes, cohort_record: Cohort | dict[str, Any]
) -> tuple[bool, bool]:
    """(verified, included) of a proof against a cohort's committed root and count."""
    root, count = cohort_record["root"], cohort_record["count"]
    if "leaf" in proof:
        return verify_inclusion(cast(InclusionProof, proof), sample, root, count), True
    return verify_exclusion(proof, sample, root, count), False


# --- queries ----------------------------------------------------------------------


def study(get: Get, study_id: str) -> Study | None:
    """A study, or None."""
    value: Study | None = get(study_key(study_id))
    return value


def cohort(get: Get, study_id: str, round_no: int, org_id: str) -> Cohort | None:
    """One hospital's committed cohort of one round, or None."""
    value: Cohort | None = get(cohort_key(study_id, round_no, org_id))
    return value


def cohorts(scan: Scan, study_id: str) -> list[Cohort]:
    """Every committed cohort of a study, by round then organisation."""
    return [value for _, value in scan(cohort_prefix(study_id))]


def rounds(scan: Scan, study_id: str) -> list[Round]:
    """Every recorded round of a study, in order."""
    return [value for _, value in scan(round_prefix(study_id))]


def contributions(scan: Scan, study_id: str) -> list[Contribution]:
    """Every hospital's contribution to a completed study, by organisation."""
    return [value for _, value in scan(contribution_prefix(study_id))]


def missing_cohorts(get: Get, study_record: Study, round_no: int) -> list[str]:
    """The study's hospitals that have not committed their cohort of `round_no`."""
    return [
        org
        for org in study_record["hospitals"]
        if get(cohort_key(study_record["study_id"], round_no, org)) is None
    ]


def participation(scan: Scan, study_id: str, patient_did: str) -> list[dict[str, Any]]:
    """For each committed cohort of a study: whether the patient is in it, with the
    proof (inclusion or exclusion) that anyone holding the cohort's root and count
    can check with verify_cohort_proof."""
    sample = sample_id(study_id, patient_did)
    rows = []
    for committed in cohorts(scan, study_id):
        proof = prove(committed["leaves"], sample)
        rows.append(
            {
                "round": committed["round"],
                "org_id": committed["org_id"],
                "included": "leaf" in proof,
                "count": committed["count"],
                "root": committed["root"].hex(),
                "sample_id": sample.hex(),
                "proof": proof,
            }
        )
    return rows
