"""Benchmark the close-of-day inspection step and the inspection task pages.

    .venv/bin/python benchmarks/inspections.py --loans 100000 \\
        --database-url postgres://postgres@127.0.0.1:5432/postloan_bench_insp

Steps, each printed with the 1-, 5- and 15-minute load averages before it:

1. Create and migrate the benchmark database, then generate the loan book
   (benchmarks/loan_book.py), unless --reuse-data finds one of the same
   size. Create --officers credit officers and one branch manager per
   branch, and give every loan an officer of its branch.
2. Make sure a close-of-day run for --as-of has completed, running one
   in-process if not, so that every loan has its position and class.
3. Remove the plans, inspections and inspection warnings, then time the
   inspection step over every chunk as the run calls it, in three parts.
   The first writes the plans, the first and routine inspections and the
   overdue marks, the second evaluates the inspection rules and the third
   schedules special inspections, for the red warnings first seen on the
   date (read before the timing; the run gets them from its rules). This
   is the first run, where every plan and inspection is new. Then refresh
   the positions and phase-1 rules for the next date (not timed) and time
   the step again: the nightly case. A CHECKPOINT precedes each timing.
4. Replace the inspections with --inspections generated ones
   (INSERT ... SELECT generate_series), time the step once more on the
   date after, and time the officer's task list and the branch compliance
   page with django.test.Client: median and p95 of --requests requests.

It sets up Django itself with postloan.settings.base, DEBUG off and tasks
in-process. The database named in --database-url is the benchmark's own:
generation empties the loans and monitoring tables there.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.close_of_day import (  # noqa: E402  (needs REPO on sys.path)
    DEFAULT_AS_OF,
    DEFAULT_DATABASE_URL,
    create_database,
    machine_figures,
)
from benchmarks.warning_rules import (  # noqa: E402
    check_response,
    configure_environment,
    delete_warnings,
    ensure_close_of_day,
    explain,
    percentile,
    print_step,
    risk_manager,
)

STEP_TARGET_SECONDS = 15
PAGE_TARGET_P95_MS = 200
OFFICER_PREFIX = "bench-officer-"
MANAGER_PREFIX = "bench-manager-"
STEP_PARTS = ("plans_and_scheduled", "inspection_rules", "special_inspections", "commit")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="Loans to generate.")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=date.fromisoformat(DEFAULT_AS_OF),
        help="Business date of the first run, YYYY-MM-DD.",
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
        "--officers", type=int, default=200, help="Credit officers spread over the branches."
    )
    parser.add_argument(
        "--inspections",
        type=int,
        default=1_000_000,
        help="Inspections on record for the page timings (1,000,000).",
    )
    parser.add_argument(
        "--requests", type=int, default=50, help="Timed requests of each page (50)."
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Processes that run the step's chunks, as the pool processes of the run's "
        "Celery workers (1).",
    )
    parser.add_argument("--skip-step", action="store_true", help="Do not time the step.")
    parser.add_argument("--skip-pages", action="store_true", help="Do not time the pages.")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="Print EXPLAIN ANALYZE of each page's slowest query, "
        f"also done when a page's p95 exceeds {PAGE_TARGET_P95_MS} ms.",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    return parser.parse_args(argv)


# --- Loan book and officers ------------------------------------------------


def prepare_book(args: argparse.Namespace, report: dict) -> None:
    from benchmarks import loan_book

    if args.reuse_data and loan_book.loan_count() == args.loans:
        print_step(f"loan book: reusing {args.loans} loans")
    else:
        report["load_before"]["generation"] = print_step(
            f"loan book: generating {args.loans} loans"
        )
        started = time.perf_counter()
        seconds = loan_book.generate(args.loans, args.as_of)
        total = time.perf_counter() - started
        print(
            f"generation seconds:   {total:.1f}  "
            + ", ".join(f"{name}={value:.1f}" for name, value in seconds.items())
        )
        report["generation_seconds"] = round(total, 1)
    print("loans by status:", loan_book.profile_counts())
    restore_inspection_settings()


def restore_inspection_settings() -> None:
    """Recreate the inspection policy and first-inspection terms if missing, with their defaults.

    Generating the book empties every monitoring table, these included.
    """
    import importlib

    from django.apps import apps

    defaults = importlib.import_module("monitoring.migrations.0012_inspection_policy_defaults")
    defaults.create_policy(apps, None)


# Each branch's officers take slots 0, 1, ...; a loan gets the officer whose
# slot is a hash of its id, so every officer of a branch has about as many loans.
_OFFICER_SLOTS = """
    CREATE TEMPORARY TABLE bench_officer AS
    SELECT b.branch_id, u.id AS user_id,
           ROW_NUMBER() OVER (PARTITION BY b.branch_id ORDER BY u.id) - 1 AS slot,
           COUNT(*) OVER (PARTITION BY b.branch_id) AS officers
    FROM loans_branch_staff b
    JOIN auth_user u ON u.id = b.user_id AND u.username LIKE %(prefix)s
