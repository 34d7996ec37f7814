"""Reads shared by monitoring pages and jobs."""

from __future__ import annotations

from datetime import date

from .models import JobRun, JobStatus


def get_business_date() -> date | None:
    """Return the as-of date of the last completed close-of-day run."""
    run = (
        JobRun.objects.filter(kind="close_of_day", status=JobStatus.COMPLETED)
        .order_by("-finished_at")
        .values_list("as_of", flat=True)
        .first()
    )
    return run
