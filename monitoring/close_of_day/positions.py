"""Close-of-day step 1: days past due, overdue and outstanding amounts.

One INSERT ... SELECT ... ON CONFLICT per chunk of loan ids. Instalments
settled on or before the as-of date are skipped without reading their
allocations. The others that have a payment are joined to the allocations
dated up to the as-of date, so the result is the same for any date, past or
present. Statements take the named parameters `as_of`, `low` and `high`
(the chunk's loan ids).
"""

from __future__ import annotations

import uuid
from datetime import date

from django.db import connection

from ..sql import analyze, as_of_param, days_between
from .classification import ClassificationPolicy, current_policy, provisional_provisions

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
        f"WHEN {column} <= {high} THEN '{code}'"
        for code, _low, high in DPD_BUCKETS
        if high is not None
    )
    return f"CASE {whens} ELSE 'over_360' END"


def _allocated_by_as_of(component: str) -> str:
    """Return the instalment's `component` allocated up to the as-of date.

    An instalment with nothing paid has no allocation of principal or
    interest (allocations are never negative), so its allocations are not read.
    """
    return f"""
        CASE WHEN i.principal_paid + i.interest_paid = 0 THEN 0 ELSE (
            SELECT COALESCE(SUM(a.{component}), 0) FROM loans_repaymentallocation a
            WHERE a.instalment_id = i.id AND a.value_date <= {as_of_param()}
        ) END
    """


def _arrears_of_instalments(settled: str) -> str:
    """Return the arrears per loan of the chunk's instalments matching `settled`."""
    d = as_of_param()
    return f"""
        SELECT x.loan_id,
               SUM(x.principal_left) AS principal_left,
               SUM(CASE WHEN x.due_date < {d} THEN x.principal_left ELSE 0 END)
                   AS overdue_principal,
               SUM(CASE WHEN x.due_date < {d} THEN x.interest_left ELSE 0 END)
                   AS overdue_interest,
               MIN(CASE WHEN x.due_date < {d}
                         AND (x.principal_left > 0 OR x.interest_left > 0)
                        THEN x.due_date END) AS oldest_unpaid_due_date
        FROM (
            SELECT i.loan_id, i.due_date,
                   ROUND(i.principal_due - {_allocated_by_as_of("principal")}, 2)
                       AS principal_left,
                   ROUND(i.interest_due - {_allocated_by_as_of("interest")}, 2) AS interest_left
            FROM loans_instalment i
            WHERE i.loan_id BETWEEN %(low)s AND %(high)s AND {settled}
        ) x
        GROUP BY x.loan_id
    """


def arrears_query() -> str:
    """Return the arrears of each loan of the chunk that has an unsettled instalment.

    An instalment is overdue when its due date is before the as-of date: on
    the due date itself nothing is overdue yet and days past due is 0.

    The instalments not settled by the as-of date are read in two parts, so
    that each uses its own index and its rows arrive already in loan order.
    Those not settled at all come from the partial index on unsettled
    instalments. Those settled after the as-of date come from the index on
    `settled_on`, and there are none when the run is for today.
    """
    return f"""
        SELECT parts.loan_id,
               ROUND(SUM(parts.principal_left), 2) AS outstanding_principal,
               ROUND(SUM(parts.overdue_principal), 2) AS overdue_principal,
               ROUND(SUM(parts.overdue_interest), 2) AS overdue_interest,
               MIN(parts.oldest_unpaid_due_date) AS oldest_unpaid_due_date
        FROM (
            {_arrears_of_instalments("i.settled_on IS NULL")}
            UNION ALL
            {_arrears_of_instalments(f"i.settled_on > {as_of_param()}")}
        ) parts
        GROUP BY parts.loan_id
    """