"""

_ASSIGN_OFFICERS = """
    UPDATE loans_loan l SET officer_id = o.user_id
    FROM bench_officer o
    WHERE o.branch_id = l.branch_id
      AND o.slot = abs(hashtext('officer:' || l.id)) %% o.officers
      AND l.officer_id IS DISTINCT FROM o.user_id
"""


def prepare_officers(count: int, report: dict) -> None:
    """Create the officers and branch managers, and give every loan an officer of its branch."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction

    from benchmarks import loan_book
    from loans.access import BRANCH_MANAGER, CREDIT_OFFICER
    from loans.models import Branch

    report["load_before"]["officers"] = print_step(f"officers: {count} over the branches")
    users = get_user_model()
    branches = list(Branch.objects.order_by("pk"))
    started = time.perf_counter()
    with transaction.atomic():
        officer_group = Group.objects.get(name=CREDIT_OFFICER)
        manager_group = Group.objects.get(name=BRANCH_MANAGER)
        for number in range(1, count + 1):
            officer, _created = users.objects.get_or_create(
                username=f"{OFFICER_PREFIX}{number}",
                defaults={"first_name": "Officer", "last_name": str(number)},
            )
            officer.groups.add(officer_group)
            branches[(number - 1) % len(branches)].staff.add(officer)
        for branch in branches:
            manager, _created = users.objects.get_or_create(
                username=f"{MANAGER_PREFIX}{branch.pk}",
                defaults={"first_name": "Manager", "last_name": branch.code},
            )
            manager.groups.add(manager_group)
            branch.staff.add(manager)
        with connection.cursor() as cursor:
            cursor.execute(_OFFICER_SLOTS, {"prefix": f"{OFFICER_PREFIX}%"})
            cursor.execute(_ASSIGN_OFFICERS, {})
            assigned = cursor.rowcount
            cursor.execute("DROP TABLE bench_officer")
            cursor.execute(loan_book.COPY_OFFICERS_TO_WARNINGS)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE loans_loan")
    seconds = time.perf_counter() - started
    print(f"loans given an officer: {assigned:,} in {seconds:.1f} s")


# --- The inspection step ---------------------------------------------------

INSPECTION_OUTPUT = (
    "monitoring_postloanplan",
    "monitoring_historicalpostloanplan",
    "monitoring_inspection",
    "monitoring_historicalinspection",
    "monitoring_historicalinspectioncheck",
)


def reset_inspection_output() -> None:
    """Remove every plan, inspection and inspection warning, with their history.

    CASCADE also empties the tables that refer to inspections (checklist
    answers, documents, classification proposals). The benchmark database
    has no other use.
    """
    from django.db import connection

    # The inspections go first. Deleting a warning makes PostgreSQL look up
    # the inspections it triggered, and `trigger_warning` has no index, so
    # with a million inspections each deleted warning cost a full scan.
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(INSPECTION_OUTPUT)} CASCADE")
    deleted = delete_warnings("rule_code LIKE %s", ["INS\\_%"])
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {', '.join(INSPECTION_OUTPUT)}")
    print(f"removed the plans, inspections and {deleted:,} inspection warnings")


def benchmark_run(as_of: date) -> int:
    """Return the id of a run record the step's rows can name; it is marked abandoned.

    The step's work is not a whole close-of-day run, so it must not become
    the business date the pages show.
    """
    from django.utils import timezone

    from monitoring.models import JobRun, JobStatus

    run = JobRun.objects.create(
        as_of=as_of,
        status=JobStatus.ABANDONED,
        finished_at=timezone.now(),
        triggered_by="benchmarks/inspections.py",
    )
    return run.pk


