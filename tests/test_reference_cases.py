"""Faults that other loan systems shipped, each reduced to a scenario with its correct result."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from loans import schedules, services
from loans.models import LoanPosition, RiskClass
from monitoring.close_of_day.positions import dpd_bucket
from monitoring.tasks import dispatch_close_of_day

pytestmark = pytest.mark.django_db


def _position(loan) -> LoanPosition:
    return LoanPosition.objects.get(loan=loan)


def test_batch_ages_as_of_business_date(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 2, 1))

    dispatch_close_of_day(date(2023, 3, 31))
    day_30 = _position(loan).days_past_due
    dispatch_close_of_day(date(2023, 4, 1))
    day_31 = _position(loan)

    assert day_30 == 30
    assert dpd_bucket(day_30) == "1-30"
    assert day_31.days_past_due == 31
    assert day_31.dpd_bucket == "31-60"


def test_payment_on_disbursement_day_keeps_loan_current(make_scheduled_loan):
    loan = make_scheduled_loan(
        principal=Decimal("100000.00"), disbursement_date=date(2024, 12, 9), periods=12
    )
    loan.instalments.filter(number=1).update(due_date=date(2025, 1, 5))
    services.record_repayment(loan, date(2024, 12, 9), Decimal("5000.00"), "DAY-0")

    results = []
    for as_of in (date(2024, 12, 9), date(2024, 12, 31), date(2025, 1, 5)):
        dispatch_close_of_day(as_of)
        position = _position(loan)
        results.append(
            (position.days_past_due, position.overdue_principal, position.overdue_interest)
        )

    assert results == [(0, Decimal("0.00"), Decimal("0.00"))] * 3


def test_repayment_before_disbursement_is_rejected(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2024, 12, 9))

    with pytest.raises(services.RepaymentError) as error:
        services.record_repayment(loan, date(2024, 12, 8), Decimal("5000.00"), "EARLY")

    assert "before the disbursement date 2024-12-09" in str(error.value)
    assert loan.repayments.count() == 0


def test_annuity_rounding_keeps_twelve_instalments():
    rows = schedules.build_schedule(
        Decimal("130.00"), Decimal("0.20"), date(2024, 1, 1), 12, "annuity", "monthly", "30_360"
    )

    assert len(rows) == 12
    assert {row.total for row in rows[:-1]} == {Decimal("12.04")}
    assert sum(row.principal for row in rows) == Decimal("130.00")
    assert rows[-1].balance == Decimal("0.00")


def test_ninety_days_is_not_yet_non_performing(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2014, 3, 1))

    dispatch_close_of_day(date(2014, 6, 30))
    loan.refresh_from_db()
    at_90 = (_position(loan).days_past_due, loan.risk_class)
    dispatch_close_of_day(date(2014, 7, 1))
    loan.refresh_from_db()
    at_91 = (_position(loan).days_past_due, loan.risk_class)

    assert at_90 == (90, RiskClass.SPECIAL_MENTION)
    assert at_91 == (91, RiskClass.SUBSTANDARD)


def test_cured_arrears_leave_class_to_committee(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 6, 1))
    for instalment in loan.instalments.filter(due_date__lt=date(2023, 6, 2)):
        services.record_repayment(
            loan, date(2023, 6, 2), instalment.total_due, f"CURE-{instalment.number}"
        )

    dispatch_close_of_day(date(2023, 6, 2))
    loan.refresh_from_db()
    first = (loan.risk_class, _position(loan).days_past_due, loan.history.count())
    dispatch_close_of_day(date(2023, 6, 2))
    loan.refresh_from_db()
    second = (loan.risk_class, _position(loan).days_past_due, loan.history.count())

    assert first[0] == RiskClass.SUBSTANDARD
    assert first[1] == 0
    assert second == first


def test_each_collateral_item_uses_its_own_limit(make_scheduled_loan):
    from loans.collateral import collateral_shortfall, collateral_support
    from loans.models import Collateral, CollateralPledge, CollateralValuation

    loan = make_scheduled_loan(principal=Decimal("900000.00"))
    for reference, value, limit in (("RE-1", "600000", "0.50"), ("EQ-1", "400000", "0.75")):
        item = Collateral.objects.create(
            kind="commercial_real_estate",
            description=reference,
            reference=reference,
            owner_name="Owner",
            ltv_limit=Decimal(limit),
        )
        CollateralValuation.objects.create(
            collateral=item,
            valued_on=date(2023, 1, 1),
            value=Decimal(value),
            method="market",
            valuer="Valuer",
        )
        CollateralPledge.objects.create(collateral=item, loan=loan)

    support = collateral_support([loan.pk])[loan.pk]

    assert support == Decimal("600000.00")
    assert collateral_shortfall(Decimal("600000.00"), support) == Decimal("0.00")
    assert collateral_shortfall(Decimal("650000.00"), support) == Decimal("50000.00")
