"""One decimal context for the whole project, and the bounds that keep money inside the wire's decimal.

The wire's decimal is Avro `decimal(38, 18)`: 20 integer digits and 18 places. Python's
default context keeps 28 significant digits, so a sum of two wire values could be rounded
silently (12345678901.123456789012345678 + 0.000000000000000001 gave ...0123456789012345 68).
`install()` (run when the `orderstream` package is imported, so in every process before any
thread or task exists) sets a context that holds every product of two wire values exactly
and traps rounding that would lose a digit of a wire value:
- `prec=80`: a product of two wire values has at most 40 integer and 36 fractional digits;
- `Inexact` is not trapped (prices divide: averages, fees round to scale explicitly), but
  `InvalidOperation`, `DivisionByZero` and `Overflow` are.

Bounds: a client's amount is at most `API_MAX` (15 integer digits), and a ledger balance
must stay below `WIRE_LIMIT` (10^20): the ledger refuses, with a rejection event, a deposit
or an order whose settlement could leave a balance outside it.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

WIRE_PLACES = 18
WIRE_DIGITS = 38
WIRE_LIMIT = Decimal(10) ** (WIRE_DIGITS - WIRE_PLACES)  # a wire decimal's magnitude stays below it
API_MAX = Decimal(10) ** 15  # the largest amount, price or quantity a client may send
PRECISION = 80


def context() -> decimal.Context:
    return decimal.Context(
        prec=PRECISION, rounding=decimal.ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999,
        traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
    )


def install() -> None:
    """Make the project's context the default of this process and of every thread it starts."""
    project = context()
    decimal.DefaultContext.prec = project.prec
    decimal.DefaultContext.rounding = project.rounding
    decimal.DefaultContext.Emax = project.Emax
    decimal.DefaultContext.Emin = project.Emin
    decimal.setcontext(project)


def fits_wire(value: Decimal) -> bool:
    """Whether `value` is a wire decimal without rounding: below 10^20, at most 18 places."""
    return abs(value) < WIRE_LIMIT and value == value.quantize(Decimal(1).scaleb(-WIRE_PLACES))
