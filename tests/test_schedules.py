"""Tests for the repayment schedule engine in loans.schedules.

Plain pytest: no database and no Django settings are needed.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy_financial as npf
import pytest

from loans.schedules import (
    DayCount,
    Frequency,
    RepaymentMethod,
    ScheduledInstalment,
    add_months,
    build_schedule,
    year_fraction,
)


def build_monthly(
    principal: str,
    annual_rate: str,
    periods: int,
    method: RepaymentMethod = RepaymentMethod.ANNUITY,
    start: date = date(2024, 1, 1),
    day_count: DayCount = DayCount.THIRTY_360,
) -> list[ScheduledInstalment]:
    return build_schedule(
        Decimal(principal),
        Decimal(annual_rate),
        start,
        periods,
        method,
        Frequency.MONTHLY,
        day_count,
    )


def one_period_interest(start: date, end: date, day_count: DayCount) -> Decimal:
    """Return the interest on 100,000.00 at 10 % from start to end."""
    schedule = build_schedule(
        Decimal("100000.00"),
        Decimal("0.10"),
        start,
        1,
        RepaymentMethod.INTEREST_ONLY,
        Frequency.MONTHLY,
        day_count,
        first_due_date=end,
    )
    return schedule[0].interest


def days_30_360(start: date, end: date) -> Decimal:
    return (year_fraction(start, end, DayCount.THIRTY_360) * 360).quantize(Decimal(1))


# Annuity


def test_annuity_matches_fineract_reference() -> None:
    # Source: Apache Fineract, fineract-progressive-loan/src/test/java/org/apache/
    # fineract/portfolio/loanproduct/calc/ProgressiveEMICalculatorTest.java,
    # test_disbursedAmt100_dayInYears360_daysInMonth30_repayEvery1Month:
    # 100.00 at 9.4822 % a year, 6 monthly periods from 2024-01-01, 30/360.
    # Fineract rounds half-even, but none of these amounts falls on a half cent.
    expected_interest = ["0.79", "0.66", "0.53", "0.40", "0.27", "0.13"]
    expected_balance = ["83.66", "67.19", "50.59", "33.86", "17.00", "0.00"]
    expected_due_dates = [date(2024, month, 1) for month in range(2, 8)]

    schedule = build_monthly("100.00", "0.094822", 6)

    assert len(schedule) == 6
    for instalment in schedule:
        index = instalment.number - 1
        assert instalment.total == Decimal("17.13"), f"total of {instalment.number}"
        assert instalment.interest == Decimal(expected_interest[index]), f"interest of {index + 1}"
        assert instalment.balance == Decimal(expected_balance[index]), f"balance of {index + 1}"
        assert instalment.due_date == expected_due_dates[index], f"due date of {index + 1}"
    assert schedule[-1].principal == Decimal("17.00")


def test_annuity_last_absorbs_rounding() -> None:
    # The exact payment is 12.0425 (numpy_financial.pmt(0.2 / 12, 12, 130)),
    # so the rounded 12.04 leaves a few cents for the last instalment.
    schedule = build_monthly("130.00", "0.20", 12)

    assert len(schedule) == 12
    for instalment in schedule[:-1]:
        assert instalment.total == Decimal("12.04"), f"total of {instalment.number}"
    assert schedule[-1].principal == schedule[-2].balance
    assert schedule[-1].total > Decimal("12.04")
    assert schedule[-1].balance == Decimal("0.00")
    assert sum(instalment.principal for instalment in schedule) == Decimal("130.00")


ANNUITY_CASES = [
    # principal, annual rate, periods, frequency
    ("250000.00", "0.075", 84, Frequency.MONTHLY),
    ("1000000.00", "0.0425", 240, Frequency.MONTHLY),
    ("50000.00", "0.12", 12, Frequency.QUARTERLY),
    ("10000.00", "0.005", 6, Frequency.MONTHLY),
]


@pytest.mark.parametrize(("principal", "annual_rate", "periods", "frequency"), ANNUITY_CASES)
def test_annuity_matches_numpy_financial(
    principal: str, annual_rate: str, periods: int, frequency: Frequency
) -> None:
    # Starting on the 15th makes every 30/360 period exactly 30 or 90 days, so
    # the period rate equals numpy's rate. The engine rounds each payment and
    # interest amount to cents, so its balance drifts from numpy's: interest
    # may differ by up to 0.02 and cumulative principal by 0.01 per period.
    rate = float(annual_rate) * frequency.months / 12
    amount = float(principal)
    expected_payment = Decimal(str(-npf.pmt(rate, periods, amount))).quantize(Decimal("0.01"))

    schedule = build_schedule(
        Decimal(principal),
        Decimal(annual_rate),
        date(2024, 1, 15),
        periods,
        RepaymentMethod.ANNUITY,
        frequency,
        DayCount.THIRTY_360,
    )

    assert len(schedule) == periods
    assert schedule[0].total == expected_payment
    assert schedule[-1].balance == Decimal("0.00")
    principal_paid = Decimal("0.00")
    numpy_principal_paid = 0.0
    for instalment in schedule:
        number = instalment.number
        numpy_interest = Decimal(str(-npf.ipmt(rate, number, periods, amount)))
        numpy_principal_paid += -npf.ppmt(rate, number, periods, amount)
        principal_paid += instalment.principal
        cumulative_gap = abs(principal_paid - Decimal(str(numpy_principal_paid)))
        assert abs(instalment.interest - numpy_interest) <= Decimal("0.02"), f"interest of {number}"
        assert cumulative_gap <= Decimal("0.01") * number, f"principal paid by {number}"


def test_annuity_zero_rate_splits_principal() -> None:
    schedule = build_monthly("1000.00", "0", 3)

    assert [instalment.principal for instalment in schedule] == [
        Decimal("333.33"),
        Decimal("333.33"),
        Decimal("333.34"),
    ]
    assert all(instalment.interest == Decimal("0.00") for instalment in schedule)
    assert schedule[-1].balance == Decimal("0.00")


def test_annuity_long_first_period_interest() -> None:
    # 10,000.00 at 10 % Act/365 from 2024-01-15 to 2024-03-01 is 46 days:
    # 10,000 * 0.10 * 46 / 365 = 126.027..., so 126.03.
    schedule = build_schedule(
        Decimal("10000.00"),
        Decimal("0.10"),
        date(2024, 1, 15),
        3,
        RepaymentMethod.ANNUITY,
        Frequency.MONTHLY,
        DayCount.ACT_365,
        first_due_date=date(2024, 3, 1),
    )

    assert schedule[0].interest == Decimal("126.03")
    assert schedule[-1].balance == Decimal("0.00")


def test_annuity_interest_exceeding_payment() -> None:
    # The level payment is 92.63, but the first period runs 6 months (180 days
    # under 30/360), so its interest is 1,000.00 * 0.20 / 2 = 100.00.
    schedule = build_schedule(
        Decimal("1000.00"),
        Decimal("0.20"),
        date(2024, 1, 1),
        12,
        RepaymentMethod.ANNUITY,
        Frequency.MONTHLY,
        DayCount.THIRTY_360,
        first_due_date=date(2024, 7, 1),
    )

    assert schedule[0].interest == Decimal("100.00")
    assert schedule[0].principal == Decimal("0.00")
    assert schedule[0].balance == Decimal("1000.00")
    assert schedule[1].total == Decimal("92.63")
    assert schedule[-1].balance == Decimal("0.00")


# Equal principal and interest-only


def test_equal_principal_hand_checked() -> None:
    # 1,200.00 at 12 % over 12 months, 30/360: 100.00 principal each month and
    # interest of 1 % on the opening balance, so 12.00, 11.00, ..., 1.00.
    expected_interest = [Decimal(12 - index) for index in range(12)]
    expected_balance = [Decimal(1100 - 100 * index) for index in range(12)]

    schedule = build_monthly("1200.00", "0.12", 12, RepaymentMethod.EQUAL_PRINCIPAL)

    assert len(schedule) == 12
    for instalment in schedule:
        index = instalment.number - 1
        assert instalment.principal == Decimal("100.00"), f"principal of {index + 1}"
        assert instalment.interest == expected_interest[index], f"interest of {index + 1}"
        assert instalment.balance == expected_balance[index], f"balance of {index + 1}"


def test_equal_principal_last_takes_remainder() -> None:
    schedule = build_monthly("1000.00", "0.12", 3, RepaymentMethod.EQUAL_PRINCIPAL)

    assert [instalment.principal for instalment in schedule] == [
        Decimal("333.33"),
        Decimal("333.33"),
        Decimal("333.34"),
    ]
    # Interest is 1 % of 1,000.00, 666.67 and 333.34.
    assert [instalment.interest for instalment in schedule] == [
        Decimal("10.00"),
        Decimal("6.67"),
        Decimal("3.33"),
    ]


def test_equal_principal_tiny_loan() -> None:
    # 0.05 / 10 rounds half-up to 0.01, which would repay the loan after five
    # instalments and overshoot after that without the cap at the balance.
    schedule = build_monthly("0.05", "0", 10, RepaymentMethod.EQUAL_PRINCIPAL)

    assert len(schedule) == 10
    assert all(instalment.balance >= 0 for instalment in schedule)
    assert sum(instalment.principal for instalment in schedule) == Decimal("0.05")


def test_interest_only_quarterly_hand_checked() -> None:
    # 10,000.00 at 6 % paid quarterly, 30/360: 10,000 * 0.06 * 90 / 360 = 150.00.
    schedule = build_schedule(
        Decimal("10000.00"),
        Decimal("0.06"),
        date(2024, 1, 15),
        4,
        RepaymentMethod.INTEREST_ONLY,
        Frequency.QUARTERLY,
        DayCount.THIRTY_360,
    )

    assert [instalment.interest for instalment in schedule] == [Decimal("150.00")] * 4
    assert [instalment.principal for instalment in schedule] == [
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("0.00"),
        Decimal("10000.00"),
    ]
    assert [instalment.balance for instalment in schedule] == [
        Decimal("10000.00"),
        Decimal("10000.00"),
        Decimal("10000.00"),
        Decimal("0.00"),
    ]
    assert schedule[-1].total == Decimal("10150.00")


def test_interest_rounds_half_up() -> None:
    # 1.00 at 6 % for one 30/360 month is exactly 0.005, which half-even would round to 0.00.
    schedule = build_monthly("1.00", "0.06", 1, RepaymentMethod.INTEREST_ONLY)

    assert schedule[0].interest == Decimal("0.01")


# Day counts


@pytest.mark.parametrize(
    ("day_count", "expected"),
    [
        # 100,000 * 0.10 * 31 / 360 = 861.111...
        (DayCount.ACT_360, Decimal("861.11")),
        # 100,000 * 0.10 * 31 / 365 = 849.315...
        (DayCount.ACT_365, Decimal("849.32")),
        # 100,000 * 0.10 * 30 / 360 = 833.333...
        (DayCount.THIRTY_360, Decimal("833.33")),
    ],
)
def test_interest_for_31_day_period(day_count: DayCount, expected: Decimal) -> None:
    interest = one_period_interest(date(2024, 1, 1), date(2024, 2, 1), day_count)

    assert interest == expected


@pytest.mark.parametrize(
    ("day_count", "expected"),
    [
        # 100,000 * 0.10 * 28 / 360 = 777.777...
        (DayCount.ACT_360, Decimal("777.78")),
        # 100,000 * 0.10 * 28 / 365 = 767.123...
        (DayCount.ACT_365, Decimal("767.12")),
        # One whole 30/360 month.
        (DayCount.THIRTY_360, Decimal("833.33")),
    ],
)
def test_interest_for_28_day_period(day_count: DayCount, expected: Decimal) -> None:
    interest = one_period_interest(date(2023, 2, 1), date(2023, 3, 1), day_count)

    assert interest == expected


@pytest.mark.parametrize(
    ("start", "end", "expected_days"),
    [
        # 30/360 US (SIA) with the February rules: D1 = 31 becomes 30, D2 = 28 stays.
        (date(2023, 1, 31), date(2023, 2, 28), 28),
        # A start on the last day of February counts as the 30th, so D2 = 31 becomes 30.
        (date(2023, 2, 28), date(2023, 3, 31), 30),
        (date(2024, 1, 31), date(2024, 2, 29), 29),
        (date(2024, 2, 29), date(2024, 3, 31), 30),
        # 2024-02-28 is not the last day of February, so both days stay: 30 + 31 - 28.
        (date(2024, 2, 28), date(2024, 3, 31), 33),
        # Both dates are the last day of February: a whole year.
        (date(2023, 2, 28), date(2024, 2, 29), 360),
        (date(2024, 1, 15), date(2024, 7, 15), 180),
    ],
)
def test_thirty_360_us_day_counts(start: date, end: date, expected_days: int) -> None:
    days = days_30_360(start, end)

    assert days == expected_days


def test_year_fraction_actual_days() -> None:
    fraction_360 = year_fraction(date(2024, 1, 1), date(2024, 7, 1), DayCount.ACT_360)
    fraction_365 = year_fraction(date(2024, 1, 1), date(2025, 1, 1), DayCount.ACT_365)

    # 182 days in the first half of the leap year 2024 and 366 in the whole year.
    assert (fraction_360 * 360).quantize(Decimal(1)) == 182
    assert (fraction_365 * 365).quantize(Decimal(1)) == 366
    assert fraction_365 > 1


def test_year_fraction_half_year() -> None:
    fraction = year_fraction(date(2024, 1, 15), date(2024, 7, 15), DayCount.THIRTY_360)

    assert fraction == Decimal("0.5")


def test_year_fraction_rejects_reversed_dates() -> None:
    with pytest.raises(ValueError, match="before start"):
        year_fraction(date(2024, 2, 1), date(2024, 1, 1), DayCount.ACT_365)


# Due dates


def test_month_end_due_dates() -> None:
    schedule = build_monthly("1000.00", "0.10", 4, start=date(2024, 1, 31))

    assert [instalment.due_date for instalment in schedule] == [
        date(2024, 2, 29),
        date(2024, 3, 31),
        date(2024, 4, 30),
        date(2024, 5, 31),
    ]


def test_quarterly_due_dates() -> None:
    schedule = build_schedule(
        Decimal("1000.00"),
        Decimal("0.10"),
        date(2024, 1, 31),
        4,
        RepaymentMethod.ANNUITY,
        Frequency.QUARTERLY,
        DayCount.ACT_365,
    )

    assert [instalment.due_date for instalment in schedule] == [
        date(2024, 4, 30),
        date(2024, 7, 31),
        date(2024, 10, 31),
        date(2025, 1, 31),
    ]


def test_due_dates_follow_first_due_date() -> None:
    schedule = build_schedule(
        Decimal("1000.00"),
        Decimal("0.10"),
        date(2024, 1, 10),
        3,
        RepaymentMethod.ANNUITY,
        Frequency.MONTHLY,
        DayCount.ACT_360,
        first_due_date=date(2024, 2, 29),
    )

    # The anchor is the 29th, so later dates return to the 29th, not the month end.
    assert [instalment.due_date for instalment in schedule] == [
        date(2024, 2, 29),
        date(2024, 3, 29),
        date(2024, 4, 29),
    ]


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2023, 1, 31), 1, date(2023, 2, 28)),
        (date(2024, 1, 31), 2, date(2024, 3, 31)),
        (date(2024, 11, 30), 3, date(2025, 2, 28)),
        (date(2024, 3, 31), -1, date(2024, 2, 29)),
    ],
)
def test_add_months_clips_month_end(anchor: date, months: int, expected: date) -> None:
    assert add_months(anchor, months) == expected


def test_choices_accept_string_values() -> None:
    schedule = build_schedule(
        Decimal("100.00"), Decimal("0.094822"), date(2024, 1, 1), 6, "annuity", "monthly", "30_360"
    )

    assert schedule[0].total == Decimal("17.13")


# Validation


def build_with(**overrides: object) -> list[ScheduledInstalment]:
    arguments: dict[str, object] = {
        "principal": Decimal("1000.00"),
        "annual_rate": Decimal("0.10"),
        "start": date(2024, 1, 1),
        "periods": 12,
        "method": RepaymentMethod.ANNUITY,
        "frequency": Frequency.MONTHLY,
        "day_count": DayCount.ACT_365,
    }
    arguments.update(overrides)
    return build_schedule(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"principal": Decimal("0")}, "invalid principal 0"),
        ({"principal": Decimal("-5.00")}, "invalid principal -5.00"),
        ({"principal": Decimal("10.005")}, "whole number of cents"),
        ({"principal": Decimal("NaN")}, "finite"),
        ({"periods": 0}, "invalid periods 0"),
        ({"annual_rate": Decimal("-0.01")}, "invalid annual_rate -0.01"),
        ({"method": "balloon"}, "invalid method 'balloon'"),
        ({"method": RepaymentMethod.CUSTOM}, "custom schedules are imported"),
        ({"frequency": "weekly"}, "invalid frequency 'weekly'"),
        ({"day_count": "act_act"}, "invalid day_count 'act_act'"),
        ({"first_due_date": date(2024, 1, 1)}, "invalid first_due_date 2024-01-01"),
    ],
)
def test_build_schedule_rejects_invalid_input(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_with(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [{"principal": 1000.0}, {"annual_rate": 0.1}, {"periods": 12.0}],
)
def test_build_schedule_rejects_floats(overrides: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        build_with(**overrides)
