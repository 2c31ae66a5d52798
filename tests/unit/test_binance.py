"""The Binance-compatible API's pure parts: decimal strings, signing input, orderIds, parameters, errors."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal as D

import pytest

from orderstream.gateway.binance import (
    BnError,
    Params,
    binance_status,
    list_kind,
    list_number,
    order_number,
    total_params,
    translated,
)
from orderstream.gateway.binance_market import bn, number
from orderstream.gateway.errors import ApiError


def test_decimals_are_written_as_binance_does_and_stay_exact() -> None:
    assert bn(D("0.5")) == "0.50000000"
    assert bn(D("31000")) == "31000.00000000"
    assert bn(None) == "0.00000000"
    assert bn(D("0.000000001")) == "0.000000001"  # more places only when the value has them
    assert bn(D("123456789012345.123456789")) == "123456789012345.123456789"


def test_total_params_is_the_query_then_the_body_without_the_signature() -> None:
    message, signature = total_params("symbol=BTCUSD&side=BUY", "quantity=1&timestamp=5&signature=ab12")
    assert (message, signature) == ("symbol=BTCUSD&side=BUYquantity=1&timestamp=5", "ab12")
    # Binance's documented example (SIGNED endpoint examples, HMAC key of its docs)
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    query = (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
        "&timestamp=1499827319559"
    )
    message, _ = total_params(query, "")
    assert hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest() == (
        "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    )


def test_order_ids_are_integers_below_2_53_that_grow_with_time_and_tell_legs_apart() -> None:
    doc = {"order_id": "BTC-USD-ab12cd34ef567890", "ts": 1_767_225_600.123}
    first = order_number(doc)
    assert first < 2**53 and first >> 11 == 1_767_225_600_123
    later = order_number({**doc, "ts": 1_767_225_600.124})
    assert later > first
    basket = {"order_id": "BASKET-ab12cd34ef567890", "ts": 1_767_225_600.123}
    assert len({order_number(basket, f"BASKET-ab12cd34ef567890/{i}") for i in range(20)}) == 20
    assert number("BTC-USD-42") == 42 and number("FIX-EXEC-x-1") < 2**53


def test_parameters_are_refused_with_binance_codes() -> None:
    with pytest.raises(BnError) as dup:
        Params([("a", "1"), ("a", "2")])
    assert dup.value.code == -1101
    p = Params([("quantity", "1e5"), ("side", "UP"), ("limit", "x")])
    with pytest.raises(BnError) as bad:
        p.decimal("quantity")
    assert (bad.value.code, "quantity" in bad.value.msg) == (-1100, True)
    with pytest.raises(BnError) as side:
        p.choice("side", {"BUY": 0, "SELL": 0})
    assert (side.value.code, side.value.msg) == (-1117, "Invalid side.")
    with pytest.raises(BnError) as missing:
        p.need("price")
    assert missing.value.code == -1102 and "'price'" in missing.value.msg


def test_gateway_refusals_become_the_binance_ones_ccxt_maps() -> None:
    assert translated(ApiError(40012, "lot")).msg == "Filter failure: LOT_SIZE"
    assert translated(ApiError(40011, "tick")).msg == "Filter failure: PRICE_FILTER"
    assert translated(ApiError(40010, "sym")).code == -1121
    assert translated(ApiError(40401, "no", status=404)).code == -2013
    assert translated(ApiError(40401, "no", status=404), cancel=True).code == -2011
    limited = translated(ApiError(42901, "rate", status=429, headers={"Retry-After": "1"}))
    assert (limited.code, limited.status, limited.headers) == (-1015, 429, {"Retry-After": "1"})
    assert translated(ApiError(40001, "x", {"field": "stop_price", "issue": "bad"})).msg.startswith(
        "Illegal characters found in parameter 'stopPrice'"
    )


def test_statuses() -> None:
    assert binance_status("ACCEPTED", D(0), None) == "NEW"
    assert binance_status("ACCEPTED", D(1), None) == "PARTIALLY_FILLED"
    assert binance_status("CANCELED", D(0), "IOC_REMAINDER") == "EXPIRED"
    assert binance_status("CANCELED", D(0), "CLIENT_REQUEST") == "CANCELED"
    assert binance_status("CANCELED", D(0), "SELF_TRADE_PREVENTION") == "EXPIRED_IN_MATCH"


def test_an_order_lists_id_is_its_documents_own_number_and_only_its_orders_carry_it() -> None:
    oco = {"order_id": "BTC-USD-a1b2c3d4e5f60718", "ts": 1700000000.5, "symbol": "BTC-USD",
           "legs": ["BTC-USD"] * 2}
    assert (list_kind(oco), list_kind({**oco, "legs": ["BTC-USD"] * 3})) == ("OCO", "BRACKET")
    for other in ({**oco, "symbol": "BASKET"}, {**oco, "symbol": "INDEX"}, {**oco, "legs": None}):
        assert list_kind(other) is None
    list_id = list_number(oco, f"{oco['order_id']}/1")
    assert list_id == order_number(oco) == list_number(oco, f"{oco['order_id']}/0")
    assert list_id not in [order_number(oco, f"{oco['order_id']}/{n}") for n in (0, 1)]
    assert list_number(oco, oco["order_id"]) == -1  # the list itself is no order of a list
    assert list_number({**oco, "symbol": "BASKET"}, f"{oco['order_id']}/0") == -1


def test_a_list_refusal_names_binance_parameters() -> None:
    names = {"price": "abovePrice", "stop_price": "belowStopPrice"}
    order = translated(ApiError(40001, "invalid price: must be above stop_price (29000)",
                                {"field": "price", "issue": "not above stop_price"}), names=names)
    assert order.code == -2010 and "'abovePrice' must be above 'belowStopPrice'" in order.msg
    missing = translated(ApiError(40001, "x", {"field": "stop_price", "issue": "required"}), names=names)
    assert (missing.code, missing.msg) == (
        -1102, "Mandatory parameter 'belowStopPrice' was not sent, was empty/null, or malformed.")
    assert translated(ApiError(40014, "order lists trade on the internal venue")).code == -1020
