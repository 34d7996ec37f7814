"""The ten largest and the ten riskiest borrowers at the month end.

A borrower's figures are those of its loans open on the month end within
the report's scope: in a branch report, only its loans in that branch.
Largest orders by balance; riskiest by worst class, then most days past
due, then balance. Ties fall to the lower borrower id, so a list never
changes between two computations of the same data.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import connection

from loans.models import Borrower

from ..snapshots import SNAPSHOT_TABLE
from .amounts import money, money_text, percent_text
from .periods import ReportScope

LIST_LENGTH = 10
LARGEST = "largest"
RISKIEST = "riskiest"


def _top_borrowers_query(scope: ReportScope) -> str:
    return f"""
        WITH b AS (
            SELECT s.borrower_id, COUNT(*) AS loans, SUM(s.outstanding_principal) AS balance,
                   MAX(s.risk_class) AS worst_class, MAX(s.days_past_due) AS max_dpd
            FROM {SNAPSHOT_TABLE} s
            WHERE s.month_end = %(month_end)s AND s.is_open
              AND {scope.branch_condition("s.branch_id")}
            GROUP BY s.borrower_id
        )
        SELECT * FROM (
            SELECT '{LARGEST}', b.* FROM b
            ORDER BY b.balance DESC, b.borrower_id LIMIT {LIST_LENGTH}
        ) largest
        UNION ALL
        SELECT * FROM (
            SELECT '{RISKIEST}', b.* FROM b
            ORDER BY b.worst_class DESC, b.max_dpd DESC, b.balance DESC, b.borrower_id
            LIMIT {LIST_LENGTH}
        ) riskiest
    """


def borrowers_section(scope: ReportScope, total_balance: Decimal) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(_top_borrowers_query(scope), scope.params())
        rows = cursor.fetchall()
    names = {
        borrower["pk"]: borrower
        for borrower in Borrower.objects.filter(pk__in={row[1] for row in rows}).values(
            "pk", "legal_name", "registration_number"
        )
    }
    lists: dict[str, list[dict]] = {LARGEST: [], RISKIEST: []}
    for name, borrower_id, loans, balance, worst_class, max_dpd in rows:
        borrower = names.get(borrower_id, {})
        lists[name].append(
            {
                "rank": len(lists[name]) + 1,
                "borrower_id": borrower_id,
                "name": borrower.get("legal_name", ""),
                "registration_number": borrower.get("registration_number", ""),
                "loans": loans,
                "balance": money_text(balance),
                "share": percent_text(money(balance), total_balance),
                "worst_class": worst_class,
                "max_days_past_due": max_dpd,
            }
        )
    return lists
