"""Rule framework: thresholds from WarningRule, set-wise evaluation, repayment rules."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loans import services
from loans.models import Instalment, Loan
from monitoring.admin import WarningRuleForm
from monitoring.close_of_day.positions import refresh_positions
from monitoring.close_of_day.warnings import evaluate_rules
from monitoring.models import EarlyWarning, WarningRule, WarningStatus
from monitoring.rules import all_rules, configured_rules, get_rule, sync_rules
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, EarlyWarningFactory, LoanFactory

pytestmark = pytest.mark.django_db


def _active(rule_code: str) -> set[int]:
    return set(
        EarlyWarning.objects.filter(
            rule_code=rule_code, status__in=WarningStatus.active()
        ).values_list("loan_id", flat=True)
    )


def _pay(loan: Loan, number: int, paid_on: date) -> None:
    instalment = loan.instalments.get(number=number)
    amount = instalment.principal_due + instalment.interest_due
    services.record_repayment(loan, paid_on, amount, f"{loan.pk}-{number}")


# Instalments fall due on the first of each month from 2023-02-01. The first
# entry of each pair is the instalment number, the second the days late.
LATE_THREE = [(1, 2), (2, 1), (3, 4), (4, 0), (5, 0)]
LATE_TWO = [(1, 2), (2, 1), (3, 0), (4, 0), (5, 0)]


@pytest.mark.parametrize(("payments", "fires"), [(LATE_THREE, True), (LATE_TWO, False)])
def test_late_payments_rule_counts_instalments(make_scheduled_loan, payments, fires):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    for number, days_late in payments:
        due = loan.instalments.get(number=number).due_date
        _pay(loan, number, due + timedelta(days=days_late))

    dispatch_close_of_day(date(2023, 6, 15))

    assert (loan.pk in _active("REP_LATE_PAYMENTS")) is fires
    if fires:
        warning = EarlyWarning.objects.get(loan=loan, rule_code="REP_LATE_PAYMENTS")
        assert warning.evidence["late_instalments"] == 3
        assert warning.evidence["threshold_late_payments"] == 3
        assert warning.severity == "orange"


def test_late_payments_ignore_grace_days(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    for number, days_late in LATE_THREE:
        due = loan.instalments.get(number=number).due_date
        _pay(loan, number, due + timedelta(days=days_late))
    WarningRule.objects.filter(code="REP_LATE_PAYMENTS").update(
        thresholds={"late_payments": 3, "window_days": 365, "grace_days": 2}
    )

    dispatch_close_of_day(date(2023, 6, 15))

    # Only the instalment paid four days late is beyond two days of grace.
    assert loan.pk not in _active("REP_LATE_PAYMENTS")


@pytest.mark.parametrize(
    ("as_of", "fires"), [(date(2023, 12, 2), True), (date(2023, 12, 1), False)]
)
def test_maturity_rule_fires_thirty_days_before(make_scheduled_loan, as_of, fires):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    for number in range(1, 12):
        _pay(loan, number, loan.instalments.get(number=number).due_date)
    assert loan.maturity_date == date(2024, 1, 1)

    dispatch_close_of_day(as_of)

    assert (loan.pk in _active("REP_MATURITY_NEAR")) is fires
    assert loan.pk not in _active("REP_OVERDUE")


def test_dpd_threshold_follows_warning_rule(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    sync_rules()
    WarningRule.objects.filter(code="REP_DPD_30").update(thresholds={"days": 45})

    dispatch_close_of_day(date(2023, 3, 15))

    position_days = loan.position.days_past_due
    assert position_days == 42
    assert loan.pk not in _active("REP_DPD_30")
    assert loan.pk in _active("REP_OVERDUE")


def test_disabled_rule_is_not_evaluated(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    sync_rules()
    WarningRule.objects.filter(code="REP_OVERDUE").update(enabled=False)

    dispatch_close_of_day(date(2023, 3, 15))

    assert loan.pk not in _active("REP_OVERDUE")
    assert loan.pk in _active("REP_DPD_30")


def test_administrator_severity_applies_to_new_warnings(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    sync_rules()
    WarningRule.objects.filter(code="REP_OVERDUE").update(severity="orange")

    dispatch_close_of_day(date(2023, 3, 15))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="REP_OVERDUE")
    assert warning.severity == "orange"


def test_sync_rules_keeps_administrator_settings():
    WarningRule.objects.all().delete()

    created = sync_rules()
    WarningRule.objects.filter(code="REP_DPD_30").update(
        thresholds={"days": 40}, enabled=False, severity="red"
    )
    created_again = sync_rules()

    assert created == len(all_rules())
    assert created_again == 0
    row = WarningRule.objects.get(code="REP_DPD_30")
    assert row.thresholds == {"days": 40}
    assert row.enabled is False
    assert row.severity == "red"


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"days": -5}, "REP_DPD_30 threshold days: -5 is less than the minimum of 1"),
        ({"days": "thirty"}, "REP_DPD_30 threshold days: 'thirty' is not of type 'integer'"),
        ({"days": 30, "weeks": 2}, "'weeks' was unexpected"),
        ({}, "'days' is a required property"),
    ],
)
def test_admin_form_rejects_invalid_thresholds(thresholds, message):
    sync_rules()
    row = WarningRule.objects.get(code="REP_DPD_30")
    form = WarningRuleForm(
        instance=row,
        data={"severity": "orange", "enabled": "on", "thresholds": json.dumps(thresholds)},
    )

    assert not form.is_valid()
    assert any(message in error for error in form.errors["thresholds"])
    row.refresh_from_db()
    assert row.thresholds == {"days": 30}


def test_admin_form_saves_valid_thresholds_with_history():
    sync_rules()
    row = WarningRule.objects.get(code="REP_LATE_PAYMENTS")
    data = {"late_payments": 4, "window_days": 365, "grace_days": 5}
    form = WarningRuleForm(
        instance=row,
        data={"severity": "orange", "enabled": "on", "thresholds": json.dumps(data)},
    )

    assert form.is_valid(), form.errors
    form.save()

    row.refresh_from_db()
    assert row.thresholds == data
    assert row.history.count() == 2
    assert row.history.first().thresholds == data


def test_stored_thresholds_are_validated_before_a_run():
    sync_rules()
    WarningRule.objects.filter(code="REP_DPD_60").update(thresholds={"days": 0})

    with pytest.raises(ValidationError, match="REP_DPD_60 threshold days"):
        configured_rules()


def test_every_rule_has_a_schema_for_its_thresholds():
    for rule in all_rules():
        assert set(rule.schema) == set(rule.thresholds), rule.code
        assert get_rule(rule.code) is rule


def _overdue_book(count: int) -> tuple[int, int]:
    """Create `count` unpaid loans of one borrower with bulk inserts; return their id range."""
    borrower = BorrowerFactory()
    loans = Loan.objects.bulk_create(
        LoanFactory.build(borrower=borrower, branch=borrower.branch) for _ in range(count)
    )
    Instalment.objects.bulk_create(
        Instalment(
            loan=loan,
            number=month,
            due_date=date(2023, month + 1, 1),
            principal_due="1000.00",
            interest_due="60.00",
        )
        for loan in loans
        for month in range(1, 12)
    )
    ids = [loan.pk for loan in loans]
    return min(ids), max(ids)


def _rule_queries(count: int) -> tuple[int, int]:
    """Return the queries of one rules pass over `count` loans, and the warnings it opened."""
    as_of = date(2023, 11, 15)
    low, high = _overdue_book(count)
    refresh_positions(as_of, low, high)
    with CaptureQueriesContext(connection) as queries:
        counts = evaluate_rules(as_of, low, high, run_id=None, phase=None)
    opened = sum(value for key, value in counts.items() if key.endswith("_opened"))
    EarlyWarning.objects.all().delete()
    return len(queries), opened


def test_rule_queries_do_not_grow_with_loans():
    small_queries, small_opened = _rule_queries(10)
    large_queries, large_opened = _rule_queries(1000)

    assert small_queries == large_queries
    # Unpaid for ten months: overdue, over 30, 60 and 90 days and paid late.
    assert small_opened >= 5 * 10
    assert large_opened == small_opened * 100


def test_three_runs_keep_one_active_warning(make_scheduled_loan):
    loans = [make_scheduled_loan(disbursement_date=date(2023, 1, 1)) for _ in range(3)]
    _pay(loans[0], 1, date(2023, 2, 1))
    for _ in range(3):
        dispatch_close_of_day(date(2023, 9, 1))

    active = Counter(
        EarlyWarning.objects.filter(status__in=WarningStatus.active()).values_list(
            "loan_id", "rule_code"
        )
    )

    assert len(active) >= 3 * 5
    assert max(active.values()) == 1
    assert EarlyWarning.objects.count() == len(active)


def test_warnings_follow_loan_officer(make_scheduled_loan, django_user_model):
    first = django_user_model.objects.create(username="first-officer")
    second = django_user_model.objects.create(username="second-officer")
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1), officer=first)
    dispatch_close_of_day(date(2023, 9, 1))
    # A warning of no rule of the run stands for one that waits for a person:
    # the run neither refreshes nor clears it.
    waiting = EarlyWarningFactory(
        loan=loan, rule_code="TEST_WAITING", first_seen_on=date(2023, 8, 1)
    )
    opened = EarlyWarning.objects.filter(loan=loan).exclude(pk=waiting.pk)
    assert opened.count() >= 5
    assert set(opened.values_list("officer_id", flat=True)) == {first.pk}
    assert waiting.officer_id == first.pk

    Loan.objects.filter(pk=loan.pk).update(officer=second)
    dispatch_close_of_day(date(2023, 9, 2))

    active = EarlyWarning.objects.filter(loan=loan, status__in=WarningStatus.active())
    assert active.filter(pk=waiting.pk).exists()
    assert set(active.values_list("officer_id", flat=True)) == {second.pk}


def test_whole_number_threshold_becomes_integer(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    sync_rules()
    WarningRule.objects.filter(code="REP_MATURITY_NEAR").update(thresholds={"days": 365.0})

    dispatch_close_of_day(date(2023, 3, 15))

    assert configured_rules(codes=["REP_MATURITY_NEAR"])[0].thresholds == {"days": 365}
    assert loan.pk in _active("REP_MATURITY_NEAR")


def test_severity_change_reaches_active_warnings(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    sync_rules()
    dispatch_close_of_day(date(2023, 3, 15))
    WarningRule.objects.filter(code="REP_OVERDUE").update(severity="red")

    dispatch_close_of_day(date(2023, 3, 16))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="REP_OVERDUE")
    assert warning.severity == "red"
    assert warning.first_seen_on == date(2023, 3, 15)


def test_warnings_follow_loan_branch(make_scheduled_loan, branch_south):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 3, 15))
    opened_in = set(EarlyWarning.objects.values_list("branch_id", flat=True))
    Loan.objects.filter(pk=loan.pk).update(branch=branch_south)

    dispatch_close_of_day(date(2023, 3, 16))

    assert opened_in == {loan.branch_id}
    assert set(EarlyWarning.objects.values_list("branch_id", flat=True)) == {branch_south.pk}


def test_descriptions_show_administrator_thresholds():
    from monitoring.rules import rule_descriptions

    sync_rules()
    WarningRule.objects.filter(code="REP_DPD_30").update(thresholds={"days": 45})
    WarningRule.objects.filter(code="COL_VALUE_DROP").update(thresholds={"drop_percent": 12.5})

    descriptions = rule_descriptions()

    assert descriptions["REP_DPD_30"] == "More than 45 days past due."
    assert descriptions["REP_DPD_60"] == "More than 60 days past due."
    assert descriptions["COL_VALUE_DROP"] == (
        "Collateral value down more than 12.5% since its previous valuation."
    )
    assert descriptions["REP_LATE_PAYMENTS"] == (
        "3 or more instalments paid late in the last 365 days."
    )
    for rule in all_rules():
        assert "%(" not in descriptions[rule.code], rule.code


def test_grace_days_must_stay_below_window():
    rule = get_rule("REP_LATE_PAYMENTS")

    with pytest.raises(ValidationError) as refused:
        rule.clean_thresholds({"late_payments": 3, "window_days": 60, "grace_days": 60})

    assert refused.value.messages == [
        "REP_LATE_PAYMENTS threshold grace_days: 60 must be less than window_days (60)"
    ]
    assert rule.clean_thresholds({"late_payments": 3, "window_days": 60, "grace_days": 59})
