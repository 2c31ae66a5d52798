"""The FIX 4.4 data dictionary checker: valid session and order messages pass, each kind of fault is named."""

from __future__ import annotations

import pytest
import simplefix

from orderstream.common.fix.dictionary import Dictionary, Problem

HEADER = ((49, "CLIENT1"), (56, "ORDERSTREAM"), (34, "7"), (52, "20240501-09:30:00.123"))
NOW = "20240501-09:30:00.123"

Pairs = list[tuple[bytes, bytes]]


@pytest.fixture(scope="module")
def fix44() -> Dictionary:
    return Dictionary.fix44()


def wire(msg_type: str, body: list[tuple[int, str]]) -> Pairs:
    """Encodes a FIX 4.4 message with simplefix and parses it back, as the session layer receives it."""
    m = simplefix.FixMessage()
    m.append_pair(8, "FIX.4.4", header=True)
    m.append_pair(35, msg_type, header=True)
    for tag, value in HEADER:
        m.append_pair(tag, value, header=True)
    for tag, value in body:
        m.append_pair(tag, value)
    parser = simplefix.FixParser(allow_empty_values=True)
    parser.append_buffer(m.encode())
    message = parser.get_message()
    assert message is not None
    return list(message.pairs)


NEW_ORDER = [
    (11, "ORD-1"),
    (55, "BTC-USD"),
    (54, "1"),
    (60, NOW),
    (38, "1.5"),
    (40, "2"),
    (44, "64250.25"),
    (59, "0"),
]

EXECUTOR_FILL = [  # QuickFIX/J's example Executor (fix44 onMessage(NewOrderSingle)), the fill it sends
    (37, "1"),
    (11, "ORD-1"),
    (17, "2"),
    (150, "2"),  # ExecType FILL
    (39, "2"),  # OrdStatus FILLED
    (55, "BTC-USD"),
    (54, "1"),
    (38, "1.5"),
    (32, "1.5"),
    (31, "64250.25"),
    (151, "0"),
    (14, "1.5"),
    (6, "64250.25"),
]

NEW_ORDER_LIST = [
    (66, "LIST-1"),
    (394, "3"),  # BidType no bidding process
    (68, "2"),
    (73, "2"),
    (11, "ORD-1"),
    (67, "1"),
    (453, "1"),  # a nested group inside the first entry
    (448, "DESK-7"),
    (447, "D"),
    (452, "3"),
    (55, "BTC-USD"),
    (54, "1"),
    (38, "1"),
    (40, "1"),
    (11, "ORD-2"),
    (55, "ETH-USD"),  # fields after the delimiter in another order than the dictionary's
    (67, "2"),
    (54, "2"),
    (38, "3"),
    (40, "1"),
]

