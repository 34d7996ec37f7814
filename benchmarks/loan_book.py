"""Synthetic loan book for the close-of-day benchmark, generated set-wise in PostgreSQL.

Every statement is an INSERT ... SELECT over generate_series, so a million
loans take minutes, not hours. Each loan gets 24 monthly equal-principal
instalments. A hash of the loan id draws its repayment profile:

| share | profile      | what was paid by the as-of date                               |
| ----- | ------------ | ------------------------------------------------------------- |
| 70%   | on_time      | every instalment on its due date                              |
| 10%   | late         | every instalment 1-20 days after its due date                 |
| 5%    | partial      | on time, but the latest instalment only half of its principal |
| 9%    | arrears      | on time until 1-18 months before the as-of date, then nothing |
| 1%    | arrears      | as above, and the loan is restructured                        |
| 2%    | written_off  | nothing in the 6 months before a write-off                    |
| 3%    | prepaid      | on time until an early payoff that settled the rest           |

Loans are 1 to 900 days old, so about a fifth have reached maturity: those
paid in full are `paid_off`. Each paid or part-paid instalment has one
repayment and one allocation row dated on the payment date, and the
denormalised `principal_paid`, `interest_paid` and `settled_on` agree with
them. Written-off loans younger than 240 days, and prepaid loans younger
than 60 days, fall back to `arrears` and `on_time`. Borrowers number half
the loans and are drawn at random, so most have one to four loans and
debtor contagion has work to do.
"""

from __future__ import annotations

import time
from datetime import date

from django.apps import apps
from django.db import connection, transaction

INSTALMENTS_PER_LOAN = 24
BRANCHES = 8
MAX_AGE_DAYS = 900

_PLAN = """
    CREATE TEMPORARY TABLE bench_plan AS
    WITH base AS (
        SELECT g AS loan_id,
               1 + abs(hashtext('borrower:' || g)) %% %(borrowers)s AS borrower_id,
               abs(hashtext('profile:' || g)) %% 1000 AS draw,
               %(as_of)s::date - (1 + abs(hashtext('age:' || g)) %% %(max_age_days)s)
                   AS disbursement_date,
               1 + abs(hashtext('lag:' || g)) %% 20 AS lag_days,
               1 + abs(hashtext('arrears:' || g)) %% 18 AS arrears_months,
               abs(hashtext('close:' || g)) AS close_draw,
               (1000 + abs(hashtext('amount:' || g)) %% 4990) * 100.00 AS principal,
               (4 + abs(hashtext('rate:' || g)) %% 9) / 100.0 AS annual_rate
        FROM generate_series(1, %(loans)s) AS g
    ),
    aged AS (
        SELECT base.*,
               (disbursement_date + %(periods)s * interval '1 month')::date AS maturity_date,
               %(as_of)s::date - disbursement_date AS age_days
        FROM base
    ),
    profiled AS (
        SELECT aged.*,
               CASE
                   WHEN draw < 700 THEN 'on_time'
                   WHEN draw < 800 THEN 'late'
                   WHEN draw < 850 THEN 'partial'
                   WHEN draw < 950 THEN 'arrears'
                   WHEN draw < 970 AND age_days >= 240 THEN 'written_off'
                   WHEN draw < 970 THEN 'arrears'
                   WHEN age_days >= 60 THEN 'prepaid'
                   ELSE 'on_time'
               END AS profile
        FROM aged
    )
    SELECT profiled.*,
           CASE
               WHEN profile = 'written_off'
                   THEN disbursement_date + 180 + close_draw %% (age_days - 179)
               WHEN profile = 'prepaid'
                   THEN disbursement_date + 30 + close_draw %% (age_days - 29)
               WHEN profile = 'on_time' AND maturity_date <= %(as_of)s::date
                   THEN maturity_date
               WHEN profile = 'late' AND maturity_date + lag_days <= %(as_of)s::date
                   THEN maturity_date + lag_days
               WHEN profile = 'partial'
                    AND maturity_date <= (%(as_of)s::date - interval '1 month')::date
                   THEN maturity_date
           END AS closed_on
    FROM profiled
"""

_BRANCHES = """
    INSERT INTO loans_branch (id, code, name, region)
    SELECT b, 'BENCH-' || b, 'Benchmark branch ' || b, 'Region ' || (1 + b %% 3)
    FROM generate_series(1, %(branches)s) AS b
"""

