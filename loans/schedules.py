"""Repayment schedule engine for amortising SME loans.

Pure Python with Decimal arithmetic and no Django imports, so models, imports
and reports can all call it. Money amounts are in currency units with two
decimal places.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import StrEnum
from typing import TypeVar

from dateutil.relativedelta import relativedelta

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# Significant digits for intermediate results such as (1 + r) ** -n. A fixed
# value keeps results independent of the caller's decimal context.
_PRECISION = 34


class RepaymentMethod(StrEnum):
    ANNUITY = "annuity"
    EQUAL_PRINCIPAL = "equal_principal"
    # Interest every period and the whole principal with the last instalment.
    INTEREST_ONLY = "interest_only"
    # Custom schedules are imported instalment by instalment, never generated.
    CUSTOM = "custom"


class DayCount(StrEnum):
    ACT_360 = "act_360"
    ACT_365 = "act_365"
    # 30/360 US (SIA), with the end-of-February rules always applied.
    THIRTY_360 = "30_360"


class Frequency(StrEnum):
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"

    @property
    def months(self) -> int:
        """Number of calendar months in one period."""
        return _MONTHS_PER_PERIOD[self]


_MONTHS_PER_PERIOD = {Frequency.MONTHLY: 1, Frequency.QUARTERLY: 3}


@dataclass(frozen=True)
class ScheduledInstalment:
    number: int
    due_date: date
    principal: Decimal
    interest: Decimal
    # Outstanding principal after this instalment is paid.
    balance: Decimal

    @property
    def total(self) -> Decimal:
        return self.principal + self.interest


def add_months(anchor: date, months: int) -> date:
    """Add calendar months, clipping to the month end (2024-01-31 + 1 = 2024-02-29)."""
    return anchor + relativedelta(months=months)


def year_fraction(start: date, end: date, day_count: DayCount | str) -> Decimal:
    """Return the year fraction from start to end, not rounded to cents.

    The result carries 34 significant digits, so 31/360 is not stored exactly.
    Interest calculations in this module divide by the basis last instead.
    """
    day_count = _parse_choice(DayCount, day_count, "day_count")
    days, basis = _day_count_terms(start, end, day_count)
    with localcontext() as context:
        context.prec = _PRECISION
        return Decimal(days) / Decimal(basis)


def build_schedule(
    principal: Decimal,
    annual_rate: Decimal,
    start: date,
    periods: int,
    method: RepaymentMethod | str,
    frequency: Frequency | str,
    day_count: DayCount | str,
    first_due_date: date | None = None,
) -> list[ScheduledInstalment]:
    """Generate the repayment schedule of a loan disbursed on `start`.

    `annual_rate` is a fraction (Decimal("0.094822") for 9.4822 %). Interest
    accrues on the opening balance for the days of each period under
    `day_count` and is rounded half-up to cents. The annuity instalment comes
    from the nominal periodic rate (annual_rate * months per period / 12), so
    under Act/360 or Act/365 the interest differs from that rate and the last
    instalment absorbs the difference. The last instalment always repays the
    remaining balance, so the schedule has exactly `periods` instalments and
    ends at 0.00.

    Without `first_due_date` the due dates are start + 1, 2, ... periods.
    With it, they are first_due_date + 0, 1, 2, ... periods.

    Raises ValueError for invalid amounts, counts, dates or choices, and for
    RepaymentMethod.CUSTOM.
    """
    method = _parse_choice(RepaymentMethod, method, "method")
    frequency = _parse_choice(Frequency, frequency, "frequency")
    day_count = _parse_choice(DayCount, day_count, "day_count")
    _validate_terms(principal, annual_rate, periods, method)
    due_dates = _due_dates(start, periods, frequency.months, first_due_date)

    with localcontext() as context:
        context.prec = _PRECISION
        principal_due = _principal_rule(method, principal, annual_rate, periods, frequency)
        return _amortise(
            principal.quantize(CENT), annual_rate, start, due_dates, day_count, principal_due
        )


ChoiceT = TypeVar("ChoiceT", bound=StrEnum)


def _parse_choice(choice_type: type[ChoiceT], value: object, name: str) -> ChoiceT:
    try:
        return choice_type(value)
    except ValueError:
        allowed = ", ".join(member.value for member in choice_type)
        raise ValueError(f"invalid {name} {value!r}: expected one of {allowed}") from None


def _validate_terms(
    principal: Decimal, annual_rate: Decimal, periods: int, method: RepaymentMethod
) -> None:
    if method is RepaymentMethod.CUSTOM:
        raise ValueError(
            "method 'custom' cannot be generated because "
            "custom schedules are imported instalment by instalment"
        )
    _require_decimal(principal, "principal")
    _require_decimal(annual_rate, "annual_rate")
    if principal <= 0:
        raise ValueError(f"invalid principal {principal}: it must be greater than 0")
    if principal != principal.quantize(CENT):
        raise ValueError(f"invalid principal {principal}: it must be a whole number of cents")
    if annual_rate < 0:
        raise ValueError(f"invalid annual_rate {annual_rate}: it must be 0 or greater")
    if isinstance(periods, bool) or not isinstance(periods, int):
        raise TypeError(f"periods must be an int, got {type(periods).__name__}")
    if periods < 1:
        raise ValueError(f"invalid periods {periods}: a schedule needs at least 1 instalment")


def _require_decimal(value: object, name: str) -> None:
    if not isinstance(value, Decimal):
        raise TypeError(
            f"{name} must be a Decimal, got {type(value).__name__}: "
            "pass Decimal('...') to avoid float rounding"
        )
    if not value.is_finite():
        raise ValueError(f"invalid {name} {value}: it must be a finite number")


def _due_dates(
    start: date, periods: int, months_per_period: int, first_due_date: date | None
) -> list[date]:
    # Each date is computed from one anchor, not from the previous date,
    # so a 31st anchor returns to the 31st after a short month.
    if first_due_date is None:
        return [add_months(start, number * months_per_period) for number in range(1, periods + 1)]
    if first_due_date <= start:
        raise ValueError(
            f"invalid first_due_date {first_due_date}: it must be after the start date {start}"
        )
    return [add_months(first_due_date, index * months_per_period) for index in range(periods)]


def _principal_rule(
    method: RepaymentMethod,
    principal: Decimal,
    annual_rate: Decimal,
    periods: int,
    frequency: Frequency,
) -> Callable[[Decimal], Decimal]:
    """Return a function that maps a period's interest to its principal due.

    The engine applies it to every instalment except the last one.
    """
    if method is RepaymentMethod.ANNUITY:
        periodic_rate = annual_rate * frequency.months / 12
        payment = _annuity_payment(principal, periodic_rate, periods)
        # NOTE: when a long first period makes interest exceed the level payment,
        # that instalment repays 0.00 principal and its total exceeds the level.
        return lambda interest: max(payment - interest, ZERO)
    if method is RepaymentMethod.EQUAL_PRINCIPAL:
        share = _round_cents(principal / periods)
        return lambda interest: share
    return lambda interest: ZERO


def _annuity_payment(principal: Decimal, periodic_rate: Decimal, periods: int) -> Decimal:
    """Return the level payment P * r / (1 - (1 + r) ** -n), rounded half-up to cents."""
    if periodic_rate == 0:
        return _round_cents(principal / periods)
    discount_factor = 1 - (1 + periodic_rate) ** -periods
    return _round_cents(principal * periodic_rate / discount_factor)


def _amortise(
    principal: Decimal,
    annual_rate: Decimal,
    start: date,
    due_dates: list[date],
    day_count: DayCount,
    principal_due: Callable[[Decimal], Decimal],
) -> list[ScheduledInstalment]:
    instalments = []
    balance = principal
    period_start = start
    for number, due_date in enumerate(due_dates, start=1):
        interest = _period_interest(balance, annual_rate, period_start, due_date, day_count)
        if number == len(due_dates):
            repaid = balance
        else:
            # The cap keeps the balance from going below zero when rounding
            # up the equal share of a tiny principal overshoots it.
            repaid = min(principal_due(interest), balance)
        balance -= repaid
        instalments.append(ScheduledInstalment(number, due_date, repaid, interest, balance))
        period_start = due_date
    return instalments


def _period_interest(
    balance: Decimal, annual_rate: Decimal, start: date, end: date, day_count: DayCount
) -> Decimal:
    # Dividing by the basis last keeps exact half-cent results exact before rounding.
    days, basis = _day_count_terms(start, end, day_count)
    return _round_cents(balance * annual_rate * days / basis)


def _day_count_terms(start: date, end: date, day_count: DayCount) -> tuple[int, int]:
    """Return (days, days in the year basis) for the period from start to end."""
    if end < start:
        raise ValueError(f"invalid period: end {end} is before start {start}")
    if day_count is DayCount.THIRTY_360:
        return _days_30_360_us(start, end), 360
    actual_days = (end - start).days
    if day_count is DayCount.ACT_360:
        return actual_days, 360
    return actual_days, 365


def _days_30_360_us(start: date, end: date) -> int:
    """Count days under 30/360 US (SIA), also called 30U/360.

    The rules run in this order. If both dates are the last day of February,
    D2 becomes 30. If the start is the last day of February, D1 becomes 30.
    If D2 is 31 and D1 is now 30 or 31, D2 becomes 30. If D1 is 31, it becomes
    30. Source: "30/360 US" in the cbonds.com glossary. Bond markets apply the
    February rules only to end-of-month schedules, but this engine applies
    them to every period.
    """
    start_day, end_day = start.day, end.day
    if _is_last_day_of_february(start):
        if _is_last_day_of_february(end):
            end_day = 30
        start_day = 30
    if end_day == 31 and start_day >= 30:
        end_day = 30
    if start_day == 31:
        start_day = 30
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + (end_day - start_day)


def _is_last_day_of_february(day: date) -> bool:
    return day.month == 2 and day.day == calendar.monthrange(day.year, 2)[1]


def _round_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)
