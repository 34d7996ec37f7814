"""Benchmark the committee inbox and a proposal page on a synthetic book.

    .venv/bin/python benchmarks/committee_inbox.py --loans 100000

Steps, each printed with the 1-, 5- and 15-minute load averages before it:

1. Create and migrate the benchmark database (by default
   `postloan_bench_committee`, this benchmark's own), then generate the loan
   book with benchmarks/loan_book.py, unless it already has --loans loans.
2. Make sure a completed close-of-day run record for --as-of exists, so the
   pages have a business date. No close-of-day run is needed: the pages
   compute the floors from the instalments themselves.
3. Replace the synthetic committee work: --proposals pending proposals on
   the first loans (one approval on every other one, by a second committee
   member) and --floor-changes unratified floor changes on the last loans,
   each inserted with one INSERT ... SELECT.
4. Time, as a committee member with django.test.Client, --requests GETs of
   each URL after 3 warm-up requests: the inbox's first page, the inbox
   awaiting my vote, sorted by borrower, a deep page, and a proposal page.
   Print the median and p95 and the queries of one more request.

It sets up Django with postloan.settings.base, DEBUG off and tasks in-process.
"""

from __future__ import annotations

import argparse
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
    create_database,
    machine_figures,
)

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postloan_bench_committee"
TARGET_P95_MS = 300
MEMBER_USERNAME = "benchmark-committee"
SECOND_MEMBER_USERNAME = "benchmark-committee-2"
SYNTHETIC_REASON = "Synthetic benchmark row."


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="Loans in the book (100,000).")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=date.fromisoformat(DEFAULT_AS_OF),
        help="Business date, YYYY-MM-DD.",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--proposals", type=int, default=10_000, help="Pending proposals.")
    parser.add_argument(
        "--floor-changes", type=int, default=20_000, help="Unratified floor changes."
    )
    parser.add_argument("--requests", type=int, default=50, help="Timed requests per URL (50).")
    return parser.parse_args(argv)


def configure_environment(args: argparse.Namespace) -> None:
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


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def print_step(title: str) -> None:
    print(f"\n== {title}  (load average before: {load_average()})")


def percentile(values: list[float], share: float) -> float:
    """Return the nearest-rank percentile of `values`, `share` between 0 and 1."""
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


# --- Data ----------------------------------------------------------------------


def prepare_book(args: argparse.Namespace) -> None:
    from benchmarks import loan_book

    loans = loan_book.loan_count()
    if loans == args.loans:
        print_step(f"loan book: reusing {loans} loans")
        return
    print_step(f"loan book: generating {args.loans} loans")
    started = time.perf_counter()
    loan_book.generate(args.loans, args.as_of)
    print(f"generation seconds:   {time.perf_counter() - started:.1f}")


def ensure_business_date(as_of: date) -> None:
    from django.utils import timezone

    from monitoring.models import JobRun, JobStatus

    latest = (
        JobRun.objects.filter(kind="close_of_day", status=JobStatus.COMPLETED)
        .order_by("-finished_at")
        .first()
    )
    if latest is None or latest.as_of != as_of:
        JobRun.objects.create(
            as_of=as_of,
            status=JobStatus.COMPLETED,
            finished_at=timezone.now(),
            triggered_by="benchmark",
        )


def member(username: str):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from loans.access import COMMITTEE_MEMBER

    user, _created = get_user_model().objects.get_or_create(username=username)
    user.groups.add(Group.objects.get(name=COMMITTEE_MEMBER))
    return user


