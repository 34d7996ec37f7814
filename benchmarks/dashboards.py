"""Benchmark the dashboard of each role and the portfolio summary refresh on a synthetic book.

    .venv/bin/python benchmarks/dashboards.py --loans 100000

Steps, each printed with the 1-, 5- and 15-minute load averages before it:

1. Create and migrate the benchmark database (postloan_bench_dash unless
   --database-url names another), then generate the loan book
   (benchmarks/loan_book.py), unless --reuse-data finds one of the same size.
2. Give the loans credit officers: one per --loans-per-officer loans, each
   working in one branch, drawn by a hash of the loan id within its branch.
3. Make sure a close-of-day run for --as-of has completed, running one
   in-process if not, and top the active warnings up to --min-warnings
   with synthetic ones (as benchmarks/warning_rules.py does).
4. Time `refresh_portfolio_summary` for --as-of, twice.
5. Insert month-end loan snapshots for the 11 month ends before --as-of with
   INSERT ... SELECT from the loans and positions (older months have fewer
   non-performing loans and larger balances, so the trend moves), and time
   `refresh_month_end_summary` for each.
6. Time each role's dashboard with django.test.Client. The first request
   after clearing the cache is timed on its own, then come two warm-up
   requests and --requests timed ones. It prints the median, the 95th
   percentile, the query count and the slowest query, with EXPLAIN ANALYZE
   when the 95th percentile exceeds the target or with --explain.

It sets up Django itself with postloan.settings.base, DEBUG off and tasks
in-process. The database named in --database-url is the benchmark's own:
generation empties the loans, monitoring and report tables there.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.close_of_day import (  # noqa: E402  (needs REPO on sys.path)
    DEFAULT_AS_OF,
    create_database,
    machine_figures,
)
from benchmarks.warning_rules import (  # noqa: E402
    check_response,
    ensure_close_of_day,
    ensure_queue_warnings,
    explain,
    percentile,
    print_step,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postloan_bench_dash"
TARGET_P95_MS = 300
OFFICER_PREFIX = "benchmark-officer-"
# One user per role besides the officers; the branch manager works in branch 1.
ROLE_USERS = {
    "branch": ("benchmark-branch-manager", "Branch manager"),
    "risk": ("benchmark-risk-manager", "Risk manager"),
    "committee": ("benchmark-committee-member", "Committee member"),
    "audit": ("benchmark-auditor", "Auditor"),
}
SNAPSHOT_MONTHS = 11


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="Loans to generate.")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=date.fromisoformat(DEFAULT_AS_OF),
        help="Business date of the close-of-day run, YYYY-MM-DD.",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="Keep the loan book, run, officers and snapshots already in the database when "
        "it has --loans loans.",
    )
    parser.add_argument(
        "--loans-per-officer",
        type=int,
        default=2_500,
        help="Loans per credit officer (2,500: 400 officers for 1,000,000 loans).",
    )
    parser.add_argument(
        "--min-warnings",
        type=int,
        default=None,
        help="Active warnings the dashboards are timed with; synthetic ones fill the gap "
        "(default 80%% of --loans, 800,000 for 1,000,000 loans).",
    )
    parser.add_argument("--requests", type=int, default=50, help="Timed requests per role (50).")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="Print EXPLAIN ANALYZE of each dashboard's slowest query, also done when a "
        f"dashboard's p95 exceeds {TARGET_P95_MS} ms.",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    return parser.parse_args(argv)


def configure_environment(args: argparse.Namespace) -> None:
    """Point Django at the benchmark database, with DEBUG off and tasks in-process."""
    if urlsplit(args.database_url).scheme not in ("postgres", "postgresql"):
        raise SystemExit(
            f"Invalid --database-url {args.database_url!r}: expected a postgres:// URL."
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = "postloan.settings.base"
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["CELERY_BROKER_URL"] = ""
    os.environ["CELERY_RESULT_BACKEND"] = ""
    os.environ["DEBUG"] = "False"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("LOG_LEVEL", "WARNING")


# --- Loan book, officers, close-of-day -------------------------------------------


def prepare_book(args: argparse.Namespace, report: dict) -> bool:
    """Generate the book unless it can be reused; return True when it was generated."""
    from benchmarks import loan_book

    loans = loan_book.loan_count()
    if args.reuse_data and loans == args.loans:
        print_step(f"loan book: reusing {loans:,} loans")
        return False
    report["load_before"]["generation"] = print_step(f"loan book: generating {args.loans:,} loans")
    started = time.perf_counter()
    loan_book.generate(args.loans, args.as_of)
    report["generation_seconds"] = round(time.perf_counter() - started, 1)
    print(f"generation seconds:   {report['generation_seconds']}")
    return True


ASSIGN_OFFICERS = """
    UPDATE loans_loan l
    SET officer_id = o.user_id
    FROM bench_officer o
    WHERE o.branch_id = l.branch_id
      AND o.place = abs(hashtext('officer:' || l.id)) %% %(per_branch)s
