"""Reads shared by monitoring pages and jobs: the business date, the warning queue and detail."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, Expression, F, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loans.access import (
    ADMINISTRATOR,
    BRANCH_ROLES,
    CREDIT_OFFICER,
    RISK_MANAGER,
    User,
    has_role,
    sees_whole_book,
)
from loans.models import CollateralPledge, CollateralValuation, Guarantee, Loan, LoanPosition

from .models import (
    EarlyWarning,
    JobRun,
    JobStatus,
    Notification,
    Severity,
    WarningAction,
    WarningStatus,
)
from .rules import rule_descriptions as descriptions_of_rules

# Roles whose users may own (be assigned) a warning.
ASSIGNABLE_ROLES = (RISK_MANAGER, ADMINISTRATOR, CREDIT_OFFICER)


def get_business_date() -> date | None:
    """Return the as-of date of the last completed close-of-day run."""
    return (
        JobRun.objects.filter(kind="close_of_day", status=JobStatus.COMPLETED)
        .order_by("-finished_at")
        .values_list("as_of", flat=True)
        .first()
    )


# ---- Early-warning queue and detail ------------------------------------------


# Age filter of the queue: code, lowest and highest age in days (None: no upper end).
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-7", 0, 7),
    ("8-30", 8, 30),
    ("31-90", 31, 90),
    ("91+", 91, None),
)
AGE_BUCKET_LABELS = {
    "0-7": _("Up to 7 days"),
    "8-30": _("8 to 30 days"),
    "31-90": _("31 to 90 days"),
    "91+": _("Over 90 days"),
}
# Status filter values besides the statuses themselves.
STATUS_ACTIVE = "active"
STATUS_CLOSED = "closed"
STATUS_ANY = "any"
ASSIGNEE_UNASSIGNED = "unassigned"
ASSIGNEE_ME = "me"

# Ranks that order severities red > orange > yellow and statuses along the lifecycle.
# NOTE: the index warning_queue_severity_idx (monitoring migration 0007) is on
# this exact expression. PostgreSQL uses the index only while the two match, so
# change them together.
_SEVERITY_RANKS = {Severity.RED: 3, Severity.ORANGE: 2, Severity.YELLOW: 1}
_SEVERITY_RANK = Case(
    *[When(severity=severity, then=Value(rank)) for severity, rank in _SEVERITY_RANKS.items()],
    default=Value(0),
    output_field=IntegerField(),
)
_STATUS_RANK = Case(
    *[When(status=status, then=Value(rank)) for rank, status in enumerate(WarningStatus.values)],
    default=Value(len(WarningStatus.values)),
    output_field=IntegerField(),
)
# Sort keys accepted in ?sort= on the queue: the ordering expression and whether
# the key sorts the other way round (a larger age is an earlier first-seen date).
QUEUE_SORTS: dict[str, tuple[Expression, bool]] = {
    "severity": (_SEVERITY_RANK, False),
    "rule": (F("rule_code"), False),
    "contract": (F("loan__contract_number"), False),
    "borrower": (F("loan__borrower__legal_name"), False),
    "branch": (F("loan__branch__name"), False),
    "dpd": (F("loan__position__days_past_due"), False),
    "class": (F("loan__risk_class"), False),
    "first_seen": (F("first_seen_on"), False),
    "last_seen": (F("last_seen_on"), False),
    "age": (F("first_seen_on"), True),
    "deadline": (F("deadline"), False),
    "assignee": (F("assigned_to__username"), False),
    "status": (_STATUS_RANK, False),
}
DEFAULT_QUEUE_SORT = "-severity"
# Sort keys whose expression is a rank that is never NULL.
_RANK_SORTS = frozenset({"severity", "status"})
# Relations a queue row or the warning page shows, loaded with the warning.
_ROW_RELATIONS = (
    "loan",
    "loan__borrower",
    "loan__branch",
    "loan__officer",
    "loan__position",
    "assigned_to",
)

# Translated labels of the evidence keys that the warning rules store. Keys
# missing here are shown as stored, so a new rule family should add its keys.
EVIDENCE_LABELS = {
    "as_of": _("As of"),
    "days_past_due": _("Days past due"),
    "overdue_principal": _("Overdue principal"),
    "overdue_interest": _("Overdue interest"),
    "oldest_unpaid_due_date": _("Oldest unpaid due date"),
    "threshold_days": _("Threshold (days)"),
    "late_instalments": _("Instalments paid late"),
    "threshold_late_payments": _("Threshold (late instalments)"),
    "window_days": _("Window (days)"),
    "grace_days": _("Grace (days)"),
    "maturity_date": _("Maturity date"),
    "outstanding_principal": _("Outstanding principal"),
    "support": _("Supported by collateral"),
    "ltv": _("Loan-to-value"),
    "items": _("Items"),
    "valued_items": _("Valued items"),
    "collateral_reference": _("Collateral"),
    "collateral_kind": _("Collateral type"),
    "previous_valued_on": _("Previous valuation date"),
    "previous_value": _("Previous value"),
    "valued_on": _("Valuation date"),
    "value": _("Value"),
    "drop_percent": _("Drop (%)"),
    "threshold_drop_percent": _("Threshold (drop %)"),
    "last_valued_on": _("Last valued on"),
    "interval_months": _("Revaluation interval (months)"),
    "insurance_expires_on": _("Insurance expires on"),
    "days_expired": _("Days since expiry"),
    "days_left": _("Days left"),
    "guarantor_id": _("Guarantor"),
    "guarantor_name": _("Guarantor name"),
    "guarantor_borrower_id": _("Guarantor's borrower record"),
    "guarantor_days_past_due": _("Guarantor's days past due"),
    "guarantor_risk_class": _("Guarantor's risk class"),
    "flagged_guarantors": _("Guarantors flagged"),
    "guarantor_total_guaranteed": _("Total guaranteed"),
    "guarantor_net_worth": _("Net worth"),
    "threshold_multiple": _("Threshold (multiple of net worth)"),
    "circle_id": _("Guarantee circle"),
    "circle_members": _("Circle members"),
    "npl_members": _("Non-performing members"),
    "npl_borrower_ids": _("Non-performing borrowers"),
    "chain_length": _("Chain length"),
    "threshold_chain_length": _("Threshold (chain length)"),
    "kind": _("Signal"),
    "signal_id": _("Signal record"),
    "observed_on": _("Observed on"),
    "description": _("Description"),
    "open_signals": _("Open signals of this kind"),
    "industry_code": _("Industry code"),
    "code_prefix": _("Watched prefix"),
    "reason": _("Reason on the watch list"),
    "inspection_id": _("Inspection"),
    "inspection_kind": _("Inspection kind"),
    "due_date": _("Due date"),
    "days_overdue": _("Days overdue"),
    "inspected_on": _("Inspection date"),
    "lookback_days": _("Lookback (days)"),
}


def can_manage_warnings(user: User) -> bool:
    """Tell whether the user may acknowledge, assign, resolve and dismiss warnings."""
    return user.is_authenticated and (
        user.is_superuser or has_role(user, RISK_MANAGER, ADMINISTRATOR)
    )


def can_record_disposal(user: User) -> bool:
    """Tell whether the user may record disposal actions and notes on the warnings they see."""
    return can_manage_warnings(user) or has_role(user, CREDIT_OFFICER)


def visible_warnings(user: User) -> QuerySet[EarlyWarning]:
    """Return the warnings on the loans the user may see."""
    if sees_whole_book(user):
        # Every warning has a loan. Filtering on every loan id made each queue
        # count join the whole loan table: 0.4 s of 0.44 s for 1,000,000 loans
        # (benchmarks/warning_rules.py).
        return EarlyWarning.objects.all()
    if not has_role(user, *BRANCH_ROLES):
        return EarlyWarning.objects.none()
    # A warning's branch is its loan's branch (the close-of-day run keeps
    # them equal), so an officer's warnings need no join to the loans.
    return EarlyWarning.objects.filter(branch__staff=user)


def assignable_users(branch_id: int | None = None, viewer: User | None = None) -> QuerySet:
    """Return the active users who may own a warning: risk managers, administrators, officers.

    With `branch_id`, only the credit officers who work for that branch are included,
    because an officer cannot open the warnings of another branch's loans. With a
    `viewer` who sees only some branches, only the officers of those branches are.
    """
    users = get_user_model().objects.filter(is_active=True, groups__name__in=ASSIGNABLE_ROLES)
    if branch_id is not None:
        users = users.filter(
            Q(groups__name__in=[RISK_MANAGER, ADMINISTRATOR]) | Q(branches__id=branch_id)
        )
    if viewer is not None and not sees_whole_book(viewer):
        users = users.filter(
            Q(groups__name__in=[RISK_MANAGER, ADMINISTRATOR])
            | Q(branches__in=viewer.branches.all())
        )
    return users.distinct().order_by("last_name", "first_name", "username")


def rule_descriptions() -> dict[str, str]:
    return descriptions_of_rules()


def age_in_days(first_seen_on: date, as_of: date) -> int:
    return (as_of - first_seen_on).days


def warning_queue(
    user: User, filters: dict[str, Any] | None = None, as_of: date | None = None
) -> QuerySet[EarlyWarning]:
    """Return the user's warnings matching `filters`, with what a queue row shows.

    `filters` takes the cleaned data of `WarningQueueFilterForm`: severity,
    family, rule, branch, officer, age (a code of AGE_BUCKETS, counted in days
    from first_seen_on to `as_of`), assignee ("unassigned", "me" or a user)
    and status ("active", the default, "closed", "any" or one status).
    """
    filters = filters or {}
    warnings = visible_warnings(user).select_related(*_ROW_RELATIONS)
    warnings = _filter_status(warnings, filters.get("status") or STATUS_ACTIVE)
    for name, lookup in (
        ("severity", "severity"),
        ("family", "family"),
        ("rule", "rule_code"),
        ("branch", "branch"),
        ("officer", "loan__officer"),
    ):
        if filters.get(name):
            warnings = warnings.filter(**{lookup: filters[name]})
    if filters.get("severity") in _SEVERITY_RANKS:
        # The same condition on the rank makes the severity one range of
        # warning_queue_severity_idx, read in queue order. Filtering on severity
        # alone, PostgreSQL skipped every more severe warning to reach it.
        rank = _SEVERITY_RANKS[filters["severity"]]
        warnings = warnings.alias(severity_rank=_SEVERITY_RANK).filter(severity_rank=rank)
    if filters.get("age"):
        warnings = _filter_age(warnings, filters["age"], as_of or timezone.localdate())
    if filters.get("assignee"):
        warnings = _filter_assignee(warnings, filters["assignee"], user)
    return warnings


def _filter_status(warnings: QuerySet[EarlyWarning], status: str) -> QuerySet[EarlyWarning]:
    if status == STATUS_ANY:
        return warnings
    if status == STATUS_ACTIVE:
        return warnings.filter(status__in=WarningStatus.active())
    if status == STATUS_CLOSED:
        return warnings.exclude(status__in=WarningStatus.active())
    return warnings.filter(status=status)


def _filter_age(
    warnings: QuerySet[EarlyWarning], bucket: str, as_of: date
) -> QuerySet[EarlyWarning]:
    """Keep the warnings first seen between the bucket's lowest and highest age before `as_of`."""
    for code, youngest, oldest in AGE_BUCKETS:
        if code == bucket:
            warnings = warnings.filter(first_seen_on__lte=as_of - timedelta(days=youngest))
            if oldest is not None:
                warnings = warnings.filter(first_seen_on__gte=as_of - timedelta(days=oldest))
            return warnings
    return warnings.none()