def insert_committee_work(args: argparse.Namespace) -> dict[str, int]:
    """Replace the synthetic proposals, votes and floor changes; return their counts."""
    from django.db import connection, transaction
    from django.utils import timezone

    second = member(SECOND_MEMBER_USERNAME)
    params = {
        "reason": SYNTHETIC_REASON,
        "proposals": args.proposals,
        "changes": args.floor_changes,
        "as_of": args.as_of,
        "now": timezone.now(),
        "member": second.pk,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM monitoring_proposalvote WHERE proposal_id IN ("
            " SELECT id FROM monitoring_classificationproposal WHERE reasons = %(reason)s)",
            params,
        )
        cursor.execute(
            "DELETE FROM monitoring_classificationproposal WHERE reasons = %(reason)s", params
        )
        cursor.execute(
            "DELETE FROM monitoring_classificationchange WHERE reason = %(reason)s", params
        )
        cursor.execute(
            """
            INSERT INTO monitoring_classificationproposal (
                loan_id, current_class, proposed_class, source, reasons, position_improved,
                evidence, status, created_at, decision_comment
            )
            SELECT l.id, l.risk_class,
                   CASE WHEN l.risk_class = 1 THEN 2 ELSE l.risk_class - 1 END,
                   'run', %(reason)s, FALSE, '{}'::jsonb, 'pending',
                   %(now)s - (l.id %% 60) * INTERVAL '1 day', ''
            FROM loans_loan l
            WHERE NOT EXISTS (
                SELECT 1 FROM monitoring_classificationproposal q
                WHERE q.loan_id = l.id AND q.status = 'pending'
            )
            ORDER BY l.id LIMIT %(proposals)s
            """,
            params,
        )
        proposals = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO monitoring_proposalvote (proposal_id, member_id, decision, comment, cast_at)
            SELECT q.id, %(member)s, 'approve', 'Agreed.', %(now)s
            FROM monitoring_classificationproposal q
            WHERE q.reasons = %(reason)s AND q.id %% 2 = 0
            """,
            params,
        )
        votes = cursor.rowcount
        cursor.execute(
            """
            INSERT INTO monitoring_classificationchange (
                loan_id, as_of, previous_class, new_class, previous_stage, new_stage,
                reason_code, reason, source, ratified, ratification_comment, created_at
            )
            SELECT l.id, %(as_of)s, 1, 2, 1, 2, 'overdue', %(reason)s, 'floor', FALSE, '',
                   %(now)s
            FROM loans_loan l ORDER BY l.id DESC LIMIT %(changes)s
            """,
            params,
        )
        changes = cursor.rowcount
        for table in ("classificationproposal", "proposalvote", "classificationchange"):
            cursor.execute(f"ANALYZE monitoring_{table}")
    return {"proposals": proposals, "votes": votes, "floor_changes": changes}


# --- Timing ------------------------------------------------------------------


def urls() -> dict[str, str]:
    from django.urls import reverse

    from monitoring.models import ClassificationProposal

    inbox = reverse("monitoring:committee_inbox")
    proposal = (
        ClassificationProposal.objects.filter(
            reasons=SYNTHETIC_REASON, loan__instalments__isnull=False
        )
        .order_by("pk")
        .values_list("pk", flat=True)
        .first()
    )
    return {
        "inbox, first page": inbox,
        "inbox, awaiting my vote": f"{inbox}?awaiting_me=on",
        "inbox, sorted by borrower": f"{inbox}?sort=borrower",
        "inbox, page 200 and ratification page 400": f"{inbox}?page=200&rpage=400",
        "proposal page": reverse("monitoring:proposal_detail", args=[proposal]),
    }


def time_pages(args: argparse.Namespace) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(member(MEMBER_USERNAME))
    every_ms: list[float] = []
    for name, url in urls().items():
        print_step(f"{name}  {url}")
        for _warm_up in range(3):
            check(client.get(url), url)
        timings = []
        for _request in range(args.requests):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            check(response, url)
        with CaptureQueriesContext(connection) as queries:
            check(client.get(url), url)
        database_ms = sum(float(query["time"]) for query in queries.captured_queries) * 1000
        slowest = max(queries.captured_queries, key=lambda query: float(query["time"]))
        every_ms.extend(timings)
        print(f"requests:             {len(timings)}")
        print(
            f"median / p95:         {statistics.median(timings):.1f} ms / "
            f"{percentile(timings, 0.95):.1f} ms"
        )
        print(
            f"queries:              {len(queries.captured_queries)}, {database_ms:.1f} ms in the "
            f"database; slowest {float(slowest['time']) * 1000:.1f} ms:"
        )
        print(f"  {slowest['sql'][:300]}")
    p95 = percentile(every_ms, 0.95)
    verdict = "met" if p95 <= TARGET_P95_MS else "not met"
    print(
        f"\nall requests:         median {statistics.median(every_ms):.1f} ms, p95 {p95:.1f} ms "
        f"(target p95 {TARGET_P95_MS} ms: {verdict})"
    )


def check(response, url: str) -> None:
    if response.status_code != 200:
        raise SystemExit(f"GET {url} returned {response.status_code}, expected 200.")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *sys.argv])
    configure_environment(args)
    create_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    machine = machine_figures(command)
    print(f"command:    {command}")
    print(f"machine:    nproc={machine['nproc']}, memory={machine['memory_gib']} GiB")
    print(f"postgresql: {machine['postgresql']}")
    prepare_book(args)
    ensure_business_date(args.as_of)
    print_step("committee work: inserting synthetic proposals, votes and floor changes")
    started = time.perf_counter()
    counts = insert_committee_work(args)
    print(f"inserted:             {counts} in {time.perf_counter() - started:.1f} s")
    time_pages(args)


if __name__ == "__main__":
    main(sys.argv[1:])
