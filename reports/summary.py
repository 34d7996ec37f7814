"""The portfolio summary table: open loans of a date grouped as the dashboards read them.

Adding up a million positions takes seconds, too long for a page. The
close-of-day run therefore groups the open positions once, after phase 2
has set every class and stage, and the dashboards add up the groups. Month
ends are kept for the trend charts; other past dates are deleted.
"""

from __future__ import annotations

import calendar
import logging
import time
from datetime import date, timedelta

from django.db import connection, transaction

from monitoring.sql import analyze, as_of_param, is_postgresql

from .models import PortfolioSummary

logger = logging.getLogger(__name__)

# Past dates whose rows a refresh deletes unless they are month ends: every
# date after the month end two months back, so a month without a run on
# its last day still loses its daily rows.
PRUNE_WINDOW_DAYS = 62

_COLUMNS = """
    as_of, branch_id, officer_id, risk_class, ifrs9_stage, dpd_bucket, industry, product,
    loans, balance, overdue_principal, overdue_interest, specific_provision, general_provision
"""

_FROM_POSITIONS = f"""
    INSERT INTO reports_portfoliosummary ({_COLUMNS})
    SELECT {{as_of}}, l.branch_id, l.officer_id, l.risk_class, l.ifrs9_stage, p.dpd_bucket,
           SUBSTR(b.industry_code, 1, 2), l.product,
           COUNT(*), SUM(p.outstanding_principal), SUM(p.overdue_principal),
           SUM(p.overdue_interest), SUM(p.specific_provision), SUM(p.general_provision)
    FROM loans_loanposition p
    JOIN loans_loan l ON l.id = p.loan_id
    JOIN loans_borrower b ON b.id = l.borrower_id
    WHERE p.as_of = {{as_of}} AND p.is_open
    GROUP BY l.branch_id, l.officer_id, l.risk_class, l.ifrs9_stage, p.dpd_bucket,
             SUBSTR(b.industry_code, 1, 2), l.product
"""

_FROM_SNAPSHOTS = f"""
    INSERT INTO reports_portfoliosummary ({_COLUMNS})
    SELECT {{as_of}}, s.branch_id, s.officer_id, s.risk_class, s.ifrs9_stage, s.dpd_bucket,
           SUBSTR(b.industry_code, 1, 2), s.product,
           COUNT(*), SUM(s.outstanding_principal), SUM(s.overdue_principal),
           SUM(s.overdue_interest), SUM(s.specific_provision), SUM(s.general_provision)
    FROM reports_loanmonthsnapshot s
    JOIN loans_borrower b ON b.id = s.borrower_id
    WHERE s.month_end = {{as_of}} AND s.is_open
    GROUP BY s.branch_id, s.officer_id, s.risk_class, s.ifrs9_stage, s.dpd_bucket,
             SUBSTR(b.industry_code, 1, 2), s.product
"""


def is_month_end(day: date) -> bool:
    return day.day == calendar.monthrange(day.year, day.month)[1]


def refresh_portfolio_summary(as_of: date, run_id: int | None = None) -> int:
    """Rebuild the summary rows of `as_of` from the open positions; return the rows written.

    Call it once per close-of-day run, after phase 2, when the positions
    and classes are those of `as_of`. One transaction deletes the date's
    earlier rows, groups the positions in one INSERT ... SELECT, and deletes
    the rows of past dates other than month ends (see PRUNE_WINDOW_DAYS).
    The industry is the first two digits of the borrower's current code.
    """
    started = time.perf_counter()
    with transaction.atomic():
        written = _rebuild(_FROM_POSITIONS, as_of)
        pruned = _prune_before(as_of)
        _analyze()
    logger.info(
        "portfolio_summary run=%s as_of=%s rows=%d pruned=%d seconds=%.2f",
        run_id,
        as_of,
        written,
        pruned,
        time.perf_counter() - started,
    )
    return written


def refresh_month_end_summary(month_end: date) -> int:
    """Rebuild the summary rows of a month end from its loan snapshots; return the rows written.

    For month ends whose close-of-day ran before the summary existed, or
    whose rows were lost: the trend charts read the summary rows of month
    ends. A run on a month end writes the same figures from its positions.
    """
    if not is_month_end(month_end):
        raise ValueError(f"Invalid month end {month_end}: expected the last day of a month.")
    started = time.perf_counter()
    with transaction.atomic():
        written = _rebuild(_FROM_SNAPSHOTS, month_end)
        _analyze()
    logger.info(
        "portfolio_summary from snapshots month_end=%s rows=%d seconds=%.2f",
        month_end,
        written,
        time.perf_counter() - started,
    )
    return written


# Memory for the grouping of one date's positions, which spilled to disk at
# PostgreSQL's default of 4 MB for 100,000 loans.
WORK_MEM = "128MB"


def _rebuild(statement: str, as_of: date) -> int:
    PortfolioSummary.objects.filter(as_of=as_of).delete()
    with connection.cursor() as cursor:
        if is_postgresql():
            cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cursor.execute(statement.format(as_of=as_of_param()), {"as_of": as_of})
        return cursor.rowcount


def _prune_before(as_of: date) -> int:
    window_start = as_of - timedelta(days=PRUNE_WINDOW_DAYS)
    month_ends = [
        window_start + timedelta(days=offset)
        for offset in range(PRUNE_WINDOW_DAYS)
        if is_month_end(window_start + timedelta(days=offset))
    ]
    deleted, _by_model = (
        PortfolioSummary.objects.filter(as_of__gte=window_start, as_of__lt=as_of)
        .exclude(as_of__in=month_ends)
        .delete()
    )
    return deleted


def _analyze() -> None:
    # A new date is a value the planner statistics have never seen.
    with connection.cursor() as cursor:
        analyze(cursor, PortfolioSummary._meta.db_table)