"""


def assign_officers(loans: int, loans_per_officer: int) -> int:
    """Create the credit officers, put each in one branch and give them the loans; return how many.

    Raw SQL, so no loan gets a history row: the book is as generated, with
    its officers.
    """
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    from benchmarks.loan_book import BRANCHES, COPY_OFFICERS_TO_WARNINGS
    from loans.access import CREDIT_OFFICER
    from loans.models import Branch

    per_branch = max(round(loans / loans_per_officer / BRANCHES), 1)
    group = Group.objects.get(name=CREDIT_OFFICER)
    branches = list(Branch.objects.order_by("pk"))
    pairs = []
    for branch in branches:
        for place in range(per_branch):
            user, _created = get_user_model().objects.get_or_create(
                username=f"{OFFICER_PREFIX}{branch.pk}-{place}",
                defaults={"first_name": "Officer", "last_name": f"{branch.pk}-{place}"},
            )
            user.groups.add(group)
            branch.staff.add(user)
            pairs.append((user.pk, branch.pk, place))
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE bench_officer (user_id int, branch_id int, place int)"
        )
        cursor.executemany("INSERT INTO bench_officer VALUES (%s, %s, %s)", pairs)
        cursor.execute(ASSIGN_OFFICERS, {"per_branch": per_branch})
        cursor.execute("DROP TABLE bench_officer")
        cursor.execute(COPY_OFFICERS_TO_WARNINGS)
        cursor.execute("VACUUM ANALYZE loans_loan")
    return len(pairs)


def has_officers() -> bool:
    from loans.models import Loan

    return Loan.objects.filter(officer__isnull=False).exists()


def role_users() -> dict[str, object]:
    """Return a user for each dashboard: the officer with the most loans and one per role."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db.models import Count

    from loans.models import Branch, Loan

    users = {}
    busiest = (
        Loan.objects.filter(officer__isnull=False)
        .values("officer")
        .annotate(loans=Count("pk"))
        .order_by("-loans")
        .first()
    )
    if busiest is None:
        raise SystemExit("No loan has an officer.")
    users["officer"] = get_user_model().objects.get(pk=busiest["officer"])
    first_branch = Branch.objects.order_by("pk").first()
    for view, (username, role) in ROLE_USERS.items():
        user, _created = get_user_model().objects.get_or_create(username=username)
        user.groups.add(Group.objects.get(name=role))
        if view == "branch":
            first_branch.staff.add(user)
        users[view] = user
    return users


# --- Summary and snapshots --------------------------------------------------------


def time_summary(as_of: date, run_id: int, report: dict) -> None:
    from reports.models import PortfolioSummary
    from reports.summary import refresh_portfolio_summary

    report["load_before"]["summary"] = print_step("refresh_portfolio_summary, twice")
    seconds = []
    for _attempt in range(2):
        started = time.perf_counter()
        rows = refresh_portfolio_summary(as_of, run_id)
        seconds.append(round(time.perf_counter() - started, 2))
    print(f"rows:                 {rows:,}")
    print(f"seconds:              {seconds[0]:.2f} and {seconds[1]:.2f}")
    report["summary"] = {
        "rows": rows,
        "seconds": seconds,
        "rows_in_table": PortfolioSummary.objects.count(),
    }


