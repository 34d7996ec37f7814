"""Figures of the dashboards of each role, scoped to what the user may see.

Portfolio figures come from the summary table that the close-of-day run
writes (reports.summary), never from the positions themselves, so every
dashboard adds up at most a few thousand rows. Warnings, tasks, proposals
and history are read live, each in one aggregate or limited query.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import (
    Count,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.utils.translation import gettext_lazy as _

from loans.access import (
    ADMINISTRATOR,
    AUDITOR,
    BRANCH_MANAGER,
    COMMITTEE_MEMBER,
    CREDIT_OFFICER,
    RISK_MANAGER,
    User,
    has_role,
)
from loans.models import Branch, Loan, RiskClass
from loans.selectors import dpd_bucket_label
from monitoring.close_of_day.positions import DPD_BUCKETS
from monitoring.inspections.selectors import BUCKET_LABELS as TASK_LABELS
from monitoring.inspections.selectors import (
    DRAFTS,
    DUE_SOON,
    DUE_SOON_DAYS,
    OVERDUE,
    RETURNED,
    task_counts,
)
from monitoring.models import (
    ChangeSource,
    ClassificationChange,
    ClassificationProposal,
    EarlyWarning,
    Inspection,
    InspectionStatus,
    ProposalStatus,
    Severity,
    WarningFamily,
    WarningStatus,
)
from monitoring.selectors import AGE_BUCKET_LABELS, AGE_BUCKETS, severity_counts

from .models import PortfolioSummary
from .selectors import BreakdownRow, _money, percent

ZERO = Decimal("0.00")
NPL_CLASSES = frozenset(RiskClass.non_performing())
# Month ends of the trend charts, the latest one included.
TREND_MONTHS = 12
# Rows of the lists of loans needing attention and of recent changes.
ATTENTION_ROWS = 10
RECENT_CHANGES = 25
# A day, the time between two close-of-day runs; a refresh changes the key anyway.
CACHE_SECONDS = 24 * 60 * 60
T = TypeVar("T")

OFFICER = "officer"
BRANCH = "branch"
RISK = "risk"
COMMITTEE = "committee"
AUDIT = "audit"
# Dashboard sections in the order of the tabs, with the role that opens each.
SECTIONS = (
    (OFFICER, CREDIT_OFFICER, _("My portfolio")),
    (BRANCH, BRANCH_MANAGER, _("My branches")),
    (RISK, RISK_MANAGER, _("Risk")),
    (COMMITTEE, COMMITTEE_MEMBER, _("Committee")),
    (AUDIT, AUDITOR, _("Audit")),
)
SECTION_LABELS = {code: label for code, _role, label in SECTIONS}

# Two-digit NAICS sectors, the prefix of the borrowers' industry codes.
INDUSTRY_SECTORS = {
    "11": _("Agriculture, forestry, fishing and hunting"),
    "21": _("Mining, quarrying, and oil and gas extraction"),
    "22": _("Utilities"),
    "23": _("Construction"),
    "31": _("Manufacturing"),
    "32": _("Manufacturing"),
    "33": _("Manufacturing"),
    "42": _("Wholesale trade"),
    "44": _("Retail trade"),
    "45": _("Retail trade"),
    "48": _("Transportation and warehousing"),
    "49": _("Transportation and warehousing"),
    "51": _("Information"),
    "52": _("Finance and insurance"),
    "53": _("Real estate and rental and leasing"),
    "54": _("Professional, scientific and technical services"),
    "55": _("Management of companies and enterprises"),
    "56": _("Administrative and support and waste management services"),
    "61": _("Educational services"),
    "62": _("Health care and social assistance"),
    "71": _("Arts, entertainment and recreation"),
    "72": _("Accommodation and food services"),
    "81": _("Other services (except public administration)"),
    "92": _("Public administration"),
}


def dashboard_sections(user: User) -> list[str]:
    """Return the dashboard sections of the user's roles, in the order of the tabs.

    Administrators and superusers without another role get the risk
    section, the whole-book view.
    """
    sections = [code for code, role, _label in SECTIONS if has_role(user, role)]
    if not sections and (user.is_superuser or has_role(user, ADMINISTRATOR)):
        sections = [RISK]
    return sections


# ---- Portfolio from the summary table -----------------------------------------


def summary_date(business_date: date | None) -> date | None:
    """Return the latest summary date on or before the business date, None if there is none."""
    if business_date is None:
        return None
    return PortfolioSummary.objects.filter(as_of__lte=business_date).aggregate(latest=Max("as_of"))[
        "latest"
    ]


def summary_version() -> int:
    """Return the highest summary row id, which every refresh raises (the id is a sequence).

    Cached figures are keyed by it, so a refresh makes them stale at once.
    """
    return PortfolioSummary.objects.aggregate(last=Max("id"))["last"] or 0


def cached(key: str, version: int, compute: Callable[[], T]) -> T:
    """Return the value cached under `key` for this summary version, computing it once.

    For a million loans, the whole book's figures and the month-end trends
    add up more than a hundred thousand summary rows, several hundred
    milliseconds of a request. With the cache each process pays that once
    per refresh. NOTE: without a shared CACHES setting every process has
    its own cache (Django's local-memory default).
    """
    full_key = f"dashboards:{key}:{version}"
    value = cache.get(full_key)
    if value is None:
        value = compute()
        cache.set(full_key, value, CACHE_SECONDS)
    return value


@dataclass
class Totals:
    """Sums of summary rows: loans, balance and what part of it is in trouble."""

    loans: int = 0
    balance: Decimal = ZERO
    npl_balance: Decimal = ZERO
    special_mention_balance: Decimal = ZERO
    overdue_balance: Decimal = ZERO
    overdue_amount: Decimal = ZERO
    specific_provision: Decimal = ZERO
    general_provision: Decimal = ZERO
    by_class: dict[int, Decimal] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        balance = row["balance"] or ZERO
        self.loans += row["loans"] or 0
        self.balance += balance
        if row["risk_class"] in NPL_CLASSES:
            self.npl_balance += balance
        if row["risk_class"] == RiskClass.SPECIAL_MENTION:
            self.special_mention_balance += balance
        if row["dpd_bucket"] != "current":
            self.overdue_balance += balance
        self.overdue_amount += (row["overdue_principal"] or ZERO) + (
            row["overdue_interest"] or ZERO
        )
        self.specific_provision += row["specific_provision"] or ZERO
        self.general_provision += row["general_provision"] or ZERO
        self.by_class[row["risk_class"]] = self.by_class.get(row["risk_class"], ZERO) + balance

    @property
    def npl_ratio(self) -> Decimal | None:
        return percent(self.npl_balance, self.balance)

    @property
    def special_mention_ratio(self) -> Decimal | None:
        return percent(self.special_mention_balance, self.balance)

    @property
    def required_provision(self) -> Decimal:
        return _money(self.specific_provision + self.general_provision)


@dataclass(frozen=True)
class GroupRow:
    """A branch, officer or industry with its totals, for a table and a stacked chart."""

    code: str
    label: str
    totals: Totals


@dataclass(frozen=True)
class PortfolioFigures:
    as_of: date
    totals: Totals
    by_class: list[BreakdownRow]
    by_stage: list[BreakdownRow]
    by_bucket: list[BreakdownRow]
    by_branch: list[GroupRow]
    by_industry: list[GroupRow]
    by_officer: list[GroupRow]


_SUMS = {
    "loans": Sum("loans"),
    "balance": Sum("balance"),
    "overdue_principal": Sum("overdue_principal"),
    "overdue_interest": Sum("overdue_interest"),
    "specific_provision": Sum("specific_provision"),
    "general_provision": Sum("general_provision"),
}
_BASE_GROUPS = ("risk_class", "ifrs9_stage", "dpd_bucket")


def portfolio_figures(
    as_of: date,
    *,
    branch_ids: list[int] | None = None,
    officer: User | None = None,
    by: tuple[str, ...] = (),
) -> PortfolioFigures:
    """Add up the summary rows of `as_of` in one grouped query.

    `branch_ids` limits the rows to those branches and `officer` to one
    officer's loans; `by` adds breakdowns by "branch", "industry" or "officer".
    """
    rows = PortfolioSummary.objects.filter(as_of=as_of)
    if branch_ids is not None:
        rows = rows.filter(branch_id__in=branch_ids)
    if officer is not None:
        rows = rows.filter(officer=officer)
    columns = {"branch": "branch_id", "industry": "industry", "officer": "officer_id"}
    groups = [*_BASE_GROUPS, *(columns[name] for name in by)]
    grouped = list(rows.values(*groups).annotate(**_SUMS).order_by())

    totals = Totals()
    by_code: dict[str, dict] = {name: defaultdict(Totals) for name in (*_BASE_GROUPS, *by)}
    for row in grouped:
        totals.add(row)
        for name in _BASE_GROUPS:
            by_code[name][row[name]].add(row)
        for name in by:
            by_code[name][row[columns[name]]].add(row)
    return PortfolioFigures(
        as_of=as_of,
        totals=_rounded(totals),
        by_class=_breakdown(
            [(c.value, str(c.value), c.label) for c in RiskClass], by_code["risk_class"], totals
        ),
        by_stage=_breakdown(
            [(s, str(s), _("Stage %(stage)s") % {"stage": s}) for s in (1, 2, 3)],
            by_code["ifrs9_stage"],
            totals,
        ),
        by_bucket=_breakdown(
            [(code, code, dpd_bucket_label(code)) for code, _low, _high in DPD_BUCKETS],
            by_code["dpd_bucket"],
            totals,
        ),
        by_branch=_branch_rows(by_code["branch"]) if "branch" in by else [],
        by_industry=_industry_rows(by_code["industry"]) if "industry" in by else [],
        by_officer=_officer_rows(by_code["officer"]) if "officer" in by else [],
    )


def _rounded(totals: Totals) -> Totals:
    """Round every amount once, half-up to the cent, after adding the rows."""
    for name in (
        "balance",
        "npl_balance",
        "special_mention_balance",
        "overdue_balance",
        "overdue_amount",
        "specific_provision",
        "general_provision",
    ):
        setattr(totals, name, _money(getattr(totals, name)))
    return totals


def _breakdown(
    entries: list[tuple[object, str, str]], sums: dict, totals: Totals
) -> list[BreakdownRow]:
    rows = []
    for key, code, label in entries:
        group = sums.get(key, Totals())
        balance = _money(group.balance)
        rows.append(
            BreakdownRow(
                code=code,
                label=str(label),
                loans=group.loans,
                balance=balance,
                share=percent(balance, totals.balance),
            )
        )
    return rows


def _branch_rows(sums: dict[int, Totals]) -> list[GroupRow]:
    names = dict(Branch.objects.filter(pk__in=list(sums)).values_list("pk", "name"))
    rows = [
        GroupRow(code=str(pk), label=names.get(pk, str(pk)), totals=_rounded(totals))
        for pk, totals in sums.items()
    ]
    return sorted(rows, key=lambda row: row.label)


def industry_label(code: str) -> str:
    if not code:
        return str(_("No industry code"))
    sector = INDUSTRY_SECTORS.get(code)
    return f"{code} {sector}" if sector else code


def _industry_rows(sums: dict[str, Totals]) -> list[GroupRow]:
    rows = [
        GroupRow(code=code, label=industry_label(code), totals=_rounded(totals))
        for code, totals in sums.items()
    ]
    return sorted(rows, key=lambda row: row.totals.balance, reverse=True)


def _officer_rows(sums: dict[int | None, Totals]) -> list[GroupRow]:
    people = {
        person.pk: person.get_full_name() or person.get_username()
        for person in get_user_model().objects.filter(pk__in=[pk for pk in sums if pk])
    }
    rows = []
    for pk, totals in sums.items():
        if pk is None:
            label = str(_("No officer"))
        else:
            label = people.get(pk) or str(_("Former officer #%(id)s") % {"id": pk})
        rows.append(GroupRow(code=str(pk or ""), label=label, totals=_rounded(totals)))
    # The loans without an officer come last, where a manager looks for them.
    return sorted(rows, key=lambda row: (row.code == "", row.label))


# ---- Trend over month ends -------------------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    month_end: date
    balance: Decimal | None
    npl_ratio: Decimal | None
    special_mention_ratio: Decimal | None


def last_month_ends(as_of: date, count: int = TREND_MONTHS) -> list[date]:
    """Return the `count` month ends up to `as_of`, oldest first; `as_of` counts if it is one."""
    year, month = as_of.year, as_of.month
    if as_of.day != calendar.monthrange(year, month)[1]:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    ends = []
    for _index in range(count):
        ends.append(date(year, month, calendar.monthrange(year, month)[1]))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return ends[::-1]


def month_end_trend(as_of: date, branch_ids: list[int] | None = None) -> list[TrendPoint]:
    """Return balance, NPL and special-mention ratios at the last month ends, in one query.

    A month end without summary rows (no run that day and no snapshot
    summary) has a point with no figures, drawn as a gap.
    """
    month_ends = last_month_ends(as_of)
    rows = PortfolioSummary.objects.filter(as_of__in=month_ends)
    if branch_ids is not None:
        rows = rows.filter(branch_id__in=branch_ids)
    sums = {
        row["as_of"]: row
        for row in rows.values("as_of")
        .annotate(
            total=Sum("balance"),
            npl=Sum("balance", filter=Q(risk_class__in=NPL_CLASSES)),
            special_mention=Sum("balance", filter=Q(risk_class=RiskClass.SPECIAL_MENTION)),
        )
        .order_by()
    }
    points = []
    for month_end in month_ends:
        row = sums.get(month_end)
        if row is None:
            points.append(TrendPoint(month_end, None, None, None))
            continue
        balance = _money(row["total"])
        points.append(
            TrendPoint(
                month_end=month_end,
                balance=balance,
                npl_ratio=percent(row["npl"] or ZERO, balance),
                special_mention_ratio=percent(row["special_mention"] or ZERO, balance),
            )
        )
    return points


# ---- Loans needing attention -------------------------------------------------------


_ATTENTION_ORDER = (
    "-position__days_past_due",
    "-risk_class",
    "-position__outstanding_principal",
    "pk",
)


def attention_loans(officer: User, branch_ids: list[int], as_of: date) -> list[Loan]:
    """Return the officer's open loans in arrears or worse than normal, most days past due first.

    Each loan gets `overdue_amount`, its overdue principal plus interest.
    """
    loans = list(
        Loan.objects.filter(
            officer=officer,
            branch_id__in=branch_ids,
            position__as_of=as_of,
            position__is_open=True,
        )
        .filter(Q(position__days_past_due__gt=0) | Q(risk_class__gt=RiskClass.NORMAL))
        .select_related("borrower", "position")
        .order_by(*_ATTENTION_ORDER)[:ATTENTION_ROWS]
    )
    for loan in loans:
        loan.overdue_amount = loan.position.overdue_principal + loan.position.overdue_interest
    return loans


# ---- Tasks ---------------------------------------------------------------------------


TASK_BUCKETS = (OVERDUE, DUE_SOON, DRAFTS, RETURNED)


def officer_tasks(officer: User, as_of: date) -> list[tuple[str, str, int]]:
    """Return the officer's task buckets (code, label, count), counted as My tasks counts them."""
    counts = task_counts(officer, as_of)
    return [(code, str(TASK_LABELS[code]), counts.get(code, 0)) for code in TASK_BUCKETS]


def _task_conditions(as_of: date) -> dict[str, Q]:
    pending = Q(status__in=InspectionStatus.pending())
    return {
        OVERDUE: pending & Q(due_date__lt=as_of),
        DUE_SOON: pending & Q(due_date__gte=as_of, due_date__lte=as_of + timedelta(DUE_SOON_DAYS)),
        DRAFTS: Q(status=InspectionStatus.DRAFT),
        RETURNED: Q(status=InspectionStatus.RETURNED),
    }


@dataclass(frozen=True)
class OfficerTasks:
    officer_id: int | None
    label: str
    counts: dict[str, int]


def tasks_by_officer(branch_ids: list[int], as_of: date) -> list[OfficerTasks]:
    """Count the pending inspections of the branches by officer and bucket, in one query.

    Only pending inspections count, so the branch's approved history is
    never read.
    """
    conditions = _task_conditions(as_of)
    grouped = (
        Inspection.objects.filter(branch_id__in=branch_ids, status__in=InspectionStatus.pending())
        .values("officer_id", "officer__username", "officer__first_name", "officer__last_name")
        .annotate(**{code: Count("pk", filter=condition) for code, condition in conditions.items()})
        .order_by()
    )
    rows = [
        OfficerTasks(
            officer_id=row["officer_id"],
            label=_person(row, "officer__"),
            counts={code: row[code] for code in conditions},
        )
        for row in grouped
        if any(row[code] for code in conditions)
    ]
    return sorted(rows, key=lambda row: (row.officer_id is None, row.label))


def _person(row: dict, prefix: str) -> str:
    """Return the full name, else the username, of the user in `row`'s `prefix` columns."""
    name = f"{row[prefix + 'first_name'] or ''} {row[prefix + 'last_name'] or ''}".strip()
    return name or row[prefix + "username"] or str(_("No officer"))


# ---- Warnings -------------------------------------------------------------------------


ACTIVE = Q(status__in=WarningStatus.active())


def active_warnings(branch_ids: list[int] | None = None, officer: User | None = None) -> QuerySet:
    """Return the active warnings of the branches, or of the officer's loans in them.

    A warning carries copies of its loan's branch and officer, and the
    partial index of active warnings on branch and severity includes the
    officer, so both read that index alone.
    """
    warnings = EarlyWarning.objects.filter(ACTIVE)
    if officer is not None:
        warnings = warnings.filter(officer=officer)
    if branch_ids is not None:
        warnings = warnings.filter(branch_id__in=branch_ids)
    return warnings


def warning_severity_counts(warnings: QuerySet) -> list[tuple[str, str, int]]:
    """Return (severity, label, count) of the active warnings, red first, in one query."""
    counts = severity_counts(warnings)
    return [(severity.value, str(severity.label), counts[severity.value]) for severity in Severity]


@dataclass(frozen=True)
class WarningMatrix:
    """Active warnings by family and severity, and by age band."""

    families: list[tuple[str, str, dict[str, int]]]
    ages: list[tuple[str, str, int]]
    total: int


def _age_conditions(as_of: date) -> dict[str, Q]:
    """Return the condition on the first-seen date of each age band, by band code."""
    conditions = {}
    for index, (code, youngest, oldest) in enumerate(AGE_BUCKETS):
        # A first-seen date after the business date counts in the youngest band.
        condition = Q() if index == 0 else Q(first_seen_on__lte=as_of - timedelta(days=youngest))
        if oldest is not None:
            condition &= Q(first_seen_on__gte=as_of - timedelta(days=oldest))
        conditions[code] = condition
    return conditions


def warning_matrix(as_of: date) -> WarningMatrix:
    """Count the active warnings by family, severity and age band in one grouped query.

    The partial index of active warnings on branch and severity carries the
    family and first-seen date (monitoring migration 0019), so PostgreSQL
    counts from that index alone, with one filtered count per age band.
    """
    conditions = _age_conditions(as_of)
    grouped = (
        EarlyWarning.objects.filter(ACTIVE)
        .values("family", "severity")
        .annotate(
            **{
                f"age_{index}": Count("severity", filter=condition)
                for index, condition in enumerate(conditions.values())
            }
        )
        .order_by("family", "severity")
    )
    by_family: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(Severity.values, 0))
    by_age: dict[str, int] = dict.fromkeys(conditions, 0)
    for row in grouped:
        for index, code in enumerate(conditions):
            by_family[row["family"]][row["severity"]] += row[f"age_{index}"]
            by_age[code] += row[f"age_{index}"]
    families = [
        (family.value, str(family.label), by_family[family.value]) for family in WarningFamily
    ]
    ages = [(code, str(AGE_BUCKET_LABELS[code]), by_age[code]) for code, _y, _o in AGE_BUCKETS]
    return WarningMatrix(families=families, ages=ages, total=sum(by_age.values()))


