"""Post-loan plan rules for one loan, the same rules the close-of-day run applies set-wise.

The close-of-day step (`monitoring/close_of_day/inspections.py`) derives the
plans of a chunk of loans in SQL. The functions here state each rule for one
loan, so that tests and pages can compute a plan without a run. Month
arithmetic keeps the day of the month and uses the month's last day where
that day is missing (31 January + 1 month is 28 or 29 February), as the SQL
does on both backends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.db.models import Max, Q

from loans.models import Loan, RiskClass

from ..models import (
    FirstInspectionTerm,
    Inspection,
    InspectionPolicy,
    InspectionStatus,
    WarningRule,
)
from ..rules.collateral import _INTERVAL_THRESHOLDS as REVALUATION_THRESHOLDS
from ..rules.collateral import VALUATION_STALE

# Statuses of a carried-out inspection, whose date anchors the next routine inspection.
DONE_STATUSES = (InspectionStatus.SUBMITTED, InspectionStatus.APPROVED)


@dataclass(frozen=True)
class PlanSettings:
    """Everything a plan is derived from besides the loan: read once per chunk."""

    policy: InspectionPolicy
    # Days from disbursement to the first inspection, per product.
    first_inspection_days: dict[str, int]
    # Revaluation interval in months, per collateral kind that has one.
    revaluation_months: dict[str, int]


@dataclass(frozen=True)
class PlanDates:
    """The derived fields of one loan's plan."""

    starts_on: date
    derived_for_class: int
    first_inspection_due: date | None
    routine_interval_months: int
    next_routine_due: date
    next_revaluation_due: date | None
    next_statement_due: date


def load_plan_settings() -> PlanSettings:
    """Read the policy, the first-inspection terms and the revaluation intervals (3 queries)."""
    return PlanSettings(
        policy=InspectionPolicy.current(),
        first_inspection_days=dict(FirstInspectionTerm.objects.values_list("product", "days")),
        revaluation_months=revaluation_months(),
    )


def revaluation_months() -> dict[str, int]:
    """Return the revaluation interval per collateral kind, from the COL_VALUATION_STALE rule.

    The plan reads the rule's thresholds even when the rule is disabled, so
    that the plan and the warning share one setting. Stored thresholds that
    fail the rule's schema raise ValidationError, as they do in a run.
    """
    stored = (
        WarningRule.objects.filter(code=VALUATION_STALE.code)
        .values_list("thresholds", flat=True)
        .first()
    )
    thresholds = VALUATION_STALE.clean_thresholds({**VALUATION_STALE.thresholds, **(stored or {})})
    return {kind: int(thresholds[name]) for kind, name in REVALUATION_THRESHOLDS.items()}


def add_months(day: date, months: int) -> date:
    """Return the date `months` calendar months after `day`, clamped to the month's end."""
    return day + relativedelta(months=months)


def calendar_months_between(later: date, earlier: date) -> int:
    """Return the number of month boundaries from `earlier` to `later`, ignoring the days."""
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def plan_starts_on(disbursement_date: date, first_derived_on: date) -> date:
    """Return the later of the disbursement date and the run date that first derives the plan."""
    return max(disbursement_date, first_derived_on)


def first_inspection_due(disbursement_date: date, days: int | None, starts_on: date) -> date | None:
    """Return disbursement + `days`, or None when that is before the plan starts.

    A loan disbursed before the bank used Postloan gets no fund-use check
    long after the fact. A product without a term has no first inspection.
    """
    if days is None:
        return None
    due = disbursement_date + timedelta(days=days)
    return due if due >= starts_on else None


def routine_interval_months(policy: InspectionPolicy, risk_class: int, principal: Decimal) -> int:
    """Return the months between routine inspections for the loan's class and principal.

    A normal loan whose principal is strictly above the large-loan amount is
    inspected at the large-loan interval, but not one at exactly the amount.
    """
    if risk_class == RiskClass.NORMAL:
        if principal > policy.large_loan_amount:
            return policy.large_loan_months
        return policy.normal_months
    if risk_class == RiskClass.SPECIAL_MENTION:
        return policy.special_mention_months
    return policy.non_performing_months


