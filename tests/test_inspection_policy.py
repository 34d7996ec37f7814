"""Post-loan plan derivation: each policy default at its boundaries, in SQL and in Python.

Every case derives the plan through the close-of-day step and compares it
with `monitoring.inspections.plans`, so both state the same rules. The file
also passes on SQLite (DATABASE_URL=sqlite:////tmp/plans.sqlite3), where the
month arithmetic is spelled differently.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from loans.models import (
    Collateral,
    CollateralKind,
    CollateralPledge,
    CollateralValuation,
    Loan,
    Product,
    RiskClass,
)
from monitoring.close_of_day.inspections import refresh_plans_and_inspections
from monitoring.close_of_day.positions import refresh_positions
from monitoring.inspections import plans
from monitoring.models import (
    InspectionKind,
    InspectionPolicy,
    InspectionStatus,
    PostLoanPlan,
    WarningRule,
)

from .factories import InspectionFactory, LoanFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2025, 6, 30)


def derive(loan: Loan, as_of: date = AS_OF) -> PostLoanPlan:
    """Run the close-of-day plan step for the loan alone and return its stored plan."""
    refresh_positions(as_of, loan.pk, loan.pk)
    refresh_plans_and_inspections(as_of, loan.pk, loan.pk, run_id=None)
    return PostLoanPlan.objects.get(loan=loan)


def python_plan(loan: Loan, as_of: date = AS_OF) -> plans.PlanDates:
    loan.refresh_from_db()
    return plans.derive_plan(loan, as_of, plans.load_plan_settings())


def assert_same_as_python(plan: PostLoanPlan, loan: Loan, as_of: date = AS_OF) -> None:
    expected = python_plan(loan, as_of)
    assert plan.starts_on == expected.starts_on
    assert plan.first_inspection_due == expected.first_inspection_due
    assert plan.routine_interval_months == expected.routine_interval_months
    assert plan.next_routine_due == expected.next_routine_due
    assert plan.next_revaluation_due == expected.next_revaluation_due
    assert plan.next_statement_due == expected.next_statement_due


def valued_item(loan: Loan, kind: str, *valued_on: date) -> Collateral:
    item = Collateral.objects.create(
        kind=kind,
        description=kind,
        reference=f"C-{loan.pk}-{kind}",
        owner_name="Owner Ltd",
        ltv_limit=Decimal("0.5"),
    )
    CollateralPledge.objects.create(collateral=item, loan=loan)
    for day in valued_on:
        CollateralValuation.objects.create(
            collateral=item, valued_on=day, value=Decimal("50000"), method="appraisal", valuer="V"
        )
    return item


# --- First inspection ------------------------------------------------------


@pytest.mark.parametrize(
    ("product", "days"),
    [
        (Product.WORKING_CAPITAL, 15),
        (Product.FIXED_ASSET, 15),
        (Product.TRADE_FINANCE, 30),
        (Product.REVOLVING_LINE, 30),
    ],
)
def test_first_inspection_days_by_product(product, days):
    loan = LoanFactory(product=product, disbursement_date=date(2025, 6, 20))

    plan = derive(loan)

    assert plan.starts_on == date(2025, 6, 30)
    assert plan.first_inspection_due == date(2025, 6, 20) + timedelta(days=days)
    assert_same_as_python(plan, loan)


@pytest.mark.parametrize(
    ("days_before_run", "first_due"),
    [(15, date(2025, 6, 30)), (16, None)],
)
def test_first_inspection_due_on_start_day_counts(days_before_run, first_due):
    loan = LoanFactory(disbursement_date=AS_OF - timedelta(days=days_before_run))

    plan = derive(loan)

    assert plan.starts_on == AS_OF
    assert plan.first_inspection_due == first_due
    assert_same_as_python(plan, loan)


def test_plan_starts_on_disbursement_after_first_run():
    loan = LoanFactory(disbursement_date=AS_OF)

    plan = derive(loan)

    assert plan.starts_on == AS_OF
    assert plan.first_inspection_due == date(2025, 7, 15)
    assert plan.next_routine_due == date(2026, 1, 15)


def test_plan_keeps_its_start_on_later_runs():
    loan = LoanFactory(disbursement_date=date(2020, 3, 1))
    derive(loan)

    plan = derive(loan, AS_OF + timedelta(days=40))

    assert plan.starts_on == AS_OF


def test_first_inspection_term_follows_administrator():
    from monitoring.models import FirstInspectionTerm

    FirstInspectionTerm.objects.filter(product=Product.WORKING_CAPITAL).update(days=20)
    loan = LoanFactory(disbursement_date=date(2025, 6, 20))

    plan = derive(loan)

    assert plan.first_inspection_due == date(2025, 7, 10)


# --- Routine interval ------------------------------------------------------


@pytest.mark.parametrize(
    ("risk_class", "principal", "months"),
    [
        (RiskClass.NORMAL, Decimal("12000.00"), 6),
        (RiskClass.NORMAL, Decimal("1000000.00"), 6),
        (RiskClass.NORMAL, Decimal("1000000.01"), 3),
        (RiskClass.SPECIAL_MENTION, Decimal("12000.00"), 3),
        (RiskClass.SPECIAL_MENTION, Decimal("5000000.00"), 3),
        (RiskClass.SUBSTANDARD, Decimal("12000.00"), 1),
        (RiskClass.DOUBTFUL, Decimal("12000.00"), 1),
        (RiskClass.LOSS, Decimal("12000.00"), 1),
    ],
)
def test_routine_interval_by_class_and_amount(risk_class, principal, months):
    loan = LoanFactory(
        risk_class=risk_class, principal=principal, disbursement_date=date(2025, 6, 20)
    )

    plan = derive(loan)

    assert plan.routine_interval_months == months
    assert plan.derived_for_class == risk_class
    assert plan.next_routine_due == plans.add_months(date(2025, 7, 5), months)
    assert (
        plans.routine_interval_months(InspectionPolicy.current(), risk_class, principal) == months
    )
    assert_same_as_python(plan, loan)


def test_large_loan_amount_follows_policy():
    policy = InspectionPolicy.current()
    policy.large_loan_amount = Decimal("10000.00")
    policy.large_loan_months = 2
    policy.save()
    loan = LoanFactory(principal=Decimal("10000.01"), disbursement_date=date(2025, 6, 20))

    plan = derive(loan)

    assert plan.routine_interval_months == 2


# --- Next routine inspection -----------------------------------------------


def test_routine_anchor_is_latest_inspection():
    loan = LoanFactory(disbursement_date=date(2025, 1, 10))
    InspectionFactory(
        loan=loan,
        kind=InspectionKind.FIRST,
        status=InspectionStatus.APPROVED,
        due_date=date(2025, 1, 25),
        inspected_on=date(2025, 1, 20),
    )
    InspectionFactory(
        loan=loan,
        kind=InspectionKind.SPECIAL,
        status=InspectionStatus.SUBMITTED,
        due_date=date(2025, 3, 8),
        inspected_on=date(2025, 3, 5),
    )
    InspectionFactory(
        loan=loan,
        kind=InspectionKind.ROUTINE,
        status=InspectionStatus.DRAFT,
        due_date=date(2025, 6, 1),
        inspected_on=date(2025, 6, 1),
    )

    plan = derive(loan)

    assert plan.next_routine_due == date(2025, 9, 5)
    assert_same_as_python(plan, loan)


@pytest.mark.parametrize(
    ("inspected_on", "risk_class", "next_due"),
    [
        (date(2024, 8, 31), RiskClass.NORMAL, date(2025, 2, 28)),
        (date(2023, 8, 31), RiskClass.NORMAL, date(2024, 2, 29)),
        (date(2025, 1, 31), RiskClass.SUBSTANDARD, date(2025, 2, 28)),
        (date(2025, 3, 31), RiskClass.SPECIAL_MENTION, date(2025, 6, 30)),
    ],
)
def test_routine_due_clamps_to_month_end(inspected_on, risk_class, next_due):
    loan = LoanFactory(disbursement_date=date(2023, 1, 1), risk_class=risk_class)
    InspectionFactory(
        loan=loan,
        status=InspectionStatus.APPROVED,
        due_date=inspected_on,
        inspected_on=inspected_on,
    )

    plan = derive(loan, inspected_on + timedelta(days=1))

    assert plan.next_routine_due == next_due
    assert_same_as_python(plan, loan, inspected_on + timedelta(days=1))


@pytest.mark.parametrize(
    ("disbursed", "risk_class", "as_of", "next_due"),
    [
        # 4 months after 31 October is the end of February.
        (date(2023, 10, 31), RiskClass.SUBSTANDARD, date(2024, 2, 10), date(2024, 2, 29)),
        # The sixth anniversary month falls before the start, so the twelfth counts.
        (date(2023, 8, 31), RiskClass.NORMAL, date(2024, 3, 1), date(2024, 8, 31)),
        # An anniversary on the start day itself is not after it.
        (date(2024, 6, 30), RiskClass.NORMAL, date(2025, 6, 30), date(2025, 12, 30)),
        (date(2025, 1, 31), RiskClass.NORMAL, date(2025, 3, 1), date(2025, 7, 31)),
    ],
)
def test_imported_loan_spreads_over_anniversaries(disbursed, risk_class, as_of, next_due):
    loan = LoanFactory(disbursement_date=disbursed, risk_class=risk_class)

    plan = derive(loan, as_of)

    assert plan.first_inspection_due is None
    assert plan.next_routine_due == next_due
    assert_same_as_python(plan, loan, as_of)


def test_month_arithmetic_clamps_in_python():
    assert plans.add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert plans.add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert plans.add_months(date(2024, 8, 31), 6) == date(2025, 2, 28)
    assert plans.add_months(date(2025, 2, 28), 1) == date(2025, 3, 28)
    assert plans.calendar_months_between(date(2025, 2, 1), date(2025, 1, 31)) == 1
    assert plans.calendar_months_between(date(2025, 1, 31), date(2025, 1, 1)) == 0


# --- Collateral revaluation ------------------------------------------------


def test_revaluation_due_is_earliest_item():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    valued_item(loan, CollateralKind.COMMERCIAL_REAL_ESTATE, date(2024, 6, 30))
    valued_item(loan, CollateralKind.RESIDENTIAL_REAL_ESTATE, date(2023, 1, 31))
    valued_item(loan, CollateralKind.RECEIVABLES, date(2020, 1, 1))

    plan = derive(loan)

    assert plan.next_revaluation_due == date(2025, 6, 30)
    assert_same_as_python(plan, loan)


@pytest.mark.parametrize(
    ("kind", "valued_on", "due"),
    [
        (CollateralKind.COMMERCIAL_REAL_ESTATE, date(2024, 2, 29), date(2025, 2, 28)),
        (CollateralKind.RESIDENTIAL_REAL_ESTATE, date(2023, 1, 31), date(2026, 1, 31)),
        (CollateralKind.EQUIPMENT, date(2024, 8, 31), date(2025, 2, 28)),
        (CollateralKind.VEHICLES, date(2025, 1, 1), date(2025, 7, 1)),
        (CollateralKind.INVENTORY, date(2025, 3, 31), date(2025, 9, 30)),
        (CollateralKind.DEPOSITS, date(2025, 3, 31), None),
    ],
)
def test_revaluation_interval_by_kind(kind, valued_on, due):
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    valued_item(loan, kind, valued_on - timedelta(days=400), valued_on)

    plan = derive(loan)

    assert plan.next_revaluation_due == due
    assert_same_as_python(plan, loan)


def test_revaluation_ignores_later_valuations():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    valued_item(loan, CollateralKind.EQUIPMENT, date(2025, 1, 15), AS_OF + timedelta(days=1))

    plan = derive(loan)

    assert plan.next_revaluation_due == date(2025, 7, 15)


def test_unvalued_item_gives_no_revaluation():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    valued_item(loan, CollateralKind.EQUIPMENT)

    plan = derive(loan)

    assert plan.next_revaluation_due is None


def test_revaluation_follows_stale_rule_thresholds():
    WarningRule.objects.filter(code="COL_VALUATION_STALE").update(
        enabled=False,
        thresholds={
            "commercial_real_estate_months": 24,
            "residential_real_estate_months": 36,
            "movables_months": 6,
        },
    )
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    valued_item(loan, CollateralKind.COMMERCIAL_REAL_ESTATE, date(2024, 6, 30))

    plan = derive(loan)

    assert plan.next_revaluation_due == date(2026, 6, 30)
    assert plans.revaluation_months()[CollateralKind.COMMERCIAL_REAL_ESTATE] == 24


# --- Financial statements --------------------------------------------------


@pytest.mark.parametrize(
    ("as_of", "due"),
    [
        (date(2025, 4, 30), date(2025, 4, 30)),
        (date(2025, 5, 1), date(2026, 4, 30)),
        (date(2025, 1, 1), date(2025, 4, 30)),
        (date(2025, 12, 31), date(2026, 4, 30)),
        # 2024 is a leap year, so 120 days after 31 December 2023 is 29 April.
        (date(2024, 3, 1), date(2024, 4, 29)),
    ],
)
def test_statement_due_after_fiscal_year(as_of, due):
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))

    plan = derive(loan, as_of)

    assert plan.next_statement_due == due
    assert plans.next_statement_due(InspectionPolicy.current(), as_of) == due


def test_plan_copies_officer_and_run_date(officer, branch_north):
    loan = LoanFactory(officer=officer, borrower__branch=branch_north)

    plan = derive(loan)

    assert plan.officer == officer
    assert plan.updated_on == AS_OF


def test_closed_loan_gets_no_plan():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1), closed_on=date(2024, 1, 1))
    refresh_positions(AS_OF, loan.pk, loan.pk)

    counts = refresh_plans_and_inspections(AS_OF, loan.pk, loan.pk, run_id=None)

    assert counts["plans_created"] == 0
    assert not PostLoanPlan.objects.filter(loan=loan).exists()


def test_zero_interval_is_rejected():
    InspectionPolicy.objects.update(special_mention_months=0)
    loan = LoanFactory()
    refresh_positions(AS_OF, loan.pk, loan.pk)

    with pytest.raises(ValueError, match="special_mention_months"):
        refresh_plans_and_inspections(AS_OF, loan.pk, loan.pk, run_id=None)
