"""The month's migration matrix: from each class at the start of the month to the end.

Rows are the classes of the loans open on the previous month end, plus a
row of new loans (no open snapshot on the previous month end). Columns are
the classes of the loans open on the month end, plus the ways a loan left:
paid off, written off, or other (closed with another status, or missing
from the month end's snapshot). So each row sums to the loans and balance
of its class at the start of the month, and each class column to the loans
and balance of that class at the end.

Each cell has the loans, their balance at the start of the month and their
balance at the end. A loan moved to another branch during the month counts
in the branch of its month-end row, so the branch matrices add up to the
bank's.
"""

from __future__ import annotations

from django.db import connection

from loans.models import LoanStatus, RiskClass

from ..snapshots import SNAPSHOT_TABLE
from .amounts import ZERO, money, money_text
from .periods import ReportScope

NEW = "new"
PAID_OFF = "paid_off"
WRITTEN_OFF = "written_off"
OTHER = "other"
ROWS = [*(str(value) for value in RiskClass.values), NEW]
COLUMNS = [*(str(value) for value in RiskClass.values), PAID_OFF, WRITTEN_OFF, OTHER]


def _matrix_query(scope: ReportScope) -> str:
    """Return the loans and balances grouped by start class and end state.

    The first part reads the loans open at the start, the second the loans
    of the month-end snapshot that were not. Start class NULL marks a new loan.
    """
    t = SNAPSHOT_TABLE
    return f"""
        SELECT p.risk_class, e.is_open, e.risk_class, e.status, COUNT(*),
               SUM(p.outstanding_principal),
               SUM(CASE WHEN e.is_open THEN e.outstanding_principal ELSE 0 END)
        FROM {t} p
        LEFT JOIN {t} e ON e.loan_id = p.loan_id AND e.month_end = %(month_end)s
        WHERE p.month_end = %(previous_month_end)s AND p.is_open
          AND {scope.branch_condition("COALESCE(e.branch_id, p.branch_id)")}
        GROUP BY p.risk_class, e.is_open, e.risk_class, e.status
        UNION ALL
        SELECT NULL, e.is_open, e.risk_class, e.status, COUNT(*), 0,
               SUM(CASE WHEN e.is_open THEN e.outstanding_principal ELSE 0 END)
        FROM {t} e
        WHERE e.month_end = %(month_end)s AND {scope.branch_condition("e.branch_id")}
          AND NOT EXISTS (
              SELECT 1 FROM {t} p
              WHERE p.loan_id = e.loan_id AND p.month_end = %(previous_month_end)s AND p.is_open
          )
        GROUP BY e.is_open, e.risk_class, e.status
    """


def _column_of(is_open: bool | None, risk_class: int | None, status: str | None) -> str:
    if is_open:
        return str(risk_class)
    if status == LoanStatus.PAID_OFF:
        return PAID_OFF
    if status == LoanStatus.WRITTEN_OFF:
        return WRITTEN_OFF
    return OTHER


def _empty_cell() -> dict:
    return {"loans": 0, "balance_start": ZERO, "balance_end": ZERO}


def _cell_text(cell: dict) -> dict:
    return {
        "loans": cell["loans"],
        "balance_start": money_text(cell["balance_start"]),
        "balance_end": money_text(cell["balance_end"]),
    }


def migration_section(scope: ReportScope) -> dict:
    cells = {(row, column): _empty_cell() for row in ROWS for column in COLUMNS}
    with connection.cursor() as cursor:
        cursor.execute(_matrix_query(scope), scope.params())
        groups = cursor.fetchall()
    for start_class, is_open, end_class, status, loans, balance_start, balance_end in groups:
        row = NEW if start_class is None else str(start_class)
        cell = cells[(row, _column_of(is_open, end_class, status))]
        cell["loans"] += loans
        cell["balance_start"] += money(balance_start)
        cell["balance_end"] += money(balance_end)

    rows = []
    for row in ROWS:
        row_cells = [cells[(row, column)] for column in COLUMNS]
        total = _cell_text(_sum_cells(row_cells))
        rows.append({"from": row, **total, "cells": [_cell_text(cell) for cell in row_cells]})
    totals = [_cell_text(_sum_cells([cells[(row, column)] for row in ROWS])) for column in COLUMNS]
    return {"columns": COLUMNS, "rows": rows, "totals": totals}


def _sum_cells(cells: list[dict]) -> dict:
    total = _empty_cell()
    for cell in cells:
        total["loans"] += cell["loans"]
        total["balance_start"] += cell["balance_start"]
        total["balance_end"] += cell["balance_end"]
    return total
