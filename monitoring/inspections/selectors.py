"""Reads of the inspection pages: scope and rights, My tasks, branch compliance, a loan's history.

Inspections carry a copy of their loan's branch and officer, so the task list
and the compliance page scope and group them without joining the loans.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Expression, F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loans.access import (
    BRANCH_MANAGER,
    BRANCH_ROLES,
    CREDIT_OFFICER,
    RISK_MANAGER,
    User,
    has_role,
    sees_whole_book,
)
from loans.models import Branch, Loan

from ..models import PENDING_INSPECTION, Inspection, InspectionStatus, PostLoanPlan
from ..selectors import get_business_date

# Days after the business date that "due this week" reaches, the business date included.
DUE_SOON_DAYS = 7

PENDING = PENDING_INSPECTION
DONE = Q(status__in=[InspectionStatus.SUBMITTED, InspectionStatus.APPROVED])

# Relations a task row or the inspection page shows, loaded with the inspection.
_ROW_RELATIONS = ("loan", "loan__borrower", "branch", "officer")


def business_date() -> date:
    """Return the business date, or today before the first close-of-day run."""
    return get_business_date() or timezone.localdate()


# ---- Scope and rights --------------------------------------------------------


def visible_inspections(user: User) -> QuerySet[Inspection]:
    """Return the inspections of the loans the user may see."""
    if sees_whole_book(user):
        return Inspection.objects.all()
    if not has_role(user, *BRANCH_ROLES):
        return Inspection.objects.none()
    return Inspection.objects.filter(branch__staff=user)


def get_inspection(user: User, pk: int) -> Inspection | None:
    """Return the inspection with what its page shows, or None when the user may not see it."""
    return (
        visible_inspections(user)
        .select_related(*_ROW_RELATIONS, "loan__branch", "submitted_by", "reviewed_by")
        .filter(pk=pk)
        .first()
    )


# Event shown on the inspection's history for a change to each status.
HISTORY_EVENTS = {
    InspectionStatus.SCHEDULED: _("Scheduled"),
    InspectionStatus.DRAFT: _("Draft saved"),
    InspectionStatus.SUBMITTED: _("Submitted"),
    InspectionStatus.RETURNED: _("Returned for changes"),
    InspectionStatus.APPROVED: _("Approved"),
}


@dataclass
class HistoryEntry:
    changed_at: datetime
    user: Any
    status: str
    event: str
    comment: str


def inspection_history(inspection: Inspection) -> list[HistoryEntry]:
    """Return the changes of the inspection's status from its history, oldest first.

    Records that leave the status as it was, such as a second draft save or the
    close-of-day run marking it overdue, are left out.
    """
    records = inspection.history.select_related("history_user").order_by("history_date", "pk")
    entries: list[HistoryEntry] = []
    previous_status = None
    for record in records:
        if record.status == previous_status:
            continue
        previous_status = record.status
        entries.append(
            HistoryEntry(
                changed_at=record.history_date,
                user=record.history_user,
                status=record.status,
                event=str(HISTORY_EVENTS.get(record.status, record.status)),
                comment=record.review_comment if record.status == InspectionStatus.RETURNED else "",
            )
        )
    return entries


def works_for_branch(user: User, branch_id: int) -> bool:
    return user.branches.filter(pk=branch_id).exists()


def may_edit(user: User, inspection: Inspection) -> bool:
    """Tell whether the user's role lets them fill in and submit this inspection.

    Any credit officer of the inspection's branch may, not only the assigned
    one. Whether the inspection is still editable is checked apart.
    """
    return has_role(user, CREDIT_OFFICER) and works_for_branch(user, inspection.branch_id)


def may_review(user: User, inspection: Inspection) -> bool:
    """Tell whether the user's role lets them approve or return this inspection.

    Risk managers review every branch, branch managers their own branches. The
    maker-checker rule (the submitter never reviews) is checked apart.
    """
    if has_role(user, RISK_MANAGER):
        return True
    return has_role(user, BRANCH_MANAGER) and works_for_branch(user, inspection.branch_id)


def may_start(user: User, loan: Loan) -> bool:
    """Tell whether the user may log an unscheduled inspection of a loan they can see."""
    return has_role(user, CREDIT_OFFICER) and works_for_branch(user, loan.branch_id)


def is_reviewer(user: User) -> bool:
    return has_role(user, BRANCH_MANAGER, RISK_MANAGER)


def has_tasks(user: User) -> bool:
    """Tell whether My tasks applies to the user: officers, branch managers, risk managers."""
    return has_role(user, CREDIT_OFFICER, BRANCH_MANAGER, RISK_MANAGER)


# ---- My tasks ----------------------------------------------------------------


OVERDUE = "overdue"
DUE_SOON = "due_soon"
RETURNED = "returned"
DRAFTS = "drafts"
AWAITING_REVIEW = "review"
BUCKET_LABELS = {
    OVERDUE: _("Overdue"),
    DUE_SOON: _("Due this week"),
    RETURNED: _("Returned"),
    DRAFTS: _("Drafts"),
    AWAITING_REVIEW: _("Awaiting my review"),
}

# Sort keys accepted in ?sort= on the task tables: the ordering expression and
# whether the key sorts the other way round (more days overdue is an earlier due date).
TASK_SORTS: dict[str, tuple[Expression, bool]] = {
    "contract": (F("loan__contract_number"), False),
    "borrower": (F("loan__borrower__legal_name"), False),
    "kind": (F("kind"), False),
    "due": (F("due_date"), False),
    "overdue": (F("due_date"), True),
    "status": (F("status"), False),
    "officer": (F("officer__username"), False),
    "submitted": (F("submitted_at"), False),
}
DEFAULT_TASK_SORT = "due"


def task_buckets(user: User) -> list[str]:
    """Return the buckets My tasks shows the user, in the order of the tabs."""
    buckets = [OVERDUE, DUE_SOON, RETURNED, DRAFTS]
    if is_reviewer(user):
        buckets.append(AWAITING_REVIEW)
    return buckets


def _task_scope(user: User) -> QuerySet[Inspection]:
    """Return the inspections whose tasks the user carries.

    A credit officer carries the inspections assigned to them and the
    unassigned ones of their branches. Branch and risk managers, who oversee
    their officers, carry every inspection they can see.
    """
    inspections = visible_inspections(user)
    if is_reviewer(user) or sees_whole_book(user):
        return inspections
    return inspections.filter(Q(officer=user) | Q(officer__isnull=True))


def _bucket_conditions(user: User, as_of: date) -> dict[str, Q]:
    conditions = {
        OVERDUE: PENDING & Q(due_date__lt=as_of),
        DUE_SOON: PENDING & Q(due_date__gte=as_of, due_date__lte=as_of + timedelta(DUE_SOON_DAYS)),
        RETURNED: Q(status=InspectionStatus.RETURNED),
        DRAFTS: Q(status=InspectionStatus.DRAFT),
    }
    if is_reviewer(user):
        # Maker-checker: what the user submitted is someone else's to review.
        conditions[AWAITING_REVIEW] = Q(status=InspectionStatus.SUBMITTED) & ~Q(submitted_by=user)
    return conditions


def task_counts(user: User, as_of: date) -> dict[str, int]:
    """Count the inspections in each of the user's buckets, in one aggregate query."""
    conditions = _bucket_conditions(user, as_of)
    # Every bucket contains open inspections only. Saying so in the WHERE clause
    # lets PostgreSQL read an officer's tasks from the partial index of
    # pending inspections instead of every inspection in scope.
    statuses = InspectionStatus.pending()
    if AWAITING_REVIEW in conditions:
        statuses = [*statuses, InspectionStatus.SUBMITTED]
    counts = (
        _task_scope(user)
        .filter(status__in=statuses)
        .order_by()
        .aggregate(
            **{name: Count("pk", filter=condition) for name, condition in conditions.items()}
        )
    )
    return {name: counts[name] or 0 for name in conditions}


