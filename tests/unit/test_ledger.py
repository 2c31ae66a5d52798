"""The collateral ledger: holds, settlement, releases, lots, and conservation over random workloads."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orderstream.collateral.app import load_account, store_account
from orderstream.collateral.domain.ledger import Account, journal
from orderstream.common import records as r
from orderstream.common.state import Changes
from orderstream.common.trading import cost
from tests.e2e.stack import instrument

BTC = instrument("BTC-USD")
INSTRUMENTS = {"BTC-USD": BTC}


def submit(oid: str, acct: str, side: str, qty: str, price: str | None, **kw: object) -> r.SubmitOrder:
    return r.SubmitOrder(
        command_id=f"c-{oid}",
        ts_event=1,
        account_id=acct,
        order_id=oid,
        client_order_id=oid,
        symbol="BTC-USD",
        side=side,
        order_type="LIMIT" if price else "MARKET",
        time_in_force="GTC",
        quantity=D(qty),
        price=None if price is None else D(price),
        **kw,
    )


def report(
    o: r.SubmitOrder,
    seq: int,
    status: str,
    filled: D,
    leaves: D,
    fill: tuple[D, D, str] | None = None,
    liquidity: str = "TAKER",
    price: D | None = None,
) -> r.ExecutionReport:
    return r.ExecutionReport(
        event_id=f"{o.order_id}:{seq}",
        ts_event=seq,
        account_id=o.account_id,
        order_id=o.order_id,
        client_order_id=o.client_order_id,
        symbol=o.symbol,
        sequence=seq,
        status=status,
        side=o.side,
        order_type=o.order_type,
        quantity=o.quantity,
        price=price if price is not None else o.price,
        filled_quantity=filled,
        remaining_quantity=leaves,
        average_price=fill[1] if fill else None,
        last_fill_quantity=fill[0] if fill else None,
        last_fill_price=fill[1] if fill else None,
        last_liquidity=liquidity if fill else None,
        trade_id=fill[2] if fill else None,
        fees=D(0),
    )


def funded(acct: str, **amounts: str) -> Account:
    a = Account(acct)
    for asset, amount in amounts.items():
        a.deposit(
            r.Deposit(
                command_id=f"d-{asset}",
                ts_event=1,
                account_id=acct,
                asset=asset,
                amount=D(amount),
                source="bank",
            )
        )
    return a


def test_a_limit_buy_holds_price_times_quantity_plus_the_larger_fee_and_settles_exactly() -> None:
    a = funded("A", USD="100000")
    o = submit("o1", "A", "BUY", "1.5", "30000")
    events, refusal = a.hold_orders([o], INSTRUMENTS)
    assert refusal is None and events[0].amount == D("45090")  # 45000 + 0.2% taker (the larger)
    a.on_report(report(o, 1, "ACCEPTED", D(0), D("1.5")), BTC)
    settled = a.on_report(report(o, 2, "FILLED", D("1.5"), D(0), (D("1.5"), D(29000), "t1")), BTC)
    # paid 43,500 + 87 fee at the better price; the rest of the hold comes back
    assert [(e.asset, e.delta, e.fee) for e in settled if isinstance(e, r.FillSettled)] == [
        ("USD", D(-43587), D(87)),
        ("BTC", D("1.5"), D(0)),
    ]
    assert a.free == {"USD": D("56413"), "BTC": D("1.5")} and a.held == {"USD": D(0)}
    assert a.holds == {}


def test_refusals_name_the_reason() -> None:
    a = funded("A", USD="100")
    assert a.hold_orders([submit("o1", "A", "BUY", "1", "30000")], INSTRUMENTS)[1][0] == "INSUFFICIENT_FUNDS"
    assert a.hold_orders([submit("o2", "A", "BUY", "1", None)], INSTRUMENTS)[1][0] == "QUOTE_BUDGET_REQUIRED"
    assert (
        a.hold_orders(
            [submit("o3", "A", "SELL", "1", "5").model_copy(update={"symbol": "X-Y"})], INSTRUMENTS
        )[1][0]
        == "UNKNOWN_SYMBOL"
    )
    w = a.withdraw(
        r.Withdraw(command_id="w", ts_event=1, account_id="A", asset="USD", amount=D(101), destination="bank")
    )
    assert isinstance(w[0], r.WithdrawalRejected) and w[0].reason == "INSUFFICIENT_FUNDS"
    assert a.free == {"USD": D(100)} and a.holds == {}


def test_a_basket_holds_all_legs_or_none() -> None:
    a = funded("A", USD="1000")
    legs = [submit("b/0", "A", "BUY", "0.01", "30000"), submit("b/1", "A", "BUY", "0.03", "30000")]
    _, refusal = a.hold_orders(legs, INSTRUMENTS)  # 300.6 + 901.8 > 1000
    assert refusal is not None and a.free == {"USD": D(1000)} and a.holds == {}


def test_a_market_buy_holds_its_budget_and_releases_what_it_did_not_spend() -> None:
    a = funded("A", USD="1000")
    o = submit("m", "A", "BUY", "1", None, quote_budget=D(500))
    events, _ = a.hold_orders([o], INSTRUMENTS)
    assert events[0].amount == D(501)
    a.on_report(report(o, 1, "ACCEPTED", D(0), D(1)), BTC)
    a.on_report(report(o, 2, "PARTIALLY_FILLED", D("0.01"), D("0.99"), (D("0.01"), D(30000), "t")), BTC)
    a.on_report(report(o, 3, "CANCELED", D("0.01"), D(0)), BTC)
    assert a.free == {"USD": D("699.4"), "BTC": D("0.01")} and a.held["USD"] == 0


def test_a_repeated_report_changes_nothing() -> None:
    a = funded("A", USD="100000")
    o = submit("o", "A", "BUY", "1", "30000")
    a.hold_orders([o], INSTRUMENTS)
    fill = report(o, 1, "PARTIALLY_FILLED", D("0.5"), D("0.5"), (D("0.5"), D(30000), "t"))
    assert a.on_report(fill, BTC)
    before = a.to_doc()
    assert a.on_report(fill, BTC) == [] and a.to_doc() == before


def test_a_replace_up_holds_more_and_its_report_trues_the_hold_up() -> None:
    a = funded("A", USD="100000")
    o = submit("o", "A", "BUY", "1", "30000")
    a.hold_orders([o], INSTRUMENTS)
    a.on_report(report(o, 1, "ACCEPTED", D(0), D(1)), BTC)
    replace = r.ReplaceOrder(
        command_id="rp",
        ts_event=2,
        account_id="A",
        order_id="o",
        client_order_id="o",
        symbol="BTC-USD",
        quantity=D(2),
        price=D(31000),
    )
    events, refusal = a.hold_replace(replace, BTC)
    assert refusal is None and events[0].amount == D(62124) - D(30060)
    a.on_report(report(o, 2, "REPLACED", D(0), D(2), price=D(31000)), BTC)
    assert a.held["USD"] == cost(BTC, r.Side.BUY, r.OrderType.LIMIT, D(2), D(31000), None)[1]  # type: ignore[index]


def test_a_refused_replace_gives_back_what_was_held_for_it_once() -> None:
    a = funded("A", USD="100000")
    o = submit("o", "A", "BUY", "1", "30000")
    a.hold_orders([o], INSTRUMENTS)
    a.on_report(report(o, 1, "ACCEPTED", D(0), D(1)), BTC)
    before = dict(a.held)
    replace = r.ReplaceOrder(command_id="rp", ts_event=2, account_id="A", order_id="o", client_order_id="o",
                             symbol="BTC-USD", quantity=D(2), price=None)
    events, _ = a.hold_replace(replace, BTC)
    assert events and a.held["USD"] > before["USD"]
    # the venue (or the matcher) refuses it: a report with a reason, the sequence number unchanged
    refusal = report(o, 1, "ACCEPTED", D(0), D(1)).model_copy(
        update={"event_id": "o:1:refused", "reason": "VENUE_REPLACE_UNSUPPORTED"})
    released = a.on_report(refusal, BTC)
    assert [type(e).__name__ for e in released] == ["CollateralReleased"] and a.held == before
    assert a.on_report(refusal, BTC) == []  # a redelivery changes nothing


def test_deposits_open_lots_that_fills_and_withdrawals_consume_oldest_first() -> None:
    a = funded("A", USD="100")
    a.deposit(
        r.Deposit(command_id="d2", ts_event=2, account_id="A", asset="USD", amount=D(50), source="wire")
    )
    a.withdraw(
        r.Withdraw(command_id="w", ts_event=3, account_id="A", asset="USD", amount=D(120), destination="x")
    )
    assert [(lot.source, lot.remaining) for lot in a.lots["USD"]] == [("wire", D(30))]


def test_proceeds_of_consecutive_trades_share_one_lot_so_lots_stay_few() -> None:
    a = funded("A", USD="1000000")
    for i in range(50):
        o = submit(f"b{i}", "A", "BUY", "0.1", "30000")
        a.hold_orders([o], INSTRUMENTS)
        a.on_report(report(o, 1, "ACCEPTED", D(0), D("0.1")), BTC)
        a.on_report(report(o, 2, "FILLED", D("0.1"), D(0), (D("0.1"), D(30000), f"t{i}")), BTC)
    assert [(lot.source, lot.remaining) for lot in a.lots["BTC"]] == [("trades", D(5))]
    a.deposit(r.Deposit(command_id="d9", ts_event=9, account_id="A", asset="BTC", amount=D(1), source="wire"))
    o = submit("b99", "A", "BUY", "0.1", "30000")
    a.hold_orders([o], INSTRUMENTS)
    a.on_report(report(o, 1, "ACCEPTED", D(0), D("0.1")), BTC)
    a.on_report(report(o, 2, "FILLED", D("0.1"), D(0), (D("0.1"), D(30000), "t99")), BTC)
    assert [(lot.source, lot.remaining) for lot in a.lots["BTC"]] == [
        ("trades", D(5)),
        ("wire", D(1)),
        ("trade:t99", D("0.1")),
    ]


@st.composite
def workloads(draw: st.DrawFn) -> list[tuple[str, ...]]:
    steps = []
    for _ in range(draw(st.integers(5, 40))):
        steps.append(
            draw(
                st.one_of(
                    st.tuples(
                        st.just("order"),
                        st.sampled_from("AB"),
                        st.sampled_from(["BUY", "SELL"]),
                        st.sampled_from(["0.5", "1", "2.5"]),
                        st.sampled_from(["29000", "30000", "31000"]),
                    ),
                    st.tuples(st.just("cross"), st.sampled_from(["0.5", "1", "3"])),
                    st.tuples(st.just("cancel"), st.integers(0, 50)),
                    st.tuples(
                        st.just("withdraw"),
                        st.sampled_from("AB"),
                        st.sampled_from(["USD", "BTC"]),
                        st.sampled_from(["1", "5000"]),
                    ),
                )
            )
        )
    return steps


@settings(max_examples=150, deadline=None)
@given(workloads())
def test_conservation_journal_and_holds_over_random_workloads(steps: list[tuple[str, ...]]) -> None:
    """Per asset, accounts + fees + withdrawn equal deposits; holds equal what open orders can cost."""
    accounts = {"A": funded("A", USD="200000", BTC="5"), "B": funded("B", USD="200000", BTC="5")}
    deposits = {"USD": D(400000), "BTC": D(10)}
    withdrawn: dict[str, D] = defaultdict(D)
    open_orders: dict[str, list[object]] = {}  # order_id -> [order, seq, filled]
    n = 0

    def send(o: r.SubmitOrder, status: str, fill: tuple[D, D, str] | None, liquidity: str = "TAKER") -> None:
        entry = open_orders[o.order_id]
        entry[1] += 1  # type: ignore[operator]
        if fill:
            entry[2] += fill[0]  # type: ignore[operator]
        leaves = D(0) if status in ("FILLED", "CANCELED") else o.quantity - entry[2]  # type: ignore[operator]
        rep = report(o, entry[1], status, entry[2], leaves, fill, liquidity)  # type: ignore[arg-type]
        events = accounts[o.account_id].on_report(rep, BTC)
        for e in events:
            for asset in ("USD", "BTC"):
                assert sum(x for _, a_, x in journal(o.account_id, e) if a_ == asset) == 0
        assert accounts[o.account_id].on_report(rep, BTC) == []  # redelivery
        if status in ("FILLED", "CANCELED"):
            del open_orders[o.order_id]

    for step in steps:
        n += 1
        if step[0] == "order":
            _, acct, side, qty, price = step
            o = submit(f"o{n}", acct, side, qty, price)
            if accounts[acct].hold_orders([o], INSTRUMENTS)[1] is None:
                open_orders[o.order_id] = [o, 0, D(0)]
                send(o, "ACCEPTED", None)
        elif step[0] == "cross":
            buys = [e for e in open_orders.values() if e[0].side == r.Side.BUY]  # type: ignore[attr-defined]
            sells = [e for e in open_orders.values() if e[0].side == r.Side.SELL]  # type: ignore[attr-defined]
            for b in buys:
                s = next((s for s in sells if s[0].price <= b[0].price), None)  # type: ignore[attr-defined]
                if s is None:
                    continue
                bo, so = b[0], s[0]
                qty = min(D(step[1]), bo.quantity - b[2], so.quantity - s[2])  # type: ignore[attr-defined]
                trade = (qty, so.price, f"t{n}")  # type: ignore[attr-defined]
                send(bo, "FILLED" if b[2] + qty == bo.quantity else "PARTIALLY_FILLED", trade)  # type: ignore
                send(so, "FILLED" if s[2] + qty == so.quantity else "PARTIALLY_FILLED", trade, "MAKER")  # type: ignore
                break
        elif step[0] == "cancel" and open_orders:
            entry = list(open_orders.values())[step[1] % len(open_orders)]
            send(entry[0], "CANCELED", None)  # type: ignore[arg-type]
        elif step[0] == "withdraw":
            _, acct, asset, amount = step
            events = accounts[acct].withdraw(
                r.Withdraw(
                    command_id=f"w{n}",
                    ts_event=n,
                    account_id=acct,
                    asset=asset,
                    amount=D(amount),
                    destination="x",
                )
            )
            if isinstance(events[0], r.Withdrawn):
                withdrawn[asset] += D(amount)
        for a in accounts.values():
            assert all(v >= 0 for v in (*a.free.values(), *a.held.values()))
    for asset in ("USD", "BTC"):
        total = sum(
            a.free.get(asset, D(0)) + a.held.get(asset, D(0)) + a.fees.get(asset, D(0))
            for a in accounts.values()
        )
        assert total + withdrawn[asset] == deposits[asset]
        for a in accounts.values():
            assert a.held.get(asset, D(0)) == sum(
                (h.amount for h in a.holds.values() if h.asset == asset), D(0)
            )
            assert sum((lot.remaining for lot in a.lots.get(asset, [])), D(0)) == a.free.get(
                asset, D(0)
            ) + a.held.get(asset, D(0))
    for o, _, filled in open_orders.values():
        hold = accounts[o.account_id].holds[o.order_id]  # type: ignore[attr-defined]
        need = cost(BTC, o.side, o.order_type, o.quantity - filled, o.price, None)  # type: ignore[attr-defined]
        assert need is not None and hold.amount == need[1]


def stored_changes(docs: dict[str, Any]) -> Changes:
    """A step's view over stored documents (what StateStore hands a step)."""
    return Changes(SimpleNamespace(docs=lambda: docs))  # type: ignore[arg-type]


