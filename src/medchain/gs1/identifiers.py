"""GS1 identifiers of a saleable pack: parse what a scanner reads, key it on the ledger.

A pharma pack carries GTIN (AI 01), expiry (AI 17), lot (AI 10) and serial (AI 21) in a
GS1 DataMatrix or a QR code with a GS1 Digital Link URI. `parse` accepts the three ways
those reach us and returns one checked `Pack`, so a unit scanned at the factory, the
wholesaler and the pharmacy gets the same ledger key. biip does the AI parsing; the
checks it only reports (GTIN check digit) or relaxes (whitespace, empty values in the
bracketed form) are enforced here, because a wrong key on the chain cannot be undone.

Dates: AI 17 has a two-digit year. biip resolves the century with the GS1 General
Specifications' sliding window (section 7.12: 49 years back, 50 ahead of the current
year), so only a date about 50 years away could resolve differently in another year.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote, unquote, urlsplit

import segno
from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString, GS1ElementStrings
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.symbology import SymbologyIdentifier

from medchain.exceptions import MedChainError

GS1_RESOLVER = "https://id.gs1.org"
GTIN_LENGTHS = (8, 12, 13, 14)

# GS1 AI encodable character set 82 (General Specifications 7.11, figure 7.11-1); lot and
# serial are X..20.
_CSET82_X20 = re.compile(r"[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}")
# The bracketed (HRI) form: whitespace may sit around an "(AI)value" group but never inside
# a value, and no value may be empty. biip would drop both silently.
_HRI = re.compile(r"(?:\([0-9]{2,4}\)\s*[^(\s]+\s*)+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# EPC Tag Data Standard: characters of a serial that an EPC URI carries %-escaped.
_EPC_ESCAPES = str.maketrans(
    {'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F"}
)
# SGTIN-URIs exist for GS1 Company Prefixes of 6 to 12 digits.
_SGTIN_PREFIX_LENGTHS = range(6, 13)


class InvalidGS1(MedChainError, ValueError):
    """The input is not a usable GS1 identification of a pack; the message says why."""


def validate_gtin(gtin: str) -> str:
    """The 14-digit form of a GTIN-8/12/13/14, after checking its check digit.

    GS1 keys GTINs of every length as 14 digits (zero-padded on the left), so the same
    product scanned from an EAN-13 and from a DataMatrix gets one key.
    """
    if not re.fullmatch(r"[0-9]+", gtin):
        raise InvalidGS1(f"GTIN must be ASCII digits, got {gtin!r}")
    if len(gtin) not in GTIN_LENGTHS:
        raise InvalidGS1(f"GTIN must have 8, 12, 13 or 14 digits, got {len(gtin)}")
    padded = gtin.zfill(14)
    expected = gs1_standard_check_digit(padded[:13])
    if int(padded[13]) != expected:
        raise InvalidGS1(f"GTIN check digit is {padded[13]}, expected {expected}")
    return padded


@dataclass(frozen=True)
class Pack:
    """One saleable unit as GS1 identifies it; every field is checked on construction.

    `gtin` is the 14-digit GTIN, `lot` and `serial` are AI 10 and AI 21 values, `expiry`
    is AI 17 as an ISO date (a day of 00 already resolved to the month's last day).
    """

    gtin: str
    lot: str | None = None
    serial: str | None = None
    expiry: str | None = None

    def __post_init__(self) -> None:
        if validate_gtin(self.gtin) != self.gtin:
            raise InvalidGS1(f"Pack.gtin must be the 14-digit GTIN, got {self.gtin!r}")
        _check_x20("lot (AI 10)", self.lot)
        _check_x20("serial (AI 21)", self.serial)
        if self.expiry is not None:
            _check_iso_date(self.expiry)

    def sgtin_uri(self) -> str:
        """The unit's EPC: an SGTIN-URI, or its GS1 Digital Link form when the GS1 Company
        Prefix length of the GTIN is not known.

        An SGTIN-URI needs the company prefix length, which is not in the GTIN; biip looks
        it up in GS1's published prefix-length table. When that finds nothing (GTIN-8,
        restricted-circulation or unassigned prefixes), the result is the canonical Digital
        Link `https://id.gs1.org/01/<gtin>/21/<serial>`, which EPCIS 2.0 accepts as an EPC
        and the CBV event hash treats as the same identifier.
        """
        serial = self._serial("an SGTIN")
        prefix = _company_prefix(self.gtin)
        if prefix is None or len(prefix) not in _SGTIN_PREFIX_LENGTHS:
            return f"{GS1_RESOLVER}/01/{self.gtin}/21/{quote(serial, safe='')}"
        item_reference = self.gtin[0] + self.gtin[1 + len(prefix) : 13]
        return f"urn:epc:id:sgtin:{prefix}.{item_reference}.{serial.translate(_EPC_ESCAPES)}"

    def digital_link(self, domain: str = GS1_RESOLVER) -> str:
        """The GS1 Digital Link URI a consumer's phone opens:
        `<domain>/01/<gtin>/10/<lot>/21/<serial>?17=<YYMMDD>` (absent parts left out)."""
        path = f"/01/{self.gtin}"
        if self.lot is not None:
            path += f"/10/{quote(self.lot, safe='')}"
        if self.serial is not None:
            path += f"/21/{quote(self.serial, safe='')}"
        query = ""
        if self.expiry is not None:
            query = f"?17={self.expiry[2:4]}{self.expiry[5:7]}{self.expiry[8:10]}"
        return f"{_resolver_base(domain)}{path}{query}"

    def key(self) -> str:
        """The unit's ledger key `<gtin>/<serial>`: unique because GS1 makes a serial
        unique within its GTIN, and unambiguous because the GTIN is always 14 digits."""
        return f"{self.gtin}/{self._serial('a unit key')}"

    def _serial(self, purpose: str) -> str:
        if self.serial is None:
            raise InvalidGS1(f"{purpose} needs a serial number (AI 21)")
        return self.serial


def parse(text: str) -> Pack:
    """The pack named by a scan: a bracketed element string `(01)...(17)...(10)...(21)...`,
    the raw string a scanner sends (FNC1 as GS, `\\x1d`, optionally after a `]d2`/`]Q3`
    symbology identifier), or a GS1 Digital Link URI.

    Raw strings need the GS after a variable-length value (lot, serial) that is not last;
    without it the value runs on, exactly as in the barcode itself.
    """
    by_ai = _by_ai(_element_strings(text))
    if "01" not in by_ai:
        raise InvalidGS1("no GTIN: AI 01 is missing")
    expiry = by_ai["17"].date if "17" in by_ai else None
    return Pack(
        gtin=validate_gtin(by_ai["01"].value),
        lot=by_ai["10"].value if "10" in by_ai else None,
        serial=by_ai["21"].value if "21" in by_ai else None,
        expiry=None if expiry is None else expiry.isoformat(),
    )


def batch_key(gtin: str, lot: str) -> str:
    """A batch's ledger key `<gtin>/<lot>`, with the GTIN in its 14-digit form.

    Same shape as `Pack.key`, so batches and units must live under different key
    prefixes (the supply contract uses `supply/batch/` and `supply/unit/`).
    """
    _check_x20("lot (AI 10)", lot)
    return f"{validate_gtin(gtin)}/{lot}"


def qr_svg(pack: Pack, domain: str = GS1_RESOLVER) -> str:
    """A QR code of the pack's Digital Link as a standalone SVG (no XML declaration, so it
    also embeds in HTML). It scales with its container: there is a viewBox and no size.
    Error correction M, raised by segno to the best level the symbol size allows."""
    link = pack.digital_link(domain)
    out = io.BytesIO()
    segno.make_qr(link, error="m").save(
        out, kind="svg", xmldecl=False, nl=False, omitsize=True, title=link
    )
    return out.getvalue().decode("utf-8")


def _element_strings(text: str) -> GS1ElementStrings:
    """biip's element strings for any of the three input forms."""
    text = text.strip()
    try:
        if text.startswith("]"):
            text = text[len(SymbologyIdentifier.extract(text)) :]
        if text.lower().startswith(("https://", "http://")):
            return GS1DigitalLinkURI.parse(text).element_strings
        if text.startswith("("):
            if not _HRI.fullmatch(text):
                raise InvalidGS1(f"malformed (AI)value string (empty value or space): {text!r}")
            return GS1Message.parse_hri(text).element_strings
        return GS1Message.parse(text).element_strings
    except ParseError as exc:
        raise InvalidGS1(str(exc)) from None