@dataclass(frozen=True)
class OfficerWarnings:
    officer_id: int | None
    label: str
    counts: dict[str, int]


def warnings_by_officer(branch_ids: list[int]) -> list[OfficerWarnings]:
    """Count the branches' active warnings by their loan's officer and severity, in one query.

    A warning carries a copy of its loan's officer, and the partial index
    of active warnings on branch and severity includes it, so PostgreSQL
    counts from that index alone and joins the few officers' names to it.
    Joined through the loans instead, the branch's 125,000 loans at
    1,000,000 took 189 ms (benchmarks/dashboards.py).
    """
    grouped = (
        EarlyWarning.objects.filter(ACTIVE, branch_id__in=branch_ids)
        .values(
            "officer_id",
            "officer__username",
            "officer__first_name",
            "officer__last_name",
            "severity",
        )
        .annotate(count=Count("severity"))
        .order_by()
    )
    labels: dict[int | None, str] = {}
    counts: dict[int | None, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(Severity.values, 0)
    )
    for row in grouped:
        pk = row["officer_id"]
        counts[pk][row["severity"]] = row["count"]
        labels[pk] = _person(row, "officer__")
    rows = [OfficerWarnings(pk, labels[pk], counts[pk]) for pk in counts]
    return sorted(rows, key=lambda row: (row.officer_id is None, row.label))