def task_bucket(user: User, bucket: str, as_of: date) -> QuerySet[Inspection]:
    """Return the inspections in one of the user's buckets, with what a task row shows."""
    condition = _bucket_conditions(user, as_of).get(bucket)
    if condition is None:
        return Inspection.objects.none()
    inspections = _task_scope(user).filter(condition).select_related(*_ROW_RELATIONS)
    if bucket == AWAITING_REVIEW:
        inspections = inspections.select_related("submitted_by")
    return inspections


def sort_tasks(
    inspections: QuerySet[Inspection], sort: str | None
) -> tuple[QuerySet[Inspection], str]:
    """Order by a whitelisted key of TASK_SORTS such as "-due", and return the key used."""
    sort = sort or DEFAULT_TASK_SORT
    key = sort.removeprefix("-")
    if key not in TASK_SORTS:
        sort = key = DEFAULT_TASK_SORT
    expression, reversed_order = TASK_SORTS[key]
    descending = sort.startswith("-") != reversed_order
    ordering = expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)
    return inspections.order_by(ordering, "due_date", "pk"), sort


def days_overdue(inspection: Inspection, as_of: date) -> int:
    """Return the days since a pending inspection fell due, 0 when it is not overdue."""
    if inspection.status not in InspectionStatus.pending() or inspection.due_date >= as_of:
        return 0
    return (as_of - inspection.due_date).days


# ---- Branch compliance -------------------------------------------------------


