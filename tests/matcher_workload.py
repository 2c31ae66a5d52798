"""A reproducible matcher workload shared by unit, integration and benchmark code."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from orderstream.common import records as r


def instrument(symbol: str) -> r.Instrument:
    base, quote = symbol.split("-")
    return r.Instrument(symbol=symbol, base_asset=base, quote_asset=quote, tick_size=Decimal("0.5"),
                        lot_size=Decimal("0.001"), min_quantity=Decimal("0.001"), min_notional=Decimal("5"),
                        maker_fee=Decimal("0.001"), taker_fee=Decimal("0.002"), venue="INTERNAL")


BTC = instrument("BTC-USD")


def submit(n: int, side: str, qty: str, price: str | None, acct: str = "A", **kw: Any) -> r.SubmitOrder:
    return r.SubmitOrder(command_id=f"cmd-{n}", ts_event=n, account_id=acct, order_id=f"o{n}",
                         client_order_id=f"c{n}", symbol=kw.pop("symbol", "BTC-USD"), side=side,
                         order_type=kw.pop("order_type", "LIMIT" if price else "MARKET"),
                         time_in_force=kw.pop("time_in_force", "GTC"), quantity=Decimal(qty),
                         price=None if price is None else Decimal(price), **kw)


def random_commands(seed: int, n: int, symbols: tuple[str, ...] = ("BTC-USD",), start: int = 0
                    ) -> list[r.SubmitOrder | r.CancelOrder | r.ReplaceOrder]:
    """A mixed stream of submits (limit, market, stop-limit), cancels and replaces; ids from `start`."""
    rng = random.Random(seed)
    cmds: list[r.SubmitOrder | r.CancelOrder | r.ReplaceOrder] = []
    for i in range(start, start + n):
        roll = rng.random()
        symbol = rng.choice(symbols)
        if roll < 0.7 or i < start + 3:
            price = str(Decimal(rng.randint(190, 210)) / 2)
            kind = rng.choice(["LIMIT"] * 5 + ["MARKET", "STOP_LIMIT"])
            extra: dict[str, Any] = {}
            if kind == "STOP_LIMIT":
                extra["stop_price"] = Decimal(price)
            cmds.append(submit(i, rng.choice(["BUY", "SELL"]), str(rng.randint(1, 9) / 100),
                               None if kind == "MARKET" else price, acct=rng.choice("ABC"), order_type=kind,
                               time_in_force="IOC" if kind == "MARKET" else "GTC", symbol=symbol,
                               **extra))
        else:
            prev = cmds[rng.randrange(len(cmds))]
            target, acct, symbol = int(prev.order_id[1:]), prev.account_id, prev.symbol
            if roll < 0.9:
                cmds.append(r.CancelOrder(command_id=f"cmd-{i}", ts_event=i, account_id=acct,
                                          order_id=f"o{target}", client_order_id="", symbol=symbol))
            else:
                cmds.append(r.ReplaceOrder(command_id=f"cmd-{i}", ts_event=i, account_id=acct,
                                           order_id=f"o{target}", client_order_id="", symbol=symbol,
                                           quantity=Decimal(rng.choice(["0.001", "0.02", "0.05", "0.2"])),
                                           price=None))
    return cmds
