"""Starting, chunking and finishing a close-of-day run.

A run has two phases, each a Celery group of chunk tasks over ranges of loan
ids. Phase 1 refreshes positions and evaluates the warning rules; phase 2
applies classification floors, which need every position of a borrower.
Each chunk is one transaction, so a run killed midway leaves whole chunks
done and the next run for the same date recomputes them to the same state.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Min, Sum
from django.utils import timezone

from loans.models import Loan, LoanPosition

from ..models import EarlyWarning, JobRun, JobStatus, WarningStatus
from .classification import classify_chunk
from .positions import refresh_positions
from .warnings import evaluate_rules

logger = logging.getLogger(__name__)

Chunk = tuple[int, int]


def plan_chunks(chunk_size: int | None = None) -> list[Chunk]:
    """Split the loan ids into inclusive ranges of at most `chunk_size` ids."""
    size = chunk_size or settings.POSTLOAN_CLOSE_OF_DAY_CHUNK_SIZE
    bounds = Loan.objects.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return []
    return [
        (low, min(low + size - 1, bounds["high"]))
        for low in range(bounds["low"], bounds["high"] + 1, size)
    ]


def start_run(as_of: date, triggered_by: str = "", chunk_size: int | None = None) -> JobRun:
    """Create the run record, abandoning any unfinished run for the same date."""
    abandoned = JobRun.objects.filter(
        kind="close_of_day", as_of=as_of, status=JobStatus.RUNNING
    ).update(status=JobStatus.ABANDONED, finished_at=timezone.now())
    if abandoned:
        logger.warning("close_of_day as_of=%s abandoned %d unfinished run(s)", as_of, abandoned)
    chunks = plan_chunks(chunk_size)
    run = JobRun.objects.create(
        as_of=as_of, chunk_count=len(chunks) * 2, triggered_by=triggered_by
    )
    logger.info("close_of_day run=%d as_of=%s start chunks=%d", run.pk, as_of, len(chunks))
    return run


def run_refresh_chunk(run_id: int, as_of: date, low: int, high: int) -> dict[str, int]:
    with transaction.atomic():
        counts = refresh_positions(as_of, low, high)
        counts.update(evaluate_rules(as_of, low, high, run_id))
    _chunk_done(run_id, "refresh", low, high, counts)
    return counts


def run_classify_chunk(run_id: int, as_of: date, low: int, high: int) -> dict[str, int]:
    with transaction.atomic():
        counts = classify_chunk(as_of, low, high, run_id)
    _chunk_done(run_id, "classify", low, high, counts)
    return counts


def _chunk_done(run_id: int, phase: str, low: int, high: int, counts: dict[str, int]) -> None:
    JobRun.objects.filter(pk=run_id).update(chunks_done=F("chunks_done") + 1)
    logger.info(
        "close_of_day run=%d %s chunk=%d-%d done positions=%s class_changes=%s",
        run_id,
        phase,
        low,
        high,
        counts.get("positions_written", "-"),
        counts.get("class_changes", "-"),
    )


def finish_run(run_id: int, chunk_counts: list[dict[str, int]]) -> JobRun:
    """Sum the chunk counts, add the portfolio summary and mark the run completed."""
    run = JobRun.objects.get(pk=run_id)
    totals: Counter[str] = Counter()
    for counts in chunk_counts:
        totals.update(counts)
    run.counts = {"steps": dict(sorted(totals.items())), "summary": portfolio_summary(run.as_of)}
    run.status = JobStatus.COMPLETED
    run.finished_at = timezone.now()
    run.save(update_fields=["counts", "status", "finished_at"])
    logger.info(
        "close_of_day run=%d as_of=%s end status=completed loans=%d class_changes=%d",
        run.pk,
        run.as_of,
        run.counts["summary"]["open_loans"],
        totals.get("class_changes", 0),
    )
    return run


def fail_run(run_id: int, error: str) -> None:
    JobRun.objects.filter(pk=run_id, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, finished_at=timezone.now(), errors=error[:10_000]
    )
    logger.error("close_of_day run=%d failed: %s", run_id, error.splitlines()[0] if error else "")


def portfolio_summary(as_of: date) -> dict:
    """Return loans per class and stage and warnings per rule after a run."""
    open_positions = LoanPosition.objects.filter(as_of=as_of, is_open=True)
    by_class = open_positions.values("loan__risk_class").annotate(
        loans=Count("pk"), balance=Sum("outstanding_principal")
    )
    by_stage = open_positions.values("loan__ifrs9_stage").annotate(loans=Count("pk"))
    warnings = (
        EarlyWarning.objects.filter(status__in=WarningStatus.active())
        .values("rule_code")
        .annotate(count=Count("pk"))
    )
    totals = open_positions.aggregate(
        balance=Sum("outstanding_principal"),
        specific=Sum("specific_provision"),
        general=Sum("general_provision"),
    )
    return {
        "open_loans": open_positions.count(),
        "loans_by_class": {str(row["loan__risk_class"]): row["loans"] for row in by_class},
        "balance_by_class": {
            str(row["loan__risk_class"]): str(row["balance"]) for row in by_class
        },
        "loans_by_stage": {str(row["loan__ifrs9_stage"]): row["loans"] for row in by_stage},
        "active_warnings_by_rule": {row["rule_code"]: row["count"] for row in warnings},
        "balance": str(totals["balance"] or 0),
        "specific_provision": str(totals["specific"] or 0),
        "general_provision": str(totals["general"] or 0),
    }
