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
    """Version 2: version 1 plus the ADT events sharing A01's structure, UCUM
    tagging only for true UCUM codes (tables.UCUM_TAGGING), and the orders:
    ORM^O01 and OMI^O23 (tables.SERVICE_ORDER_STATUSES/CONTROLS, tables.IMAGING)."""
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
    # Version 2 (issue 15.5): ADT events sharing A01's structure; only true UCUM tagged;
    # ORM^O01 -> ServiceRequest, OMI^O23 -> ServiceRequest + ImagingStudy.
    _v2(
        "hl7v2-adt-a01",
        "0e3b6d49e730bb786ee2c8cd359141a8f7da135889e2e743aa010dfa09027f66",
    ),
    _v2(
        "hl7v2-adt-a04",
        "d495be0ea86232036bdc223dee19afebca5097416008a274df115ad1f5c8fa25",
    ),
    _v2(
        "hl7v2-adt-a05",
        "981fbe09c8ecec3282ec8ec244e79f2e3349835bc727be34ec9a35d455694646",
    ),
    _v2(
        "hl7v2-adt-a08",
        "fabc06188303bd198db6c1103da20ddbb4aab61366e0dbd4d05d18f6582746c5",
    ),
    _v2(
        "hl7v2-adt-a13",
        "9325500f34cde3cccc027bc3ea758f4e5f40885a586aac5adfbcf9648e2057f4",
    ),
    _v2(
        "hl7v2-adt-a14",
        "6c6bb4144e7578be87990090080cc8310ca1b5a192e98ddf3b0d60270f60a17a",
    ),
    _v2(
        "hl7v2-adt-a28",
        "5adeffb2188f4f152f8edfd4ff3e161fe758ee999abcfcb3fb290c12005c6e70",
    ),
    _v2(
        "hl7v2-adt-a31",
        "293480bc9ce8104ff186c724d4933e0b2aba22dbe28cfb470344d0629341a5b0",
    ),
    _v2(
        "hl7v2-omi-o23",
        "da7e7e58119c32958c31c705e61d46b833ff2336d6373eeaf387e174d149a15d",
    ),
    _v2(
        "hl7v2-orm-o01",
        "d68eeeb6228967b84712e601ab425cd7b793de43db7b08bd73ea353f8129418d",
    ),
    _v2(
        "hl7v2-oru-r01",
        "106b415eee11a2b91632a548bc67a58fdbe4fafbc986bf8841333f9f89afca39",
    ),
    _v2(
        "hl7v2-rde-o11",
        "0a90bef2061a3d8e118c545ea495d0b50eeba3ad3007d7d62ed4dc66d1023d80",
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