def next_routine_due(
    interval_months: int,
    disbursement_date: date,
    starts_on: date,
    first_due: date | None,
    last_inspected_on: date | None,
) -> date:
    """Return the due date of the next routine inspection.

    It is the anchor plus the interval. The anchor is the date of the loan's
    latest carried-out inspection, else the first inspection's due date.
    A loan with neither gets the first anniversary disbursement + k x
    interval (k >= 1) after the plan's start, so that the routine
    inspections of an imported book spread over the year.
    """
    anchor = last_inspected_on or first_due
    if anchor is not None:
        return add_months(anchor, interval_months)
    periods = calendar_months_between(starts_on, disbursement_date) // interval_months
    candidate = add_months(disbursement_date, periods * interval_months)
    if periods >= 1 and candidate > starts_on:
        return candidate
    return add_months(disbursement_date, (periods + 1) * interval_months)


def next_revaluation_due(
    latest_valuations: Iterable[tuple[str, date | None]], months_by_kind: dict[str, int]
) -> date | None:
    """Return the earliest latest-valuation date + its kind's interval over the pledged items.

    `latest_valuations` pairs each pledged item's kind with its latest
    valuation date. Items of a kind without an interval (receivables,
    deposits, equity) or never valued are left out; the COL_VALUATION_STALE
    warning covers the latter. None when no item counts.
    """
    due_dates = [
        add_months(valued_on, months_by_kind[kind])
        for kind, valued_on in latest_valuations
        if valued_on is not None and kind in months_by_kind
    ]
    return min(due_dates, default=None)


def next_statement_due(policy: InspectionPolicy, as_of: date) -> date:
    """Return the last fiscal year end (31 December) before `as_of` + the statement days.

    When that date has passed, the next fiscal year's is returned instead.
    """
    due = date(as_of.year - 1, 12, 31) + timedelta(days=policy.statement_due_days)
    if due < as_of:
        due = date(as_of.year, 12, 31) + timedelta(days=policy.statement_due_days)
    return due


def derive_plan(
    loan: Loan, as_of: date, settings: PlanSettings, starts_on: date | None = None
) -> PlanDates:
    """Derive one loan's plan as the run would on `as_of` (a few queries, for one loan).

    `starts_on` is the stored plan's start; without it the plan starts as if
    first derived on `as_of`.
    """
    starts_on = starts_on or plan_starts_on(loan.disbursement_date, as_of)
    first_due = first_inspection_due(
        loan.disbursement_date, settings.first_inspection_days.get(loan.product), starts_on
    )
    interval = routine_interval_months(settings.policy, loan.risk_class, loan.principal)
    last_inspected_on = (
        Inspection.objects.filter(loan=loan, status__in=DONE_STATUSES, inspected_on__lte=as_of)
        .order_by("-inspected_on")
        .values_list("inspected_on", flat=True)
        .first()
    )
    return PlanDates(
        starts_on=starts_on,
        derived_for_class=loan.risk_class,
        first_inspection_due=first_due,
        routine_interval_months=interval,
        next_routine_due=next_routine_due(
            interval, loan.disbursement_date, starts_on, first_due, last_inspected_on
        ),
        next_revaluation_due=next_revaluation_due(
            _latest_valuations(loan, as_of), settings.revaluation_months
        ),
        next_statement_due=next_statement_due(settings.policy, as_of),
    )


def _latest_valuations(loan: Loan, as_of: date) -> list[tuple[str, date | None]]:
    rows = loan.pledges.values("collateral_id", "collateral__kind").annotate(
        valued_on=Max(
            "collateral__valuations__valued_on",
            filter=Q(collateral__valuations__valued_on__lte=as_of),
        )
    )
    return [(row["collateral__kind"], row["valued_on"]) for row in rows]
