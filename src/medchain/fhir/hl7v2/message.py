"""Reading an HL7 v2 message: bytes -> text (MSH-18 charset) -> segments, fields,
repetitions, components and subcomponents by their HL7 numbers, unescaped on read.

python-hl7 parses; this module hides how deep it nests, and gives every field a
label ("OBX[3]-5") that errors name, so a refusal says where the message is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hl7  # type: ignore[import-untyped, unused-ignore]

from medchain.fhir.conversion import MappingError, resource_id
from medchain.fhir.hl7v2.tables import CHARSETS, TEXT_ESCAPES, UNIQUE_SEGMENTS

BOM = b"\xef\xbb\xbf"
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
# MSH-2 must end at a field separator: python-hl7 reads the delimiters up to the next one.
_MSH_HEADER = re.compile(r"MSH([^A-Za-z0-9\r\n])[^A-Za-z0-9\r\n]{4,5}\1")
_MESSAGE_START = re.compile(rb"(?:^|(?<=[\r\n\x0b]))MSH(?=[^A-Za-z0-9\r\n])")
_LINE_ENDS = re.compile(r"\r\n|\n")


@dataclass(frozen=True)
class Rep:
    """One repetition of a field: components of subcomponents, still escaped."""

    parts: tuple[tuple[str, ...], ...]
    unescape: Callable[[str], str]

    def get(self, component: int = 1, sub: int = 1) -> str:
        """A component's subcomponent as written (unescaped), "" when absent."""
        if component > len(self.parts) or sub > len(self.parts[component - 1]):
            return ""
        return self.unescape(self.parts[component - 1][sub - 1])

    def code(self, component: int = 1) -> str:
        """A component read as a code: surrounding spaces do not count."""
        return self.get(component).strip()

    def subs(self, component: int) -> list[str]:
        """All subcomponents of a component (e.g. an HD assigning authority)."""
        if component > len(self.parts):
            return []
        return [self.unescape(s) for s in self.parts[component - 1]]

    def text(self) -> str:
        """The whole repetition as written (for text values that used a delimiter)."""
        return "^".join("&".join(self.unescape(s) for s in c) for c in self.parts)

    def empty(self) -> bool:
        """Whether no component holds anything."""
        return not any(any(c) for c in self.parts)


class Segment:
    """One segment: fields by their HL7 number, unescaped on read."""

    __slots__ = ("_fields", "_unescape", "index", "label", "name")

    def __init__(self, raw: Any, unescape: Callable[[str], str], index: int, nth: int) -> None:
        self._fields = raw
        self._unescape = unescape
        self.name = str(raw[0][0]) if len(raw[0]) else ""
        self.index = index
        self.label = self.name if self.name in UNIQUE_SEGMENTS else f"{self.name}[{nth}]"

    def where(self, field_no: int, component: int | None = None) -> str:
        """The label errors use for a field, e.g. "OBX[3]-5" or "PID-11.3"."""
        return f"{self.label}-{field_no}" + (f".{component}" if component else "")

    def reps(self, field_no: int) -> list[Rep]:
        """The non-empty repetitions of a field (python-hl7 nests only as deep as needed)."""
        if field_no >= len(self._fields):
            return []
        items = list(self._fields[field_no])
        if not items or isinstance(items[0], str):
            nested = [[str(items[0]) if items else ""]]
        else:
            nested = [[rep] if isinstance(rep, str) else list(rep) for rep in items]
        reps = [
            Rep(tuple((c,) if isinstance(c, str) else tuple(c) for c in rep), self._unescape)
            for rep in nested
        ]
        return [r for r in reps if not r.empty()]

    def rep(self, field_no: int) -> Rep:
        """The first non-empty repetition of a field (an empty one when there is none)."""
        reps = self.reps(field_no)
        return reps[0] if reps else Rep((), self._unescape)

    def get(self, field_no: int, component: int = 1, sub: int = 1) -> str:
        """A value of the field's first repetition, "" when absent."""
        return self.rep(field_no).get(component, sub)

    def code(self, field_no: int) -> str:
        """A field's first component read as a code (surrounding spaces dropped)."""
        return self.get(field_no).strip()


