"""Compute the figures of one monthly report, for the bank or one branch.

The figures are plain JSON: counts as integers, money and ratios as
strings (see `amounts`). Every statement is an aggregate, so the number of
queries does not depend on the size of the book. Every additive figure of
the bank's report is the sum of the same figure over the branch reports.

The sections and what they count:

- portfolio, classification, asset quality, provisions, borrowers: the
  month end's snapshot rows of open loans (`book`, `borrowers`);
- migration: the snapshots of the previous month end and the month end;
- warnings and inspections: their own tables (`activity`);
- collateral and guarantees: pledges, valuations and guarantees as they
  are, against the month end's snapshot (`security`);
- recoveries and write-offs: repayments and write-offs dated in the month.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django.db.models import Count, Q

from loans.models import Branch

from ..models import LoanMonthSnapshot
from ..snapshots import refresh_snapshot_statistics
from . import activity, book, borrowers, migration, recoveries, security
from .periods import ReportScope

# Version of the figures' layout, stored with them, so that pages reading an
# older report know which keys to expect.
FIGURES_SCHEMA = 1

# Section keys, in the report's order; each is a sheet of the Excel file.
SECTIONS = (
    "portfolio",
    "classification",
    "migration",
    "asset_quality",
    "provisions",
    "warnings",
    "inspections",
    "collateral",
    "guarantees",
    "borrowers",
    "recoveries",
)

ProgressCallback = Callable[[int, str], None]


class MissingSnapshotError(Exception):
    """The month end has no snapshot, so there is nothing to report."""


def _report_branches(scope: ReportScope, groups: book.BookGroups) -> dict[int, dict]:
    """Return code and name of each branch with a row in the branch tables, in code order.

    The bank's report lists the branches with open loans at the month end
    and those with provisions held recorded for the month.
    """
    if scope.branch_id is not None:
        branches = Branch.objects.filter(pk=scope.branch_id)
    else:
        recorded = book.recorded_provisions_held(scope)
        with_loans = Q(pk__in=list(groups.by["branch_id"]))
        branches = Branch.objects.filter(with_loans | Q(code__in=recorded))
    return {
        branch.pk: {"branch_code": branch.code, "name": branch.name}
        for branch in branches.order_by("code")
    }


def snapshot_counts(scope: ReportScope) -> dict[str, int]:
    """Count the snapshot rows of the whole bank at the month end and the previous one."""
    rows = (
        LoanMonthSnapshot.objects.filter(month_end__in=[scope.month_end, scope.previous_month_end])
        .values("month_end")
        .annotate(rows=Count("pk"))
        .order_by()
    )
    by_date = {row["month_end"]: row["rows"] for row in rows}
    return {
        "month_end": by_date.get(scope.month_end, 0),
        "previous_month_end": by_date.get(scope.previous_month_end, 0),
    }


def compute_figures(
    month: date, branch_id: int | None, on_progress: ProgressCallback | None = None
) -> dict:
    """Return the report's figures; raise MissingSnapshotError without a month-end snapshot.

    `on_progress(percent, step)` is called before each section with the
    share of the work done, from 0 to 100.
    """
    scope = ReportScope(month, branch_id)
    progress = on_progress or (lambda percent, step: None)
    snapshots = snapshot_counts(scope)
    if not snapshots["month_end"]:
        raise MissingSnapshotError(
            f"No month-end snapshot for {scope.month_end}: run close-of-day for that date, "
            f"or backfill it with manage.py snapshot_month_end --month-end {scope.month_end}."
        )

    figures: dict = {
        "schema": FIGURES_SCHEMA,
        "month": f"{month:%Y-%m}",
        "month_start": month.isoformat(),
        "month_end": scope.month_end.isoformat(),
        "previous_month_end": scope.previous_month_end.isoformat(),
        "snapshot_rows": snapshots,
    }
    progress(0, "portfolio")
    refresh_snapshot_statistics()
    groups = book.read_book_groups(scope)
    branches = _report_branches(scope, groups)
    figures["scope"] = _scope_figures(branch_id, branches)
    figures["portfolio"] = book.portfolio_section(scope, groups, branches)
    figures["classification"] = book.classification_section(groups)
    figures["asset_quality"] = book.asset_quality_section(groups)
    figures["provisions"] = book.provisions_section(scope, groups, branches)

    steps: list[tuple[str, Callable[[], dict]]] = [
        ("migration", lambda: migration.migration_section(scope)),
        ("warnings", lambda: activity.warnings_section(scope)),
        ("inspections", lambda: activity.inspections_section(scope)),
        ("collateral", lambda: security.collateral_section(scope, groups.total.balance)),
        ("guarantees", lambda: security.guarantees_section(scope)),
        ("borrowers", lambda: borrowers.borrowers_section(scope, groups.total.balance)),
        ("recoveries", lambda: recoveries.recoveries_section(scope)),
    ]
    for number, (key, compute) in enumerate(steps, start=1):
        progress(round(100 * number / (len(steps) + 1)), key)
        figures[key] = compute()
    progress(100, "done")
    return figures


def _scope_figures(branch_id: int | None, branches: dict[int, dict]) -> dict:
    if branch_id is None:
        return {"branch_id": None, "branch_code": None, "name": None}
    details = branches.get(branch_id, {"branch_code": None, "name": None})
    return {"branch_id": branch_id, **details}