_BORROWERS = """
    INSERT INTO loans_borrower (
        id, registration_number, legal_name, industry_code, size_class, region, city,
        postal_code, employees, annual_revenue, founded_on, is_new_business, group_name,
        branch_id
    )
    SELECT b, 'BENCH-B' || b, 'Benchmark borrower ' || b, 'C' || (10 + b %% 20),
           (ARRAY['micro', 'small', 'medium'])[1 + b %% 3], '', '', '', 5 + b %% 200,
           (50000 + b %% 1000 * 1000) * 1.00, DATE '2000-01-01' + b %% 7000, FALSE, '',
           1 + b %% %(branches)s
    FROM generate_series(1, %(borrowers)s) AS b
"""

_LOANS = """
    INSERT INTO loans_loan (
        id, contract_number, product, purpose, currency, principal, disbursement_date,
        maturity_date, annual_rate, day_count, repayment_method, frequency, status, closed_on,
        risk_class, ifrs9_stage, source, borrower_id, branch_id, officer_id
    )
    SELECT loan_id, 'BENCH-L' || loan_id,
           (ARRAY['working_capital', 'fixed_asset', 'trade_finance'])[1 + loan_id %% 3], '',
           'USD', principal, disbursement_date, maturity_date, annual_rate, 'act_360',
           'equal_principal', 'monthly',
           CASE
               WHEN profile = 'written_off' THEN 'written_off'
               WHEN closed_on IS NOT NULL THEN 'paid_off'
               WHEN profile = 'arrears' AND draw >= 940 THEN 'restructured'
               ELSE 'active'
           END,
           closed_on, 1, 1, 'benchmark', borrower_id, 1 + borrower_id %% %(branches)s, NULL
    FROM bench_plan
    ORDER BY loan_id
"""

# The paid-on date of each instalment by profile; NULL while unpaid.
_PAID_ON = """
    CASE p.profile
        WHEN 'on_time' THEN CASE WHEN s.due_date <= %(as_of)s::date THEN s.due_date END
        WHEN 'late' THEN CASE WHEN s.due_date + p.lag_days <= %(as_of)s::date
                              THEN s.due_date + p.lag_days END
        WHEN 'partial' THEN CASE WHEN s.due_date <= (%(as_of)s::date - interval '1 month')::date
                                 THEN s.due_date END
        WHEN 'arrears' THEN CASE WHEN s.due_date <= (%(as_of)s::date
                                     - p.arrears_months * interval '1 month')::date
                                 THEN s.due_date END
        WHEN 'written_off' THEN CASE WHEN s.due_date <= (p.closed_on - interval '6 months')::date
                                     THEN s.due_date END
        WHEN 'prepaid' THEN LEAST(s.due_date, p.closed_on)
    END
"""

_INSTALMENTS = f"""
    INSERT INTO loans_instalment (
        id, loan_id, number, due_date, principal_due, interest_due, principal_paid,
        interest_paid, settled_on
    )
    SELECT x.id, x.loan_id, x.number, x.due_date, x.principal_due, x.interest_due,
           CASE WHEN x.paid_on IS NOT NULL THEN x.principal_due
                WHEN x.part_paid THEN ROUND(x.principal_due / 2, 2) ELSE 0 END,
           CASE WHEN x.paid_on IS NOT NULL OR x.part_paid THEN x.interest_due ELSE 0 END,
           x.paid_on
    FROM (
        SELECT s.*, {_PAID_ON} AS paid_on,
               p.profile = 'partial'
                   AND s.due_date > (%(as_of)s::date - interval '1 month')::date
                   AND s.due_date <= %(as_of)s::date AS part_paid
        FROM bench_plan p
        CROSS JOIN LATERAL (
            SELECT (p.loan_id - 1) * %(periods)s + k AS id, p.loan_id, k AS number,
                   (p.disbursement_date + k * interval '1 month')::date AS due_date,
                   CASE WHEN k = %(periods)s
                        THEN p.principal - (%(periods)s - 1) * ROUND(p.principal / %(periods)s, 2)
                        ELSE ROUND(p.principal / %(periods)s, 2) END AS principal_due,
                   ROUND((p.principal - (k - 1) * ROUND(p.principal / %(periods)s, 2))
                         * p.annual_rate / 12, 2) AS interest_due
            FROM generate_series(1, %(periods)s) AS k
        ) s
    ) x
    ORDER BY x.id
"""

# One repayment and one allocation per paid or part-paid instalment, sharing
# the instalment's id; part-paid instalments were paid on their due date.
_REPAYMENTS = """
    INSERT INTO loans_repayment (id, loan_id, value_date, amount, kind, reference, unallocated)
    SELECT id, loan_id, COALESCE(settled_on, due_date), principal_paid + interest_paid,
           'regular', 'BENCH-' || number, 0
    FROM loans_instalment
    WHERE principal_paid + interest_paid > 0
    ORDER BY id
"""