def refresh_phase_1(as_of: date, run_id: int) -> float:
    """Refresh the positions and phase-1 rules of every chunk for `as_of`; return seconds."""
    from django.db import connection, transaction

    from monitoring.close_of_day.positions import refresh_positions
    from monitoring.close_of_day.run import plan_chunks
    from monitoring.close_of_day.warnings import evaluate_rules
    from monitoring.sql import analyze, tune_chunk_transaction

    started = time.perf_counter()
    for low, high in plan_chunks():
        with transaction.atomic():
            with connection.cursor() as cursor:
                tune_chunk_transaction(cursor)
            refresh_positions(as_of, low, high)
            evaluate_rules(as_of, low, high, run_id, phase=1)
    # As the run's preparation of phase 2 does, after phase 1 has given every
    # position the new date.
    with connection.cursor() as cursor:
        analyze(cursor, "loans_loanposition")
    return time.perf_counter() - started


def new_red_warnings(as_of: date, chunks: list[tuple[int, int]]) -> dict[tuple[int, int], list]:
    """Return, by chunk, the ids of the active red warnings first seen on `as_of`.

    The run gets them from the statements of its rules that opened them. The
    step is timed without the rules of other families, so they are read
    before the timing.
    """
    from bisect import bisect_right

    from monitoring.models import EarlyWarning, WarningStatus

    lows = [low for low, _high in chunks]
    by_chunk: dict[tuple[int, int], list] = {chunk: [] for chunk in chunks}
    rows = EarlyWarning.objects.filter(
        status__in=WarningStatus.active(), severity="red", first_seen_on=as_of
    ).values_list("pk", "loan_id")
    for pk, loan_id in rows.iterator(chunk_size=10_000):
        chunk = chunks[bisect_right(lows, loan_id) - 1]
        if chunk[0] <= loan_id <= chunk[1]:
            by_chunk[chunk].append(pk)
    return by_chunk


def step_chunks(
    as_of: date,
    run_id: int,
    chunks: list[tuple[int, int]],
    red_by_chunk: dict[tuple[int, int], list],
) -> tuple[dict[str, float], dict[str, int]]:
    """Run the inspection step over `chunks`, a transaction each; return seconds and counts.

    The three parts run in the order of `run_classify_chunk`, without the
    classification and the other phase-2 rules between them. The special
    inspections follow the red warnings of `red_by_chunk` and those the
    inspection rules have just opened, as in the run.
    """
    from django.db import connection, transaction

    from monitoring.close_of_day.inspections import (
        refresh_plans_and_inspections,
        schedule_special_inspections,
    )
    from monitoring.close_of_day.warnings import evaluate_rules
    from monitoring.rules import all_rules
    from monitoring.sql import tune_chunk_transaction

    codes = [rule.code for rule in all_rules() if rule.family == "inspection"]
    seconds: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for low, high in chunks:
        with transaction.atomic():
            with connection.cursor() as cursor:
                tune_chunk_transaction(cursor)
            started = time.perf_counter()
            counts.update(refresh_plans_and_inspections(as_of, low, high, run_id))
            seconds["plans_and_scheduled"] += time.perf_counter() - started
            started = time.perf_counter()
            rule_counts = evaluate_rules(as_of, low, high, run_id, phase=2, codes=codes)
            counts.update(rule_counts)
            seconds["inspection_rules"] += time.perf_counter() - started
            new_red = red_by_chunk.get((low, high), []) + rule_counts.opened_red
            started = time.perf_counter()
            counts.update(schedule_special_inspections(as_of, low, high, run_id, new_red))
            seconds["special_inspections"] += time.perf_counter() - started
            # The commit runs the deferred foreign-key checks of the new rows.
            started = time.perf_counter()
        seconds["commit"] += time.perf_counter() - started
    return dict(seconds), dict(counts)