@dataclass(frozen=True)
class OfficerOverview:
    """One officer's line in the branch manager's table: portfolio, warnings and tasks."""

    officer_id: int | None
    label: str
    totals: Totals | None
    warnings: dict[str, int]
    tasks: dict[str, int]

    @property
    def task_columns(self) -> list[tuple[str, int]]:
        """Return (bucket, count) in the order of TASK_BUCKETS, the table's columns."""
        return [(code, self.tasks.get(code, 0)) for code in TASK_BUCKETS]


def officer_overview(
    portfolio: list[GroupRow], warnings: list[OfficerWarnings], tasks: list[OfficerTasks]
) -> list[OfficerOverview]:
    """Merge the per-officer figures of the three sources, every officer that has any."""
    labels: dict[int | None, str] = {}
    totals: dict[int | None, Totals] = {}
    for row in portfolio:
        pk = int(row.code) if row.code else None
        labels[pk], totals[pk] = row.label, row.totals
    warning_counts = {row.officer_id: row.counts for row in warnings}
    task_counts_by_officer = {row.officer_id: row.counts for row in tasks}
    for row in (*warnings, *tasks):
        labels.setdefault(row.officer_id, row.label)
    rows = [
        OfficerOverview(
            officer_id=pk,
            label=label,
            totals=totals.get(pk),
            warnings=warning_counts.get(pk, dict.fromkeys(Severity.values, 0)),
            tasks=task_counts_by_officer.get(pk, dict.fromkeys(TASK_BUCKETS, 0)),
        )
        for pk, label in labels.items()
    ]
    return sorted(rows, key=lambda row: (row.officer_id is None, row.label))


