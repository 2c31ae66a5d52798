"""The OrderGateway protocol's pure parts: exact numbers both ways, and the book a push shows."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderstream.common import records as r
from orderstream.gateway import payload
from orderstream.gateway.docapi import Book, client_order_id, dumps
from orderstream.gateway.errors import ApiError


def test_numbers_are_read_and_written_from_their_digits() -> None:
    frame = payload.loads('{"price": 0.1, "quantity": 3, "big": 1e999, "tiny": 12345.678900000000000001}',
                          32, "frame", exact=True)
    assert frame == {"price": Decimal("0.1"), "quantity": 3, "big": Decimal("1e999"),
                     "tiny": Decimal("12345.678900000000000001")}
    assert dumps({"p": Decimal("150.000000000000000000"), "q": Decimal("0E-18"), "r": Decimal("0.1"),
                  "big": Decimal("1e999"), "id": "x", "n": None, "l": [Decimal("2.50")]}) == (
        '{"p":150,"q":0,"r":0.1,"big":1E+999,"id":"x","n":null,"l":[2.5]}')
    with pytest.raises(ApiError) as refused:
        payload.loads('{"price": NaN}', 32, "frame", exact=True)
    assert refused.value.code == 40002


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_a_decimal_goes_out_as_the_same_number(d: Decimal) -> None:
    assert Decimal(json.loads(dumps([d]), parse_float=Decimal, parse_int=Decimal)[0]) == d


def level(side: str, price: str, qty: str) -> r.PriceLevel:
    return r.PriceLevel(side=side, price=Decimal(price), quantity=Decimal(qty))


def test_the_book_takes_newer_updates_and_snapshots_and_mends_itself() -> None:
    book = Book()
    snap = r.DepthSnapshot(symbol="X", ts_event=1, sequence=5,
                           levels=[level("BID", "10", "1"), level("BID", "9", "2"), level("ASK", "11", "3")])
    assert book.snapshot(snap) and not book.snapshot(snap)
    assert not book.apply(r.BookUpdate(symbol="X", ts_event=1, sequence=5, changes=[level("BID", "10", "0")]))
    assert book.apply(r.BookUpdate(symbol="X", ts_event=1, sequence=7,
                                   changes=[level("BID", "10", "0"), level("ASK", "10.5", "1")]))
    trade = r.Trade(trade_id="t", ts_event=2_000_000, symbol="X", price=Decimal(10), quantity=Decimal(1),
                    aggressor_side="SELL", sequence=6)
    assert book.apply(trade) and not book.apply(trade)
    assert book.view("X", depth=1) == {
        "symbol": "X", "bids": [[Decimal(9), Decimal(2)]], "asks": [[Decimal("10.5"), Decimal(1)]],
        "last_trade": {"price": Decimal(10), "quantity": Decimal(1), "timestamp": 2}, "tick": 7,
    }
    older = r.DepthSnapshot(symbol="X", ts_event=1, sequence=6, levels=[])
    assert not book.snapshot(older)  # behind the levels: ignored
    # a book that missed an update is replaced by the first snapshot at least as new
    mended = r.DepthSnapshot(symbol="X", ts_event=1, sequence=7, levels=[level("ASK", "12", "1")])
    assert book.snapshot(mended)
    assert (book.bids, book.asks) == ({}, {Decimal(12): Decimal(1)})


def test_an_order_without_client_order_id_is_keyed_by_its_request_id() -> None:
    assert client_order_id("req_001") == client_order_id("req_001") == "id:req_001"
    hashed = {client_order_id(x) for x in (1, "1 2", "x" * 80, [1])}
    assert len(hashed) == 4 and all(h.startswith("idh:") and len(h) == 44 for h in hashed)
    assert client_order_id(None) != client_order_id(None)