def time_step(
    as_of: date, run_id: int, processes: int, chunks: list[tuple[int, int]], red_by_chunk: dict
) -> tuple[dict[str, float], Counter[str]]:
    """Run the step over `chunks` in `processes` processes; return summed seconds and counts.

    With several processes the chunks are dealt out in turn, as the pool
    processes of a Celery worker take the run's phase-2 chunks from the queue.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from django.db import connections

    if processes <= 1:
        seconds, counts = step_chunks(as_of, run_id, chunks, red_by_chunk)
        return seconds, Counter(counts)
    # Forked processes must open their own database connections.
    connections.close_all()
    total_seconds: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        shares = [chunks[index::processes] for index in range(processes)]
        for seconds, counts in pool.map(
            step_chunks,
            [as_of] * processes,
            [run_id] * processes,
            shares,
            [red_by_chunk] * processes,
        ):
            total_seconds.update(seconds)
            total_counts.update(counts)
    return dict(total_seconds), total_counts


def report_step(label: str, as_of: date, report: dict, processes: int) -> None:
    load = print_step(f"inspection step, {label}, as of {as_of}, {processes} process(es)")
    from monitoring.close_of_day.run import plan_chunks

    run_id = benchmark_run(as_of)
    chunks = plan_chunks()
    red_by_chunk = new_red_warnings(as_of, chunks)
    checkpoint()
    started = time.perf_counter()
    seconds, counts = time_step(as_of, run_id, processes, chunks, red_by_chunk)
    total = time.perf_counter() - started
    for part in STEP_PARTS:
        print(f"{part + ' (sum)':32} {seconds.get(part, 0):.2f} s")
    print(
        f"{'total':32} {total:.2f} s  (target {STEP_TARGET_SECONDS} s: "
        f"{'met' if total <= STEP_TARGET_SECONDS else 'not met'})"
    )
    interesting = (
        "plans_created",
        "plans_changed",
        "inspections_created_first",
        "inspections_created_routine",
        "special_inspections",
        "inspections_overdue",
    )
    print("counts:", ", ".join(f"{name}={counts[name]:,}" for name in interesting))
    warnings = {
        name: value for name, value in sorted(counts.items()) if name.startswith("INS_") and value
    }
    print("inspection warnings:", ", ".join(f"{k}={v:,}" for k, v in warnings.items()) or "none")
    report.setdefault("step", []).append(
        {
            "case": label,
            "as_of": as_of.isoformat(),
            "processes": processes,
            "load_before": load,
            "seconds": {part: round(value, 2) for part, value in seconds.items()},
            "total_seconds": round(total, 2),
            "counts": {name: counts[name] for name in interesting},
            "warnings": warnings,
        }
    )


def checkpoint() -> None:
    """Write out the pages the steps before left in memory, so that it is not done while timing.

    Otherwise the server's checkpoint of the setup's writes, or of the
    previous step's, can run during the timed step.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def next_date(as_of: date, label: str, report: dict) -> date:
    """Refresh positions and phase-1 rules for the day after `as_of`; return that date."""
    following = as_of + timedelta(days=1)
    report["load_before"][f"phase_1_{label}"] = print_step(
        f"positions and phase-1 rules for {following} (not part of the step)"
    )
    seconds = refresh_phase_1(following, benchmark_run(following))
    print(f"seconds:              {seconds:.2f}")
    return following


# --- Inspections on record -------------------------------------------------