def _chunk_positions(arrears: str) -> str:
    """Return each loan of the chunk with its status, class and new position figures.

    `arrears` is the temporary table holding the result of `arrears_query`.
    """
    d = as_of_param()
    is_open = f"(l.closed_on IS NULL OR l.closed_on > {d})"
    days = (
        f"CASE WHEN {is_open} AND a.oldest_unpaid_due_date IS NOT NULL "
        f"THEN {days_between(d, 'a.oldest_unpaid_due_date')} ELSE 0 END"
    )
    return f"""
        SELECT l.id AS loan_id, l.status, l.risk_class, {is_open} AS is_open,
               CASE WHEN {is_open} THEN COALESCE(a.outstanding_principal, 0) ELSE 0 END
                   AS outstanding_principal,
               CASE WHEN {is_open} THEN COALESCE(a.overdue_principal, 0) ELSE 0 END
                   AS overdue_principal,
               CASE WHEN {is_open} THEN COALESCE(a.overdue_interest, 0) ELSE 0 END
                   AS overdue_interest,
               CASE WHEN {is_open} THEN a.oldest_unpaid_due_date END AS oldest_unpaid_due_date,
               {days} AS days_past_due
        FROM loans_loan l
        LEFT JOIN {arrears} a ON a.loan_id = l.id
        WHERE l.id BETWEEN %(low)s AND %(high)s AND l.disbursement_date <= {d}
    """


def _positions_insert(policy: ClassificationPolicy, arrears: str) -> str:
    """Return the upsert of the chunk's positions.

    Provisions and the default trigger are first estimates from the loan's
    own floors (see `provisional_provisions`). Classification then corrects
    the few loans that debtor contagion moves, instead of rewriting every row.
    """
    provisions = provisional_provisions(policy, "p")
    # The statement starts with INSERT, not WITH: Python's sqlite3 reports a
    # row count only for statements that start with INSERT, UPDATE or DELETE.
    return f"""
        INSERT INTO loans_loanposition (
            loan_id, as_of, is_open, outstanding_principal, overdue_principal,
            overdue_interest, oldest_unpaid_due_date, days_past_due, dpd_bucket,
            last_default_trigger_on, specific_provision, general_provision
        )
        SELECT p.loan_id, {as_of_param()}, p.is_open, p.outstanding_principal,
               p.overdue_principal, p.overdue_interest, p.oldest_unpaid_due_date,
               p.days_past_due, {_bucket_case("p.days_past_due")},
               {provisions["last_default_trigger_on"]},
               {provisions["specific_provision"]},
               {provisions["general_provision"]}
        FROM ({_chunk_positions(arrears)}) p
        WHERE TRUE
        ON CONFLICT (loan_id) DO UPDATE SET
            as_of = excluded.as_of,
            is_open = excluded.is_open,
            outstanding_principal = excluded.outstanding_principal,
            overdue_principal = excluded.overdue_principal,
            overdue_interest = excluded.overdue_interest,
            oldest_unpaid_due_date = excluded.oldest_unpaid_due_date,
            days_past_due = excluded.days_past_due,
            dpd_bucket = excluded.dpd_bucket,
            last_default_trigger_on = COALESCE(
                excluded.last_default_trigger_on, loans_loanposition.last_default_trigger_on
            ),
            specific_provision = excluded.specific_provision,
            general_provision = excluded.general_provision
    """


def refresh_positions(as_of: date, low: int, high: int) -> dict[str, int]:
    """Write the position of every loan of the chunk disbursed by `as_of`.

    Loans disbursed after `as_of` lose any position left by a run for a
    later date, so figures never mix dates.
    """
    params = {"as_of": as_of, "low": low, "high": high}
    arrears = f"cod_arrears_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        # A temporary table with statistics, because the planner cannot
        # estimate the groups of the arrears query. Estimating 200 of them,
        # it joined them to every loan of the chunk in a nested loop.
        cursor.execute(f"CREATE TEMPORARY TABLE {arrears} AS {arrears_query()}", params)
        analyze(cursor, arrears)
        cursor.execute(_positions_insert(current_policy(), arrears), params)
        written = cursor.rowcount
        cursor.execute(f"DROP TABLE {arrears}")
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
