"""Close-of-day inspection step and the inspection warning rules.

Plans and their history, inspections created once, overdue marks, special
inspections for new red warnings and the INS rules. The file also passes on
SQLite (DATABASE_URL=sqlite:////tmp/schedule.sqlite3).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from loans.models import Loan
from monitoring import services
from monitoring.close_of_day.inspections import (
    refresh_plans_and_inspections,
    schedule_special_inspections,
)
from monitoring.close_of_day.positions import refresh_positions
from monitoring.close_of_day.warnings import evaluate_rules
from monitoring.models import (
    ActionKind,
    EarlyWarning,
    Inspection,
    InspectionKind,
    InspectionStatus,
    JobRun,
    JobStatus,
    PostLoanPlan,
    Severity,
    WarningRule,
    WarningStatus,
)
from monitoring.tasks import dispatch_close_of_day

from .factories import (
    BorrowerFactory,
    EarlyWarningFactory,
    InspectionFactory,
    LoanFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 7, 1)


def inspections(loan: Loan, kind: str) -> list[Inspection]:
    return list(Inspection.objects.filter(loan=loan, kind=kind).order_by("due_date"))


def active_warnings(rule_code: str) -> list[EarlyWarning]:
    return list(EarlyWarning.objects.filter(rule_code=rule_code, status__in=WarningStatus.active()))


def evaluate(code: str, as_of: date = AS_OF) -> dict[int, EarlyWarning]:
    """Refresh the positions and evaluate one phase-2 rule over every loan; return its warnings."""
    low, high = min(Loan.objects.values_list("pk", flat=True)), Loan.objects.latest("pk").pk
    refresh_positions(as_of, low, high)
    evaluate_rules(as_of, low, high, run_id=None, phase=2, codes=[code])
    return {warning.loan_id: warning for warning in active_warnings(code)}


def set_thresholds(code: str, **thresholds) -> None:
    WarningRule.objects.filter(code=code).update(thresholds=thresholds)


# --- Plans ---------------------------------------------------------------


def test_plan_history_records_class_change(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 1, 10))

    # The instalment due on 1 February is unpaid: 9 days past due is special mention.
    dispatch_close_of_day(date(2023, 2, 10))
    dispatch_close_of_day(date(2023, 2, 10))

    plan = PostLoanPlan.objects.get(loan=loan)
    history = list(plan.history.order_by("history_id"))
    assert [row.history_type for row in history] == ["+", "~"]
    assert history[0].history_change_reason == "close-of-day 2023-01-10: plan derived"
    assert history[0].derived_for_class == 1
    assert history[1].history_change_reason == (
        "close-of-day 2023-02-10: class 1 -> 2; interval; routine due"
    )
    assert history[1].derived_for_class == 2
    assert plan.routine_interval_months == 3
    assert plan.next_routine_due == date(2023, 4, 16)
    assert plan.updated_on == date(2023, 2, 10)


def test_unchanged_plan_is_not_rewritten():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 1, 5))

    run = dispatch_close_of_day(date(2023, 1, 6))

    run.refresh_from_db()
    plan = PostLoanPlan.objects.get(loan=loan)
    assert plan.updated_on == date(2023, 1, 5)
    assert plan.history.count() == 1
    assert run.counts["steps"]["plans_created"] == 0
    assert run.counts["steps"]["plans_changed"] == 0


def test_plan_follows_new_officer(officer, branch_north):
    loan = LoanFactory(disbursement_date=date(2023, 1, 1), borrower__branch=branch_north)
    dispatch_close_of_day(date(2023, 1, 5))
    Loan.objects.filter(pk=loan.pk).update(officer=officer)

    dispatch_close_of_day(date(2023, 1, 6))

    plan = PostLoanPlan.objects.get(loan=loan)
    assert plan.officer == officer
    assert plan.history.latest("history_id").history_change_reason == (
        "close-of-day 2023-01-06: officer"
    )


# --- Scheduled inspections -------------------------------------------------


def test_two_runs_create_each_inspection_once(officer, branch_north):
    loan = LoanFactory(
        disbursement_date=date(2023, 1, 1), officer=officer, borrower__branch=branch_north
    )

    first_run = dispatch_close_of_day(date(2023, 1, 5))
    second_run = dispatch_close_of_day(date(2023, 1, 5))

    [first] = inspections(loan, InspectionKind.FIRST)
    assert first.due_date == date(2023, 1, 16)
    assert first.status == InspectionStatus.SCHEDULED
    assert first.officer == officer
    assert first.branch == branch_north
    assert first.created_by_run_id == first_run.pk
    assert first.history.get().history_type == "+"
    assert inspections(loan, InspectionKind.ROUTINE) == []
    first_run.refresh_from_db()
    second_run.refresh_from_db()
    assert first_run.counts["steps"]["inspections_created_first"] == 1
    assert second_run.counts["steps"]["inspections_created_first"] == 0
    assert "inspections" in first_run.counts["timings"]["steps"]


@pytest.mark.parametrize(("as_of", "created"), [(date(2023, 6, 15), 0), (date(2023, 6, 16), 1)])
def test_routine_inspection_within_lookahead(as_of, created):
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 1, 5))

    dispatch_close_of_day(as_of)

    routine = inspections(loan, InspectionKind.ROUTINE)
    assert PostLoanPlan.objects.get(loan=loan).next_routine_due == date(2023, 7, 16)
    assert len(routine) == created
    assert all(inspection.due_date == date(2023, 7, 16) for inspection in routine)


def test_pending_routine_blocks_next_one():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 1, 5))
    InspectionFactory(loan=loan, due_date=date(2023, 6, 1), status=InspectionStatus.RETURNED)

    dispatch_close_of_day(date(2023, 6, 20))

    assert [i.due_date for i in inspections(loan, InspectionKind.ROUTINE)] == [date(2023, 6, 1)]


def test_done_first_inspection_is_not_repeated():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    InspectionFactory(
        loan=loan,
        kind=InspectionKind.FIRST,
        due_date=date(2023, 1, 20),
        status=InspectionStatus.APPROVED,
        inspected_on=date(2023, 1, 12),
    )

    dispatch_close_of_day(date(2023, 1, 15))

    assert len(inspections(loan, InspectionKind.FIRST)) == 1
    assert PostLoanPlan.objects.get(loan=loan).next_routine_due == date(2023, 7, 12)


def test_submitted_inspection_schedules_next_routine():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 1, 5))
    dispatch_close_of_day(date(2023, 6, 20))
    Inspection.objects.filter(loan=loan, kind=InspectionKind.ROUTINE).update(
        status=InspectionStatus.APPROVED, inspected_on=date(2023, 6, 25)
    )
    Inspection.objects.filter(loan=loan, kind=InspectionKind.FIRST).update(
        status=InspectionStatus.APPROVED, inspected_on=date(2023, 1, 14)
    )

    dispatch_close_of_day(date(2023, 11, 26))

    routine = inspections(loan, InspectionKind.ROUTINE)
    assert [i.due_date for i in routine] == [date(2023, 7, 16), date(2023, 12, 25)]


# --- Overdue ---------------------------------------------------------------


def test_overdue_marked_once_and_warned_once():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    dispatch_close_of_day(date(2023, 1, 5))
    dispatch_close_of_day(date(2023, 1, 16))
    not_yet = Inspection.objects.get(loan=loan, kind=InspectionKind.FIRST).overdue_since

    for day in (17, 18, 19):
        dispatch_close_of_day(date(2023, 1, day))

    first = Inspection.objects.get(loan=loan, kind=InspectionKind.FIRST)
    assert not_yet is None
    assert first.overdue_since == date(2023, 1, 17)
    assert [row.history_type for row in first.history.order_by("history_id")] == ["+", "~"]
    warnings = EarlyWarning.objects.filter(loan=loan, rule_code="INS_FIRST_OVERDUE")
    assert warnings.count() == 1
    assert warnings.get().status == WarningStatus.OPEN
    assert warnings.get().first_seen_on == date(2023, 1, 17)
    assert warnings.get().evidence["days_overdue"] == 3


def test_closed_loan_inspection_not_marked_overdue():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1), closed_on=date(2023, 3, 1))
    inspection = InspectionFactory(loan=loan, due_date=date(2023, 4, 1))

    dispatch_close_of_day(date(2023, 5, 1))

    inspection.refresh_from_db()
    assert inspection.overdue_since is None


def test_closed_loan_inspection_cancelled():
    closed = LoanFactory(disbursement_date=date(2023, 1, 1), closed_on=date(2023, 3, 1))
    scheduled = InspectionFactory(loan=closed, due_date=date(2023, 4, 1))
    draft = InspectionFactory(
        loan=closed,
        kind=InspectionKind.SPECIAL,
        status=InspectionStatus.DRAFT,
        due_date=date(2023, 4, 1),
    )
    open_loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    open_inspection = InspectionFactory(loan=open_loan, due_date=date(2023, 6, 1))

    dispatch_close_of_day(date(2023, 5, 1))
    dispatch_close_of_day(date(2023, 5, 1))

    for inspection in (scheduled, draft, open_inspection):
        inspection.refresh_from_db()
    assert scheduled.status == InspectionStatus.CANCELLED
    assert draft.status == InspectionStatus.DRAFT
    assert open_inspection.status == InspectionStatus.SCHEDULED
    changes = scheduled.history.filter(history_type="~")
    assert [change.history_change_reason for change in changes] == [
        "close-of-day 2023-05-01: loan closed"
    ]
    first_run = JobRun.objects.filter(as_of=date(2023, 5, 1)).order_by("pk").first()
    assert first_run.counts["steps"]["inspections_cancelled"] == 1


# --- Special inspections ---------------------------------------------------


def test_red_warning_schedules_one_special(make_scheduled_loan):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    # Unpaid since 1 February: 93 days past due on 5 May, over REP_DPD_90's 90.
    dispatch_close_of_day(date(2023, 5, 5))
    dispatch_close_of_day(date(2023, 5, 5))
    dispatch_close_of_day(date(2023, 5, 6))

    [special] = inspections(loan, InspectionKind.SPECIAL)
    warning = EarlyWarning.objects.get(loan=loan, rule_code="REP_DPD_90")
    assert special.due_date == date(2023, 5, 12)
    assert special.trigger_warning == warning
    assert special.history.get().history_change_reason == (
        f"close-of-day 2023-05-05: red warning {warning.pk}"
    )


def test_special_names_lowest_red_warning(make_scheduled_loan):
    WarningRule.objects.filter(code="REP_DPD_60").update(severity=Severity.RED)
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))

    dispatch_close_of_day(date(2023, 5, 5))

    red = EarlyWarning.objects.filter(loan=loan, severity=Severity.RED).order_by("pk")
    [special] = inspections(loan, InspectionKind.SPECIAL)
    assert red.count() == 2
    assert special.trigger_warning == red.first()


def _warning_ids(loan) -> list[int]:
    return list(EarlyWarning.objects.filter(loan=loan).values_list("pk", flat=True))


def test_pending_special_blocks_new_special():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    pending = InspectionFactory(
        loan=loan, kind=InspectionKind.SPECIAL, status=InspectionStatus.DRAFT
    )
    EarlyWarningFactory(loan=loan, first_seen_on=AS_OF)
    refresh_positions(AS_OF, loan.pk, loan.pk)

    counts = schedule_special_inspections(AS_OF, loan.pk, loan.pk, None, _warning_ids(loan))

    assert counts == {"special_inspections": 0}
    assert inspections(loan, InspectionKind.SPECIAL) == [pending]


def test_only_opened_warnings_schedule():
    opened, earlier = LoanFactory.create_batch(2, disbursement_date=date(2023, 1, 1))
    warning = EarlyWarningFactory(loan=opened, first_seen_on=AS_OF)
    EarlyWarningFactory(loan=earlier, first_seen_on=AS_OF)
    low, high = sorted((opened.pk, earlier.pk))

    counts = schedule_special_inspections(AS_OF, low, high, None, [warning.pk])

    assert counts == {"special_inspections": 1}
    [special] = inspections(opened, InspectionKind.SPECIAL)
    assert special.trigger_warning == warning
    assert inspections(earlier, InspectionKind.SPECIAL) == []


def test_older_or_orange_warning_schedules_nothing():
    loan = LoanFactory(disbursement_date=date(2023, 1, 1))
    EarlyWarningFactory(loan=loan, first_seen_on=AS_OF - timedelta(days=1))
    EarlyWarningFactory(
        loan=loan, rule_code="REP_DPD_30", severity=Severity.ORANGE, first_seen_on=AS_OF
    )
    EarlyWarningFactory(
        loan=loan, rule_code="EXT_ENFORCEMENT", status=WarningStatus.DISMISSED, first_seen_on=AS_OF
    )

    counts = schedule_special_inspections(AS_OF, loan.pk, loan.pk, None, _warning_ids(loan))

    assert counts == {"special_inspections": 0}


def test_special_inspection_action_schedules_once(risk_manager, officer, branch_north):
    JobRun.objects.create(as_of=AS_OF, status=JobStatus.COMPLETED, finished_at=timezone.now())
    loan = LoanFactory(officer=officer, borrower__branch=branch_north)
    warning = EarlyWarningFactory(loan=loan)

    services.record_action(warning, risk_manager, ActionKind.SPECIAL_INSPECTION)
    services.record_action(warning, risk_manager, ActionKind.SPECIAL_INSPECTION)

    [special] = inspections(loan, InspectionKind.SPECIAL)
    assert special.due_date == date(2023, 7, 8)
    assert special.trigger_warning == warning
    assert special.officer == officer
    assert special.branch == branch_north
    assert special.history.get().history_user == risk_manager


def test_other_action_schedules_nothing(risk_manager):
    warning = EarlyWarningFactory()

    services.record_action(warning, risk_manager, ActionKind.CONTACT_BORROWER)

    assert not Inspection.objects.exists()


# --- Inspection rules ------------------------------------------------------


@pytest.mark.parametrize(
    ("days_before", "grace_days", "fires"),
    [(0, 0, False), (1, 0, True), (3, 3, False), (4, 3, True)],
)
def test_first_overdue_after_grace(days_before, grace_days, fires):
    set_thresholds("INS_FIRST_OVERDUE", grace_days=grace_days)
    inspection = InspectionFactory(
        kind=InspectionKind.FIRST, due_date=AS_OF - timedelta(days=days_before)
    )

    warnings = evaluate("INS_FIRST_OVERDUE")

    assert (inspection.loan_id in warnings) is fires
    if fires:
        assert warnings[inspection.loan_id].evidence == {
            "as_of": "2023-07-01",
            "inspection_id": inspection.pk,
            "inspection_kind": "first",
            "due_date": str(inspection.due_date),
            "days_overdue": days_before,
            "grace_days": grace_days,
        }


@pytest.mark.parametrize(
    ("kind", "status", "fires"),
    [
        (InspectionKind.ROUTINE, InspectionStatus.SCHEDULED, True),
        (InspectionKind.ROUTINE, InspectionStatus.DRAFT, True),
        (InspectionKind.SPECIAL, InspectionStatus.RETURNED, True),
        (InspectionKind.ROUTINE, InspectionStatus.SUBMITTED, False),
        (InspectionKind.ROUTINE, InspectionStatus.APPROVED, False),
        (InspectionKind.FIRST, InspectionStatus.SCHEDULED, False),
    ],
)
def test_routine_overdue_by_kind_and_status(kind, status, fires):
    inspection = InspectionFactory(kind=kind, status=status, due_date=AS_OF - timedelta(days=1))

    warnings = evaluate("INS_ROUTINE_OVERDUE")

    assert (inspection.loan_id in warnings) is fires


def test_routine_overdue_names_earliest():
    loan = LoanFactory()
    InspectionFactory(loan=loan, due_date=date(2023, 6, 1))
    special = InspectionFactory(loan=loan, kind=InspectionKind.SPECIAL, due_date=date(2023, 5, 1))

    warnings = evaluate("INS_ROUTINE_OVERDUE")

    evidence = warnings[loan.pk].evidence
    assert evidence["inspection_id"] == special.pk
    assert evidence["inspection_kind"] == "special"
    assert evidence["days_overdue"] == 61


def test_overdue_warning_resolves_on_submission():
    inspection = InspectionFactory(due_date=AS_OF - timedelta(days=5))
    evaluate("INS_ROUTINE_OVERDUE")
    Inspection.objects.filter(pk=inspection.pk).update(
        status=InspectionStatus.SUBMITTED, inspected_on=AS_OF
    )

    evaluate("INS_ROUTINE_OVERDUE", AS_OF + timedelta(days=1))

    warning = EarlyWarning.objects.get(rule_code="INS_ROUTINE_OVERDUE")
    assert warning.status == WarningStatus.RESOLVED
    assert warning.cleared_on == AS_OF + timedelta(days=1)


@pytest.mark.parametrize(
    ("days_before", "lookback_days", "fires"),
    [(0, 90, True), (90, 90, True), (91, 90, False), (30, 30, True), (31, 30, False)],
)
def test_adverse_findings_within_lookback(days_before, lookback_days, fires):
    set_thresholds("INS_ADVERSE_FINDINGS", lookback_days=lookback_days)
    inspected_on = AS_OF - timedelta(days=days_before)
    inspection = InspectionFactory(
        status=InspectionStatus.APPROVED,
        due_date=inspected_on,
        inspected_on=inspected_on,
        adverse=True,
    )

    warnings = evaluate("INS_ADVERSE_FINDINGS")

    assert (inspection.loan_id in warnings) is fires
    if fires:
        assert warnings[inspection.loan_id].evidence == {
            "as_of": "2023-07-01",
            "inspection_id": inspection.pk,
            "inspection_kind": "routine",
            "inspected_on": str(inspected_on),
            "lookback_days": lookback_days,
        }


@pytest.mark.parametrize(
    ("later_status", "later_adverse", "fires"),
    [
        (InspectionStatus.SUBMITTED, False, False),
        (InspectionStatus.SUBMITTED, True, True),
        (InspectionStatus.DRAFT, False, True),
    ],
)
def test_adverse_findings_read_latest_inspection(later_status, later_adverse, fires):
    loan = LoanFactory()
    InspectionFactory(
        loan=loan,
        status=InspectionStatus.APPROVED,
        due_date=date(2023, 5, 1),
        inspected_on=date(2023, 5, 1),
        adverse=True,
    )
    InspectionFactory(
        loan=loan,
        kind=InspectionKind.SPECIAL,
        status=later_status,
        due_date=date(2023, 6, 1),
        inspected_on=date(2023, 6, 1),
        adverse=later_adverse,
    )

    warnings = evaluate("INS_ADVERSE_FINDINGS")

    assert (loan.pk in warnings) is fires


def test_adverse_warning_resolves_after_clean_inspection():
    loan = LoanFactory()
    InspectionFactory(
        loan=loan,
        status=InspectionStatus.APPROVED,
        due_date=date(2023, 6, 1),
        inspected_on=date(2023, 6, 1),
        adverse=True,
    )
    evaluate("INS_ADVERSE_FINDINGS")
    InspectionFactory(
        loan=loan,
        kind=InspectionKind.SPECIAL,
        status=InspectionStatus.SUBMITTED,
        due_date=date(2023, 7, 2),
        inspected_on=date(2023, 7, 2),
    )

    evaluate("INS_ADVERSE_FINDINGS", date(2023, 7, 2))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="INS_ADVERSE_FINDINGS")
    assert warning.status == WarningStatus.RESOLVED


# --- Query count -------------------------------------------------------------


def _book(count: int, officer) -> tuple[int, int]:
    """Create `count` loans disbursed on AS_OF, each with a new red warning; return the id range."""
    borrower = BorrowerFactory()
    loans = Loan.objects.bulk_create(
        LoanFactory.build(
            borrower=borrower, branch=borrower.branch, officer=officer, disbursement_date=AS_OF
        )
        for _ in range(count)
    )
    EarlyWarning.objects.bulk_create(
        EarlyWarningFactory.build(loan=loan, branch=loan.branch, first_seen_on=AS_OF)
        for loan in loans
    )
    ids = [loan.pk for loan in loans]
    return min(ids), max(ids)


def _step_queries(count: int, officer) -> tuple[list[int], Counter[str]]:
    """Return the queries of the inspection step on two dates, and its counts."""
    low, high = _book(count, officer)
    queries = []
    counts: Counter[str] = Counter()
    warning_ids = list(
        EarlyWarning.objects.filter(loan__pk__range=(low, high)).values_list("pk", flat=True)
    )
    for as_of in (AS_OF, AS_OF + timedelta(days=20)):
        refresh_positions(as_of, low, high)
        with CaptureQueriesContext(connection) as captured:
            counts.update(refresh_plans_and_inspections(as_of, low, high, run_id=None))
            counts.update(schedule_special_inspections(as_of, low, high, None, warning_ids))
        queries.append(len(captured))
    Loan.objects.filter(pk__range=(low, high)).delete()
    return queries, counts


def test_step_queries_do_not_grow_with_loans():
    officer = UserFactory()
    small_queries, small_counts = _step_queries(10, officer)
    large_queries, large_counts = _step_queries(1000, officer)

    assert small_queries == large_queries
    assert small_counts == {
        "plans_created": 10,
        "plans_changed": 0,
        "inspections_created_first": 10,
        "inspections_created_routine": 0,
        # On the second date the first and the special inspections are overdue.
        "inspections_overdue": 20,
        "inspections_cancelled": 0,
        "special_inspections": 10,
    }
    assert large_counts == {name: value * 100 for name, value in small_counts.items()}
