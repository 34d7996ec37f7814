"""Celery tasks: thin wrappers around the close-of-day run.

The run is a chord of chord: phase 1 chunks, then one task that prepares
phase 2 (see `prepare_classification`) and queues its chunks, then the
finish. With no broker configured the same chords run in-process.
"""

from __future__ import annotations

import logging
import traceback
from datetime import date

from celery import chord, group, shared_task
from django.utils import timezone

from .close_of_day import run as cod

logger = logging.getLogger(__name__)


@shared_task(name="monitoring.refresh_chunk")
def refresh_chunk(run_id: int, as_of: str, low: int, high: int) -> cod.ChunkResult:
    return cod.run_refresh_chunk(run_id, date.fromisoformat(as_of), low, high)


@shared_task(name="monitoring.classify_chunk")
def classify_chunk(
    run_id: int, as_of: str, low: int, high: int, contagious: list[int]
) -> cod.ChunkResult:
    return cod.run_classify_chunk(run_id, date.fromisoformat(as_of), low, high, contagious)


@shared_task(name="monitoring.start_classification")
def start_classification(
    refresh_results: list[dict], run_id: int, as_of: str, chunks: list[list[int]]
) -> None:
    contagious, prepare_result = cod.prepare_classification(
        run_id, date.fromisoformat(as_of), [(low, high) for low, high in chunks]
    )
    header = group(
        classify_chunk.si(run_id, as_of, low, high, loans)
        for (low, high), loans in zip(chunks, contagious, strict=True)
    )
    body = finish.s(run_id, [*refresh_results, prepare_result]).on_error(
        mark_failed.s(run_id=run_id)
    )
    chord(header)(body)


@shared_task(name="monitoring.finish_close_of_day")
def finish(classify_results: list[dict], run_id: int, refresh_results: list[dict]) -> int:
    cod.finish_run(run_id, refresh_results + classify_results)
    return run_id


@shared_task(name="monitoring.mark_close_of_day_failed")
def mark_failed(request, exc, traceback_text=None, run_id: int | None = None) -> None:
    cod.fail_run(run_id, f"{type(exc).__name__}: {exc}")


def dispatch_close_of_day(as_of: date, triggered_by: str = "", chunk_size: int | None = None):
    """Start a run and queue its chunks; return the run record.

    With tasks running in-process the whole run has finished when this
    returns; with a broker, workers do the work and the run record shows
    progress.
    """
    run = cod.start_run(as_of, triggered_by, chunk_size)
    chunks = [list(chunk) for chunk in cod.plan_chunks(chunk_size)]
    if not chunks:
        cod.finish_run(run.pk, [])
        return run
    header = group(refresh_chunk.si(run.pk, as_of.isoformat(), low, high) for low, high in chunks)
    body = start_classification.s(run.pk, as_of.isoformat(), chunks).on_error(
        mark_failed.s(run_id=run.pk)
    )
    try:
        chord(header)(body)
    except Exception:
        cod.fail_run(run.pk, traceback.format_exc())
        raise
    return run


@shared_task(name="monitoring.close_of_day")
def close_of_day(as_of: str | None = None) -> int:
    """Run close-of-day for `as_of`, or for today's date when the beat schedule calls it."""
    business_date = date.fromisoformat(as_of) if as_of else timezone.localdate()
    run = dispatch_close_of_day(business_date, triggered_by="schedule")
    return run.pk


@shared_task(name="monitoring.escalate_overdue_warnings")
def escalate_overdue_warnings(as_of: str | None = None) -> int:
    """Set missing deadlines, then escalate red warnings past theirs; return how many escalated.

    The beat schedule calls it daily without `as_of`, which means the business
    date (the as-of date of the last completed close-of-day run), the date the
    deadlines and the warning queue count from. Before any run it is today.
    """
    from . import selectors, services

    if as_of:
        business_date = date.fromisoformat(as_of)
    else:
        business_date = selectors.get_business_date() or timezone.localdate()
    services.set_missing_deadlines(business_date)
    return services.escalate_overdue(business_date)
