"""Run close-of-day for a business date and show its progress."""

from __future__ import annotations

import time
from datetime import date

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from monitoring.models import JobRun, JobStatus
from monitoring.tasks import dispatch_close_of_day


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise CommandError(f"Invalid --as-of date {value!r}: expected YYYY-MM-DD.") from error


class Command(BaseCommand):
    help = (
        "Refresh days past due, evaluate warning rules, apply classification floors, "
        "set IFRS 9 stages and provisions as of a date."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--as-of", required=True, help="Business date, YYYY-MM-DD.")
        parser.add_argument(
            "--chunk-size", type=int, default=None, help="Loans per chunk (default from settings)."
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="With a broker: queue the run and return without waiting for workers.",
        )

    def handle(self, *args, **options) -> None:
        as_of = _parse_date(options["as_of"])
        run = dispatch_close_of_day(as_of, "command", options["chunk_size"])
        if not settings.CELERY_TASK_ALWAYS_EAGER and not options["no_wait"]:
            run = self._wait(run.pk)
        else:
            run.refresh_from_db()
        self._report(run)
        if run.status == JobStatus.FAILED:
            raise CommandError(f"Close-of-day run {run.pk} failed: {run.errors.splitlines()[0]}")

    def _wait(self, run_id: int) -> JobRun:
        last_reported = -1
        while True:
            run = JobRun.objects.get(pk=run_id)
            if run.chunks_done != last_reported:
                last_reported = run.chunks_done
                self.stdout.write(f"run {run.pk}: {run.chunks_done}/{run.chunk_count} chunks done")
            if run.status != JobStatus.RUNNING:
                return run
            time.sleep(1)

    def _report(self, run: JobRun) -> None:
        self.stdout.write(f"run {run.pk} as of {run.as_of}: {run.status} in {run.duration}")
        summary = run.counts.get("summary", {})
        for key in ("open_loans", "loans_by_class", "loans_by_stage", "active_warnings_by_rule"):
            if key in summary:
                self.stdout.write(f"  {key}: {summary[key]}")
