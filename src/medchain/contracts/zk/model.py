"""Zero-knowledge eligibility: vocabulary, state records, keys and the pure rules.

An accredited lab commits to a lab value (a Pedersen commitment, 33 bytes) bound
to a patient and to the content hash of the record the value came from; the
patient keeps the opening. A verifier (insurer, trial sponsor, hospital) posts a
challenge naming a criterion; the chain gives it a nonce from its tx id, which
nobody knows before the block. The patient answers with Bulletproofs range
proofs (crypto/rangeproof.py) bound to that challenge, so the chain learns that
the committed value meets the criterion, and nothing else about it.

Values are integers in units of 10**-scale (HbA1c 6.5 % is 65 at scale 1); a
birth date is days since 1900-01-01. No floats anywhere here: the age
thresholds are computed from the block date with integer calendar arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NotRequired, TypedDict, cast

from medchain import crypto, encoding

NAMESPACE = "zk"

BIRTH_DATE = "birthDate"
BIRTH_DATE_UNIT = "d"  # an attested birth date: days since EPOCH_1900, scale 0
AGE_UNIT = "a"  # an age criterion's thresholds: whole years (UCUM "a")
DAY_MS = 86_400_000
HBA1C, EGFR, EGFR_CKD_EPI = "4548-4", "33914-3", "62238-1"

# Only these kinds of organisation measure values a patient may prove things about.
ATTESTING_ORG_TYPES = frozenset({"lab", "hospital", "clinic"})
# Who, inside an accredited organisation, signs an attestation.
ATTESTER_ROLES = frozenset({"lab_technician", "doctor", "attending", "department_head"})
# Whose members may challenge a patient to prove a criterion.
VERIFIER_ORG_TYPES = frozenset({"insurer", "research", "hospital"})

Op = Literal["ge", "le", "between"]
GE, LE, BETWEEN = "ge", "le", "between"
ACTIVE, WITHDRAWN = "active", "withdrawn"

COMMITMENT_BYTES = 33
MAX_PROOF_BYTES = 2048  # a range proof is ~620 bytes; anything larger is refused unread
MAX_THRESHOLD = 2**31 - 1  # |threshold| and value - threshold must fit the 32-bit range
MAX_AGE_YEARS = 150
MAX_CHALLENGE_MS = 90 * DAY_MS  # how far ahead a challenge may expire
NONCE_BYTES = 16
CONTEXT_PURPOSE = "medchain/zk-eligibility"

Get = Callable[[str], Any]


class Accreditation(TypedDict):
    """`zk/accreditation/<org id>`: what an organisation may attest, until when."""

    org_id: str
    quantities: list[str]
    expires_ms: int
    status: str  # ACTIVE, or WITHDRAWN (kept for audit)
    by: str
    height: int
    withdrawn_by: NotRequired[str]
    withdrawn_height: NotRequired[int]
    # Set when an organisation is accredited again after a withdrawal: attestations
    # from before this height stay dead (a withdrawal may be for false results).
    attestations_from_height: NotRequired[int]


class Criterion(TypedDict):
    """`zk/criterion/<id>`: a governed eligibility rule on one quantity.

    For a lab value, `threshold` (and `upper` for "between") are integers at
    `scale`, in `unit`. For an age (quantity birthDate, unit "a") they are whole
    years; the chain turns them into birth-date bounds at the proving block's date.
    """

    criterion_id: str
    quantity: str
    unit: str
    scale: int
    op: str
    threshold: int
    upper: NotRequired[int]
    set_by: str
    height: int


class Attestation(TypedDict):
    """`zk/attestation/<id>`: a lab's signed commitment to one value of one record."""

    attestation_id: str
    patient: str
    record_id: str
    content_hash: bytes  # copied from the record: binds commitment, patient and record
    quantity: str
    unit: str
    scale: int
    commitment: bytes
    lab_org: str
    attested_by: str
    height: int
    time_ms: int


class Challenge(TypedDict):
    """`zk/challenge/<id>`: a verifier asks a patient to prove a criterion.

    The criterion is copied as it stood when the challenge was posted, so a
    governance change does not move the goalposts of an open challenge; the nonce
    is the first bytes of the challenge's tx id, unknown before its block.
    """

    challenge_id: str
    criterion: Criterion
    patient: str
    verifier: str
    verifier_org: str
    nonce: bytes
    expires_ms: int
    height: int
    time_ms: int


class Proof(TypedDict):
    """`zk/proof/<challenge id>`: the chain verified the patient's range proof(s) for
    this challenge. One per challenge; it is what claims and other contracts read."""

    challenge_id: str
    criterion_id: str  # e.g. "diabetes-hba1c"
    patient: str  # patient DID
    verifier: str  # DID of the member who issued the challenge
    verifier_org: str  # its org id (e.g. the insurer)
    attestation_id: str
    height: int
    time_ms: int
    lab_org: str
    attested_ms: int  # when the lab attested the value: a verifier may want it recent
    proof_hashes: list[bytes]  # SM3 of each accepted proof (the bytes are in the tx)


def accreditation_key(org_id: str) -> str:
    """Where an organisation's attestation accreditation lives."""
    return f"{NAMESPACE}/accreditation/{org_id}"


def criterion_prefix() -> str:
    """Every criterion: scan it to list them."""
    return f"{NAMESPACE}/criterion/"


def criterion_key(criterion_id: str) -> str:
    """Where one criterion lives."""
    return f"{criterion_prefix()}{criterion_id}"


def attestation_key(attestation_id: str) -> str:
    """Where one attestation lives."""
    return f"{NAMESPACE}/attestation/{attestation_id}"


def challenge_key(challenge_id: str) -> str:
    """Where one challenge lives."""
    return f"{NAMESPACE}/challenge/{challenge_id}"