# Inspection n belongs to loan 1 + (n - 1) mod loans, in that loan's round
# (n - 1) div loans. A loan's rounds divide the time from its disbursement
# to the as-of date into equal slots of at least a day, one due date in
# each and all before the as-of date, so due dates of a loan never repeat.
# A loan younger than its number of rounds in days has due dates before
# its disbursement. Only a loan's last round may be pending, so a loan has
# at most one pending inspection. Statuses of the last round of an open loan:
# 12% scheduled and 3% draft due in the next 30 days; 9% scheduled, 3% draft
# and 3% returned overdue; 8% submitted; 62% approved. Earlier rounds and
# closed loans: 99% approved, 1% submitted. 7% of those carried out have
# adverse findings.
_INSPECTIONS = """
    INSERT INTO monitoring_inspection (
        loan_id, branch_id, officer_id, kind, status, due_date, overdue_since,
        trigger_warning_id, created_by_run_id, inspected_on, place, people_met, findings,
        risk_opinion, suggested_class, adverse, submitted_at, submitted_by_id, reviewed_at,
        reviewed_by_id, review_comment, created_at
    )
    SELECT d.loan_id, d.branch_id, d.officer_id, d.kind, d.status, d.due_date,
           CASE WHEN d.status IN ('scheduled', 'draft', 'returned')
                     AND d.due_date < %(as_of)s::date THEN d.due_date + 1 END,
           NULL, NULL,
           CASE WHEN d.status IN ('submitted', 'approved', 'returned') THEN d.inspected_on END,
           CASE WHEN d.done THEN 'Borrower premises' ELSE '' END,
           CASE WHEN d.done THEN 'Owner' ELSE '' END,
           CASE WHEN d.done AND d.adverse THEN 'Stock well below the last report.'
                WHEN d.done THEN 'Business operating normally.' ELSE '' END,
           CASE WHEN d.done THEN 'No change.' ELSE '' END,
           CASE WHEN d.done THEN CASE WHEN d.adverse THEN 2 ELSE 1 END END,
           d.done AND d.adverse,
           CASE WHEN d.done THEN (d.inspected_on + 1)::timestamptz END,
           CASE WHEN d.done THEN d.officer_id END,
           CASE WHEN d.status IN ('approved', 'returned')
                THEN (d.inspected_on + 3)::timestamptz END,
           CASE WHEN d.status IN ('approved', 'returned') THEN m.user_id END,
           CASE WHEN d.status = 'returned' THEN 'Add photos of the collateral.' ELSE '' END,
           (d.due_date - 30)::timestamptz
    FROM (
        SELECT s.*,
               s.status IN ('submitted', 'approved', 'returned') AS done,
               s.due_date - abs(hashtext('early:' || s.n)) %% 8 AS inspected_on,
               abs(hashtext('adverse:' || s.n)) %% 100 < 7 AS adverse
        FROM (
            SELECT r.*,
                   CASE WHEN r.last AND r.draw < 15
                        THEN %(as_of)s::date + 1 + abs(hashtext('ahead:' || r.n)) %% 30
                        ELSE %(as_of)s::date - (r.rounds - r.round) * r.slot
                             + abs(hashtext('offset:' || r.n)) %% r.slot
                   END AS due_date,
                   CASE WHEN NOT r.last THEN
                            CASE WHEN r.draw < 1 THEN 'submitted' ELSE 'approved' END
                        WHEN r.draw < 12 THEN 'scheduled'
                        WHEN r.draw < 15 THEN 'draft'
                        WHEN r.draw < 24 THEN 'scheduled'
                        WHEN r.draw < 27 THEN 'draft'
                        WHEN r.draw < 30 THEN 'returned'
                        WHEN r.draw < 38 THEN 'submitted'
                        ELSE 'approved'
                   END AS status,
                   CASE WHEN r.round = 0 AND abs(hashtext('first:' || r.n)) %% 100 < 40
                            THEN 'first'
                        WHEN abs(hashtext('special:' || r.n)) %% 100 < 8 THEN 'special'
                        ELSE 'routine'
                   END AS kind
            FROM (
                SELECT q.*,
                       GREATEST((%(as_of)s::date - q.disbursement_date) / q.rounds, 1) AS slot,
                       q.round = q.rounds - 1 AND q.closed_on IS NULL AS last,
                       abs(hashtext('status:' || q.n)) %% 100 AS draw
                FROM (
                    SELECT g.n, l.id AS loan_id, l.branch_id, l.officer_id,
                           l.disbursement_date, l.closed_on,
                           (g.n - 1) / %(loans)s AS round,
                           %(whole_rounds)s
                               + CASE WHEN l.id <= %(remainder)s THEN 1 ELSE 0 END AS rounds
                    FROM generate_series(1, %(inspections)s) AS g(n)
                    JOIN loans_loan l ON l.id = 1 + (g.n - 1) %% %(loans)s
                ) q
            ) r
        ) s
    ) d
    LEFT JOIN bench_manager m ON m.branch_id = d.branch_id
"""