def _filter_assignee(
    warnings: QuerySet[EarlyWarning], assignee: Any, user: User
) -> QuerySet[EarlyWarning]:
    if assignee == ASSIGNEE_UNASSIGNED:
        return warnings.filter(assigned_to__isnull=True)
    if assignee == ASSIGNEE_ME:
        return warnings.filter(assigned_to=user)
    return warnings.filter(assigned_to=assignee)


def sort_warnings(
    warnings: QuerySet[EarlyWarning], sort: str | None
) -> tuple[QuerySet[EarlyWarning], str]:
    """Order by a whitelisted key of QUEUE_SORTS such as "-severity", and return the key used."""
    sort = sort or DEFAULT_QUEUE_SORT
    key = sort.removeprefix("-")
    if key not in QUEUE_SORTS:
        sort = DEFAULT_QUEUE_SORT
        key = sort.removeprefix("-")
    expression, reversed_order = QUEUE_SORTS[key]
    descending = sort.startswith("-") != reversed_order
    # The ranks are never NULL. Ordering them without NULLS LAST lets the order
    # match warning_queue_severity_idx, which SQLite cannot declare NULLS LAST.
    nulls_last = None if key in _RANK_SORTS else True
    ordering = (
        expression.desc(nulls_last=nulls_last)
        if descending
        else expression.asc(nulls_last=nulls_last)
    )
    return warnings.order_by(ordering, "first_seen_on", "pk"), sort