def proof_key(challenge_id: str) -> str:
    """Where the accepted proof of a challenge lives."""
    return f"{NAMESPACE}/proof/{challenge_id}"


def proven(get: Get, challenge_id: str) -> Proof | None:
    """The accepted proof of a challenge, or None: the one thing other contracts
    (claims) need to know, that the chain verified eligibility for it."""
    found = get(proof_key(challenge_id))
    return None if found is None else cast(Proof, found)


def default_criteria() -> list[dict[str, Any]]:
    """The criteria `set_defaults` installs: HbA1c >= 6.5 % (diabetes), eGFR < 60
    mL/min/1.73m2 (chronic kidney disease; < 60 is <= 59 in whole units), age >= 65."""
    return [
        {
            "criterion_id": "diabetes-hba1c",
            "quantity": HBA1C,
            "unit": "%",
            "scale": 1,
            "op": GE,
            "threshold": 65,
        },
        {
            "criterion_id": "ckd-egfr",
            "quantity": EGFR,
            "unit": "mL/min/{1.73_m2}",
            "scale": 0,
            "op": LE,
            "threshold": 59,
        },
        {
            "criterion_id": "age-65",
            "quantity": BIRTH_DATE,
            "unit": AGE_UNIT,
            "scale": 0,
            "op": GE,
            "threshold": 65,
        },
    ]


def accredited_for(
    get: Get, org_id: str, quantity: str, now_ms: int, attested_height: int | None = None
) -> str | None:
    """None if `org_id` may attest `quantity` at `now_ms` (and, given the height of an
    attestation, if that attestation was made under the current accreditation, not
    before a withdrawal); else why not."""
    found = get(accreditation_key(org_id))
    if found is None or found["status"] != ACTIVE:
        return f"{org_id} holds no zk accreditation"
    if found["expires_ms"] <= now_ms:
        return f"{org_id}'s zk accreditation expired"
    if quantity not in found["quantities"]:
        return f"{org_id} is not accredited to attest {quantity}"
    if attested_height is not None and attested_height < found.get("attestations_from_height", 0):
        return f"{org_id}'s zk accreditation was withdrawn after this attestation"
    return None


def attestations_from(previous: Accreditation | None, height: int) -> int | None:
    """The height before which an organisation's attestations stay dead once it is
    accredited at `height`: this height after a withdrawal, the earlier bound on a
    renewal, None (no bound) for a first accreditation."""
    if previous is None:
        return None
    if previous["status"] == WITHDRAWN:
        return height
    return previous.get("attestations_from_height")


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm:
    integers only, as contracts may not use datetime)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month, day) of a day count since 1970-01-01; the inverse of days_from_civil."""
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


EPOCH_1900 = days_from_civil(1900, 1, 1)  # birth dates count days from here


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def born_by(time_ms: int, years: int) -> int:
    """The latest birth date (days since 1900-01-01) of someone at least `years` old
    on the block's UTC date: that date `years` earlier (29 February becomes 28)."""
    year, month, day = civil_from_days(time_ms // DAY_MS)
    year -= years
    if (month, day) == (2, 29) and not _is_leap(year):
        day = 28
    return days_from_civil(year, month, day) - EPOCH_1900


def statements(criterion: Criterion, time_ms: int) -> list[tuple[str, int]]:
    """The one-sided statements ("ge"/"le", threshold) on the committed value that
    together mean the criterion holds at block time `time_ms`; one proof each.

    Age in whole years a >= Y means born on or before the block date Y years back;
    a <= Y means born after the date Y + 1 years back.
    """
    op, low = criterion["op"], criterion["threshold"]
    high = criterion.get("upper", low)
    if criterion["quantity"] == BIRTH_DATE:
        at_least = [(LE, born_by(time_ms, low))]
        at_most = [(GE, born_by(time_ms, high + 1) + 1)]
        if op == GE:
            return at_least
        if op == LE:
            return at_most
        return at_least + at_most
    if op == BETWEEN:
        return [(GE, low), (LE, high)]
    return [(op, low)]


def proof_context(
    chain_id: str,
    challenge: Challenge,
    attestation: Attestation,
) -> bytes:
    """What every range proof of an answer is bound to: SM3 over canonical CBOR of
    the chain, the challenge and its nonce, the patient, the attestation and its
    commitment, and the criterion. A proof made for any other of these (another
    challenge, patient, commitment) does not verify."""
    return crypto.sm3(
        encoding.encode(
            {
                "purpose": CONTEXT_PURPOSE,
                "chain_id": chain_id,
                "challenge_id": challenge["challenge_id"],
                "nonce": challenge["nonce"],
                "patient": challenge["patient"],
                "attestation_id": attestation["attestation_id"],
                "criterion_id": challenge["criterion"]["criterion_id"],
                "commitment": attestation["commitment"],
            }
        )
    )


def value_matches(criterion: Criterion, attestation: Attestation) -> str | None:
    """None if the attestation's value is the kind the criterion speaks of; else why
    not (another quantity, unit or scale would make the thresholds meaningless)."""
    if attestation["quantity"] != criterion["quantity"]:
        return (
            f"the attestation is of {attestation['quantity']}; "
            f"criterion {criterion['criterion_id']} needs {criterion['quantity']}"
        )
    if criterion["quantity"] == BIRTH_DATE:
        expected = (BIRTH_DATE_UNIT, 0)
    else:
        expected = (criterion["unit"], criterion["scale"])
    if (attestation["unit"], attestation["scale"]) != expected:
        return (
            f"the attestation is in {attestation['unit']} at scale {attestation['scale']}; "
            f"the criterion needs {expected[0]} at scale {expected[1]}"
        )
    return None
