"""Benchmark the early-warning rules and the warning queue page on a synthetic book.

    .venv/bin/python benchmarks/warning_rules.py --loans 100000 \\
        --database-url postgres://postgres@127.0.0.1:5432/postloan_bench_100k

Steps, each printed with the 1-, 5- and 15-minute load averages before it:

1. Create and migrate the benchmark database, then generate the loan book
   with its collateral, guarantees and external signals
   (benchmarks/loan_book.py), unless --reuse-data finds one of the same size.
2. Make sure a close-of-day run for --as-of has completed and the positions
   are as of that date, so every loan has its position and class. If not,
   run close-of-day in-process once and print its time.
3. Time `refresh_guarantee_network` once, if the module that defines it
   exists.
4. Time each enabled rule alone over every chunk, after deleting its
   warnings, so that every hit opens a warning.
5. Time all rules together over every chunk as the nightly run calls them:
   phase 1 rules, the guarantee network, then phase 2 rules. This runs once
   after deleting every rule's warnings (a first run), and once more with
   the warnings in place (the nightly case).
6. Time the warning queue page for a risk manager with django.test.Client,
   with at least --min-warnings active warnings in the table (synthetic ones
   with rule codes BENCH_QUEUE_n are added if the rules opened fewer).

It sets up Django itself with postloan.settings.base, DEBUG off and tasks
in-process. The database named in --database-url is the benchmark's own:
generation empties the loans and monitoring tables there.
"""

from __future__ import annotations

import argparse
import json
import math
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
    DEFAULT_DATABASE_URL,
    create_database,
    machine_figures,
    print_run,
    run_close_of_day,
)