def quarter_of(as_of: date) -> tuple[date, date]:
    """Return the first and last day of the calendar quarter that contains `as_of`."""
    first_month = 3 * ((as_of.month - 1) // 3) + 1
    start = date(as_of.year, first_month, 1)
    if first_month == 10:
        end = date(as_of.year, 12, 31)
    else:
        end = date(as_of.year, first_month + 3, 1) - timedelta(days=1)
    return start, end


def compliance_branches(user: User) -> QuerySet[Branch]:
    """Return the branches whose compliance the user may read."""
    if sees_whole_book(user):
        return Branch.objects.order_by("code")
    if not has_role(user, *BRANCH_ROLES):
        return Branch.objects.none()
    return Branch.objects.filter(staff=user).order_by("code")


def _compliance_counts(as_of: date) -> dict[str, Count]:
    """Return the conditional counts that split the inspections due in a period.

    Every inspection falls in exactly one of on time, late, missed and still
    due: done means submitted or approved, and returned counts as pending.
    """
    return {
        "due": Count("pk"),
        "on_time": Count("pk", filter=DONE & Q(inspected_on__lte=F("due_date"))),
        "late": Count("pk", filter=DONE & Q(inspected_on__gt=F("due_date"))),
        "missed": Count("pk", filter=PENDING & Q(due_date__lt=as_of)),
        "still_due": Count("pk", filter=PENDING & Q(due_date__gte=as_of)),
    }


# The names of the counts `_compliance_counts` returns, in the order of the table.
COMPLIANCE_COUNTS = ("due", "on_time", "late", "missed", "still_due")


def compliance_rate(on_time: int, late: int, missed: int) -> Decimal | None:
    """Return the percentage of the inspections past their due date that were done on time.

    Inspections not yet due are left out. The rate is rounded half up to one
    decimal, and None when no inspection has fallen due yet.
    """
    fallen_due = on_time + late + missed
    if not fallen_due:
        return None
    return (Decimal(100 * on_time) / fallen_due).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CompliancePeriod:
    """The inspections a compliance table counts: due in the period, in the branches.

    `branches` None stands for every branch, for users who see the whole book.
    """

    branches: list[int] | None
    date_from: date
    date_to: date
    as_of: date


def _due_in_period(period: CompliancePeriod) -> QuerySet[Inspection]:
    """Return the inspections due in the period, leaving out those cancelled with their loan."""
    inspections = Inspection.objects.filter(
        due_date__gte=period.date_from, due_date__lte=period.date_to
    ).exclude(status=InspectionStatus.CANCELLED)
    if period.branches is not None:
        inspections = inspections.filter(branch_id__in=period.branches)
    return inspections.order_by()


def compliance_by_officer(period: CompliancePeriod) -> list[dict]:
    """Return one row of counts per officer of the inspections due in the period.

    Each row is a dict with the officer's id and names and the counts of
    `_compliance_counts`, sorted by the officer's name. Inspections with no
    officer form the last row, with officer None. The counts are one grouped
    query on the inspections alone, which the covering index on branch and
    due date serves without reading the table. The names are a second query
    for the few officers found.
    """
    rows = list(
        _due_in_period(period).values("officer").annotate(**_compliance_counts(period.as_of))
    )
    officers = get_user_model().objects.in_bulk([row["officer"] for row in rows if row["officer"]])
    for row in rows:
        officer = officers.get(row["officer"])
        row["officer__username"] = officer.username if officer else None
        row["officer__first_name"] = officer.first_name if officer else None
        row["officer__last_name"] = officer.last_name if officer else None
    rows.sort(
        key=lambda row: (
            row["officer"] is None,
            row["officer__last_name"] or "",
            row["officer__first_name"] or "",
            row["officer__username"] or "",
            row["officer"] or 0,
        )
    )
    return rows


def compliance_totals(rows: list[dict]) -> dict[str, int]:
    """Add up the per-officer rows of `compliance_by_officer` into the period's totals."""
    return {name: sum(row[name] for row in rows) for name in COMPLIANCE_COUNTS}


def add_compliance_rates(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["rate"] = compliance_rate(row["on_time"], row["late"], row["missed"])
    return rows


# ---- Loan page ---------------------------------------------------------------


@dataclass
class LoanInspections:
    plan: PostLoanPlan | None
    inspections: list[Inspection]
    may_start: bool


def loan_inspections(user: User, loan: Loan) -> LoanInspections:
    """Return the loan's post-loan plan and every inspection of it, latest due first."""
    inspections = loan.inspections.select_related(
        "officer", "submitted_by", "reviewed_by"
    ).order_by("-due_date", "-pk")
    return LoanInspections(
        plan=PostLoanPlan.objects.filter(loan=loan).first(),
        inspections=list(inspections),
        may_start=may_start(user, loan),
    )
