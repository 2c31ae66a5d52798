"""FIX order entry's mappings, pure: every order type and time in force the gateway takes, to and
from its FIX 4.4 value; FIX JSON to tag=value and back."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from orderstream.common import records as r
from orderstream.common.fix.dictionary import Dictionary
from orderstream.common.fix.session import BEGIN_STRING, Message, encode, parse
from orderstream.gateway.errors import ApiError
from orderstream.gateway.fixentry import (
    FIX_TIFS,
    FIX_TYPES,
    exec_type_of,
    from_json,
    order_params,
    refusal,
    report_body,
)

BASE = [(11, "c1"), (21, "1"), (55, "BTC-USD"), (54, "2"), (60, "20261201-10:00:00"), (38, "0.5")]


def nos(*extra: tuple[int, str]) -> Message:
    raw = encode(BEGIN_STRING, "D", [(49, "K"), (56, "ORDERSTREAM"), (34, 2), (52, "20261201-10:00:00")],
                 [*BASE, *extra])
    msg = parse(raw)
    assert not Dictionary.fix44().check(msg.pairs), Dictionary.fix44().check(msg.pairs)  # valid FIX 4.4
    return msg


@pytest.mark.parametrize(("fields", "want"), [
    ([(40, "1")], {"order_type": "MARKET"}),
    ([(40, "2"), (44, "30000")], {"order_type": "LIMIT", "price": "30000"}),
    ([(40, "3"), (99, "29000")], {"order_type": "STOP_MARKET", "stop_price": "29000"}),
    ([(40, "4"), (99, "29000"), (44, "28900")], {"order_type": "STOP_LIMIT", "stop_price": "29000",
                                                 "price": "28900"}),
    ([(40, "J"), (99, "31000")], {"order_type": "TAKE_PROFIT_MARKET", "stop_price": "31000"}),
    ([(40, "J"), (99, "31000"), (44, "31100")], {"order_type": "TAKE_PROFIT_LIMIT", "price": "31100"}),
    ([(40, "P"), (18, "a"), (211, "50")], {"order_type": "TRAILING_STOP", "trailing_offset": "50",
                                           "trailing_offset_type": "PRICE"}),
    ([(40, "P"), (18, "a"), (211, "150"), (836, "1")], {"trailing_offset": "1.5",
                                                        "trailing_offset_type": "PERCENT"}),
    ([(40, "2"), (44, "1"), (59, "3")], {"time_in_force": "IOC"}),
    ([(40, "2"), (44, "1"), (59, "4")], {"time_in_force": "FOK"}),
    ([(40, "2"), (44, "1"), (59, "6"), (126, "20261201-10:00:01.500")],
     {"time_in_force": "GTD", "expire_at": 1796119201_500_000_000}),
    ([(40, "2"), (44, "1"), (18, "6"), (111, "0.1")], {"post_only": True, "display_quantity": "0.1"}),
])
def test_every_order_type_and_time_in_force_maps_from_fix(
    fields: list[tuple[int, str]], want: dict[str, object]
) -> None:
    params = order_params(nos(*fields))
    assert params["side"] == "SELL" and params["quantity"] == "0.5" and params["client_order_id"] == "c1"
    assert {k: params[k] for k in want} == want


@pytest.mark.parametrize(("fields", "field"), [
    ([(40, "2"), (44, "1"), (59, "0")], "TimeInForce"),  # Day: we have no trading day
    ([(40, "6")], "OrdType"),
    ([(40, "P"), (211, "5")], "ExecInst"),
    ([(40, "2"), (44, "1"), (59, "6")], "ExpireTime"),
])
def test_what_we_do_not_take_is_refused_naming_the_field(fields: list[tuple[int, str]], field: str) -> None:
    with pytest.raises(ApiError) as refused:
        order_params(nos(*fields))
    assert refused.value.details["field"] == field and field in refused.value.message


def test_the_maps_cover_every_type_and_time_in_force() -> None:
    assert set(FIX_TYPES) == {t.value for t in r.OrderType}
    assert set(FIX_TIFS) == {t.value for t in r.TimeInForce}


def report(**kw: object) -> r.ExecutionReport:
    fields: dict[str, object] = dict(
        event_id="e1", ts_event=1796119200_000_000_000, account_id="A", order_id="BTC-USD-1",
        client_order_id="c1", symbol="BTC-USD", sequence=2, status=r.OrderStatus.PARTIALLY_FILLED,
        side=r.Side.BUY,
        order_type=r.OrderType.LIMIT, quantity=D("0.5"), price=D(30000), filled_quantity=D("0.2"),
        remaining_quantity=D("0.3"), average_price=D(30000), last_fill_price=D(30000),
        last_fill_quantity=D("0.2"), trade_id="t1", fees=D(0))
    fields.update(kw)
    return r.ExecutionReport(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rep", "exec_type", "status"), [
    (report(), "F", "1"),
    (report(status=r.OrderStatus.ACCEPTED, last_fill_quantity=None, last_fill_price=None), "0", "0"),
    (report(status=r.OrderStatus.CANCELED, last_fill_quantity=None, remaining_quantity=D(0)), "4", "4"),
    (report(status=r.OrderStatus.REJECTED, last_fill_quantity=None, reason="INSUFFICIENT_FUNDS"), "8", "8"),
    (report(status=r.OrderStatus.EXPIRED, last_fill_quantity=None), "C", "C"),
    (report(status=r.OrderStatus.REPLACED, last_fill_quantity=None), "5", "1"),
])
def test_reports_become_valid_fix_execution_reports(
    rep: r.ExecutionReport, exec_type: str, status: str
) -> None:
    assert exec_type_of(rep) == exec_type
    raw = encode(BEGIN_STRING, "8", [(49, "ORDERSTREAM"), (56, "K"), (34, 9), (52, "20261201-10:00:00")],
                 report_body(rep, exec_type, "c1", None))
    msg = parse(raw)
    assert not Dictionary.fix44().check(msg.pairs)
    assert (msg.get(150), msg.get(39), msg.get(37), msg.get(11)) == (exec_type, status, "BTC-USD-1", "c1")


def test_fix_json_becomes_the_same_tag_value_message() -> None:
    at = "20261201-10:00:00"
    header = {"BeginString": "FIX.4.4", "MsgType": "E", "SenderCompID": "K", "TargetCompID": "ORDERSTREAM",
              "MsgSeqNum": "3", "SendingTime": at}
    orders = [{"ClOrdID": "a", "ListSeqNo": "1", "Symbol": "BTC-USD", "Side": "1", "TransactTime": at,
               "OrderQty": "1", "OrdType": "1"},
              {"ClOrdID": "b", "ListSeqNo": "2", "Symbol": "ETH-USD", "Side": "2", "TransactTime": at,
               "OrderQty": "2", "OrdType": "1"}]
    body = {"ListID": "L1", "BidType": "3", "TotNoOrders": "2", "NoOrders": orders}
    text = json.dumps({"Header": header, "Body": body, "Trailer": {}})
    msg = parse(from_json(text))
    assert not Dictionary.fix44().check(msg.pairs), Dictionary.fix44().check(msg.pairs)
    assert msg.get(73) == "2" and [v for t, v in msg.pairs if t == 11] == [b"a", b"b"]


@pytest.mark.parametrize(("rep", "refused"), [
    (report(status=r.OrderStatus.REPLACED, last_fill_quantity=None), False),  # the replace itself
    (report(status=r.OrderStatus.REPLACED, last_fill_quantity=None, reason="TOO_LATE_TO_CANCEL"), True),
    (report(status=r.OrderStatus.ACCEPTED, last_fill_quantity=None, reason="VENUE_CANCEL_UNSUPPORTED"), True),
    (report(status=r.OrderStatus.FILLED, last_fill_quantity=None, reason="UNKNOWN_ORDER"), True),
    (report(status=r.OrderStatus.CANCELED, last_fill_quantity=None, reason="CLIENT_REQUEST"), False),
    (report(reason=None), False),
])
def test_a_refused_cancel_or_replace_is_told_apart_from_the_orders_own_changes(
    rep: r.ExecutionReport, refused: bool
) -> None:
    assert refusal(rep) is refused
