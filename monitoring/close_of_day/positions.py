"""Close-of-day step 1: days past due, overdue and outstanding amounts.

One INSERT ... SELECT ... ON CONFLICT per chunk of loan ids. Instalments
settled on or before the as-of date are skipped without reading their
allocations; the others are joined to the allocations dated up to the as-of
date, so the result is the same for any date, past or present. Statements
take the named parameters `as_of`, `low` and `high` (the chunk's loan ids).
"""

from __future__ import annotations

from datetime import date

from django.db import connection

from ..sql import as_of_param, days_between

# Days-past-due buckets: (code, lowest days, highest days); "current" is 0.
DPD_BUCKETS = (
    ("current", 0, 0),
    ("1-30", 1, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("91-180", 91, 180),
    ("181-360", 181, 360),
    ("over_360", 361, None),
)


def dpd_bucket(days_past_due: int) -> str:
    for code, low, high in DPD_BUCKETS:
        if days_past_due >= low and (high is None or days_past_due <= high):
            return code
    raise ValueError(f"Invalid days past due: {days_past_due}")


def _bucket_case(column: str) -> str:
    whens = " ".join(
        f"WHEN {column} <= {high} THEN '{code}'" for code, _low, high in DPD_BUCKETS if high
    )
    return f"CASE {whens} ELSE 'over_360' END"


def arrears_query() -> str:
    """Return the arrears of each loan of the chunk that has an unsettled instalment.

    An instalment is overdue when its due date is before the as-of date: on
    the due date itself nothing is overdue yet and days past due is 0.
    """
    d = as_of_param()
    return f"""
        SELECT x.loan_id,
               ROUND(SUM(x.principal_left), 2) AS outstanding_principal,
               ROUND(SUM(CASE WHEN x.due_date < {d} THEN x.principal_left ELSE 0 END), 2)
                   AS overdue_principal,
               ROUND(SUM(CASE WHEN x.due_date < {d} THEN x.interest_left ELSE 0 END), 2)
                   AS overdue_interest,
               MIN(CASE WHEN x.due_date < {d}
                         AND (x.principal_left > 0 OR x.interest_left > 0)
                        THEN x.due_date END) AS oldest_unpaid_due_date
        FROM (
            SELECT i.loan_id, i.due_date,
                   ROUND(i.principal_due - COALESCE(SUM(a.principal), 0), 2) AS principal_left,
                   ROUND(i.interest_due - COALESCE(SUM(a.interest), 0), 2) AS interest_left
            FROM loans_instalment i
            LEFT JOIN loans_repaymentallocation a
                   ON a.instalment_id = i.id AND a.value_date <= {d}
            WHERE i.loan_id BETWEEN %(low)s AND %(high)s
              AND (i.settled_on IS NULL OR i.settled_on > {d})
            GROUP BY i.id, i.loan_id, i.due_date, i.principal_due, i.interest_due
        ) x
        GROUP BY x.loan_id
    """


def _positions_insert() -> str:
    d = as_of_param()
    is_open = f"(l.closed_on IS NULL OR l.closed_on > {d})"
    days = (
        f"CASE WHEN {is_open} AND a.oldest_unpaid_due_date IS NOT NULL "
        f"THEN {days_between(d, 'a.oldest_unpaid_due_date')} ELSE 0 END"
    )
    return f"""
        INSERT INTO loans_loanposition (
            loan_id, as_of, is_open, outstanding_principal, overdue_principal,
            overdue_interest, oldest_unpaid_due_date, days_past_due, dpd_bucket,
            last_default_trigger_on, specific_provision, general_provision
        )
        SELECT l.id, {d}, {is_open},
               CASE WHEN {is_open} THEN COALESCE(a.outstanding_principal, 0) ELSE 0 END,
               CASE WHEN {is_open} THEN COALESCE(a.overdue_principal, 0) ELSE 0 END,
               CASE WHEN {is_open} THEN COALESCE(a.overdue_interest, 0) ELSE 0 END,
               CASE WHEN {is_open} THEN a.oldest_unpaid_due_date END,
               {days},
               {_bucket_case(days)},
               NULL, 0, 0
        FROM loans_loan l
        LEFT JOIN ({arrears_query()}) a ON a.loan_id = l.id
        WHERE l.id BETWEEN %(low)s AND %(high)s AND l.disbursement_date <= {d}
        ON CONFLICT (loan_id) DO UPDATE SET
            as_of = excluded.as_of,
            is_open = excluded.is_open,
            outstanding_principal = excluded.outstanding_principal,
            overdue_principal = excluded.overdue_principal,
            overdue_interest = excluded.overdue_interest,
            oldest_unpaid_due_date = excluded.oldest_unpaid_due_date,
            days_past_due = excluded.days_past_due,
            dpd_bucket = excluded.dpd_bucket
    """


def refresh_positions(as_of: date, low: int, high: int) -> dict[str, int]:
    """Write the position of every loan of the chunk disbursed by `as_of`.

    Loans disbursed after `as_of` lose any position left by a run for a
    later date, so figures never mix dates.
    """
    params = {"as_of": as_of, "low": low, "high": high}
    with connection.cursor() as cursor:
        cursor.execute(_positions_insert(), params)
        written = cursor.rowcount
        cursor.execute(
            f"""
            DELETE FROM loans_loanposition
            WHERE loan_id IN (
                SELECT id FROM loans_loan
                WHERE id BETWEEN %(low)s AND %(high)s AND disbursement_date > {as_of_param()}
            )
            """,
            params,
        )
        removed = cursor.rowcount
    return {"positions_written": written, "positions_removed": removed}