# ---- Committee --------------------------------------------------------------------------


@dataclass(frozen=True)
class CommitteeFigures:
    pending: int
    downgrades: int
    upgrades: int
    oldest_pending_at: datetime | None
    unratified_floors: int
    oldest_unratified_on: date | None


def committee_figures() -> CommitteeFigures:
    """Count pending proposals by direction and unratified floor changes, in two queries.

    A downgrade proposes a worse class (a higher number), an upgrade a better one.
    """
    proposals = ClassificationProposal.objects.filter(status=ProposalStatus.PENDING).aggregate(
        pending=Count("pk"),
        downgrades=Count("pk", filter=Q(proposed_class__gt=F("current_class"))),
        upgrades=Count("pk", filter=Q(proposed_class__lt=F("current_class"))),
        oldest=Min("created_at"),
    )
    # Counting the date, which the partial index on unratified floor changes
    # (monitoring migration 0016) contains, lets PostgreSQL read that index alone.
    unratified = ClassificationChange.objects.filter(source=ChangeSource.FLOOR, ratified=False)
    floors = unratified.aggregate(count=Count("as_of"), oldest=Min("as_of"))
    return CommitteeFigures(
        pending=proposals["pending"],
        downgrades=proposals["downgrades"],
        upgrades=proposals["upgrades"],
        oldest_pending_at=proposals["oldest"],
        unratified_floors=floors["count"],
        oldest_unratified_on=floors["oldest"],
    )


