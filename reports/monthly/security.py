"""Report sections on what secures the loans open at the month end: collateral and guarantees.

Pledges and guarantees are read as they are when the report is computed.
The valuation of each item is its latest one dated on or before the month
end. The report's frozen figures keep the result.
"""

from __future__ import annotations

from django.db import connection

from loans.models import CollateralKind, GuarantorKind

from ..snapshots import SNAPSHOT_TABLE
from .amounts import ZERO, money, money_text, percent_text
from .periods import ReportScope


def _fetch(statement: str, scope: ReportScope) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, scope.params())
        return cursor.fetchall()


def _collateral_per_loan(scope: ReportScope) -> str:
    """Return the pledges, pledged value and balance per open loan and collateral kind.

    The pledged value of an item is its latest valuation by the month end
    times the share pledged to the loan, rounded to the cent. An item with
    no valuation by then counts for nothing.
    """
    return f"""
        SELECT c.kind, s.loan_id, MAX(s.outstanding_principal) AS balance,
               COUNT(*) AS pledges,
               SUM(CASE WHEN v.value IS NULL THEN 1 ELSE 0 END) AS unvalued,
               SUM(COALESCE(ROUND(v.value * pl.share, 2), 0)) AS pledged_value
        FROM loans_collateralpledge pl
        JOIN {SNAPSHOT_TABLE} s
          ON s.loan_id = pl.loan_id AND s.month_end = %(month_end)s AND s.is_open
        JOIN loans_collateral c ON c.id = pl.collateral_id
        LEFT JOIN (
            SELECT latest.collateral_id, cv.value
            FROM (
                SELECT collateral_id, MAX(valued_on) AS valued_on
                FROM loans_collateralvaluation
                WHERE valued_on <= %(month_end)s
                GROUP BY collateral_id
            ) latest
            JOIN loans_collateralvaluation cv
              ON cv.collateral_id = latest.collateral_id AND cv.valued_on = latest.valued_on
        ) v ON v.collateral_id = pl.collateral_id
        WHERE {scope.branch_condition("s.branch_id")}
        GROUP BY c.kind, s.loan_id
    """


def collateral_section(scope: ReportScope, total_balance) -> dict:
    """Return the pledged value against the balance of the loans it secures, by collateral kind.

    A loan secured by two kinds counts in both rows, so the rows' loans and
    balances do not add up to the total, which counts each loan once.
    """
    per_loan = _collateral_per_loan(scope)
    by_kind = {
        kind: (loans, int(pledges), int(unvalued), money(value), money(balance))
        for kind, loans, pledges, unvalued, value, balance in _fetch(
            f"""
            SELECT x.kind, COUNT(*), SUM(x.pledges), SUM(x.unvalued), SUM(x.pledged_value),
                   SUM(x.balance)
            FROM ({per_loan}) x GROUP BY x.kind
            """,
            scope,
        )
    }
    [(secured_loans, secured_balance)] = _fetch(
        f"""
        SELECT COUNT(*), SUM(s.outstanding_principal)
        FROM {SNAPSHOT_TABLE} s
        WHERE s.month_end = %(month_end)s AND s.is_open
          AND {scope.branch_condition("s.branch_id")}
          AND EXISTS (SELECT 1 FROM loans_collateralpledge pl WHERE pl.loan_id = s.loan_id)
        """,
        scope,
    )
    rows = []
    for kind in CollateralKind.values:
        loans, pledges, unvalued, value, balance = by_kind.get(kind, (0, 0, 0, ZERO, ZERO))
        rows.append(
            {
                "kind": kind,
                "pledges": pledges,
                "unvalued_pledges": unvalued,
                "loans": loans,
                "pledged_value": money_text(value),
                "balance": money_text(balance),
                "coverage": percent_text(value, balance),
            }
        )
    pledged_total = sum((row[3] for row in by_kind.values()), ZERO)
    secured_balance = money(secured_balance)
    return {
        "rows": rows,
        "pledges": sum(row["pledges"] for row in rows),
        "unvalued_pledges": sum(row["unvalued_pledges"] for row in rows),
        "pledged_value": money_text(pledged_total),
        "secured_loans": secured_loans,
        "secured_balance": money_text(secured_balance),
        "unsecured_balance": money_text(total_balance - secured_balance),
        "balance": money_text(total_balance),
        "secured_coverage": percent_text(pledged_total, secured_balance),
        "coverage": percent_text(pledged_total, total_balance),
    }


def _guaranteed_amount(balance: str) -> str:
    """Return SQL for a guarantee's amount: its amount, a percentage of the balance, or the lesser.

    `balance` is the loan's outstanding principal at the month end.
    """
    share = f"ROUND({balance} * g.percentage / 100, 2)"
    return f"""
        CASE WHEN g.amount IS NULL THEN {share}
             WHEN g.percentage IS NULL THEN g.amount
             WHEN g.amount < {share} THEN g.amount
             ELSE {share} END
    """


def guarantees_section(scope: ReportScope) -> dict:
    """Return the guarantees valid on the month end of open loans, by guarantor kind.

    A guarantee of a fixed amount counts that amount, one of a percentage
    that share of the loan's balance, one with both the lesser of the two.
    """
    groups = _fetch(
        f"""
        SELECT x.kind, COUNT(*), SUM(x.guarantees), SUM(x.amount), SUM(x.balance)
        FROM (
            SELECT gr.kind, s.loan_id, COUNT(*) AS guarantees,
                   MAX(s.outstanding_principal) AS balance,
                   SUM({_guaranteed_amount("s.outstanding_principal")}) AS amount
            FROM loans_guarantee g
            JOIN {SNAPSHOT_TABLE} s
              ON s.loan_id = g.loan_id AND s.month_end = %(month_end)s AND s.is_open
            JOIN loans_guarantor gr ON gr.id = g.guarantor_id
            WHERE g.valid_from <= %(month_end)s
              AND (g.valid_to IS NULL OR g.valid_to >= %(month_end)s)
              AND {scope.branch_condition("s.branch_id")}
            GROUP BY gr.kind, s.loan_id
        ) x
        GROUP BY x.kind
        """,
        scope,
    )
    by_kind = {
        kind: (loans, int(guarantees), money(amount), money(balance))
        for kind, loans, guarantees, amount, balance in groups
    }
    rows = []
    for kind in GuarantorKind.values:
        loans, guarantees, amount, balance = by_kind.get(kind, (0, 0, ZERO, ZERO))
        rows.append(
            {
                "kind": kind,
                "guarantees": guarantees,
                "loans": loans,
                "amount": money_text(amount),
                "balance": money_text(balance),
                "coverage": percent_text(amount, balance),
            }
        )
    return {
        "rows": rows,
        "guarantees": sum(row["guarantees"] for row in rows),
        "amount": money_text(sum((value[2] for value in by_kind.values()), ZERO)),
    }