# Month-end copies of the positions, k months before the as-of date, for
# loans disbursed by then. A hash puts 8k% of the loans in the normal class,
# current and without specific provision, and the balance grows 1.5% a month
# going back, so the trend is not flat.
SNAPSHOTS = """
    INSERT INTO reports_loanmonthsnapshot (
        month_end, loan_id, branch_id, borrower_id, officer_id, product, currency, status,
        is_open, risk_class, ifrs9_stage, outstanding_principal, overdue_principal,
        overdue_interest, days_past_due, dpd_bucket, specific_provision, general_provision
    )
    SELECT %(month_end)s, l.id, l.branch_id, l.borrower_id, l.officer_id, l.product,
           l.currency, l.status, p.is_open, x.risk_class,
           CASE WHEN x.risk_class = 1 THEN 1 ELSE l.ifrs9_stage END,
           ROUND(p.outstanding_principal * (1 + 0.015 * %(months)s), 2),
           CASE WHEN x.risk_class = 1 THEN 0 ELSE p.overdue_principal END,
           CASE WHEN x.risk_class = 1 THEN 0 ELSE p.overdue_interest END,
           CASE WHEN x.risk_class = 1 THEN 0 ELSE p.days_past_due END,
           CASE WHEN x.risk_class = 1 THEN 'current' ELSE p.dpd_bucket END,
           CASE WHEN x.risk_class = 1 THEN 0 ELSE p.specific_provision END,
           p.general_provision
    FROM loans_loan l
    JOIN loans_loanposition p ON p.loan_id = l.id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN abs(hashtext('month:' || l.id)) %% 100 < %(months)s * 8
                    THEN 1 ELSE l.risk_class END AS risk_class
    ) x
    WHERE l.disbursement_date <= %(month_end)s
"""


def insert_snapshots(as_of: date, report: dict) -> None:
    from django.db import connection

    from reports.dashboards import last_month_ends
    from reports.models import LoanMonthSnapshot
    from reports.summary import refresh_month_end_summary

    month_ends = [day for day in last_month_ends(as_of, SNAPSHOT_MONTHS + 1) if day < as_of]
    month_ends = month_ends[-SNAPSHOT_MONTHS:]
    report["load_before"]["snapshots"] = print_step(
        f"month-end snapshots of {SNAPSHOT_MONTHS} month ends and their summaries"
    )
    present = set(LoanMonthSnapshot.objects.values_list("month_end", flat=True).distinct())
    insert_seconds = 0.0
    with connection.cursor() as cursor:
        for index, month_end in enumerate(reversed(month_ends), start=1):
            if month_end in present:
                continue
            started = time.perf_counter()
            cursor.execute(SNAPSHOTS, {"month_end": month_end, "months": index})
            insert_seconds += time.perf_counter() - started
        cursor.execute("VACUUM ANALYZE reports_loanmonthsnapshot")
    summary_seconds = []
    for month_end in month_ends:
        started = time.perf_counter()
        refresh_month_end_summary(month_end)
        summary_seconds.append(time.perf_counter() - started)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE reports_portfoliosummary")
    print(f"snapshot inserts:     {insert_seconds:.1f} s (month ends already present skipped)")
    print(
        f"month-end summaries:  {sum(summary_seconds):.1f} s for {len(month_ends)}, "
        f"{max(summary_seconds):.2f} s the slowest"
    )
    report["snapshots"] = {
        "insert_seconds": round(insert_seconds, 1),
        "month_end_summary_seconds": [round(value, 2) for value in summary_seconds],
        "snapshot_rows": LoanMonthSnapshot.objects.count(),
    }


# --- Dashboards ---------------------------------------------------------------------


