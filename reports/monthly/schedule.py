"""The reports the schedule creates on the first day of each month."""

from __future__ import annotations

import logging
from datetime import date

from loans.models import Branch

from ..models import MonthlyReport
from .periods import previous_month
from .services import request_report

logger = logging.getLogger(__name__)


def request_scheduled_reports(today: date) -> list[MonthlyReport]:
    """Request the bank's report and each branch's for the month before `today`.

    A scope that already has a version the schedule requested for that
    month is skipped, so a second call on the same day requests nothing.
    Versions requested by users do not count.
    """
    month = previous_month(today)
    scheduled = set(
        MonthlyReport.objects.filter(month=month, requested_by__isnull=True).values_list(
            "branch_id", flat=True
        )
    )
    scopes: list[Branch | None] = [None, *Branch.objects.order_by("code")]
    reports = [
        request_report(month, branch, None)
        for branch in scopes
        if (branch.pk if branch else None) not in scheduled
    ]
    logger.info(
        "monthly_report schedule month=%s requested=%d skipped=%d",
        f"{month:%Y-%m}",
        len(reports),
        len(scopes) - len(reports),
    )
    return reports
