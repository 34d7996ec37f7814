"""Benchmark the audit trail page on a loan history table of millions of rows.

    .venv/bin/python benchmarks/audit_trail.py --rows 10000000

Steps, each printed with the 1-, 5- and 15-minute load averages before it:

1. Create and migrate the benchmark database, postloan_bench_audit unless
   --database-url names another.
2. Unless --reuse-data finds --rows rows there, empty the loan history table
   and fill it set-wise with INSERT ... SELECT generate_series, in batches:
   one row per version of --rows / 20 loans, 20 versions each, spread over
   two years, written by 300 users (one row in seven has no user and a
   close-of-day reason, as the run writes). Each version changes the
   interest rate, every second one the risk class, every third the IFRS 9
   stage and every fourth the credit officer, and the last version of every
   fourth loan marks it paid off. The table's indexes other than the primary
   key are dropped before the load and built again after it with their own
   definitions. Then VACUUM ANALYZE.
3. Time the audit trail page with django.test.Client as an auditor, --requests
   requests per URL after 3 warm-up requests: one user's changes in one month,
   the next page of them, one record's history, the newest page of all loans
   and the deletions. Print the median and p95, the queries of one request and the
   slowest of them (with EXPLAIN ANALYZE when a URL misses the target or
   with --explain). Then time one CSV export of the user's month.

It sets up Django itself with postloan.settings.base, DEBUG off. The database
is the benchmark's own: step 2 empties its loan history table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.close_of_day import create_database, machine_figures  # noqa: E402
from benchmarks.warning_rules import (  # noqa: E402  (needs REPO on sys.path)
    check_response,
    configure_environment,
    explain,
    percentile,
    print_step,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postloan_bench_audit"
TARGET_P95_MS = 300
VERSIONS_PER_LOAN = 20
USERS = 300
USERNAME_PREFIX = "bench-audit-user-"
AUDITOR_USERNAME = "bench-audit-auditor"
# Rows per INSERT statement, so that progress lines come every few seconds.
BATCH_ROWS = 1_000_000
# History dates run over the two years before this moment.
HISTORY_END = datetime(2025, 7, 1, tzinfo=UTC)
HISTORY_DAYS = 730
# The month that the user filter asks for.
MONTH_FROM, MONTH_TO = date(2025, 3, 1), date(2025, 3, 31)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, default=10_000_000, help="Loan history rows to generate."
    )
    parser.add_argument("--requests", type=int, default=50, help="Timed requests per URL.")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="Keep the loan history already in the database when it has --rows rows.",
    )
    parser.add_argument(
        "--explain", action="store_true", help="Print EXPLAIN ANALYZE of each URL's slowest query."
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    if args.rows < VERSIONS_PER_LOAN:
        parser.error(f"--rows must be at least {VERSIONS_PER_LOAN}, got {args.rows}.")
    # The settings helpers of the other benchmarks read this attribute.
    args.chunk_size = None
    return args


# --- Data ----------------------------------------------------------------


def ensure_users() -> tuple[list[int], object]:
    """Create the 300 writing users and the auditor if missing; return the writers' ids."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from loans.access import AUDITOR

    User = get_user_model()
    existing = set(
        User.objects.filter(username__startswith=USERNAME_PREFIX).values_list("username", flat=True)
    )
    usernames = [f"{USERNAME_PREFIX}{number:03d}" for number in range(USERS)]
    User.objects.bulk_create(
        User(username=username) for username in usernames if username not in existing
    )
    auditor, _created = User.objects.get_or_create(username=AUDITOR_USERNAME)
    auditor.groups.add(Group.objects.get(name=AUDITOR))
    writers = list(
        User.objects.filter(username__startswith=USERNAME_PREFIX)
        .order_by("username")
        .values_list("pk", flat=True)
    )
    return writers, auditor


def history_row_count() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM loans_historicalloan")
        return cursor.fetchone()[0]