VALID = {
    "Logon": ("A", [(98, "0"), (108, "30"), (553, "alice"), (554, "s3cret")]),
    "Heartbeat": ("0", []),
    "Heartbeat answering a TestRequest": ("0", [(112, "TEST-1")]),
    "ResendRequest": ("2", [(7, "5"), (16, "0")]),
    "SequenceReset gap fill": ("4", [(123, "Y"), (36, "12")]),
    "NewOrderSingle": ("D", NEW_ORDER),
    "OrderCancelRequest": (
        "F",
        [(41, "ORD-1"), (11, "ORD-2"), (55, "BTC-USD"), (54, "1"), (60, NOW), (38, "1.5")],
    ),
    "OrderCancelReplaceRequest": (
        "G",
        [
            (41, "ORD-1"),
            (11, "ORD-3"),
            (55, "BTC-USD"),
            (54, "1"),
            (60, NOW),
            (38, "2"),
            (40, "2"),
            (44, "64000"),
        ],
    ),
    "OrderStatusRequest": ("H", [(37, "1"), (11, "ORD-1"), (55, "BTC-USD"), (54, "1")]),
    "ExecutionReport from the QuickFIX/J Executor": ("8", EXECUTOR_FILL),
    "OrderCancelReject": (
        "9",
        [
            (37, "NONE"),
            (11, "ORD-2"),
            (41, "ORD-1"),
            (39, "8"),
            (434, "1"),
            (102, "1"),
            (58, "unknown order"),
        ],
    ),
    "BusinessMessageReject": ("j", [(45, "7"), (372, "D"), (380, "3"), (58, "unsupported")]),
    "Reject": ("3", [(45, "7"), (371, "54"), (372, "D"), (373, "5"), (58, "value is incorrect")]),
    "NewOrderList with two orders": ("E", NEW_ORDER_LIST),
    "OrderMassCancelRequest without Instrument": ("q", [(11, "MC-1"), (530, "7"), (60, NOW)]),
    "ExecInst with several values": ("D", [*NEW_ORDER, (18, "6 G")]),
    "TransactTime in microseconds": (
        "D",
        [(11, "ORD-1"), (55, "X"), (54, "1"), (60, NOW + "456"), (40, "1")],
    ),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_messages_have_no_problems(fix44: Dictionary, name: str) -> None:
    msg_type, body = VALID[name]
    assert fix44.check(wire(msg_type, body)) == []


def test_int_tags_are_checked_like_simplefix_bytes_tags(fix44: Dictionary) -> None:
    pairs = wire("D", [*NEW_ORDER, (54, "Z")])
    as_ints = [(int(tag), value) for tag, value in pairs]
    assert fix44.check(as_ints) == fix44.check(pairs) != []


def test_order_qty_is_not_required_by_fix44(fix44: Dictionary) -> None:
    """FIX 4.4 puts OrderQty in OrderQtyData with CashOrderQty and OrderPercent, all optional."""
    body = [(tag, value) for tag, value in NEW_ORDER if tag != 38]
    assert fix44.check(wire("D", body)) == []


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, problems
    return problems[0]


def test_missing_required_field(fix44: Dictionary) -> None:
    body = [(tag, value) for tag, value in NEW_ORDER if tag != 40]
    problem = only(fix44.check(wire("D", body)))
    assert (problem.tag, problem.reason) == (40, 1)
    assert problem.text == "required field OrdType (40) missing in NewOrderSingle (D)"


def test_missing_header_field(fix44: Dictionary) -> None:
    pairs = [(tag, value) for tag, value in wire("0", []) if tag != b"56"]
    problem = only(fix44.check(pairs))
    assert (problem.tag, problem.reason) == (56, 1)
    assert "TargetCompID (56)" in problem.text


def test_required_field_of_an_optional_component_once_the_component_is_present(fix44: Dictionary) -> None:
    pairs = wire("q", [(11, "MC-1"), (530, "1"), (60, NOW), (48, "US0378331005"), (22, "4")])
    problem = only(fix44.check(pairs))
    assert (problem.tag, problem.reason) == (55, 1)
    assert "Symbol (55)" in problem.text and "Instrument" in problem.text


def test_value_outside_the_enums(fix44: Dictionary) -> None:
    problem = only(fix44.check(wire("D", [*NEW_ORDER[:2], (54, "Z"), *NEW_ORDER[3:]])))
    assert (problem.tag, problem.reason) == (54, 5)
    assert "Side (54)" in problem.text and "'Z'" in problem.text


def test_multiple_value_string_checks_each_value(fix44: Dictionary) -> None:
    problem = only(fix44.check(wire("D", [*NEW_ORDER, (18, "6 ZZ")])))
    assert (problem.tag, problem.reason) == (18, 5)
    assert "ExecInst (18)" in problem.text


@pytest.mark.parametrize("qty", ["abc", "1e5", "1,5", "--1"])
def test_quantity_in_the_wrong_format(fix44: Dictionary, qty: str) -> None:
    body = [(tag, qty if tag == 38 else value) for tag, value in NEW_ORDER]
    problem = only(fix44.check(wire("D", body)))
    assert (problem.tag, problem.reason) == (38, 6)
    assert "OrderQty (38)" in problem.text and repr(qty) in problem.text


@pytest.mark.parametrize(
    "stamp", ["2024-05-01 09:30:00", "20240501-24:00:00", "20241301-09:30:00", "20240501-09:30:00.12"]
)
def test_timestamp_in_the_wrong_format(fix44: Dictionary, stamp: str) -> None:
    body = [(tag, stamp if tag == 60 else value) for tag, value in NEW_ORDER]
    problem = only(fix44.check(wire("D", body)))
    assert (problem.tag, problem.reason) == (60, 6)
    assert "TransactTime (60)" in problem.text


def test_boolean_takes_only_y_or_n(fix44: Dictionary) -> None:
    problem = only(fix44.check(wire("4", [(123, "yes"), (36, "12")])))
    assert (problem.tag, problem.reason) == (123, 6)
    assert "GapFillFlag (123)" in problem.text


def test_unknown_msg_type(fix44: Dictionary) -> None:
    problem = only(fix44.check(wire("ZZ", [(11, "ORD-1")])))
    assert (problem.tag, problem.reason) == (35, 11)
    assert "MsgType (35)" in problem.text and "'ZZ'" in problem.text


def test_field_of_another_message_type(fix44: Dictionary) -> None:
    problem = only(fix44.check(wire("D", [*NEW_ORDER, (150, "0")])))
    assert (problem.tag, problem.reason) == (150, 2)
    assert problem.text == "field ExecType (150) is not defined for NewOrderSingle (D)"


@pytest.mark.parametrize("tag", [99999, 5001])
def test_tag_not_in_the_dictionary(fix44: Dictionary, tag: int) -> None:
    """User-defined tags (5000-9999) too: our rules of engagement define none."""
    problem = only(fix44.check(wire("D", [*NEW_ORDER, (tag, "x")])))
    assert (problem.tag, problem.reason) == (tag, 0)
    assert str(tag) in problem.text


def test_duplicate_tag(fix44: Dictionary) -> None:
    problem = only(fix44.check(wire("D", [*NEW_ORDER, (55, "ETH-USD")])))
    assert (problem.tag, problem.reason) == (55, 13)
    assert "Symbol (55)" in problem.text


def test_group_count_larger_than_its_entries(fix44: Dictionary) -> None:
    body = [(tag, "3" if tag == 73 else value) for tag, value in NEW_ORDER_LIST]
    problem = only(fix44.check(wire("E", body)))
    assert (problem.tag, problem.reason) == (73, 16)
    assert problem.text == "NoOrders (73) is 3 but 2 entries follow in NewOrderList (E)"


def test_group_entry_not_starting_with_its_delimiter(fix44: Dictionary) -> None:
    second = NEW_ORDER_LIST.index((11, "ORD-2"))
    body = [*NEW_ORDER_LIST[:second], (55, "ETH-USD"), (11, "ORD-2"), (67, "2"), (54, "2"), (40, "1")]
    problem = only(fix44.check(wire("E", body)))
    assert (problem.tag, problem.reason) == (55, 15)
    assert "NoOrders (73) entry 2" in problem.text and "ClOrdID (11)" in problem.text


def test_required_field_missing_in_a_group_entry(fix44: Dictionary) -> None:
    body = [pair for pair in NEW_ORDER_LIST if pair != (67, "2")]
    problem = only(fix44.check(wire("E", body)))
    assert (problem.tag, problem.reason) == (67, 1)
    assert (
        problem.text == "required field ListSeqNo (67) missing in NoOrders (73) entry 2 of NewOrderList (E)"
    )


def test_empty_value(fix44: Dictionary) -> None:
    problem = only(fix44.check(wire("D", [*NEW_ORDER, (58, "")])))
    assert (problem.tag, problem.reason) == (58, 4)
    assert "Text (58)" in problem.text


def test_msg_type_not_third(fix44: Dictionary) -> None:
    pairs = wire("0", [])
    pairs.insert(3, pairs.pop(2))  # 8, 9, 49, 35, ...
    problem = only(fix44.check(pairs))
    assert (problem.tag, problem.reason) == (35, 14)
    assert "MsgType (35)" in problem.text


def test_checksum_not_last(fix44: Dictionary) -> None:
    pairs = wire("0", [(112, "TEST-1")])
    pairs.insert(-1, pairs.pop())  # ..., 10, 112
    problem = only(fix44.check(pairs))
    assert (problem.tag, problem.reason) == (10, 14)
    assert "CheckSum (10)" in problem.text


def test_header_field_after_the_body(fix44: Dictionary) -> None:
    pairs = wire("D", NEW_ORDER)
    pairs.insert(-1, (b"50", b"TRADER-1"))
    problem = only(fix44.check(pairs))
    assert (problem.tag, problem.reason) == (50, 14)
    assert "SenderSubID (50)" in problem.text


def test_begin_string_of_another_version(fix44: Dictionary) -> None:
    pairs = [(tag, b"FIX.4.2" if tag == b"8" else value) for tag, value in wire("0", [])]
    problem = only(fix44.check(pairs))
    assert (problem.tag, problem.reason) == (8, 5)
    assert "BeginString (8)" in problem.text


def test_every_problem_in_wire_order(fix44: Dictionary) -> None:
    body = [(11, "ORD-1"), (54, "Z"), (38, "abc"), (99999, "x"), (55, "X"), (55, "Y"), (60, NOW)]
    problems = fix44.check(wire("D", body))
    assert [(p.tag, p.reason) for p in problems] == [(54, 5), (38, 6), (99999, 0), (55, 13), (40, 1)]


def test_names(fix44: Dictionary) -> None:
    assert fix44.msg_type_name("D") == "NewOrderSingle"
    assert fix44.msg_type_name("ZZ") is None
    assert fix44.field_name(38) == "OrderQty"
    assert fix44.field_name(99999) is None
    assert fix44.is_admin("A") and fix44.is_admin("5")
    assert not fix44.is_admin("D") and not fix44.is_admin("ZZ")
    assert Dictionary.fix44() is fix44