def severity_counts(warnings: QuerySet[EarlyWarning]) -> dict[str, int]:
    """Count the warnings of each severity, and in total, in one aggregate query.

    Severity is never NULL, so counting it counts the warnings. Unlike the
    primary key, it is in the partial index of active warnings on (branch,
    severity), from which PostgreSQL can then count without reading the table.
    """
    counts = warnings.order_by().aggregate(
        total=Count("severity"),
        **{
            severity: Count("severity", filter=Q(severity=severity)) for severity in Severity.values
        },
    )
    return {name: value or 0 for name, value in counts.items()}


def annotate_queue_rows(warnings: Iterable[EarlyWarning], as_of: date) -> list[EarlyWarning]:
    """Set the row values that need no query: rule description, age, overdue flag, position."""
    descriptions = rule_descriptions()
    rows = list(warnings)
    for warning in rows:
        warning.rule_description = descriptions.get(warning.rule_code, "")
        warning.age_days = age_in_days(warning.first_seen_on, as_of)
        warning.is_overdue = is_past_deadline(warning, as_of)
        warning.current_position = _position(warning.loan)
    return rows


def is_past_deadline(warning: EarlyWarning, as_of: date) -> bool:
    return (
        warning.deadline is not None
        and warning.deadline < as_of
        and warning.status in WarningStatus.active()
    )