@dataclass
class Message:
    """A parsed message and what every builder needs from its MSH."""

    segments: list[Segment]
    mapping_id: str
    facility: str  # MSH-4.1 (else MSH-3.1): owner of local code systems
    control: tuple[str, str, str]  # MSH-3.1, MSH-4.1, MSH-10: unique per message
    offset: str | None  # MSH-7's UTC offset, for times sent without one
    by_name: dict[str, list[Segment]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for seg in self.segments:
            self.by_name.setdefault(seg.name, []).append(seg)

    def first(self, name: str) -> Segment | None:
        """The first segment with this id, if any."""
        found = self.by_name.get(name)
        return found[0] if found else None

    def required(self, name: str) -> Segment:
        """The first segment with this id; a MappingError when the message has none."""
        seg = self.first(name)
        if seg is None:
            raise MappingError(name, f"required segment {name} is missing")
        return seg

    @property
    def version(self) -> str:
        """The mapping version this message is converted under (from `mapping_id`)."""
        return self.mapping_id.rpartition("/")[2]

    def rid(self, resource_type: str, seg: Segment) -> str:
        """The id of the resource made from `seg`: the same message always gives the same."""
        return resource_id(self.mapping_id, *self.control, resource_type, str(seg.index))


def decode(raw: bytes) -> str:
    """The message as text, in the character set MSH-18 names (UTF-8 when it names none)."""
    body = raw.lstrip(b"\x0b")
    body = body[len(BOM) :] if body.startswith(BOM) else body
    header = re.split(rb"[\r\n]", body, maxsplit=1)[0]
    if not header.startswith(b"MSH") or len(header) < 8:
        raise MappingError("MSH", "the message does not start with an MSH segment")
    fields = header.split(header[3:4])
    charset_field = fields[17] if len(fields) > 17 else b""
    charset = charset_field.split(header[5:6])[0].decode("ascii", "replace").strip()
    codec = CHARSETS.get(charset.upper())
    if codec is None:
        known = ", ".join(k for k in CHARSETS if k)
        raise MappingError("MSH-18", f"unknown character set {charset!r}; known: {known}")
    try:
        return body.decode(codec)
    except UnicodeDecodeError as error:
        named = f"is not valid {charset}" if charset else "is not UTF-8 and MSH-18 names no charset"
        raise MappingError("MSH-18", f"the message {named} (byte {error.start})") from None


def parse(raw: bytes) -> list[Segment]:
    """The message's segments, numbered the way errors name them; MappingError if it is
    not an HL7 v2 message this mapping can read."""
    text = _LINE_ENDS.sub("\r", decode(raw)).strip("\x0b\x1c\r")
    if not _MSH_HEADER.match(text):
        raise MappingError("MSH-2", "MSH does not start with a field separator and encoding chars")
    delimiters = text[3:8]  # field, component, repetition, escape, subcomponent
    if len(set(delimiters)) != len(delimiters):
        raise MappingError("MSH-2", f"delimiters {delimiters!r} are not all different")
    try:
        parsed = hl7.parse(text)
    except (hl7.exceptions.HL7Exception, IndexError) as error:
        raise MappingError("MSH", f"not an HL7 v2 message: {error}") from None
    escape = parsed.esc

    def unescape(value: str) -> str:
        if escape not in value:
            return value
        try:
            return str(parsed.unescape(value, TEXT_ESCAPES))
        except ValueError:
            raise MappingError("message", f"bad escape sequence in {value!r}") from None

    segments: list[Segment] = []
    seen: dict[str, int] = {}
    for index, raw_segment in enumerate(parsed):
        name = str(raw_segment[0][0]) if len(raw_segment[0]) else ""
        if not _SEGMENT_ID.fullmatch(name):
            raise MappingError(f"segment {index + 1}", f"{name!r} is not a segment id")
        seen[name] = seen.get(name, 0) + 1
        segments.append(Segment(raw_segment, unescape, index, seen[name]))
    return segments


def split_messages(raw: bytes) -> list[bytes]:
    """The messages in a file (each starts with MSH), as their own bytes.

    Segment ends may be \\r, \\n or \\r\\n; MLLP framing bytes and blank lines
    between messages are dropped, each message keeps one final segment end.
    """
    body = raw[len(BOM) :] if raw.startswith(BOM) else raw
    starts = [match.start() for match in _MESSAGE_START.finditer(body)]
    if not starts:
        raise MappingError("MSH", "no HL7 v2 message found (no segment starts with MSH)")
    if body[: starts[0]].strip(b" \t\r\n\x0b\x1c"):
        raise MappingError("line 1", "data before the first MSH segment")
    messages = []
    for start, end in zip(starts, [*starts[1:], len(body)], strict=True):
        chunk = body[start:end]
        content = chunk.rstrip(b"\r\n\x0b\x1c")
        tail = chunk[len(content) :].replace(b"\x0b", b"").replace(b"\x1c", b"")
        ending = b"\r\n" if tail.startswith(b"\r\n") else tail[:1]
        messages.append(content + ending)
    return messages
