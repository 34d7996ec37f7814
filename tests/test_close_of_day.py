from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from loans import services
from loans.models import LoanPosition, RiskClass
from monitoring.models import ClassificationChange, EarlyWarning, JobRun, WarningStatus
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory

pytestmark = pytest.mark.django_db


def _position(loan) -> LoanPosition:
    return LoanPosition.objects.get(loan=loan)


def test_unpaid_instalment_ages_from_due_date(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 2, 1))

    dispatch_close_of_day(date(2023, 4, 1))

    position = _position(loan)
    assert position.oldest_unpaid_due_date == date(2023, 3, 1)
    assert position.days_past_due == 31
    assert position.dpd_bucket == "31-60"


def test_thirty_days_stays_in_first_bucket(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 2, 1))

    dispatch_close_of_day(date(2023, 3, 31))

    position = _position(loan)
    assert position.days_past_due == 30
    assert position.dpd_bucket == "1-30"


def test_floor_and_stage_follow_arrears(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2014, 3, 1))

    dispatch_close_of_day(date(2014, 6, 30))
    loan.refresh_from_db()
    class_at_90 = loan.risk_class
    dispatch_close_of_day(date(2014, 7, 1))
    loan.refresh_from_db()

    assert class_at_90 == RiskClass.SPECIAL_MENTION
    assert loan.risk_class == RiskClass.SUBSTANDARD
    assert loan.ifrs9_stage == 3


def test_close_of_day_is_idempotent(make_scheduled_loan):
    loans = [make_scheduled_loan(disbursement_date=date(2023, 1, 1)) for _ in range(3)]
    services.record_repayment(loans[0], date(2023, 2, 1), Decimal("5000.00"), "R1")
    dispatch_close_of_day(date(2023, 9, 1))
    before = (
        EarlyWarning.objects.count(),
        ClassificationChange.objects.count(),
        loans[1].history.count(),
    )

    dispatch_close_of_day(date(2023, 9, 1))

    after = (
        EarlyWarning.objects.count(),
        ClassificationChange.objects.count(),
        loans[1].history.count(),
    )
    assert before == after
    assert JobRun.objects.filter(status="completed").count() == 2


def test_debtor_contagion_marks_all_loans(make_scheduled_loan):
    borrower = BorrowerFactory()
    performing = make_scheduled_loan(borrower=borrower, disbursement_date=date(2023, 6, 1))
    failing = make_scheduled_loan(borrower=borrower, disbursement_date=date(2023, 1, 1))
    for instalment in performing.instalments.filter(due_date__lte=date(2023, 9, 1)):
        services.record_repayment(
            performing, instalment.due_date, instalment.total_due, f"P{instalment.number}"
        )

    dispatch_close_of_day(date(2023, 9, 1))

    performing.refresh_from_db()
    failing.refresh_from_db()
    assert failing.risk_class == RiskClass.SUBSTANDARD
    assert performing.risk_class == RiskClass.SUBSTANDARD
    change = ClassificationChange.objects.get(loan=performing)
    assert change.reason_code == "debtor_contagion"


def test_warning_opens_once_and_resolves(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))

    dispatch_close_of_day(date(2023, 3, 1))
    dispatch_close_of_day(date(2023, 3, 2))
    open_count = EarlyWarning.objects.filter(loan=loan, rule_code="REP_OVERDUE").count()
    services.record_repayment(loan, date(2023, 3, 3), Decimal("2100.00"), "R1")
    dispatch_close_of_day(date(2023, 3, 3))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="REP_OVERDUE")
    assert open_count == 1
    assert warning.status == WarningStatus.RESOLVED
    assert warning.cleared_on == date(2023, 3, 3)
    assert warning.evidence["days_past_due"] == 29