def _position(loan: Loan) -> LoanPosition | None:
    try:
        return loan.position
    except LoanPosition.DoesNotExist:
        return None


def evidence_rows(evidence: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """Return the evidence as (label, value) pairs, labelled where the key is known."""
    return [
        (str(EVIDENCE_LABELS.get(key, key)), value)
        for key, value in sorted((evidence or {}).items())
    ]


@dataclass
class CollateralRow:
    pledge: CollateralPledge
    latest_valuation: CollateralValuation | None


@dataclass
class WarningDetail:
    warning: EarlyWarning
    rule_description: str
    evidence: list[tuple[str, Any]]
    timeline: list[WarningAction]
    position: LoanPosition | None
    collateral: list[CollateralRow]
    guarantees: list[Guarantee]
    age_days: int
    is_overdue: bool
    as_of: date

    @property
    def collateral_value(self) -> Decimal | None:
        """Return the sum of the latest valuations times the share pledged, rounded half-up."""
        values = [
            row.latest_valuation.value * row.pledge.share
            for row in self.collateral
            if row.latest_valuation is not None
        ]
        if not values:
            return None
        return sum(values, Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    @property
    def latest_valued_on(self) -> date | None:
        dates = [row.latest_valuation.valued_on for row in self.collateral if row.latest_valuation]
        return max(dates, default=None)


def get_warning(user: User, pk: int) -> EarlyWarning | None:
    """Return the warning with its loan if the user may see the loan, None otherwise."""
    return visible_warnings(user).select_related(*_ROW_RELATIONS).filter(pk=pk).first()


def warning_timeline(warning: EarlyWarning) -> list[WarningAction]:
    """Return the warning's actions, oldest first, with who performed them."""
    return list(
        warning.actions.select_related("performed_by", "assigned_to").order_by("performed_at", "pk")
    )


def get_warning_detail(user: User, pk: int, as_of: date) -> WarningDetail | None:
    """Return what the warning page shows in a fixed number of queries, or None if not visible."""
    warning = get_warning(user, pk)
    if warning is None:
        return None
    loan = warning.loan
    pledges = (
        loan.pledges.select_related("collateral")
        .prefetch_related("collateral__valuations")
        .order_by("collateral__lien_rank", "collateral__reference")
    )
    collateral = []
    for pledge in pledges:
        # Valuations are ordered newest first by the model's Meta.ordering.
        valuations = list(pledge.collateral.valuations.all())
        collateral.append(CollateralRow(pledge, valuations[0] if valuations else None))
    return WarningDetail(
        warning=warning,
        rule_description=rule_descriptions().get(warning.rule_code, ""),
        evidence=evidence_rows(warning.evidence),
        timeline=warning_timeline(warning),
        position=_position(loan),
        collateral=collateral,
        guarantees=list(loan.guarantees.select_related("guarantor").order_by("valid_from", "pk")),
        age_days=age_in_days(warning.first_seen_on, as_of),
        is_overdue=is_past_deadline(warning, as_of),
        as_of=as_of,
    )


# ---- Notifications -----------------------------------------------------------


def unread_notification_count(user: User) -> int:
    if not user.is_authenticated:
        return 0
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


def user_notifications(user: User) -> QuerySet[Notification]:
    return Notification.objects.filter(recipient=user).order_by("-created_at", "-pk")