# ---- Recent changes for auditors ------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One history row of an audited record, as the auditor's list shows it."""

    changed_at: datetime
    kind: str
    kind_label: str
    object_id: int
    action: str
    is_deletion: bool
    changed_by: str
    summary: str
    loan_id: int | None


_ACTIONS = {"+": _("Created"), "~": _("Changed"), "-": _("Deleted")}
# The history of each audited model the list reads: kind, label, model and the
# fields of the version that its one-line summary shows.
_HISTORY_SOURCES = (
    ("loan", _("Loan"), Loan, ("contract_number", "risk_class", "ifrs9_stage", "status")),
    (
        "warning",
        _("Warning"),
        EarlyWarning,
        ("loan_id", "loan__contract_number", "rule_code", "severity", "status"),
    ),
    (
        "proposal",
        _("Classification proposal"),
        ClassificationProposal,
        ("loan_id", "loan__contract_number", "current_class", "proposed_class", "status"),
    ),
    (
        "inspection",
        _("Inspection"),
        Inspection,
        ("loan_id", "loan__contract_number", "kind", "status", "due_date"),
    ),
)


def recent_changes(limit: int = RECENT_CHANGES) -> list[Change]:
    """Return the latest history rows of loans, warnings, proposals and inspections.

    One query per model reads its `limit` latest rows through the index on
    the history date; the rows are merged here, newest first.
    """
    changes: list[Change] = []
    for kind, label, model, fields in _HISTORY_SOURCES:
        versions = model.history.order_by("-history_date", "-history_id").values(
            "history_date",
            "history_type",
            "history_user__username",
            "history_user__first_name",
            "history_user__last_name",
            "id",
            *fields,
        )[:limit]
        changes.extend(_change(kind, label, model, version) for version in versions)
    changes.sort(key=lambda change: change.changed_at, reverse=True)
    return changes[:limit]


