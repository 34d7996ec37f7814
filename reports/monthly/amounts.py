"""Rounding and JSON text of the report's money amounts, ratios and day counts.

Money is rounded half up to the cent, ratios are percentages rounded half up
to 0.01. The frozen figures hold both as strings, so JSON never turns them
into binary floats.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal("100")
ZERO = Decimal("0.00")


def money(value: object) -> Decimal:
    """Return a database sum as Decimal rounded half up to the cent; None counts as zero.

    SQLite returns sums of decimal columns as floats, so the value goes
    through its shortest text form first.
    """
    if value is None:
        return ZERO
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


def money_text(value: object) -> str:
    return str(money(value))


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """Return part / whole in percent rounded half up to 0.01, or None when whole is zero."""
    if not whole:
        return None
    return (Decimal(part) * HUNDRED / Decimal(whole)).quantize(CENT, rounding=ROUND_HALF_UP)


def percent_text(part: Decimal, whole: Decimal) -> str | None:
    value = percent(part, whole)
    return None if value is None else str(value)


def decimal_text(value: Decimal | None) -> str | None:
    """Return a figure such as a mean number of days rounded half up to 0.01, or None."""
    if value is None:
        return None
    return str(Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP))