def time_dashboards(args: argparse.Namespace, users: dict, report: dict) -> None:
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    url = reverse("reports:dashboard")
    results = []
    for view, user in users.items():
        client = Client()
        client.force_login(user)
        page = f"{url}?view={view}"
        load = print_step(f"dashboard {view} as {user.get_username()}  {page}")
        # The first request after a summary refresh computes what the dashboards cache.
        cache.clear()
        started = time.perf_counter()
        check_response(client.get(page), page)
        cold_ms = (time.perf_counter() - started) * 1000
        print(f"first request:        {cold_ms:.1f} ms (empty cache)")
        for _warm_up in range(2):
            check_response(client.get(page), page)
        timings = []
        for _request in range(args.requests):
            started = time.perf_counter()
            response = client.get(page)
            timings.append((time.perf_counter() - started) * 1000)
            check_response(response, page)
        with CaptureQueriesContext(connection) as queries:
            check_response(client.get(page), page)
        slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
        database_ms = sum(float(query["time"]) for query in queries.captured_queries) * 1000
        median, p95 = statistics.median(timings), percentile(timings, 0.95)
        print(f"median / p95:         {median:.1f} ms / {p95:.1f} ms")
        print(
            f"queries:              {len(queries.captured_queries)}, {database_ms:.1f} ms in the "
            f"database; slowest {float(slowest['time']) * 1000:.1f} ms:"
        )
        print(f"  {slowest['sql'][:300]}")
        if args.explain or p95 > TARGET_P95_MS:
            explain(slowest["sql"])
        results.append(
            {
                "view": view,
                "load_before": load,
                "first_request_ms": round(cold_ms, 1),
                "median_ms": round(median, 1),
                "p95_ms": round(p95, 1),
                "queries": len(queries.captured_queries),
                "database_ms": round(database_ms, 1),
                "slowest_query_ms": round(float(slowest["time"]) * 1000, 1),
            }
        )
    print(
        f"\n{'dashboard':10} {'first ms':>9} {'median ms':>10} {'p95 ms':>8} {'queries':>8}"
        "  target p95"
    )
    for row in results:
        status = "met" if row["p95_ms"] <= TARGET_P95_MS else "not met"
        print(
            f"{row['view']:10} {row['first_request_ms']:>9.1f} {row['median_ms']:>10.1f} "
            f"{row['p95_ms']:>8.1f} {row['queries']:>8}  {TARGET_P95_MS} ms: {status}"
        )
    report["dashboards"] = results


def table_sizes() -> dict[str, int]:
    from django.db import connection

    tables = {
        "open positions": "loans_loanposition WHERE is_open",
        "active warnings": "monitoring_earlywarning WHERE status IN "
        "('open', 'acknowledged', 'in_progress')",
        "inspections": "monitoring_inspection",
        "pending proposals": "monitoring_classificationproposal WHERE status = 'pending'",
        "unratified floor changes": "monitoring_classificationchange "
        "WHERE source = 'floor' AND NOT ratified",
        "loan history": "loans_historicalloan",
        "warning history": "monitoring_historicalearlywarning",
        "summary rows": "reports_portfoliosummary",
    }
    counts = {}
    with connection.cursor() as cursor:
        for name, source in tables.items():
            cursor.execute(f"SELECT COUNT(*) FROM {source}")
            counts[name] = cursor.fetchone()[0]
    return counts


# --- Main ----------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *sys.argv])
    configure_environment(args)
    create_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    machine = machine_figures(command)
    print(f"command:    {command}")
    print(f"machine:    nproc={machine['nproc']}, memory={machine['memory_gib']} GiB")
    print(f"postgresql: {machine['postgresql']}")
    print(f"settings:   {machine['postgresql_settings']}")
    report: dict[str, object] = {"machine": machine, "load_before": {}}

    generated = prepare_book(args, report)
    # A book reused from another benchmark's database may have no officers yet.
    if generated or not has_officers():
        officers = assign_officers(args.loans, args.loans_per_officer)
        print(f"credit officers:      {officers}")
    run_id = ensure_close_of_day(args, report)
    minimum = args.min_warnings if args.min_warnings is not None else args.loans * 8 // 10
    active, added = ensure_queue_warnings(args.as_of, run_id, minimum)
    print(f"\nactive warnings:      {active:,} ({added:,} synthetic added to reach the minimum)")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE monitoring_earlywarning, monitoring_inspection")

    time_summary(args.as_of, run_id, report)
    insert_snapshots(args.as_of, report)
    sizes = table_sizes()
    print("\nrows:", ", ".join(f"{name}={count:,}" for name, count in sizes.items()))
    report["rows"] = sizes

    time_dashboards(args, role_users(), report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