INSERT_BATCH = """
    INSERT INTO loans_historicalloan (
        id, contract_number, product, purpose, currency, principal,
        disbursement_date, maturity_date, annual_rate, day_count, repayment_method,
        frequency, status, closed_on, risk_class, ifrs9_stage, source,
        borrower_id, branch_id, officer_id,
        history_date, history_change_reason, history_type, history_user_id
    )
    SELECT v.loan,
           'BA' || lpad(v.loan::text, 9, '0'),
           'working_capital', 'Stock', 'USD', 100000.00,
           DATE '2022-01-01' + (v.loan %% 365)::int,
           DATE '2026-01-01' + (v.loan %% 365)::int,
           0.050000 + ((v.loan + v.version) %% 4) * 0.005,
           '30_360', 'annuity', 'monthly',
           CASE WHEN v.version = %(last_version)s AND v.loan %% 4 = 0 THEN 'paid_off'
                ELSE 'active' END,
           NULL,
           1 + (v.loan + v.version / 2) %% 5,
           1 + (v.loan + v.version / 3) %% 3,
           'bench',
           v.loan, 1 + v.loan %% 50,
           (%(users)s::int[])[1 + (v.loan + v.version / 4) %% %(user_count)s],
           TIMESTAMPTZ %(start)s
               + (v.version * %(slot_seconds)s
                  + (v.g * 2654435761) %% %(slot_seconds)s) * INTERVAL '1 second',
           CASE WHEN v.g %% 7 = 0 THEN 'Close-of-day floor: dpd_30' END,
           CASE WHEN v.version = 0 THEN '+' ELSE '~' END,
           CASE WHEN v.g %% 7 <> 0
                THEN (%(users)s::int[])[1 + (v.g * 7919) %% %(user_count)s] END
    FROM (
        SELECT g, g %% %(loans)s + 1 AS loan, g / %(loans)s AS version
        FROM generate_series(%(low)s::bigint, %(high)s::bigint) AS g
    ) v
"""


def load_history(rows: int, writers: list[int]) -> dict[str, float]:
    """Replace the loan history with `rows` generated rows; return seconds per step."""
    from django.db import connection, transaction

    seconds = {}
    # One transaction, so that a failed load also restores the dropped indexes.
    with transaction.atomic(), connection.cursor() as cursor:
        # The history user's foreign key is deferred; checked at the end of each
        # INSERT instead, it leaves no pending check that would block CREATE INDEX.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE loans_historicalloan RESTART IDENTITY")
        indexes = _drop_indexes(cursor)
        seconds["insert"] = _insert_rows(cursor, rows, writers)
        seconds["indexes"] = _build_indexes(cursor, indexes)
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE loans_historicalloan")
        seconds["vacuum_analyze"] = round(time.perf_counter() - started, 1)
    return seconds


def _drop_indexes(cursor) -> list[tuple[str, str]]:
    """Drop the loan history's indexes but the primary key; return their names and definitions."""
    cursor.execute(
        """
        SELECT indexname, indexdef FROM pg_indexes
        WHERE tablename = 'loans_historicalloan' AND indexname NOT IN (
            SELECT conname FROM pg_constraint
            WHERE conrelid = 'loans_historicalloan'::regclass AND contype = 'p'
        )
        """
    )
    indexes = cursor.fetchall()
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    return indexes


def _insert_rows(cursor, rows: int, writers: list[int]) -> float:
    loans = rows // VERSIONS_PER_LOAN
    params = {
        "loans": loans,
        "last_version": VERSIONS_PER_LOAN - 1,
        "users": writers,
        "user_count": len(writers),
        "start": (HISTORY_END - timedelta(days=HISTORY_DAYS)).isoformat(),
        "slot_seconds": HISTORY_DAYS * 86_400 // VERSIONS_PER_LOAN,
    }
    started = time.perf_counter()
    total = loans * VERSIONS_PER_LOAN
    for low in range(0, total, BATCH_ROWS):
        high = min(low + BATCH_ROWS, total) - 1
        cursor.execute(INSERT_BATCH, {**params, "low": low, "high": high})
        elapsed = time.perf_counter() - started
        print(f"  inserted {high + 1:,} of {total:,} rows  ({elapsed:.0f} s)")
    return round(time.perf_counter() - started, 1)


def _build_indexes(cursor, indexes: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    for name, definition in indexes:
        cursor.execute(definition)
        print(f"  built {name}  ({time.perf_counter() - started:.0f} s)")
    return round(time.perf_counter() - started, 1)


def table_size() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(pg_table_size('loans_historicalloan')), "
            "pg_size_pretty(pg_indexes_size('loans_historicalloan'))"
        )
        table, indexes = cursor.fetchone()
    return f"table {table}, indexes {indexes}"


# --- Timing --------------------------------------------------------------