def _change(kind: str, label: str, model, version: dict) -> Change:
    first = version["history_user__first_name"] or ""
    last = version["history_user__last_name"] or ""
    who = f"{first} {last}".strip() or version["history_user__username"] or ""
    return Change(
        changed_at=version["history_date"],
        kind=kind,
        kind_label=str(label),
        object_id=version["id"],
        action=str(_ACTIONS.get(version["history_type"], version["history_type"])),
        is_deletion=version["history_type"] == "-",
        changed_by=who,
        summary=_change_summary(kind, model, version),
        loan_id=version["id"] if kind == "loan" else version.get("loan_id"),
    )


def _choice_label(model, name: str, value) -> str:
    choices = dict(model._meta.get_field(name).flatchoices)
    return str(choices.get(value, value))


def _change_summary(kind: str, model, version: dict) -> str:
    if kind == "loan":
        return _("%(contract)s: %(risk_class)s, stage %(stage)s, %(status)s") % {
            "contract": version["contract_number"],
            "risk_class": _choice_label(model, "risk_class", version["risk_class"]),
            "stage": version["ifrs9_stage"],
            "status": _choice_label(model, "status", version["status"]).lower(),
        }
    contract = version["loan__contract_number"] or f"#{version['loan_id']}"
    if kind == "warning":
        return _("%(rule)s on %(contract)s: %(severity)s, %(status)s") % {
            "rule": version["rule_code"],
            "contract": contract,
            "severity": _choice_label(model, "severity", version["severity"]).lower(),
            "status": _choice_label(model, "status", version["status"]).lower(),
        }
    if kind == "proposal":
        return _("%(contract)s: %(current)s to %(proposed)s, %(status)s") % {
            "contract": contract,
            "current": _choice_label(model, "current_class", version["current_class"]),
            "proposed": _choice_label(model, "proposed_class", version["proposed_class"]),
            "status": _choice_label(model, "status", version["status"]).lower(),
        }
    return _("%(kind)s of %(contract)s due %(due)s: %(status)s") % {
        "kind": _choice_label(model, "kind", version["kind"]),
        "contract": contract,
        "due": version["due_date"].isoformat(),
        "status": _choice_label(model, "status", version["status"]).lower(),
    }