def test_each_hold_is_its_own_document_and_a_step_touches_only_its_orders() -> None:
    a = funded("A", USD="100000")
    o1, o2 = submit("o1", "A", "BUY", "1", "30000"), submit("o2", "A", "BUY", "1", "31000")
    a.hold_orders([o1, o2], INSTRUMENTS)
    docs: dict[str, Any] = {}
    first = stored_changes(docs)
    store_account(first, a, ["o1", "o2"])
    docs.update({k: v for k, v in first.written.items() if v is not None})
    assert "holds" not in docs["a|A"] and set(docs) == {"a|A", "a|A|o1", "a|A|o2"}

    # o1 fills: the step reads the account and o1's hold only, and deletes that hold
    step = stored_changes(docs)
    account = load_account(step, "A", ["o1"])
    assert set(account.holds) == {"o1"}
    account.on_report(report(o1, 1, "FILLED", D(1), D(0), (D(1), D(30000), "t1")), BTC)
    store_account(step, account, ["o1"])
    assert set(step.written) == {"a|A", "a|A|o1"} and step.written["a|A|o1"] is None
    docs.update(step.written)
    del docs["a|A|o1"]
    whole = load_account(stored_changes(docs), "A", ["o1", "o2"])
    assert set(whole.holds) == {"o2"} and whole.held == {"USD": a.holds["o2"].amount}


