"""Celery tasks of the reports app: generate one monthly report, and the monthly schedule."""

from __future__ import annotations

from datetime import date

from celery import shared_task
from django.utils import timezone

from .monthly import schedule, services


@shared_task(name="reports.generate_monthly_report")
def generate_monthly_report(report_id: int) -> int:
    """Generate a queued report version; the version records any error itself."""
    services.generate_report(report_id)
    return report_id


@shared_task(name="reports.schedule_monthly_reports")
def schedule_monthly_reports(as_of: str | None = None) -> list[int]:
    """Request the previous month's bank and branch reports; return the new version ids.

    The beat schedule calls it on the first day of each month without
    `as_of`, which then means today's date in TIME_ZONE.
    """
    today = date.fromisoformat(as_of) if as_of else timezone.localdate()
    return [report.pk for report in schedule.request_scheduled_reports(today)]