_ALLOCATIONS = """
    INSERT INTO loans_repaymentallocation (
        id, repayment_id, instalment_id, loan_id, value_date, penalty, interest, principal
    )
    SELECT id, id, id, loan_id, COALESCE(settled_on, due_date), 0, interest_paid, principal_paid
    FROM loans_instalment
    WHERE principal_paid + interest_paid > 0
    ORDER BY id
"""

_WRITE_OFFS = """
    INSERT INTO loans_writeoff (loan_id, written_off_on, principal, interest, reason)
    SELECT p.loan_id, p.closed_on, SUM(i.principal_due - i.principal_paid),
           SUM(CASE WHEN i.due_date <= p.closed_on THEN i.interest_due - i.interest_paid
                    ELSE 0 END),
           'Benchmark write-off'
    FROM bench_plan p JOIN loans_instalment i ON i.loan_id = p.loan_id
    WHERE p.profile = 'written_off'
    GROUP BY p.loan_id, p.closed_on
"""

# Tables whose identity sequences must move past the explicit ids inserted.
_ID_TABLES = (
    "loans_branch",
    "loans_borrower",
    "loans_loan",
    "loans_instalment",
    "loans_repayment",
    "loans_repaymentallocation",
)

BOOK_TABLES = (*_ID_TABLES, "loans_writeoff")


def book_tables() -> list[str]:
    """Return every table of the loans and monitoring apps, history tables included."""
    return [
        model._meta.db_table
        for label in ("loans", "monitoring")
        for model in apps.get_app_config(label).get_models()
        if model._meta.managed
    ]


def loan_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM loans_loan")
        return cursor.fetchone()[0]


def generate(loans: int, as_of: date) -> dict[str, float]:
    """Replace the loan book with `loans` synthetic loans; return seconds per step.

    One transaction: the secondary indexes, unique and foreign-key constraints
    of the book tables are dropped before the inserts and built again after
    them (which also checks every foreign key), so an interrupted generation
    leaves the schema as it was.
    """
    params = {
        "loans": loans,
        "borrowers": max(loans // 2, 1),
        "branches": BRANCHES,
        "as_of": as_of,
        "max_age_days": MAX_AGE_DAYS,
        "periods": INSTALMENTS_PER_LOAN,
    }
    steps = {
        "plan": _PLAN,
        "branches": _BRANCHES,
        "borrowers": _BORROWERS,
        "loans": _LOANS,
        "instalments": _INSTALMENTS,
        "repayments": _REPAYMENTS,
        "allocations": _ALLOCATIONS,
        "write_offs": _WRITE_OFFS,
    }
    seconds: dict[str, float] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(f"TRUNCATE {', '.join(book_tables())} RESTART IDENTITY CASCADE")
        restore = _drop_secondary_structures(cursor)
        for name, statement in steps.items():
            started = time.perf_counter()
            cursor.execute(statement, params)
            seconds[name] = time.perf_counter() - started
        cursor.execute("DROP TABLE bench_plan")
        started = time.perf_counter()
        for statement in restore:
            cursor.execute(statement)
        seconds["indexes_and_constraints"] = time.perf_counter() - started
        for table in _ID_TABLES:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
            )
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(f"VACUUM ANALYZE {', '.join(BOOK_TABLES)}")
        seconds["vacuum_analyze"] = time.perf_counter() - started
    return seconds


def _drop_secondary_structures(cursor) -> list[str]:
    """Drop the book tables' indexes and constraints other than primary keys.

    Returns the statements that create them again, unique constraints and
    indexes before the foreign keys.
    """
    cursor.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, c.contype,
               pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.conrelid = ANY(%(tables)s::regclass[]) AND c.contype IN ('u', 'f')
        ORDER BY c.contype DESC
        """,
        {"tables": list(BOOK_TABLES)},
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%(tables)s::regclass[]) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        {"tables": list(BOOK_TABLES)},
    )
    indexes = cursor.fetchall()
    for table, name, _kind, _definition in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
    unique = [row for row in constraints if row[2] == "u"]
    foreign = [row for row in constraints if row[2] == "f"]
    return [
        *(f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, _k, d in unique),
        *(definition for _name, definition in indexes),
        *(f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, _k, d in foreign),
    ]


def profile_counts() -> dict[str, int]:
    """Return loans per status, as a check that the mix came out as drawn."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, COUNT(*) FROM loans_loan GROUP BY status ORDER BY status")
        return dict(cursor.fetchall())