def test_an_account_stored_with_its_holds_inside_is_split_on_its_next_step() -> None:
    a = funded("A", USD="100000")
    o1, o2 = submit("o1", "A", "BUY", "1", "30000"), submit("o2", "A", "BUY", "1", "31000")
    a.hold_orders([o1, o2], INSTRUMENTS)
    docs: dict[str, Any] = {"a|A": a.to_doc()}  # the layout before hold documents
    step = stored_changes(docs)
    account = load_account(step, "A")  # a deposit: no order concerned
    assert set(account.holds) == {"o1", "o2"}
    store_account(step, account)
    assert "holds" not in step.written["a|A"]  # type: ignore[operator]
    assert {k: v for k, v in step.written.items() if k.startswith("a|A|")} == {
        "a|A|o1": a.holds["o1"].to_doc(), "a|A|o2": a.holds["o2"].to_doc()}


def deposit(acct: str, asset: str, amount: str, n: int) -> r.Deposit:
    return r.Deposit(command_id=f"d{n}", ts_event=1, account_id=acct, asset=asset, amount=D(amount),
                     source="bank")


def test_balances_keep_every_digit_of_the_wire_decimal() -> None:
    # In Python's default 28-digit context the second deposit was rounded away.
    a = Account("big")
    a.deposit(deposit("big", "USD", "12345678901.123456789012345678", 1))
    events = a.deposit(deposit("big", "USD", "0.000000000000000001", 2))
    assert isinstance(events[0], r.Deposited)
    assert events[0].free == D("12345678901.123456789012345679")
    assert a.free["USD"] == D("12345678901.123456789012345679")


