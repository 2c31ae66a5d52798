"""The FIX 4.4 data dictionary: checks one parsed message, field by field, against QuickFIX's FIX44.xml.

`Dictionary.fix44().check(pairs)` lists every problem of a message, each with the
SessionRejectReason (373) that a Reject (3) would carry and a text naming the field, in
wire order (a missing required field is reported where its header, body, trailer or group
entry ends). The session layer calls it on every message it sends and receives.

Source: `FIX44.xml` beside this module is the QuickFIX FIX 4.4 data dictionary, vendored
byte-identical from Maven Central's org.quickfixj:quickfixj-messages-all:2.3.1 (jar entry
`FIX44.xml`, sha256 241287bc49b0f5ab4765148fa282d7ebe3fd52fc7bc6d8196be3b967fcbdb7b6).
It is under the QuickFIX Software License, Version 1.0, a BSD-style license whose text is
in `FIX44.LICENSE`: this product includes software developed by quickfixengine.org
(http://www.quickfixengine.org/).

Choices where FIX or QuickFIX leave room:
- A tag the dictionary does not define is an invalid tag number (0), user-defined tags
  5000-9999 included: our rules of engagement define none, so one there is a mistake.
- A required field inside an optional component is required only when the component is
  present, that is when any of its fields is (QuickFIX never requires it).
- In a repeating group each entry must start with the group's first field, the delimiter
  (15); the other fields of an entry may come in any order. A field that repeats inside
  an entry starts the next entry, which then lacks its delimiter (15).
- A header field after a body field, or a header or body field after a trailer field, is
  out of order (14), as are 8, 9, 35 anywhere but first, second, third and 10 anywhere
  but last.
- BeginString (8) must be FIX.4.4 (5). An unknown MsgType (11) leaves the body unchecked.
- A value listed among a field's enums is accepted whatever its type says (MiscFeeType is
  a CHAR whose enums include "10"); SymbolSfx (allowOtherValues) takes any value.
- BodyLength (9) and CheckSum (10) are checked for format only: their values are the
  framing's business.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from importlib import resources


class Reason(IntEnum):
    """SessionRejectReason (373) values that `check` reports."""

    INVALID_TAG_NUMBER = 0
    REQUIRED_TAG_MISSING = 1
    TAG_NOT_DEFINED_FOR_THIS_MESSAGE_TYPE = 2
    TAG_SPECIFIED_WITHOUT_A_VALUE = 4
    VALUE_IS_INCORRECT = 5
    INCORRECT_DATA_FORMAT_FOR_VALUE = 6
    INVALID_MSGTYPE = 11
    TAG_APPEARS_MORE_THAN_ONCE = 13
    TAG_SPECIFIED_OUT_OF_REQUIRED_ORDER = 14
    REPEATING_GROUP_FIELDS_OUT_OF_ORDER = 15
    INCORRECT_NUMINGROUP_COUNT_FOR_REPEATING_GROUP = 16


@dataclass(frozen=True)
class Problem:
    """One fault of a message: the field at fault (None for the message), its 373 reason, a text."""

    tag: int | None
    reason: int
    text: str


_DATE = rb"[0-9]{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
_TIME = rb"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\.(?:[0-9]{3}|[0-9]{6}|[0-9]{9}))?"
_DECIMAL = (rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)", "a decimal number (no exponent)")
_UNSIGNED = (rb"[0-9]+", "a non-negative integer")

# type -> (pattern the whole value must match, how a text describes it); None: any non-empty value.
_FORMATS: dict[str, tuple[bytes, str] | None] = {
    "INT": (rb"-?[0-9]+", "an integer"),
    "LENGTH": _UNSIGNED,
    "SEQNUM": _UNSIGNED,
    "NUMINGROUP": _UNSIGNED,
    "DAYOFMONTH": (rb"0?[1-9]|[12][0-9]|3[01]", "a day of month 1-31"),
    "FLOAT": _DECIMAL,
    "QTY": _DECIMAL,
    "PRICE": _DECIMAL,
    "PRICEOFFSET": _DECIMAL,
    "AMT": _DECIMAL,
    "PERCENTAGE": _DECIMAL,
    "CHAR": (rb".", "a single character"),
    "BOOLEAN": (rb"[YN]", "Y or N"),
    "UTCTIMESTAMP": (_DATE + b"-" + _TIME, "a UTC timestamp YYYYMMDD-HH:MM:SS[.sss]"),
    "UTCTIMEONLY": (_TIME, "a UTC time HH:MM:SS[.sss]"),
    "UTCDATEONLY": (_DATE, "a date YYYYMMDD"),
    "LOCALMKTDATE": (_DATE, "a date YYYYMMDD"),
    "MONTHYEAR": (
        rb"[0-9]{4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01]|w[1-5])?",
        "a month YYYYMM, YYYYMMDD or YYYYMMwN",
    ),
    "STRING": None,
    "MULTIPLEVALUESTRING": None,
    "EXCHANGE": None,
    "CURRENCY": None,
    "COUNTRY": None,
    "DATA": None,
}

_POSITIONS = {8: 0, 9: 1, 35: 2}
_SECTIONS = ("the standard header", "the body", "the standard trailer")


@dataclass(frozen=True, slots=True)
class _Field:
    tag: int
    name: str
    label: str  # "OrderQty (38)"
    type: str
    matches: Callable[[bytes], object] | None  # a compiled pattern's fullmatch
    shape: str
    enums: frozenset[bytes] | None  # None: any value of the right format
    multiple: bool  # space-separated enums (MULTIPLEVALUESTRING)


@dataclass(frozen=True, slots=True)
class _Rule:
    """Fields required only when some field of an optional component is present."""

    component: str
    trigger: frozenset[int]
    required: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Scope:
    """What one header, body, trailer or group entry may hold."""

    members: dict[int, _Group | None]  # tag -> its group when it is a NumInGroup count
    required: tuple[int, ...]
    required_set: frozenset[int]
    rules: tuple[_Rule, ...]


@dataclass(frozen=True, slots=True)
class _Group:
    tag: int
    label: str
    delimiter: int
    entry: _Scope


@dataclass(frozen=True, slots=True)
class _Message:
    msg_type: str
    name: str
    label: str  # "NewOrderSingle (D)"
    admin: bool
    body: _Scope


class _Loader:
    """Turns the XML into scopes once, so that `check` only looks things up."""

    def __init__(self, root: ET.Element, fields: dict[str, _Field]) -> None:
        self.fields = fields
        self.components = {c.attrib["name"]: c for c in _child(root, "components")}
        self.groups: dict[int, _Group] = {}  # id(<group>) -> its group: components share theirs

    def scope(self, elem: ET.Element) -> _Scope:
        members: dict[int, _Group | None] = {}
        required: dict[str | None, list[int]] = {}
        self._add(elem, members, required, None)
        rules = tuple(
            _Rule(name, frozenset(self._level_tags(self.components[name])), tuple(tags))
            for name, tags in required.items()
            if name is not None
        )
        always = tuple(required.get(None, ()))
        return _Scope(members, always, frozenset(always), rules)

    def _add(
        self,
        elem: ET.Element,
        members: dict[int, _Group | None],
        required: dict[str | None, list[int]],
        component: str | None,  # the innermost optional component around elem, if any
    ) -> None:
        for child in elem:
            is_required = child.get("required") == "Y"
            if child.tag == "component":
                name = child.attrib["name"]
                self._add(self.components[name], members, required, component if is_required else name)
                continue
            field = self.fields[child.attrib["name"]]
            if child.tag == "field":
                members[field.tag] = None
            elif child.tag == "group":
                group = self.groups.get(id(child))
                if group is None:
                    group = _Group(field.tag, field.label, self._first_tag(child), self.scope(child))
                    self.groups[id(child)] = group
                members[field.tag] = group
            else:
                raise ValueError(f"unexpected <{child.tag}> in <{elem.tag} name={elem.get('name')!r}>")
            if is_required:
                required.setdefault(component, []).append(field.tag)

    def _level_tags(self, elem: ET.Element) -> list[int]:
        """Tags a component puts at the level where it appears (a group's inner fields are one down)."""
        tags: list[int] = []
        for child in elem:
            if child.tag == "component":
                tags += self._level_tags(self.components[child.attrib["name"]])
            else:
                tags.append(self.fields[child.attrib["name"]].tag)
        return tags

    def _first_tag(self, elem: ET.Element) -> int:
        first = elem[0]
        if first.tag == "component":
            return self._first_tag(self.components[first.attrib["name"]])
        return self.fields[first.attrib["name"]].tag


def _child(root: ET.Element, name: str) -> ET.Element:
    elem = root.find(name)
    if elem is None:
        raise ValueError(f"data dictionary has no <{name}>")
    return elem


def _field(elem: ET.Element) -> _Field:
    tag, name, type_ = int(elem.attrib["number"]), elem.attrib["name"], elem.attrib["type"]
    if type_ not in _FORMATS:
        raise ValueError(f"field {name} ({tag}) has unknown type {type_}")
    fmt = _FORMATS[type_]
    values = frozenset(v.attrib["enum"].encode() for v in elem.iter("value"))
    other = elem.get("allowOtherValues", "").lower() in ("y", "true")
    return _Field(
        tag,
        name,
        f"{name} ({tag})",
        type_,
        None if fmt is None else re.compile(fmt[0], re.DOTALL).fullmatch,
        type_ if fmt is None else f"{type_}, {fmt[1]}",
        values if values and not other else None,
        type_ == "MULTIPLEVALUESTRING",
    )


def _show(value: bytes) -> str:
    text = value[:40].decode("ascii", "backslashreplace")
    return repr(text + "..." if len(value) > 40 else text)


def _tag_number(tag: int | bytes) -> int:
    if isinstance(tag, int):
        return tag
    return int(tag) if tag.isdigit() else -1


class Dictionary:
    """A QuickFIX data dictionary (FIX 4.x layout): field types and enums, messages, components, groups."""

    def __init__(self, xml: bytes) -> None:
        root = ET.fromstring(xml)
        by_name = {f.name: f for f in map(_field, _child(root, "fields"))}
        begin = f"FIX.{root.attrib['major']}.{root.attrib['minor']}".encode()
        # BeginString must name this version; MsgType's own check is reason 11, not an enum's 5.
        by_name["BeginString"] = dataclasses.replace(by_name["BeginString"], enums=frozenset({begin}))
        by_name["MsgType"] = dataclasses.replace(by_name["MsgType"], enums=None)
        self._fields = {f.tag: f for f in by_name.values()}
        loader = _Loader(root, by_name)
        self._header = loader.scope(_child(root, "header"))
        self._trailer = loader.scope(_child(root, "trailer"))
        self._messages: dict[bytes, _Message] = {}
        for m in _child(root, "messages"):
            msg_type, name = m.attrib["msgtype"], m.attrib["name"]
            self._messages[msg_type.encode()] = _Message(
                msg_type, name, f"{name} ({msg_type})", m.get("msgcat") == "admin", loader.scope(m)
            )

    @classmethod
    def fix44(cls) -> Dictionary:
        """The vendored QuickFIX FIX 4.4 dictionary, loaded once per process."""
        return _fix44()

    def check(self, pairs: Sequence[tuple[int | bytes, bytes]]) -> list[Problem]:
        """Every problem of one whole message (header to CheckSum, in wire order); empty when valid.

        Tags may be ints or the digits as bytes (`simplefix.FixMessage.pairs` holds bytes).
        """
        return _Check(self, pairs).run(self)

    def msg_type_name(self, msg_type: str) -> str | None:
        """The name of a MsgType ("D" -> "NewOrderSingle"); None when the dictionary lacks it."""
        message = self._messages.get(msg_type.encode())
        return None if message is None else message.name

    def field_name(self, tag: int) -> str | None:
        """The name of a tag (38 -> "OrderQty"); None when the dictionary lacks it."""
        field = self._fields.get(tag)
        return None if field is None else field.name

    def tag_of(self, name: str) -> int | None:
        """The tag of a field name ("OrderQty" -> 38); None when the dictionary lacks it."""
        if not hasattr(self, "_tags"):
            self._tags = {f.name: f.tag for f in self._fields.values()}
        return self._tags.get(name)

    def is_admin(self, msg_type: str) -> bool:
        """Whether a MsgType is a session-level (msgcat="admin") message; False when unknown."""
        message = self._messages.get(msg_type.encode())
        return message is not None and message.admin


@functools.cache
def _fix44() -> Dictionary:
    return Dictionary(resources.files("orderstream.common.fix").joinpath("FIX44.xml").read_bytes())


class _Check:
    """One run of `Dictionary.check` over one message."""

    __slots__ = ("fields", "pairs", "problems", "tags", "values")

    def __init__(self, dictionary: Dictionary, pairs: Sequence[tuple[int | bytes, bytes]]) -> None:
        self.fields = dictionary._fields
        self.pairs = pairs
        self.tags = [_tag_number(t) for t, _ in pairs]
        self.values = [v for _, v in pairs]
        self.problems: list[Problem] = []

    def run(self, d: Dictionary) -> list[Problem]:
        tags, values, problems = self.tags, self.values, self.problems
        n = len(tags)
        message = d._messages.get(values[tags.index(35)]) if 35 in tags else None
        body = None if message is None else message.body
        where = "the message" if message is None else message.label
        header, trailer = d._header, d._trailer
        seen: tuple[set[int], set[int], set[int]] = (set(), set(), set())
        section = 0
        i = 0
        while i < n:
            tag = tags[i]
            if tag in header.members:
                scope, part = header, 0
            elif tag in trailer.members:
                scope, part = trailer, 2
            elif body is not None and tag in body.members:
                scope, part = body, 1
            else:
                field = self.fields.get(tag)
                if field is None:
                    shown = tag if tag >= 0 else _show(bytes(self.pairs[i][0]))
                    problems.append(
                        Problem(
                            None if tag < 0 else tag,
                            Reason.INVALID_TAG_NUMBER,
                            f"invalid tag number {shown}: not defined in the FIX 4.4 dictionary",
                        )
                    )
                elif body is not None:
                    problems.append(
                        Problem(
                            tag,
                            Reason.TAG_NOT_DEFINED_FOR_THIS_MESSAGE_TYPE,
                            f"field {field.label} is not defined for {where}",
                        )
                    )
                # With no known MsgType a body field cannot be placed: reason 11 says it all.
                i += 1
                continue
            # A field out of its fixed place is reported once and does not move the section on.
            position = _POSITIONS.get(tag)
            if position is not None and position != i:
                self.out_of_order(tag, f"must be field {position + 1} of the message, found as field {i + 1}")
            elif tag == 10 and i != n - 1:
                self.out_of_order(tag, "must be the last field of the message")
            elif part < section:
                self.out_of_order(tag, f"belongs to {_SECTIONS[part]} but comes after {_SECTIONS[section]}")
            else:
                section = part
            if tag == 35 and message is None and tag not in seen[0]:
                problems.append(
                    Problem(tag, Reason.INVALID_MSGTYPE, f"invalid MsgType (35) {_show(values[i])}")
                )
            i = self.field(scope, seen[part], i, where if part == 1 else _SECTIONS[part])
        self.missing(header, seen[0], _SECTIONS[0])
        if body is not None:
            self.missing(body, seen[1], where)
        self.missing(trailer, seen[2], _SECTIONS[2])
        return problems

    def out_of_order(self, tag: int, text: str) -> None:
        self.problems.append(
            Problem(tag, Reason.TAG_SPECIFIED_OUT_OF_REQUIRED_ORDER, f"{self.fields[tag].label} {text}")
        )

    def field(self, scope: _Scope, seen: set[int], i: int, where: str) -> int:
        """Checks the field at i (and the entries of its group, if it counts one); returns the next index."""
        tag = self.tags[i]
        if tag in seen:
            self.problems.append(
                Problem(
                    tag,
                    Reason.TAG_APPEARS_MORE_THAN_ONCE,
                    f"field {self.fields[tag].label} appears more than once in {where}",
                )
            )
        else:
            seen.add(tag)
        good = self.value(tag, self.values[i])
        group = scope.members[tag]
        if group is None:
            return i + 1
        return self.entries(group, int(self.values[i]) if good else None, i + 1, where)

    def value(self, tag: int, value: bytes) -> bool:
        field = self.fields[tag]
        if not value:
            self.problems.append(
                Problem(tag, Reason.TAG_SPECIFIED_WITHOUT_A_VALUE, f"field {field.label} has no value")
            )
            return False
        enums = field.enums
        if enums is not None and (
            value in enums or (field.multiple and all(token in enums for token in value.split(b" ")))
        ):
            return True
        if field.matches is not None and field.matches(value) is None:
            self.problems.append(
                Problem(
                    tag,
                    Reason.INCORRECT_DATA_FORMAT_FOR_VALUE,
                    f"incorrect data format for {field.label}: {_show(value)} is not {field.shape}",
                )
            )
            return False
        if enums is not None:
            self.problems.append(
                Problem(
                    tag,
                    Reason.VALUE_IS_INCORRECT,
                    f"value {_show(value)} is incorrect for {field.label}: not one of its enums",
                )
            )
            return False
        return True

    def entries(self, group: _Group, count: int | None, i: int, where: str) -> int:
        """Reads the entries that follow a NumInGroup field; returns the index after the last one."""
        tags, n = self.tags, len(self.tags)
        members, delimiter = group.entry.members, group.delimiter
        mark = len(self.problems)
        found = 0
        while i < n and tags[i] in members:
            found += 1
            entry = f"{group.label} entry {found} of {where}"
            if tags[i] != delimiter:
                self.problems.append(
                    Problem(
                        tags[i],
                        Reason.REPEATING_GROUP_FIELDS_OUT_OF_ORDER,
                        f"{entry} must start with {self.fields[delimiter].label}, "
                        f"found {self.fields[tags[i]].label}",
                    )
                )
            seen: set[int] = set()
            i = self.field(group.entry, seen, i, entry)
            # The delimiter or a repeated field starts the next entry, unless this entry lacked
            # its delimiter: then the delimiter joins it (one out-of-order field, one problem).
            while i < n and (tag := tags[i]) in members and tag not in seen:
                i = self.field(group.entry, seen, i, entry)
            self.missing(group.entry, seen, entry)
        if count is not None and count != found:
            # Reported where the count stands, ahead of the entries' own problems.
            self.problems.insert(
                mark,
                Problem(
                    group.tag,
                    Reason.INCORRECT_NUMINGROUP_COUNT_FOR_REPEATING_GROUP,
                    f"{group.label} is {count} but {found} entries follow in {where}",
                ),
            )
        return i

    def missing(self, scope: _Scope, seen: set[int], where: str) -> None:
        if not scope.required_set <= seen:
            for tag in scope.required:
                if tag not in seen:
                    self.problems.append(
                        Problem(
                            tag,
                            Reason.REQUIRED_TAG_MISSING,
                            f"required field {self.fields[tag].label} missing in {where}",
                        )
                    )
        for rule in scope.rules:
            if not rule.trigger.isdisjoint(seen):
                for tag in rule.required:
                    if tag not in seen:
                        self.problems.append(
                            Problem(
                                tag,
                                Reason.REQUIRED_TAG_MISSING,
                                f"required field {self.fields[tag].label} missing in {where}: "
                                f"component {rule.component} is present",
                            )
                        )