def audit_urls(writers: list[int], loans: int) -> dict[str, str]:
    """Return the audit trail URLs to time, by name."""
    from django.urls import reverse

    from reports.audit import AuditFilters, audit_page, audited_models

    audit = reverse("reports:audit_trail")
    user = writers[len(writers) // 2]
    month = f"model=loans.loan&user={user}&date_from={MONTH_FROM}&date_to={MONTH_TO}"
    first = audit_page(
        AuditFilters(
            model=audited_models()["loans.loan"],
            user_id=user,
            date_from=MONTH_FROM,
            date_to=MONTH_TO,
        )
    )
    urls = {
        "one user, one month": f"{audit}?{month}",
        "one record": f"{audit}?model=loans.loan&record={loans // 2 + 1}",
        "newest page of all loans": audit,
        "deletions (none in the data)": f"{audit}?model=loans.loan&change_type=-",
    }
    if first.older_cursor:
        urls["one user, one month, next page"] = f"{audit}?{month}&before={first.older_cursor}"
    return urls


def time_url(client, name: str, url: str, requests: int, always_explain: bool) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    load = print_step(f"audit page: {name}  {url}")
    for _warm_up in range(3):
        check_response(client.get(url), url)
    timings = []
    for _request in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        check_response(response, url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    check_response(response, url)
    rows = response.content.count(b"data-history-id=")
    slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
    median, p95 = statistics.median(timings), percentile(timings, 0.95)
    print(f"rows on the page:     {rows}")
    print(f"requests:             {len(timings)}")
    print(f"median / p95:         {median:.1f} ms / {p95:.1f} ms")
    print(
        f"queries:              {len(queries.captured_queries)}, "
        f"{sum(float(query['time']) for query in queries.captured_queries) * 1000:.1f} ms "
        f"in the database; slowest {float(slowest['time']) * 1000:.1f} ms:"
    )
    print(f"  {slowest['sql'][:400]}")
    if always_explain or p95 > TARGET_P95_MS:
        explain(slowest["sql"])
    return {
        "name": name,
        "url": url,
        "load_before": load,
        "rows_on_page": rows,
        "median_ms": round(median, 1),
        "p95_ms": round(p95, 1),
        "queries": len(queries.captured_queries),
        "slowest_query_ms": round(float(slowest["time"]) * 1000, 1),
    }


def time_export(client, url: str) -> dict:
    load = print_step(f"CSV export  {url}")
    started = time.perf_counter()
    response = client.get(url)
    check_response(response, url)
    content = b"".join(response.streaming_content)
    seconds = time.perf_counter() - started
    lines = len(list(csv.reader(io.StringIO(content.decode(), newline="")))) - 1
    print(f"seconds:              {seconds:.2f}")
    print(f"lines after the header: {lines:,}, bytes: {len(content):,}")
    return {
        "url": url,
        "load_before": load,
        "seconds": round(seconds, 2),
        "bytes": len(content),
        "lines": lines,
    }


# --- Main ----------------------------------------------------------------


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *sys.argv])
    configure_environment(args)
    create_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    call_command("migrate", verbosity=0)
    machine = machine_figures(command)
    print(f"command:    {command}")
    print(f"machine:    nproc={machine['nproc']}, memory={machine['memory_gib']} GiB")
    print(f"postgresql: {machine['postgresql']}")
    print(f"settings:   {machine['postgresql_settings']}")
    report: dict[str, object] = {"machine": machine, "rows": args.rows}

    writers, auditor = ensure_users()
    loans = args.rows // VERSIONS_PER_LOAN
    existing = history_row_count()
    if args.reuse_data and existing == loans * VERSIONS_PER_LOAN:
        print_step(f"reusing {existing:,} loan history rows")
    else:
        print_step(f"loading {loans * VERSIONS_PER_LOAN:,} loan history rows ({loans:,} loans)")
        report["load_seconds"] = load_history(args.rows, writers)
        print(f"load seconds:         {report['load_seconds']}")
    report["size"] = table_size()
    print(f"size:                 {report['size']}")

    client = Client()
    client.force_login(auditor)
    urls = audit_urls(writers, loans)
    results = [
        time_url(client, name, url, args.requests, args.explain) for name, url in urls.items()
    ]
    all_ms_p95 = max(result["p95_ms"] for result in results)
    print(
        f"\nworst p95 over the URLs: {all_ms_p95:.1f} ms "
        f"(target {TARGET_P95_MS} ms: {'met' if all_ms_p95 <= TARGET_P95_MS else 'not met'})"
    )
    report["pages"] = results
    month_query = urls["one user, one month"].split("?", 1)[1]
    report["export"] = time_export(client, f"{reverse('reports:audit_export')}?{month_query}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