def generate_inspections(count: int, as_of: date, report: dict) -> None:
    """Replace the inspections with `count` generated ones (see `_INSPECTIONS`)."""
    from django.db import connection, transaction

    from benchmarks import loan_book

    loans = loan_book.loan_count()
    report["load_before"]["inspections"] = print_step(f"inspections: generating {count:,}")
    params = {
        "as_of": as_of,
        "loans": loans,
        "inspections": count,
        "whole_rounds": count // loans,
        "remainder": count % loans,
    }
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute(f"TRUNCATE {', '.join(INSPECTION_OUTPUT[2:])} CASCADE")
        cursor.execute(
            """
            CREATE TEMPORARY TABLE bench_manager AS
            SELECT s.branch_id, MIN(u.id) AS user_id
            FROM loans_branch_staff s JOIN auth_user u ON u.id = s.user_id
            WHERE u.username LIKE %(prefix)s
            GROUP BY s.branch_id
            """,
            {"prefix": f"{MANAGER_PREFIX}%"},
        )
        cursor.execute(_INSPECTIONS, params)
        inserted = cursor.rowcount
        cursor.execute("DROP TABLE bench_manager")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE monitoring_inspection")
        cursor.execute(
            "SELECT kind, status, COUNT(*) FROM monitoring_inspection "
            "GROUP BY kind, status ORDER BY kind, status"
        )
        mix = {f"{kind}/{status}": rows for kind, status, rows in cursor.fetchall()}
        cursor.execute(
            "SELECT COUNT(*) FROM monitoring_inspection WHERE overdue_since IS NOT NULL "
            "AND status IN ('scheduled', 'draft', 'returned')"
        )
        overdue = cursor.fetchone()[0]
    seconds = time.perf_counter() - started
    print(f"inserted:             {inserted:,} in {seconds:.1f} s")
    print(f"pending and overdue:  {overdue:,}")
    print("kind/status:", ", ".join(f"{name}={rows:,}" for name, rows in mix.items()))
    report["inspections"] = {"inserted": inserted, "seconds": round(seconds, 1), "mix": mix}


# --- Pages -----------------------------------------------------------------


def busiest_officer():
    """Return the officer with the most pending inspections, the heaviest task list."""
    from django.contrib.auth import get_user_model
    from django.db.models import Count, Q

    from monitoring.models import InspectionStatus

    pending = Q(inspections__status__in=InspectionStatus.pending())
    return (
        get_user_model()
        .objects.filter(username__startswith=OFFICER_PREFIX)
        .annotate(pending=Count("inspections", filter=pending))
        .order_by("-pending", "pk")
        .first()
    )


def page_urls() -> dict[str, tuple[str, object]]:
    """Return each page to time with its URL and user; a missing page prints and is skipped."""
    from django.urls import NoReverseMatch, reverse

    from loans.models import Branch

    branch = Branch.objects.order_by("pk").values_list("pk", flat=True).first()
    pages = {
        "my tasks (busiest officer)": ("monitoring:my_tasks", "", busiest_officer()),
        "branch compliance (risk manager)": (
            "monitoring:inspection_compliance",
            f"?branch={branch}",
            risk_manager(),
        ),
    }
    urls = {}
    for name, (url_name, query, user) in pages.items():
        try:
            urls[name] = (reverse(url_name) + query, user)
        except NoReverseMatch:
            print(f"\n== {name}: page missing ({url_name} does not resolve), skipped")
    return urls


def time_pages(args: argparse.Namespace, report: dict) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    results = []
    for name, (url, user) in page_urls().items():
        load = print_step(f"page: {name}  {url}  as {user.username}")
        client = Client()
        client.force_login(user)
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
        print(f"requests:             {len(timings)}")
        print(
            f"median / p95:         {median:.1f} ms / {p95:.1f} ms  (target p95 "
            f"{PAGE_TARGET_P95_MS} ms: {'met' if p95 <= PAGE_TARGET_P95_MS else 'not met'})"
        )
        print(
            f"queries:              {len(queries.captured_queries)}, "
            f"{sum(float(query['time']) for query in queries.captured_queries) * 1000:.1f} ms "
            f"in the database; slowest {float(slowest['time']) * 1000:.1f} ms:"
        )
        print(f"  {slowest['sql'][:400]}")
        if args.explain or p95 > PAGE_TARGET_P95_MS:
            explain(slowest["sql"])
        results.append(
            {
                "name": name,
                "url": url,
                "user": user.username,
                "load_before": load,
                "median_ms": round(median, 1),
                "p95_ms": round(p95, 1),
                "queries": len(queries.captured_queries),
                "slowest_query_ms": round(float(slowest["time"]) * 1000, 1),
            }
        )
    report["pages"] = results


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
    prepare_officers(args.officers, report)
    ensure_close_of_day(args, report)
    as_of = args.as_of
    if not args.skip_step:
        reset_inspection_output()
        report_step("first run (every plan and inspection new)", as_of, report, args.processes)
        as_of = next_date(as_of, "nightly", report)
        report_step("nightly (next date)", as_of, report, args.processes)
    if not args.skip_pages:
        generate_inspections(args.inspections, args.as_of, report)
        if not args.skip_step:
            as_of = next_date(as_of, "after_generation", report)
            report_step(
                f"next date with {args.inspections:,} inspections on record",
                as_of,
                report,
                args.processes,
            )
        time_pages(args, report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
