"""Request and generate monthly report versions.

A request creates the next version of the report of a month and scope and
queues its generation once the transaction commits. Generation computes the
figures, freezes them on the version, then renders the PDF and the Excel
file from those frozen figures and stores both. Nothing ever writes to a
version that has completed or failed, so earlier versions stay as they were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from loans.access import User
from loans.models import Branch

from ..models import MonthlyReport, ReportStatus
from . import excel, pdf
from .figures import compute_figures

logger = logging.getLogger(__name__)

# Progress bar range of each stage of the generation, in percent.
FIGURES_PROGRESS = (0, 60)
PDF_PROGRESS = (60, 85)
EXCEL_PROGRESS = (85, 100)
# Attempts at taking the next version number when another request takes it first.
VERSION_ATTEMPTS = 3

ProgressListener = Callable[[MonthlyReport], None]


def _next_version(month: date, branch: Branch | None) -> int:
    latest = MonthlyReport.objects.filter(month=month, branch=branch).aggregate(
        latest=Max("version")
    )["latest"]
    return (latest or 0) + 1


def create_version(month: date, branch: Branch | None, user: User | None) -> MonthlyReport:
    """Create the next queued version of the report of `month` and `branch`, without queueing it.

    Two requests at the same time may compute the same number; the unique
    constraint rejects the second insert, which then takes the next number.
    """
    month = month.replace(day=1)
    requested_by = user if user is not None and user.is_authenticated else None
    for attempt in range(1, VERSION_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return MonthlyReport.objects.create(
                    month=month,
                    branch=branch,
                    version=_next_version(month, branch),
                    requested_by=requested_by,
                )
        except IntegrityError:
            if attempt == VERSION_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def request_report(month: date, branch: Branch | None, user: User | None) -> MonthlyReport:
    """Create the next version of a report and queue its generation after the commit.

    `user` None stands for the schedule. Earlier versions are not touched.
    """
    from ..tasks import generate_monthly_report

    report = create_version(month, branch, user)
    transaction.on_commit(lambda: generate_monthly_report.delay(report.pk))
    logger.info(
        "monthly_report report=%d month=%s branch=%s version=%d queued",
        report.pk,
        f"{report.month:%Y-%m}",
        report.branch_id or "bank",
        report.version,
    )
    return report


def _claim(report_id: int) -> MonthlyReport | None:
    """Mark a queued version running and return it; None when another worker has taken it."""
    claimed = MonthlyReport.objects.filter(pk=report_id, status=ReportStatus.QUEUED).update(
        status=ReportStatus.RUNNING, started_at=timezone.now(), progress=0
    )
    if not claimed:
        return None
    return MonthlyReport.objects.select_related("branch").get(pk=report_id)


def _set_progress(
    report: MonthlyReport, percent: int, step: str, listener: ProgressListener | None
) -> None:
    report.progress = percent
    report.progress_step = step[:100]
    MonthlyReport.objects.filter(pk=report.pk).update(progress=percent, progress_step=step[:100])
    if listener is not None:
        listener(report)


def _scaled(stage: tuple[int, int], percent: int) -> int:
    low, high = stage
    return low + round((high - low) * percent / 100)


def generate_report(
    report_id: int, listener: ProgressListener | None = None
) -> MonthlyReport | None:
    """Compute, freeze and render one queued version; return it, or None if not queued.

    Errors are recorded on the version, which is then failed, and logged;
    they are not raised, so a failed report does not fail the caller.
    `listener(report)` is called after every progress update.
    """
    report = _claim(report_id)
    if report is None:
        logger.warning("monthly_report report=%d not queued, skipped", report_id)
        return None
    started = time.perf_counter()
    logger.info(
        "monthly_report report=%d month=%s branch=%s version=%d start",
        report.pk,
        f"{report.month:%Y-%m}",
        report.branch_id or "bank",
        report.version,
    )
    seconds: dict[str, float] = {}
    try:
        _run_stages(report, listener, seconds)
    except Exception as error:  # noqa: BLE001 - recorded on the report and logged
        _fail(report, error, time.perf_counter() - started)
        return report
    logger.info(
        "monthly_report report=%d end status=completed seconds=%.2f figures=%.2f pdf=%.2f "
        "xlsx=%.2f",
        report.pk,
        time.perf_counter() - started,
        seconds["figures"],
        seconds["pdf"],
        seconds["xlsx"],
    )
    return report


def _run_stages(
    report: MonthlyReport, listener: ProgressListener | None, seconds: dict[str, float]
) -> None:
    stage_started = time.perf_counter()
    report.figures = compute_figures(
        report.month,
        report.branch_id,
        lambda percent, step: _set_progress(
            report, _scaled(FIGURES_PROGRESS, percent), f"figures: {step}", listener
        ),
    )
    # A savepoint, so that a failed write leaves a surrounding transaction usable for _fail.
    with transaction.atomic():
        MonthlyReport.objects.filter(pk=report.pk).update(figures=report.figures)
    seconds["figures"] = time.perf_counter() - stage_started

    stage_started = time.perf_counter()
    _set_progress(report, PDF_PROGRESS[0], "PDF", listener)
    report.pdf.save("monthly-report.pdf", ContentFile(pdf.render_pdf(report)), save=False)
    seconds["pdf"] = time.perf_counter() - stage_started

    stage_started = time.perf_counter()
    _set_progress(report, EXCEL_PROGRESS[0], "Excel", listener)
    report.xlsx.save("monthly-report.xlsx", ContentFile(excel.render_xlsx(report)), save=False)
    seconds["xlsx"] = time.perf_counter() - stage_started

    report.status = ReportStatus.COMPLETED
    report.progress = EXCEL_PROGRESS[1]
    report.progress_step = ""
    report.finished_at = timezone.now()
    with transaction.atomic():
        report.save(
            update_fields=["pdf", "xlsx", "status", "progress", "progress_step", "finished_at"]
        )
    if listener is not None:
        listener(report)


def _fail(report: MonthlyReport, error: Exception, seconds: float) -> None:
    message = f"{type(error).__name__}: {error}"
    MonthlyReport.objects.filter(pk=report.pk).update(
        status=ReportStatus.FAILED, finished_at=timezone.now(), error=message[:10_000]
    )
    report.refresh_from_db()
    logger.error(
        "monthly_report report=%d failed after %.2f s: %s",
        report.pk,
        seconds,
        message.splitlines()[0],
        exc_info=error,
    )
