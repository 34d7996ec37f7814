"""Generate the monthly post-loan report of a month, for the bank or one branch."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from loans.models import Branch
from reports.models import MonthlyReport, ReportStatus
from reports.monthly.periods import parse_month
from reports.monthly.services import create_version, generate_report, request_report

# Seconds between two looks at the progress of a report that a worker generates.
POLL_SECONDS = 1


class Command(BaseCommand):
    help = (
        "Create the next version of the monthly report of a month and generate it: figures, "
        "PDF and Excel file. Prints the progress. With no broker the work runs here; with "
        "one, a worker does it and this command waits."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--month", required=True, help="Month to report, YYYY-MM.")
        parser.add_argument(
            "--branch", help="Code of the branch to report; without it, the whole bank."
        )
        parser.add_argument(
            "--requested-by",
            help="Username recorded as the requester; without it the version has none, "
            "like the ones the schedule creates.",
        )

    def handle(self, *args, **options) -> None:
        try:
            month = parse_month(options["month"])
        except ValueError as error:
            raise CommandError(str(error)) from error
        branch = self._branch(options["branch"])
        user = self._user(options["requested_by"])
        if settings.CELERY_TASK_ALWAYS_EAGER:
            report = create_version(month, branch, user)
            self.stdout.write(f"report {report.pk}: version {report.version} created")
            generate_report(report.pk, listener=self._print_progress)
        else:
            report = request_report(month, branch, user)
            self.stdout.write(f"report {report.pk}: version {report.version} queued")
            self._wait(report.pk)
        report = MonthlyReport.objects.get(pk=report.pk)
        if report.status != ReportStatus.COMPLETED:
            raise CommandError(f"Report {report.pk} {report.status}: {report.error}")
        self.stdout.write(
            f"report {report.pk}: completed, PDF {report.pdf.name}, Excel {report.xlsx.name}"
        )

    def _branch(self, code: str | None) -> Branch | None:
        if not code:
            return None
        branch = Branch.objects.filter(code=code).first()
        if branch is None:
            raise CommandError(f"Branch {code!r} not found: pass the code of an existing branch.")
        return branch

    def _user(self, username: str | None):
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"User {username!r} not found.")
        return user

    def _print_progress(self, report: MonthlyReport) -> None:
        step = f" {report.progress_step}" if report.progress_step else ""
        self.stdout.write(f"report {report.pk}: {report.progress:3d} %{step}")

    def _wait(self, report_id: int) -> None:
        last = None
        while True:
            report = MonthlyReport.objects.defer("figures").get(pk=report_id)
            if (report.progress, report.progress_step) != last:
                last = (report.progress, report.progress_step)
                self._print_progress(report)
            if report.status in (ReportStatus.COMPLETED, ReportStatus.FAILED):
                return
            time.sleep(POLL_SECONDS)
