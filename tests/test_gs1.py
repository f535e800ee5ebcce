"""GS1 pack identifiers: what scanners send becomes one checked Pack and one ledger key."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
from epcis_event_hash_generator.dl_normaliser import normaliser  # type: ignore[import-untyped]

from medchain.gs1.identifiers import InvalidGS1, Pack, batch_key, parse, qr_svg, validate_gtin

# GS1's own Digital Link example GTIN; a pack with expiry day 00 (end of May 2027).
GTIN = "09506000134352"
PACK = Pack(gtin=GTIN, lot="LOT-A12", serial="SN8KX4P9ZQ", expiry="2027-05-31")
HRI = "(01)09506000134352(17)270500(10)LOT-A12(21)SN8KX4P9ZQ"
GS = "\x1d"
# ISO/IEC 18004 table 7: byte-mode capacity at error level M, versions 1 to 10.
QR_BYTES_AT_M = [14, 26, 42, 62, 84, 106, 122, 152, 180, 213]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args))
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
    assert attempts == []


@pytest.mark.parametrize(
    "scan",
    [
        HRI,
        "(01) 09506000134352 (17) 270500 (10) LOT-A12 (21) SN8KX4P9ZQ",
        # DataMatrix as a scanner sends it: symbology identifier, FNC1 as GS after the lot.
        "]d2" + "0109506000134352" + "17270500" + "10LOT-A12" + GS + "21SN8KX4P9ZQ",
        # The order on EU packs (01, 21, 17, 10), with a leading FNC1 and a line end.
        GS + "0109506000134352" + "21SN8KX4P9ZQ" + GS + "17270500" + "10LOT-A12\r\n",
        "https://id.gs1.org/01/09506000134352/10/LOT-A12/21/SN8KX4P9ZQ?17=270500",
        "https://id.gs1.org/01/9506000134352/10/LOT-A12/21/SN8KX4P9ZQ?17=270531",
        "https://pharma.example.com/p/01/09506000134352/10/LOT-A12/21/SN8KX4P9ZQ?17=270500&x=1",
        "]Q1https://id.gs1.org/01/09506000134352/10/LOT-A12/21/SN8KX4P9ZQ?17=270500",
    ],
)
def test_every_form_of_a_scan_gives_the_same_pack(scan: str) -> None:
    assert parse(scan) == PACK


def test_expiry_day_00_is_the_last_day_of_the_month() -> None:
    assert parse("(01)09506000134352(17)280200").expiry == "2028-02-29"
    assert parse("(01)09506000134352(17)270400").expiry == "2027-04-30"
    assert parse("(01)09506000134352(17)270415").expiry == "2027-04-15"


def test_gtin_only_pack() -> None:
    assert parse("0104006381333931") == Pack(gtin="04006381333931")


@pytest.mark.parametrize(
    ("gtin", "fourteen"),
    [
        ("96385074", "00000096385074"),
        ("73513537", "00000073513537"),
        ("036000291452", "00036000291452"),
        ("4006381333931", "04006381333931"),
        ("09506000134352", "09506000134352"),
    ],
)
def test_valid_gtins_become_14_digits(gtin: str, fourteen: str) -> None:
    assert validate_gtin(gtin) == fourteen


@pytest.mark.parametrize(
    ("gtin", "message"),
    [
        ("09506000134353", "GTIN check digit is 3, expected 2"),
        ("4006381333932", "GTIN check digit is 2, expected 1"),
        ("036000291453", "GTIN check digit is 3, expected 2"),
        ("96385075", "GTIN check digit is 5, expected 4"),
        ("9506000134352a", "ASCII digits"),
        ("０９５０６０００１３４３５２", "ASCII digits"),
        ("", "ASCII digits"),
        ("12345678901", "8, 12, 13 or 14 digits, got 11"),
        ("123456789012345", "8, 12, 13 or 14 digits, got 15"),
    ],
)
def test_invalid_gtins_say_what_is_wrong(gtin: str, message: str) -> None:
    with pytest.raises(InvalidGS1, match=message):
        validate_gtin(gtin)


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        ("(01)09506000134353(21)SN1", "GTIN check digit is 3, expected 2"),
        ("https://id.gs1.org/01/09506000134353/21/SN1", "GTIN check digit is 3, expected 2"),
        ("010950600013435321SN1", "GTIN check digit is 3, expected 2"),
        ("(17)270500(10)LOT-A12(21)SN8KX4P9ZQ", "AI 01 is missing"),
        ("https://id.gs1.org/00/106141412345678908", "AI 01 is missing"),
        ("", "AI 01 is missing"),
        ("hello world", "Failed to get GS1 Application Identifier"),
        ("(01)0950600013435", "pattern"),
        ("(01)09506000134352(17)270231", "date"),
        ("(01)09506000134352(17)271301", "pattern"),
        ("(01)09506000134352(10)", "malformed"),
        ("(01)09506000134352(10)LOT A12", "malformed"),
        ("(01)09506000134352(21)SN~1", "pattern"),
        ("(01)09506000134352(21)123456789012345678901", "pattern"),
        ("(01)09506000134352(10)A(10)B", "AI 10 appears twice"),
        ("(01)０９５０６０００１３４３５２", "ASCII digits"),
        ("https://id.gs1.org/gtin", "primary identifier"),
        ("https://id.gs1.org/01/09506000134352/21/SN1/10/LOT", "qualifier"),
        ("ftp://id.gs1.org/01/09506000134352", "Failed to get GS1 Application Identifier"),
        ("urn:epc:id:sgtin:0614141.107346.2017", "Failed to get GS1 Application Identifier"),
    ],
)
def test_bad_scans_are_refused(scan: str, message: str) -> None:
    with pytest.raises(InvalidGS1, match=message):
        parse(scan)


def test_digital_link_of_a_pack() -> None:
    assert PACK.digital_link() == (
        "https://id.gs1.org/01/09506000134352/10/LOT-A12/21/SN8KX4P9ZQ?17=270531"
    )
    assert Pack(gtin=GTIN).digital_link("https://medchain.example/dl/") == (
        "https://medchain.example/dl/01/09506000134352"
    )
    with pytest.raises(ValueError, match="http"):
        PACK.digital_link("id.gs1.org")


@pytest.mark.parametrize(
    "pack",
    [
        PACK,
        Pack(gtin=GTIN),
        Pack(gtin="00036000291452", serial="A/B?C&D%E"),
        Pack(gtin="04006381333931", lot="(1)x+y,z", expiry="2026-12-31"),
    ],
)
@pytest.mark.parametrize("domain", ["https://id.gs1.org", "https://medchain.example/dl"])
def test_digital_link_round_trips(pack: Pack, domain: str) -> None:
    assert parse(pack.digital_link(domain)) == pack


def test_unit_and_batch_keys() -> None:
    assert PACK.key() == "09506000134352/SN8KX4P9ZQ"
    assert batch_key("9506000134352", "LOT-A12") == "09506000134352/LOT-A12"
    with pytest.raises(InvalidGS1, match="serial number"):
        Pack(gtin=GTIN, lot="LOT-A12").key()
    with pytest.raises(InvalidGS1, match="check digit"):
        batch_key("9506000134353", "LOT-A12")
    with pytest.raises(InvalidGS1, match="lot"):
        batch_key(GTIN, "LOT A12")


def test_sgtin_uri_is_the_epc_in_the_shared_epcis_events() -> None:
    # epcisDocWithSingleEvent ships urn:epc:id:sgtin:0614141.107346.2017.
    pack = parse("(01)10614141073464(21)2017")
    assert pack.sgtin_uri() == "urn:epc:id:sgtin:0614141.107346.2017"
    assert normaliser(pack.sgtin_uri()) == "https://id.gs1.org/01/10614141073464/21/2017"


def test_sgtin_uri_escapes_serial_characters_as_the_tag_data_standard_says() -> None:
    serial = 'A/B"%&<>?!'
    pack = Pack(gtin="10614141073464", serial=serial)
    assert pack.sgtin_uri() == "urn:epc:id:sgtin:0614141.107346.A%2FB%22%25%26%3C%3E%3F!"
    # The reference normaliser reads it back as the same unit's Digital Link.
    assert normaliser(pack.sgtin_uri()) == (
        f"https://id.gs1.org/01/10614141073464/21/{quote(serial, safe='')}"
    )


def test_sgtin_uri_falls_back_to_digital_link_without_a_company_prefix() -> None:
    gtin8 = Pack(gtin=validate_gtin("96385074"), serial="77/1")
    assert gtin8.sgtin_uri() == "https://id.gs1.org/01/00000096385074/21/77%2F1"
    with pytest.raises(InvalidGS1, match="serial number"):
        Pack(gtin=GTIN).sgtin_uri()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"gtin": "9506000134352"}, "14-digit GTIN"),
        ({"gtin": "09506000134353"}, "check digit is 3, expected 2"),
        ({"gtin": GTIN, "lot": ""}, "lot"),
        ({"gtin": GTIN, "lot": "L" * 21}, "lot"),
        ({"gtin": GTIN, "serial": "SN 1"}, "serial"),
        ({"gtin": GTIN, "expiry": "2027-5-31"}, "expiry"),
        ({"gtin": GTIN, "expiry": "20270531"}, "expiry"),
        ({"gtin": GTIN, "expiry": "2027-02-30"}, "expiry"),
    ],
)
def test_a_pack_is_checked_when_built(fields: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidGS1, match=message):
        Pack(**fields)


def qr_version(text: str) -> int:
    return next(v for v, capacity in enumerate(QR_BYTES_AT_M, 1) if capacity >= len(text))


@pytest.mark.parametrize("domain", ["https://id.gs1.org", "https://verify.medchain.example/p"])
def test_qr_svg_encodes_the_digital_link(domain: str) -> None:
    svg = qr_svg(PACK, domain)
    root = ElementTree.fromstring(svg)
    link = PACK.digital_link(domain)
    assert root.tag == f"{SVG}svg"
    assert root.findtext(f"{SVG}title") == link
    # A version-v symbol is 17 + 4v modules wide, plus a 4-module quiet zone each side.
    side = 17 + 4 * qr_version(link) + 8
    assert root.get("viewBox") == f"0 0 {side} {side}"
    path = root.find(f"{SVG}path")
    assert path is not None and re.fullmatch(r"M[0-9hmv. -]+", path.get("d", ""))
    assert not svg.startswith("<?xml")
    assert qr_svg(PACK, domain) == svg


def test_a_longer_link_needs_a_larger_symbol() -> None:
    short = ElementTree.fromstring(qr_svg(Pack(gtin=GTIN))).get("viewBox")
    assert short == "0 0 37 37"  # 36 characters: version 3
    assert ElementTree.fromstring(qr_svg(PACK)).get("viewBox") == "0 0 45 45"  # 71: version 5