def _by_ai(element_strings: GS1ElementStrings) -> dict[str, GS1ElementString]:
    """Each AI's element string; an AI given twice must carry the same value both times."""
    by_ai: dict[str, GS1ElementString] = {}
    for es in element_strings:
        seen = by_ai.setdefault(es.ai.ai, es)
        if seen.value != es.value:
            raise InvalidGS1(f"AI {es.ai.ai} appears twice with different values")
    return by_ai


def _company_prefix(gtin: str) -> str | None:
    try:
        prefix = Gtin.parse(gtin).company_prefix
    except ParseError:
        return None
    return None if prefix is None else prefix.value


def _check_x20(what: str, value: str | None) -> None:
    if value is not None and not _CSET82_X20.fullmatch(value):
        raise InvalidGS1(f"{what} must be 1 to 20 characters of GS1 set 82, got {value!r}")


def _check_iso_date(value: str) -> None:
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError
        date.fromisoformat(value)
    except ValueError:
        raise InvalidGS1(f"expiry must be an ISO date YYYY-MM-DD, got {value!r}") from None


def _resolver_base(domain: str) -> str:
    parts = urlsplit(domain)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.query:
        raise ValueError(f"Digital Link domain must be an http(s) URL, got {domain!r}")
    return domain.rstrip("/")


def unit_of_epc(epc: str) -> str:
    """The ledger key of an EPC: `urn:epc:id:sgtin:<prefix>.<indicator+item>.<serial>` or a
    GS1 Digital Link with AI 01 and 21 -> "<gtin>/<serial>"; anything else (an SSCC
    case or pallet, a container id) is returned unchanged, as a container id."""
    if epc.startswith("urn:epc:id:sgtin:"):
        try:
            prefix, item, serial = epc[len("urn:epc:id:sgtin:") :].split(".", 2)
        except ValueError:
            raise InvalidGS1(f"malformed SGTIN {epc!r}") from None
        if not (prefix.isdigit() and item.isdigit() and len(prefix) + len(item) == 13):
            raise InvalidGS1(f"SGTIN {epc!r}: company prefix + item reference must be 13 digits")
        body = item[0] + prefix + item[1:]
        return f"{body}{gs1_standard_check_digit(body)}/{unquote(serial)}"
    if "/01/" in epc and "/21/" in epc:
        return parse(epc).key()
    return epc
