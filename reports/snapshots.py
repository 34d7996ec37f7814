"""Month-end snapshots of the loan book, written set-wise per chunk of loan ids.

The close-of-day run for the last day of a month calls
`write_month_end_snapshots` for each chunk after classification, so every
row carries the class, stage and provisions the run has just set. A
snapshot row is written for each loan open on the month end and for each
loan closed during that month: the monthly report needs the second kind to
tell paid-off and written-off loans apart in the migration matrix.

The upsert on (month_end, loan) means that a re-run for the same date
rewrites the rows in place instead of adding new ones, and a loan that no
longer qualifies (its disbursement moved past the date, say) loses its row.
Both statements work on PostgreSQL and SQLite.
"""

from __future__ import annotations

import calendar
from datetime import date

from django.db import connection

from monitoring.sql import analyze, as_of_param, is_postgresql

from .models import LoanMonthSnapshot

SNAPSHOT_TABLE = LoanMonthSnapshot._meta.db_table

# Columns copied from the loan (l) and its position (p), in insert order.
_COLUMNS = {
    "loan_id": "l.id",
    "branch_id": "l.branch_id",
    "borrower_id": "l.borrower_id",
    "officer_id": "l.officer_id",
    "product": "l.product",
    "currency": "l.currency",
    "status": "l.status",
    "is_open": "p.is_open",
    "risk_class": "l.risk_class",
    "ifrs9_stage": "l.ifrs9_stage",
    "outstanding_principal": "p.outstanding_principal",
    "overdue_principal": "p.overdue_principal",
    "overdue_interest": "p.overdue_interest",
    "days_past_due": "p.days_past_due",
    "dpd_bucket": "p.dpd_bucket",
    "specific_provision": "p.specific_provision",
    "general_provision": "p.general_provision",
}


# Share of the snapshot rows written since PostgreSQL last analysed the table
# above which `refresh_snapshot_statistics` analyses it again.
STALE_STATISTICS_SHARE = 0.1


def is_month_end(as_of: date) -> bool:
    return as_of.day == calendar.monthrange(as_of.year, as_of.month)[1]


def _selected_loans(from_current_positions: bool) -> str:
    """Return the FROM and WHERE clauses of the chunk's loans that get a snapshot row.

    A loan qualifies when it was disbursed by the month end and its position
    is open, or when it was closed during the month. With
    `from_current_positions` the positions are read whatever their as-of date.
    """
    d = as_of_param()
    position_date = "" if from_current_positions else f"AND p.as_of = {d}"
    return f"""
        FROM loans_loan l
        JOIN loans_loanposition p ON p.loan_id = l.id
        WHERE l.id BETWEEN %(low)s AND %(high)s AND p.loan_id BETWEEN %(low)s AND %(high)s
          {position_date}
          AND l.disbursement_date <= {d}
          AND (p.is_open OR (l.closed_on >= %(month_start)s AND l.closed_on <= {d}))
    """


def _upsert(from_current_positions: bool) -> str:
    names = ", ".join(_COLUMNS)
    values = ", ".join(_COLUMNS.values())
    updated = [name for name in [*_COLUMNS, "created_by_run_id"] if name != "loan_id"]
    updates = ",\n            ".join(f"{name} = excluded.{name}" for name in updated)
    return f"""
        INSERT INTO {SNAPSHOT_TABLE} (month_end, {names}, created_by_run_id)
        SELECT {as_of_param()}, {values}, %(run_id)s
        {_selected_loans(from_current_positions)}
        ON CONFLICT (month_end, loan_id) DO UPDATE SET
            {updates}
    """


def _delete_stale(from_current_positions: bool) -> str:
    return f"""
        DELETE FROM {SNAPSHOT_TABLE}
        WHERE month_end = {as_of_param()} AND loan_id BETWEEN %(low)s AND %(high)s
          AND loan_id NOT IN (SELECT l.id {_selected_loans(from_current_positions)})
    """


def write_month_end_snapshots(
    as_of: date,
    low: int,
    high: int,
    run_id: int | None,
    *,
    from_current_positions: bool = False,
) -> int:
    """Write the month-end snapshot of the loans with ids from `low` to `high`; return the rows.

    Call it in the chunk's transaction once classification has run for
    `as_of`, the last day of a month. `from_current_positions` copies the
    positions as they are, whatever date they were computed for; the
    `snapshot_month_end` command uses it to backfill a missed month end.
    """
    if not is_month_end(as_of):
        raise ValueError(f"Invalid month end {as_of}: not the last day of its month.")
    params = {
        "as_of": as_of,
        "month_start": as_of.replace(day=1),
        "low": low,
        "high": high,
        "run_id": run_id,
    }
    with connection.cursor() as cursor:
        cursor.execute(_upsert(from_current_positions), params)
        written = cursor.rowcount
        cursor.execute(_delete_stale(from_current_positions), params)
    return written


def refresh_snapshot_statistics() -> bool:
    """Analyse the snapshot table when a tenth of it changed since its last analysis.

    A month end adds as many rows as there are loans. Until autovacuum
    analyses them, the planner reckons with a handful of rows per month end
    and joins a million of them one by one. Return whether it analysed.
    """
    if not is_postgresql():
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT n_live_tup, n_mod_since_analyze FROM pg_stat_user_tables WHERE relname = %s",
            [SNAPSHOT_TABLE],
        )
        row = cursor.fetchone()
        if row is None or row[1] <= STALE_STATISTICS_SHARE * max(row[0], 1):
            return False
        analyze(cursor, SNAPSHOT_TABLE)
    return True
