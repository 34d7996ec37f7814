"""Benchmark the monthly report of the whole bank on a synthetic loan book in PostgreSQL.

    .venv/bin/python benchmarks/monthly_report.py --loans 100000

Steps, each printed with its figures:

1. Create and migrate the benchmark's own database (postloan_bench_report by
   default), then generate the loan book set-wise (benchmarks/loan_book.py),
   unless --reuse-data finds one of the same size with both snapshots.
2. Run close-of-day in-process for the month end before --month-end and for
   --month-end, and write the month-end snapshots of each. A run that has
   already written them (close-of-day calls write_month_end_snapshots on
   the last day of a month) is not written again.
3. Generate the bank's report for the month of --month-end through the same
   service the task calls, and print the seconds of the figures (and of each
   section), the PDF and the Excel file. The target is 60 s in all at
   1,000,000 loans on 2 cores.

It sets up Django itself with postloan.settings.base and stores the files in
a temporary MEDIA_ROOT. The database named in --database-url is the
benchmark's own: generation empties the loans, monitoring and reports tables.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postloan_bench_report"
DEFAULT_MONTH_END = "2025-06-30"
# The report's target, in seconds, for 1,000,000 loans on 2 cores.
TARGET_SECONDS = 60


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="Loans to generate.")
    parser.add_argument(
        "--month-end",
        type=date.fromisoformat,
        default=date.fromisoformat(DEFAULT_MONTH_END),
        help="Last day of the reported month, YYYY-MM-DD; the loan book is generated as of it.",
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="Keep the loan book and snapshots already in the database when the book has "
        "--loans loans and both month ends have snapshots.",
    )
    return parser.parse_args(argv)


def configure_environment(args: argparse.Namespace) -> None:
    """Point Django at the benchmark database, with tasks in-process and files in a temp folder."""
    if urlsplit(args.database_url).scheme not in ("postgres", "postgresql"):
        raise SystemExit(
            f"Invalid --database-url {args.database_url!r}: expected a postgres:// URL."
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = "postloan.settings.base"
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["CELERY_BROKER_URL"] = ""
    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="postloan-bench-report-")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(REPO))


def previous_month_end(month_end: date) -> date:
    return month_end.replace(day=1) - timedelta(days=1)


def snapshot_rows(month_end: date) -> int:
    from reports.models import LoanMonthSnapshot

    return LoanMonthSnapshot.objects.filter(month_end=month_end).count()


def close_month(month_end: date) -> dict[str, float]:
    """Run close-of-day for a month end, then write its snapshots if the run did not."""
    from django.db import transaction

    from monitoring.close_of_day.run import plan_chunks
    from monitoring.models import JobStatus
    from monitoring.tasks import dispatch_close_of_day
    from reports.snapshots import write_month_end_snapshots

    started = time.perf_counter()
    run = dispatch_close_of_day(month_end, triggered_by="benchmark")
    run.refresh_from_db()
    if run.status != JobStatus.COMPLETED:
        raise SystemExit(f"Close-of-day run {run.pk} ended {run.status}: {run.errors}")
    seconds = {"close_of_day": time.perf_counter() - started}
    if snapshot_rows(month_end):
        return seconds
    started = time.perf_counter()
    for low, high in plan_chunks():
        with transaction.atomic():
            write_month_end_snapshots(month_end, low, high, run.pk)
    seconds["snapshots"] = time.perf_counter() - started
    return seconds


def prepare_book(args: argparse.Namespace) -> None:
    from benchmarks import loan_book

    months = [previous_month_end(args.month_end), args.month_end]
    if (
        args.reuse_data
        and loan_book.loan_count() == args.loans
        and all(snapshot_rows(month_end) for month_end in months)
    ):
        print(f"\n== loan book: reusing {args.loans} loans and their snapshots")
        return
    print(f"\n== loan book: generating {args.loans} loans as of {args.month_end}")
    started = time.perf_counter()
    loan_book.generate(args.loans, args.month_end)
    print(f"generation seconds:   {time.perf_counter() - started:.1f}")
    print("loans by status:", loan_book.profile_counts())
    for month_end in months:
        seconds = close_month(month_end)
        print(
            f"month end {month_end}: "
            + ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items())
            + f", snapshot rows {snapshot_rows(month_end)}"
        )


def time_report(month_end: date) -> dict[str, object]:
    """Generate the bank's report of the month; return seconds per stage and per section."""
    from reports.models import MonthlyReport, ReportStatus
    from reports.monthly import excel, pdf
    from reports.monthly.figures import compute_figures
    from reports.monthly.services import create_version

    report = create_version(month_end.replace(day=1), None, None)
    MonthlyReport.objects.filter(pk=report.pk).update(status=ReportStatus.RUNNING)
    sections: dict[str, float] = {}
    marks: list[tuple[str, float]] = []

    def record(percent: int, step: str) -> None:
        marks.append((step, time.perf_counter()))

    started = time.perf_counter()
    report.figures = compute_figures(report.month, None, record)
    figures_seconds = time.perf_counter() - started
    for (step, at), (_next_step, next_at) in zip(marks, marks[1:], strict=False):
        sections[step] = next_at - at

    started = time.perf_counter()
    pdf_bytes = pdf.render_pdf(report)
    pdf_seconds = time.perf_counter() - started
    started = time.perf_counter()
    xlsx_bytes = excel.render_xlsx(report)
    xlsx_seconds = time.perf_counter() - started
    MonthlyReport.objects.filter(pk=report.pk).update(
        status=ReportStatus.COMPLETED, figures=report.figures, progress=100
    )
    return {
        "figures": figures_seconds,
        "pdf": pdf_seconds,
        "xlsx": xlsx_seconds,
        "sections": sections,
        "pdf_bytes": len(pdf_bytes),
        "xlsx_bytes": len(xlsx_bytes),
        "loans": report.figures["portfolio"]["loans"],
    }


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *sys.argv])
    configure_environment(args)

    from benchmarks.close_of_day import create_database, machine_figures

    create_database(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    machine = machine_figures(command)
    print(f"command:    {command}")
    print(f"machine:    nproc={machine['nproc']}, memory={machine['memory_gib']} GiB")
    print(f"postgresql: {machine['postgresql']}")
    print(f"settings:   {machine['postgresql_settings']}")

    prepare_book(args)

    load_average = os.getloadavg()[0]
    figures = time_report(args.month_end)
    total = figures["figures"] + figures["pdf"] + figures["xlsx"]
    print(f"\n== monthly report of the bank, {args.month_end:%Y-%m}")
    print(f"load average before:  {load_average:.2f} (other processes share the CPUs)")
    print(f"open loans reported:  {figures['loans']}")
    print(f"figures seconds:      {figures['figures']:.2f}")
    for section, seconds in figures["sections"].items():
        print(f"  section {section:20} {seconds:.2f} s")
    print(f"PDF seconds:          {figures['pdf']:.2f} ({figures['pdf_bytes']} bytes)")
    print(f"Excel seconds:        {figures['xlsx']:.2f} ({figures['xlsx_bytes']} bytes)")
    print(f"total seconds:        {total:.2f} (target at 1,000,000 loans: {TARGET_SECONDS} s)")
    print(f"load average after:   {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
