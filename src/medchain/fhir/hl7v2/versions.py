"""Which HL7 v2 mapping made a record: a declared version and the tables as data,
not the converter's source bytes, and a registry of every version ever attested.

A record's `derived_from.mapping_hash` is SM3 over the canonical JSON of
{mapping id, version, tables}. Reformatting or splitting the code changes
nothing; changing a table changes the hash, and a test then insists on a new
`tables.VERSION` and a new row in `KNOWN`. Code changes that alter output
without touching a table are caught by the byte-identical output test
(tests/test_mapping_versions.py) and need a version bump too.

Records attested before this scheme carry the legacy hash (SM3 of
conversion.py + hl7v2.py + "1" at commit cf87ad7). The converter's output is
byte-identical to that code's, so the legacy hash is kept as an alias of
version 1 and those records still verify.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from medchain.crypto import sm3
from medchain.fhir import conversion
from medchain.fhir.hl7v2 import tables
from medchain.fhir.validate import canonical_json

# How an auditor re-runs a version this release still runs.
THIS_RELEASE = "this release: medchain.fhir.hl7v2.convert_message (medchain import verify)"
# Version 1 is still run by this release (`convert_message(raw, version="1")`, its
# tables are `tables.tables_of("1")`), so records attested under it re-verify.
LEGACY_SOURCE_HASH = bytes.fromhex(
    "94d96fbb71a67608a5dec1c59038b5af0566fa0c1360fb04f667d7e6a29ea2f6"
)


@dataclass(frozen=True)
class MappingVersion:
    """One version of one HL7 v2 mapping, as records attest it, and how to re-run it."""

    mapping_id: str  # as attested: "<mapping>/<version>", e.g. "hl7v2-oru-r01/1"
    mapping_hash: bytes  # SM3 of the canonical {mapping, version, tables}
    aliases: tuple[bytes, ...]  # older names of exactly this mapping (same output)
    rerun: str  # the code that re-runs it: this release, or a tagged commit


def shared_tables() -> dict[str, object]:
    """The tables the HL7 v2 mapping shares with the CSV mappings (code systems,
    abnormal flags, frequencies): part of what it writes, so part of its hash."""
    return {
        "CODE_SYSTEMS": conversion.CODE_SYSTEMS,
        "INTERPRETATIONS": conversion.INTERPRETATIONS,
        "FREQUENCIES": {code: asdict(f) for code, f in conversion.FREQUENCIES.items()},
    }


def mapping_hash(mapping: str, version: str = tables.VERSION) -> bytes:
    """SM3 over the canonical JSON of the mapping's id, its declared version and its
    tables: the identity a record attests, independent of how the code is laid out."""
    identity = {
        "mapping": mapping,
        "version": version,
        "tables": tables.tables_of(version) | shared_tables(),
    }
    return sm3(canonical_json(identity))


def _v1(mapping: str, hash_hex: str) -> MappingVersion:
    """Version 1: what the converter wrote at commit cf87ad7 (hence the legacy alias)."""
    return MappingVersion(
        f"{mapping}/1", bytes.fromhex(hash_hex), (LEGACY_SOURCE_HASH,), THIS_RELEASE
    )


def _v2(mapping: str, hash_hex: str) -> MappingVersion:
    """Version 2: version 1 plus the ADT events sharing A01's structure, and UCUM
    tagging only for true UCUM codes (tables.UCUM_TAGGING)."""
    return MappingVersion(f"{mapping}/2", bytes.fromhex(hash_hex), (), THIS_RELEASE)


KNOWN: tuple[MappingVersion, ...] = (
    _v1(
        "hl7v2-adt-a01",
        "e261ec8adb3eb1aafaf5f827f08ad03fecd079a1304876112fef8e8399fa1727",
    ),
    _v1(
        "hl7v2-adt-a08",
        "e86e2eaf447585dd1d26adc95b92eb84bf701abfb2cce1f0a10b1da68ce40a89",
    ),
    _v1(
        "hl7v2-oru-r01",
        "19530bd393c4872dd95bb6a1cb3d11ff45c8f10bdb507e38fc55ed6cb3a2dee5",
    ),
    _v1(
        "hl7v2-rde-o11",
        "b5832776086e872b362affa8834fe4aa29c960afc05bdecd41d86d66e768b874",
    ),
    # Version 2 (issue 15.5): ADT events sharing A01's structure; only true UCUM tagged.
    _v2(
        "hl7v2-adt-a01",
        "017d39f7d2504ef7fe08068dd7680eeccbacf058e471b96a4548ee95a2337426",
    ),
    _v2(
        "hl7v2-adt-a04",
        "0fa23ffffe12783ef5832634c17dd5bf3fd5c60282b170ef2d37c4c4291de8fd",
    ),
    _v2(
        "hl7v2-adt-a05",
        "1fffee37b03658c509c0f0d75456c3dd16b814f85071a036f5b7c4a1a99f66c2",
    ),
    _v2(
        "hl7v2-adt-a08",
        "eab79a929d2133770d039fa4c405d0e2738bc79e10e153a0b40d31441a3cf944",
    ),
    _v2(
        "hl7v2-adt-a13",
        "2d4bb44e7065003dee94dae8ffa87c5f1b6c4187e01513dab9b090d40eade5a5",
    ),
    _v2(
        "hl7v2-adt-a14",
        "49a7215478ff04ab6269a422bb93aa75779a39e19b2fa3a79fa4a80ca500f721",
    ),
    _v2(
        "hl7v2-adt-a28",
        "8b0f8a818dbfbc8b945af07334e94c60c806ddcc0e048f0f5aa722310c18aa90",
    ),
    _v2(
        "hl7v2-adt-a31",
        "20a9287bb36997134ba12e7e2572b1311d46e4ded70edf5945bf272311c55dfb",
    ),
    _v2(
        "hl7v2-oru-r01",
        "6eaf3952cd74471b8d6e96f8916080b7e9dbf9818de2ac4feb090d842d18b72e",
    ),
    _v2(
        "hl7v2-rde-o11",
        "5bf8bb9270807978a95062deae4ca7c8ac1075fc9f2cdda01ac57da48525bb67",
    ),
)


def known_version(mapping_id: str, attested_hash: bytes) -> MappingVersion | None:
    """The registered version a record's (mapping_id, mapping_hash) names, if any."""
    for version in KNOWN:
        if version.mapping_id == mapping_id and (
            attested_hash == version.mapping_hash or attested_hash in version.aliases
        ):
            return version
    return None


def same_mapping(mapping_id: str, attested_hash: bytes, produced_hash: bytes) -> bool:
    """Whether a record attested as `attested_hash` was made by the mapping that now
    produces `produced_hash`: the same hash, or two names of one registered version."""
    if attested_hash == produced_hash:
        return True
    version = known_version(mapping_id, attested_hash)
    return version is not None and produced_hash == version.mapping_hash