QUEUE_TARGET_P95_MS = 200
RULES_TARGET_SECONDS = 30
SYNTHETIC_RULE_PREFIX = "BENCH_QUEUE_"
RISK_MANAGER_USERNAME = "benchmark-risk-manager"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="Loans to generate.")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=date.fromisoformat(DEFAULT_AS_OF),
        help="Business date of the close-of-day run and the rules, YYYY-MM-DD.",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="Loans per chunk; default POSTLOAN_CLOSE_OF_DAY_CHUNK_SIZE from the settings.",
    )
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="Keep the loan book already in the database when it has --loans loans.",
    )
    parser.add_argument(
        "--queue-only",
        action="store_true",
        help="Time only the warning queue page, on the book and warnings in the database.",
    )
    parser.add_argument(
        "--skip-queue", action="store_true", help="Leave out the warning queue timing."
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=50,
        help="Timed requests of each queue URL (50).",
    )
    parser.add_argument(
        "--min-warnings",
        type=int,
        default=100_000,
        help="Active warnings the queue is timed with; synthetic ones fill the gap (100,000).",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="Print EXPLAIN ANALYZE of each queue URL's slowest query, "
        f"also done when a URL's p95 exceeds {QUEUE_TARGET_P95_MS} ms.",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="Processes that evaluate the chunks of all rules together, as the pool "
        "processes of the Celery workers of a run (2).",
    )
    parser.add_argument(
        "--skip-alone", action="store_true", help="Do not time each rule on its own."
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
    # No broker: the settings then run Celery tasks in-process.
    os.environ["CELERY_BROKER_URL"] = ""
    os.environ["CELERY_RESULT_BACKEND"] = ""
    # DEBUG off as in production, so that Django keeps no query log during timing.
    os.environ["DEBUG"] = "False"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if args.chunk_size:
        os.environ["POSTLOAN_CLOSE_OF_DAY_CHUNK_SIZE"] = str(args.chunk_size)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def print_step(title: str) -> float:
    """Print a step's heading with the load average; return the 1-minute load average."""
    print(f"\n== {title}  (load average before: {load_average()})")
    return round(os.getloadavg()[0], 2)


# --- Loan book and close-of-day ------------------------------------------


def prepare_book(args: argparse.Namespace, report: dict) -> None:
    from benchmarks import loan_book

    loans = loan_book.loan_count()
    if args.queue_only and loans == 0:
        raise SystemExit("The database has no loans: run without --queue-only first.")
    if args.queue_only or (args.reuse_data and loans == args.loans):
        print_step(f"loan book: reusing {loans} loans")
    else:
        load = print_step(f"loan book: generating {args.loans} loans")
        report["load_before"]["generation"] = load
        started = time.perf_counter()
        seconds = loan_book.generate(args.loans, args.as_of)
        total = time.perf_counter() - started
        print(
            f"generation seconds:   {total:.1f}  "
            + ", ".join(f"{name}={value:.1f}" for name, value in seconds.items())
        )
        report["generation_seconds"] = round(total, 1)
    counts = loan_book.collateral_and_guarantee_counts()
    print("loans by status:", loan_book.profile_counts())
    print("rows:", ", ".join(f"{name}={count}" for name, count in counts.items()))
    report["rows"] = counts


def ensure_close_of_day(args: argparse.Namespace, report: dict) -> int:
    """Return the id of a completed close-of-day run for --as-of, running one if needed."""
    from django.db.models import Max

    from loans.models import LoanPosition
    from monitoring.models import JobRun, JobStatus

    run = (
        JobRun.objects.filter(kind="close_of_day", status=JobStatus.COMPLETED)
        .order_by("-finished_at")
        .first()
    )
    positions_as_of = LoanPosition.objects.aggregate(as_of=Max("as_of"))["as_of"]
    if run is not None and run.as_of == args.as_of and positions_as_of == args.as_of:
        print(f"\n== close-of-day: run {run.pk} for {args.as_of} found, positions in place")
        return run.pk
    report["load_before"]["close_of_day"] = print_step(
        f"close-of-day: no completed run with positions as of {args.as_of}, running one eagerly"
    )
    from benchmarks import loan_book

    figures = run_close_of_day("eager", args.as_of, loan_book.loan_count(), eager=True)
    print_run(figures, None)
    report["close_of_day_seconds"] = figures.seconds
    run = JobRun.objects.filter(kind="close_of_day", as_of=args.as_of).order_by("-pk").first()
    return run.pk


# --- Rules -----------------------------------------------------------------


def delete_warnings(where: str, params: list) -> int:
    """Delete the warnings matching `where` and the rows that refer to them; return how many.

    Raw SQL, because the ORM would write a history row for each deleted
    warning. The referring tables are read from the catalog, so a table
    added later is included.
    """
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.conrelid::regclass::text, a.attname
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND c.confrelid = 'monitoring_earlywarning'::regclass
            """
        )
        for table, column in cursor.fetchall():
            cursor.execute(
                f"DELETE FROM {table} WHERE {column} IN "
                f"(SELECT id FROM monitoring_earlywarning WHERE {where})",
                params,
            )
        # Inspections name their warning without a foreign key, because a
        # trigger checks it (migration monitoring/0026). Clear it as Django would.
        cursor.execute(
            "UPDATE monitoring_inspection SET trigger_warning_id = NULL "
            f"WHERE trigger_warning_id IN (SELECT id FROM monitoring_earlywarning WHERE {where})",
            params,
        )
        cursor.execute(f"DELETE FROM monitoring_earlywarning WHERE {where}", params)
        deleted = cursor.rowcount
    if deleted:
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE monitoring_earlywarning")
    return deleted


def refresh_network(as_of: date, run_id: int) -> tuple[float | None, object]:
    """Run `refresh_guarantee_network` once; return its seconds and result, or None if absent."""
    try:
        from monitoring.close_of_day.network import refresh_guarantee_network
    except ImportError:
        return None, None
    # Called outside a transaction, as the run's preparation task calls it, so
    # that it rewrites its two tables at the same time on PostgreSQL.
    started = time.perf_counter()
    result = refresh_guarantee_network(as_of, run_id)
    return time.perf_counter() - started, result


def evaluate_chunks(
    as_of: date,
    run_id: int,
    phase: int | None,
    codes: list[str] | None,
    chunks: list[tuple[int, int]],
) -> dict[str, int]:
    """Evaluate rules over `chunks`, a transaction each as in the run; return the counts."""
    from collections import Counter

    from django.db import connection, transaction

    from monitoring.close_of_day.warnings import evaluate_rules
    from monitoring.sql import tune_chunk_transaction

    counts: Counter[str] = Counter()
    for low, high in chunks:
        with transaction.atomic():
            with connection.cursor() as cursor:
                tune_chunk_transaction(cursor)
            counts.update(evaluate_rules(as_of, low, high, run_id, phase=phase, codes=codes))
    return dict(counts)


def evaluate_over_chunks(
    as_of: date,
    run_id: int,
    phase: int | None,
    codes: list[str] | None = None,
    processes: int = 1,
) -> tuple[float, dict[str, int]]:
    """Evaluate rules over every chunk in `processes` processes; return seconds and counts.

    With several processes the chunks are dealt out in turn, as a Celery
    worker with that many pool processes takes them from the queue.
    """
    import multiprocessing
    from collections import Counter
    from concurrent.futures import ProcessPoolExecutor

    from django.db import connections

    from monitoring.close_of_day.run import plan_chunks

    chunks = plan_chunks()
    started = time.perf_counter()
    if processes <= 1:
        return time.perf_counter() - started, evaluate_chunks(as_of, run_id, phase, codes, chunks)
    # Forked processes must open their own database connections.
    connections.close_all()
    counts: Counter[str] = Counter()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        shares = [chunks[index::processes] for index in range(processes)]
        for result in pool.map(
            evaluate_chunks,
            [as_of] * processes,
            [run_id] * processes,
            [phase] * processes,
            [codes] * processes,
            shares,
        ):
            counts.update(result)
    return time.perf_counter() - started, dict(counts)


def time_rules_alone(as_of: date, run_id: int, report: dict) -> None:
    from monitoring.rules import configured_rules

    report["load_before"]["rules_alone"] = print_step(
        "each rule alone over every chunk, after deleting its warnings"
    )
    print(f"{'rule':24} {'family':16} {'phase':>5} {'seconds':>8} {'hits':>9} {'deleted':>9}")
    rows = []
    for rule in configured_rules(phase=None):
        deleted = delete_warnings("rule_code = %s", [rule.code])
        seconds, counts = evaluate_over_chunks(as_of, run_id, phase=None, codes=[rule.code])
        hits = counts.get(f"{rule.code}_opened", 0) + counts.get(f"{rule.code}_refreshed", 0)
        row = {
            "rule": rule.code,
            "family": rule.family,
            "phase": rule.rule.phase,
            "seconds": round(seconds, 2),
            "hits": hits,
            "load_before": round(os.getloadavg()[0], 2),
        }
        rows.append(row)
        print(
            f"{rule.code:24} {rule.family:16} {rule.rule.phase:>5} {seconds:>8.2f} "
            f"{hits:>9,} {deleted:>9,}"
        )
    total = sum(row["seconds"] for row in rows)
    print(f"{'sum of the rules alone':47} {total:>8.2f} {sum(row['hits'] for row in rows):>9,}")
    report["rules_alone"] = rows


def time_rules_together(as_of: date, run_id: int, label: str, report: dict, processes: int) -> None:
    """Time phase 1 rules, the guarantee network and phase 2 rules over every chunk."""
    load = print_step(f"all rules together over every chunk in {processes} process(es), {label}")
    phase_1, counts_1 = evaluate_over_chunks(as_of, run_id, phase=1, processes=processes)
    network_seconds, _result = refresh_network(as_of, run_id)
    phase_2, counts_2 = evaluate_over_chunks(as_of, run_id, phase=2, processes=processes)

    counts = {**counts_1, **counts_2}
    total = phase_1 + (network_seconds or 0) + phase_2
    opened = sum(value for key, value in counts.items() if key.endswith("_opened"))
    refreshed = sum(value for key, value in counts.items() if key.endswith("_refreshed"))
    cleared = sum(value for key, value in counts.items() if key.endswith("_cleared"))
    network = "not present" if network_seconds is None else f"{network_seconds:.2f} s"
    print(f"phase 1 rules:        {phase_1:.2f} s")
    print(f"guarantee network:    {network}")
    print(f"phase 2 rules:        {phase_2:.2f} s")
    print(
        f"total:                {total:.2f} s  (target {RULES_TARGET_SECONDS} s: "
        f"{'met' if total <= RULES_TARGET_SECONDS else 'not met'})"
    )
    print(f"warnings:             opened={opened:,} refreshed={refreshed:,} cleared={cleared:,}")
    report.setdefault("rules_together", []).append(
        {
            "case": label,
            "processes": processes,
            "load_before": load,
            "phase_1_seconds": round(phase_1, 2),
            "network_seconds": None if network_seconds is None else round(network_seconds, 2),
            "phase_2_seconds": round(phase_2, 2),
            "total_seconds": round(total, 2),
            "opened": opened,
            "refreshed": refreshed,
            "cleared": cleared,
        }
    )


def time_rules(as_of: date, run_id: int, report: dict, processes: int, skip_alone: bool) -> None:
    from monitoring.rules import configured_rules

    removed = delete_warnings("rule_code LIKE %s", [SYNTHETIC_RULE_PREFIX + "%"])
    if removed:
        print(f"\nremoved {removed:,} synthetic queue warnings left by an earlier run")

    report["load_before"]["network"] = print_step("refresh_guarantee_network")
    network_seconds, result = refresh_network(as_of, run_id)
    if network_seconds is None:
        print("monitoring.close_of_day.network: not present")
    else:
        print(f"seconds:              {network_seconds:.2f}")
        print(f"result:               {result}")
    report["network_seconds"] = None if network_seconds is None else round(network_seconds, 2)

    if not skip_alone:
        time_rules_alone(as_of, run_id, report)

    codes = [rule.code for rule in configured_rules(phase=None)]
    delete_warnings("rule_code = ANY(%s)", [codes])
    first = "first run (no warnings in place)"
    time_rules_together(as_of, run_id, first, report, processes)
    time_rules_together(as_of, run_id, "nightly (warnings in place)", report, processes)


# --- Warning queue page --------------------------------------------------------

# Extra active warnings for the queue when the rules opened too few: spread
# over the open loans, severities, families, statuses and ages of 0-199 days.
SYNTHETIC_WARNINGS = """
    INSERT INTO monitoring_earlywarning (
        loan_id, branch_id, officer_id, rule_code, family, severity, status, first_seen_on,
        last_seen_on, evidence, closing_reason, created_by_run_id
    )
    SELECT x.loan_id, x.branch_id, x.officer_id, %(prefix)s || x.k,
           (ARRAY['repayment', 'collateral', 'guarantor', 'external'])[1 + x.draw %% 4],
           CASE WHEN x.draw %% 100 < 20 THEN 'red' WHEN x.draw %% 100 < 55 THEN 'orange'
                ELSE 'yellow' END,
           CASE WHEN x.draw %% 10 < 7 THEN 'open' WHEN x.draw %% 10 < 9 THEN 'acknowledged'
                ELSE 'in_progress' END,
           CAST(%(as_of)s AS date) - x.draw %% 200, CAST(%(as_of)s AS date),
           jsonb_build_object('as_of', CAST(%(as_of)s AS text)), '', %(run_id)s
    FROM (
        SELECT p.loan_id, l.branch_id, l.officer_id, k,
               abs(hashtext('queue:' || p.loan_id || ':' || k)) AS draw
        FROM generate_series(1, %(per_loan)s) AS k
        CROSS JOIN loans_loanposition p
        JOIN loans_loan l ON l.id = p.loan_id
        WHERE p.is_open
        ORDER BY k, p.loan_id
        LIMIT %(needed)s
    ) x
"""


def active_warning_count() -> int:
    from monitoring.models import EarlyWarning, WarningStatus

    return EarlyWarning.objects.filter(status__in=WarningStatus.active()).count()


def ensure_queue_warnings(as_of: date, run_id: int, minimum: int) -> tuple[int, int]:
    """Top the active warnings up to `minimum` with synthetic ones; return (active, added)."""
    from django.db import connection

    from loans.models import LoanPosition
    from monitoring import services

    active = active_warning_count()
    needed = minimum - active
    if needed <= 0:
        return active, 0
    open_loans = LoanPosition.objects.filter(is_open=True).count()
    params = {
        "prefix": SYNTHETIC_RULE_PREFIX,
        "as_of": as_of,
        "run_id": run_id,
        "needed": needed,
        "per_loan": math.ceil(needed / max(open_loans, 1)),
    }
    with connection.cursor() as cursor:
        cursor.execute(SYNTHETIC_WARNINGS, params)
        added = cursor.rowcount
        cursor.execute("ANALYZE monitoring_earlywarning")
    services.set_missing_deadlines(as_of)
    return active_warning_count(), added


def risk_manager():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from loans.access import RISK_MANAGER

    user, _created = get_user_model().objects.get_or_create(
        username=RISK_MANAGER_USERNAME,
        defaults={"first_name": "Benchmark", "last_name": "Risk manager"},
    )
    user.groups.add(Group.objects.get(name=RISK_MANAGER))
    return user


def queue_urls() -> dict[str, str]:
    """Return the typical queue URLs a risk manager opens, by name."""
    from django.urls import reverse

    from loans.models import Branch

    queue = reverse("monitoring:warning_queue")
    branch = Branch.objects.order_by("pk").values_list("pk", flat=True).first()
    return {
        "first page, default sort": queue,
        "severity red": f"{queue}?severity=red",
        "oldest first (sort by age)": f"{queue}?sort=-age",
        "one branch": f"{queue}?branch={branch}",
    }


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile of `values`, `share` between 0 and 1."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def time_queue(args: argparse.Namespace, run_id: int, report: dict) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    active, added = ensure_queue_warnings(args.as_of, run_id, args.min_warnings)
    print(f"\nactive warnings:      {active:,} ({added:,} synthetic added to reach the minimum)")
    # The rules have just rewritten every active warning, which clears the
    # visibility map. Autovacuum processes the table soon after a nightly run,
    # so vacuuming here lets the counts read the indexes alone, as they would then.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE monitoring_earlywarning")
    client = Client()
    client.force_login(risk_manager())
    results = []
    all_ms: list[float] = []
    for name, url in queue_urls().items():
        load = print_step(f"queue page: {name}  {url}")
        for _warm_up in range(3):
            check_response(client.get(url), url)
        timings = []
        for _request in range(args.requests):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            check_response(response, url)
        with CaptureQueriesContext(connection) as queries:
            check_response(client.get(url), url)
        slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
        median, p95 = statistics.median(timings), percentile(timings, 0.95)
        all_ms.extend(timings)
        print(f"requests:             {len(timings)}")
        print(f"median / p95:         {median:.1f} ms / {p95:.1f} ms")
        print(
            f"queries:              {len(queries.captured_queries)}, "
            f"{sum(float(query['time']) for query in queries.captured_queries) * 1000:.1f} ms "
            f"in the database; slowest {float(slowest['time']) * 1000:.1f} ms:"
        )
        print(f"  {slowest['sql'][:400]}")
        if args.explain or p95 > QUEUE_TARGET_P95_MS:
            explain(slowest["sql"])
        results.append(
            {
                "name": name,
                "url": url,
                "load_before": load,
                "median_ms": round(median, 1),
                "p95_ms": round(p95, 1),
                "queries": len(queries.captured_queries),
                "slowest_query_ms": round(float(slowest["time"]) * 1000, 1),
            }
        )
    p95_all = percentile(all_ms, 0.95)
    print(
        f"\nall queue requests:   median {statistics.median(all_ms):.1f} ms, p95 {p95_all:.1f} ms "
        f"(target p95 {QUEUE_TARGET_P95_MS} ms: "
        f"{'met' if p95_all <= QUEUE_TARGET_P95_MS else 'not met'})"
    )
    report["queue"] = {
        "active_warnings": active,
        "synthetic_added": added,
        "urls": results,
        "median_ms": round(statistics.median(all_ms), 1),
        "p95_ms": round(p95_all, 1),
    }


def check_response(response, url: str) -> None:
    if response.status_code != 200:
        raise SystemExit(f"GET {url} returned {response.status_code}, expected 200.")


def explain(sql: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
        plan = "\n".join(f"    {row[0]}" for row in cursor.fetchall())
    print(f"  EXPLAIN (ANALYZE, BUFFERS):\n{plan}")


# --- Main --------------------------------------------------------------------


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *sys.argv])
    configure_environment(args)
    create_database(args.database_url)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    machine = machine_figures(command)
    print(f"command:    {command}")
    print(f"machine:    nproc={machine['nproc']}, memory={machine['memory_gib']} GiB")
    print(f"postgresql: {machine['postgresql']}")
    print(
        f"settings:   {machine['postgresql_settings']}, "
        f"chunk size={settings.POSTLOAN_CLOSE_OF_DAY_CHUNK_SIZE}"
    )
    report: dict[str, object] = {"machine": machine, "load_before": {}}

    prepare_book(args, report)
    run_id = ensure_close_of_day(args, report)
    if not args.queue_only:
        time_rules(args.as_of, run_id, report, args.processes, args.skip_alone)
    if not args.skip_queue:
        time_queue(args, run_id, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