def test_a_deposit_that_would_leave_the_wire_decimal_is_refused_with_a_reason() -> None:
    a = Account("whale")
    assert isinstance(a.deposit(deposit("whale", "USD", "99999999999999999999", 1))[0], r.Deposited)
    refused = a.deposit(deposit("whale", "USD", "1", 2))
    assert isinstance(refused[0], r.WithdrawalRejected) and refused[0].reason == "BALANCE_LIMIT"
    assert a.free["USD"] == D("99999999999999999999")  # unchanged


def test_an_order_whose_settlement_would_leave_the_wire_decimal_is_refused() -> None:
    a = funded("seller", BTC="1000000000000000", USD="99999999999000000000")
    events, refusal = a.hold_orders([submit("s1", "seller", "SELL", "1000", "1000000000")], INSTRUMENTS)
    assert events == [] and refusal is not None and refusal[0] == "BALANCE_LIMIT"
    events, refusal = a.hold_orders([submit("s2", "seller", "SELL", "1", "100")], INSTRUMENTS)
    assert refusal is None and events


def test_balance_events_carry_the_accounts_sequence_without_gaps_across_a_reload() -> None:
    """A settlement and its release share one timestamp; the sequence orders them (and every other
    balance change of the account), also after the account is stored and loaded again."""
    a = funded("A", USD="100000", BTC="1")
    o = submit("o1", "A", "BUY", "1", "30000")
    held, _ = a.hold_orders([o], INSTRUMENTS)
    a = Account.from_doc("A", a.to_doc())
    a.on_report(report(o, 1, "ACCEPTED", D(0), D(1)), BTC)
    done = a.on_report(report(o, 2, "FILLED", D(1), D(0), (D(1), D(29000), "t1")), BTC)
    assert [type(e).__name__ for e in done] == ["FillSettled", "FillSettled", "CollateralReleased"]
    assert len({e.ts_event for e in done}) == 1
    assert [e.sequence for e in [*held, *done]] == [3, 4, 5, 6] and a.sequence == 6


WIRE_AMOUNTS = st.decimals(min_value=D("1e-18"), max_value=D("99999999999999999999.999999999999999999"),
                           places=18, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(WIRE_AMOUNTS, min_size=1, max_size=6))
def test_deposits_across_the_whole_wire_range_add_up_exactly_or_are_refused(amounts: list[D]) -> None:
    """Any wire amounts (20 integer digits, 18 places): each deposit lands to the last digit, or,
    when the balance would leave the wire decimal, is refused and changes nothing."""
    a = Account("p")
    want = D(0)
    for n, amount in enumerate(amounts):
        (event,) = a.deposit(deposit("p", "USD", str(amount), n))
        if want + amount < D(10) ** 20:
            want += amount
            assert isinstance(event, r.Deposited) and event.free == want
        else:
            assert isinstance(event, r.WithdrawalRejected) and event.reason == "BALANCE_LIMIT"
        assert a.free.get("USD", D(0)) == want
