"""Report section on the month's recoveries and write-offs.

A recovery is a repayment dated in the month on a loan that was
non-performing (substandard, doubtful or loss) on the previous month end or
on the month end, or that was written off on or before the repayment date.
Both parts count a loan in the branch it belongs to now, because a written-
off loan may have left the month's snapshots long ago.
"""

from __future__ import annotations

from django.db import connection

from loans.models import Product, RiskClass

from ..snapshots import SNAPSHOT_TABLE
from .amounts import ZERO, money, money_text
from .periods import ReportScope

WRITTEN_OFF = "written_off"
NON_PERFORMING = "non_performing"


def _recoveries_query(scope: ReportScope) -> str:
    """Return the month's recoveries per category: repayments, loans and amount.

    It starts from the few loans that can have recoveries, so the repayments
    are read through their (loan, value date) index instead of in full.
    """
    npl = ", ".join(str(int(value)) for value in RiskClass.non_performing())
    branch_join = ""
    if scope.branch_id is not None:
        branch_join = "JOIN loans_loan l ON l.id = c.loan_id AND l.branch_id = %(branch_id)s"
    return f"""
        SELECT CASE WHEN w.written_off_on IS NOT NULL AND w.written_off_on <= r.value_date
                    THEN '{WRITTEN_OFF}' ELSE '{NON_PERFORMING}' END,
               COUNT(*), COUNT(DISTINCT r.loan_id), SUM(r.amount)
        FROM (
            SELECT s.loan_id FROM {SNAPSHOT_TABLE} s
            WHERE s.month_end IN (%(previous_month_end)s, %(month_end)s)
              AND s.risk_class IN ({npl})
            UNION
            SELECT loan_id FROM loans_writeoff WHERE written_off_on <= %(month_end)s
        ) c
        {branch_join}
        JOIN loans_repayment r ON r.loan_id = c.loan_id
        LEFT JOIN loans_writeoff w ON w.loan_id = c.loan_id
        WHERE r.value_date >= %(month_start)s AND r.value_date <= %(month_end)s
        GROUP BY CASE WHEN w.written_off_on IS NOT NULL AND w.written_off_on <= r.value_date
                      THEN '{WRITTEN_OFF}' ELSE '{NON_PERFORMING}' END
    """


def _write_offs_query(scope: ReportScope) -> str:
    return f"""
        SELECT l.product, COUNT(*), SUM(w.principal), SUM(w.interest)
        FROM loans_writeoff w JOIN loans_loan l ON l.id = w.loan_id
        WHERE w.written_off_on >= %(month_start)s AND w.written_off_on <= %(month_end)s
          AND {scope.branch_condition("l.branch_id")}
        GROUP BY l.product
    """


def _fetch(statement: str, scope: ReportScope) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, scope.params())
        return cursor.fetchall()


def recoveries_section(scope: ReportScope) -> dict:
    recovered = {
        category: (repayments, loans, money(amount))
        for category, repayments, loans, amount in _fetch(_recoveries_query(scope), scope)
    }
    recovery_rows = []
    for category in (NON_PERFORMING, WRITTEN_OFF):
        repayments, loans, amount = recovered.get(category, (0, 0, ZERO))
        recovery_rows.append(
            {
                "category": category,
                "repayments": repayments,
                "loans": loans,
                "amount": money_text(amount),
            }
        )

    written_off = {
        product: (loans, money(principal), money(interest))
        for product, loans, principal, interest in _fetch(_write_offs_query(scope), scope)
    }
    write_off_rows = []
    for product in Product.values:
        loans, principal, interest = written_off.get(product, (0, ZERO, ZERO))
        write_off_rows.append(
            {
                "product": product,
                "loans": loans,
                "principal": money_text(principal),
                "interest": money_text(interest),
                "total": money_text(principal + interest),
            }
        )
    return {
        "recoveries": recovery_rows,
        "recovered_amount": money_text(sum((value[2] for value in recovered.values()), ZERO)),
        "recovery_repayments": sum(row["repayments"] for row in recovery_rows),
        "write_offs": write_off_rows,
        "written_off_loans": sum(row["loans"] for row in write_off_rows),
        "written_off_principal": money_text(
            sum((value[1] for value in written_off.values()), ZERO)
        ),
        "written_off_interest": money_text(sum((value[2] for value in written_off.values()), ZERO)),
    }
