"""Starting, chunking and finishing a close-of-day run.

A run has two phases, each a Celery group of chunk tasks over ranges of loan
ids. Phase 1 refreshes positions and evaluates the warning rules; phase 2
applies classification floors, which need every position of a borrower.
Between them one task (`prepare_classification`) refreshes the planner
statistics of the positions and finds the borrowers hit by debtor
contagion. Each chunk is one transaction, so a run killed midway leaves
whole chunks done and the next run for the same date recomputes them to the
same state.

Each chunk task returns a ChunkResult: its counts per step, the seconds spent
in each step and its start and end times, which the finish sums into
`JobRun.counts["steps"]` and `JobRun.counts["timings"]`.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from datetime import date
from decimal import Decimal
from typing import TypedDict

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Sum
from django.utils import timezone

from loans.models import Loan, LoanPosition
from reports.snapshots import is_month_end, write_month_end_snapshots
from reports.summary import refresh_portfolio_summary

from ..models import EarlyWarning, JobRun, JobStatus, WarningStatus
from ..services import set_missing_deadlines
from ..sql import analyze, tune_chunk_transaction
from .classification import classify_chunk, contagious_loans
from .inspections import refresh_plans_and_inspections, schedule_special_inspections
from .network import refresh_guarantee_network
from .positions import refresh_positions
from .proposals import propose_chunk
from .warnings import evaluate_rules

logger = logging.getLogger(__name__)

Chunk = tuple[int, int]


class ChunkResult(TypedDict):
    """Result of one chunk task, plain JSON so that it travels through the broker."""

    phase: str
    counts: dict[str, int]
    seconds: dict[str, float]
    started_at: float
    finished_at: float


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
    run = JobRun.objects.create(as_of=as_of, chunk_count=len(chunks) * 2, triggered_by=triggered_by)
    logger.info("close_of_day run=%d as_of=%s start chunks=%d", run.pk, as_of, len(chunks))
    return run


def run_refresh_chunk(run_id: int, as_of: date, low: int, high: int) -> ChunkResult:
    started_at = time.time()
    with transaction.atomic():
        _tune_transaction()
        step_started = time.perf_counter()
        counts = refresh_positions(as_of, low, high)
        positions_seconds = time.perf_counter() - step_started
        step_started = time.perf_counter()
        rule_counts = evaluate_rules(as_of, low, high, run_id)
        counts.update(rule_counts)
        rules_seconds = time.perf_counter() - step_started
        step_started = time.perf_counter()
        counts.update(
            schedule_special_inspections(as_of, low, high, run_id, rule_counts.opened_red)
        )
        inspections_seconds = time.perf_counter() - step_started
        _count_chunk_done(run_id)
    seconds = {
        "refresh_positions": positions_seconds,
        "evaluate_rules": rules_seconds,
        "inspections": inspections_seconds,
    }
    return _chunk_result(run_id, "refresh", low, high, counts, seconds, started_at)


def prepare_classification(
    run_id: int, as_of: date, chunks: list[Chunk]
) -> tuple[list[list[int]], ChunkResult]:
    """Prepare phase 2; return the loans of contagious borrowers in each chunk, and timings.

    It first refreshes the planner statistics of the positions. Phase 1 has
    just given every position the run date, a value that statistics from
    before the run have never seen, so the planner would otherwise read
    phase 2's positions through the as-of index. Debtor contagion is then
    found for the whole book in one grouped pass, which is cheaper than each
    chunk looking up the other loans of its borrowers one by one. Last, the
    guarantee network and the flagged guarantees that the guarantor rules
    of phase 2 read are rewritten for the whole book.
    """
    started_at = time.time()
    step_started = time.perf_counter()
    with connection.cursor() as cursor:
        analyze(cursor, LoanPosition._meta.db_table)
    analyze_seconds = time.perf_counter() - step_started
    step_started = time.perf_counter()
    contagious = contagious_loans(as_of)
    contagion_seconds = time.perf_counter() - step_started
    step_started = time.perf_counter()
    network_counts = refresh_guarantee_network(as_of, run_id)
    network_seconds = time.perf_counter() - step_started
    per_chunk = [
        contagious[bisect_left(contagious, low) : bisect_right(contagious, high)]
        for low, high in chunks
    ]
    logger.info(
        "close_of_day run=%d positions analysed, %d loans of contagious borrowers",
        run_id,
        len(contagious),
    )
    result = ChunkResult(
        phase="prepare",
        counts={"contagious_loans": len(contagious), **network_counts},
        seconds={
            "analyze_positions": analyze_seconds,
            "debtor_contagion": contagion_seconds,
            "guarantee_network": network_seconds,
        },
        started_at=started_at,
        finished_at=time.time(),
    )
    return per_chunk, result


def run_classify_chunk(
    run_id: int, as_of: date, low: int, high: int, contagious: list[int] | None = None
) -> ChunkResult:
    """Classify one chunk, then refresh its plans and inspections and run the phase-2 rules.

    `contagious` is the chunk's share of `prepare_classification`'s result;
    without it, the chunk runs the whole-book contagion query itself. The
    plans follow the classes just set, the inspection rules see the
    inspections just created and marked overdue, and the special
    inspections follow the red warnings the phase-2 rules open (those of
    phase 1 got theirs in the phase-1 chunk).
    """
    if contagious is None:
        every_loan = contagious_loans(as_of)
        contagious = every_loan[bisect_left(every_loan, low) : bisect_right(every_loan, high)]
    started_at = time.time()
    with transaction.atomic():
        _tune_transaction()
        step_started = time.perf_counter()
        counts = classify_chunk(as_of, low, high, run_id, contagious)
        classify_seconds = time.perf_counter() - step_started
        step_started = time.perf_counter()
        counts.update(refresh_plans_and_inspections(as_of, low, high, run_id))
        inspections_seconds = time.perf_counter() - step_started
        step_started = time.perf_counter()
        rule_counts = evaluate_rules(as_of, low, high, run_id, phase=2)
        counts.update(rule_counts)
        rules_seconds = time.perf_counter() - step_started
        step_started = time.perf_counter()
        counts.update(
            schedule_special_inspections(as_of, low, high, run_id, rule_counts.opened_red)
        )
        inspections_seconds += time.perf_counter() - step_started
        step_started = time.perf_counter()
        counts.update(propose_chunk(as_of, low, high, run_id))
        proposals_seconds = time.perf_counter() - step_started
        step_started = time.perf_counter()
        if is_month_end(as_of):
            counts["month_end_snapshots"] = write_month_end_snapshots(as_of, low, high, run_id)
        snapshot_seconds = time.perf_counter() - step_started
        _count_chunk_done(run_id)
    _log_inspection_counts(run_id, low, high, counts)
    seconds = {
        "classify": classify_seconds,
        "inspections": inspections_seconds,
        "evaluate_phase_2_rules": rules_seconds,
        "proposals": proposals_seconds,
        "month_end_snapshots": snapshot_seconds,
    }
    return _chunk_result(run_id, "classify", low, high, counts, seconds, started_at)


def _log_inspection_counts(run_id: int, low: int, high: int, counts: dict[str, int]) -> None:
    logger.info(
        "close_of_day run=%d inspections chunk=%d-%d plans_created=%d plans_changed=%d "
        "first=%d routine=%d special=%d overdue=%d cancelled=%d",
        run_id,
        low,
        high,
        counts["plans_created"],
        counts["plans_changed"],
        counts["inspections_created_first"],
        counts["inspections_created_routine"],
        counts["special_inspections"],
        counts["inspections_overdue"],
        counts["inspections_cancelled"],
    )


def _tune_transaction() -> None:
    with connection.cursor() as cursor:
        tune_chunk_transaction(cursor)


def _count_chunk_done(run_id: int) -> None:
    """Count the chunk in the run record, in the chunk's own transaction."""
    JobRun.objects.filter(pk=run_id).update(chunks_done=F("chunks_done") + 1)


def _chunk_result(
    run_id: int,
    phase: str,
    low: int,
    high: int,
    counts: dict[str, int],
    seconds: dict[str, float],
    started_at: float,
) -> ChunkResult:
    finished_at = time.time()
    logger.info(
        "close_of_day run=%d %s chunk=%d-%d done positions=%s class_changes=%s seconds=%.2f",
        run_id,
        phase,
        low,
        high,
        counts.get("positions_written", "-"),
        counts.get("class_changes", "-"),
        finished_at - started_at,
    )
    return ChunkResult(
        phase=phase,
        counts=counts,
        seconds=seconds,
        started_at=started_at,
        finished_at=finished_at,
    )


def finish_run(run_id: int, chunk_results: list[ChunkResult]) -> JobRun:
    """Sum the chunk counts and timings, add the portfolio summary, mark the run completed."""
    run = JobRun.objects.get(pk=run_id)
    totals: Counter[str] = Counter()
    for result in chunk_results:
        totals.update(result["counts"])
    totals["warning_deadlines_set"] = set_missing_deadlines(run.as_of)
    summary_started = time.perf_counter()
    summary = portfolio_summary(run.as_of)
    timings = _sum_timings(chunk_results)
    timings["steps"]["portfolio_summary"] = round(time.perf_counter() - summary_started, 3)
    step_started = time.perf_counter()
    totals["portfolio_summary_rows"] = refresh_portfolio_summary(run.as_of, run.pk)
    timings["steps"]["refresh_portfolio_summary"] = round(time.perf_counter() - step_started, 3)
    run.counts = {"steps": dict(sorted(totals.items())), "summary": summary, "timings": timings}
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


def _sum_timings(chunk_results: list[ChunkResult]) -> dict[str, dict[str, float]]:
    """Return seconds per step summed over chunks, and each phase's wall-clock span.

    A phase's span runs from its first chunk's start to its last chunk's end,
    so with several workers it is less than the sum of its steps.
    """
    step_seconds: Counter[str] = Counter()
    spans: dict[str, tuple[float, float]] = {}
    for result in chunk_results:
        step_seconds.update(result["seconds"])
        first, last = spans.get(result["phase"], (result["started_at"], result["finished_at"]))
        spans[result["phase"]] = (
            min(first, result["started_at"]),
            max(last, result["finished_at"]),
        )
    return {
        "steps": {step: round(value, 3) for step, value in step_seconds.items()},
        "phases": {phase: round(last - first, 3) for phase, (first, last) in spans.items()},
    }


def fail_run(run_id: int, error: str) -> None:
    JobRun.objects.filter(pk=run_id, status=JobStatus.RUNNING).update(
        status=JobStatus.FAILED, finished_at=timezone.now(), errors=error[:10_000]
    )
    logger.error("close_of_day run=%d failed: %s", run_id, error.splitlines()[0] if error else "")


def portfolio_summary(as_of: date) -> dict:
    """Return loans per class and stage and warnings per rule after a run.

    One grouped pass over the open positions gives every figure, because a
    pass over a million positions costs seconds.
    """
    groups = (
        LoanPosition.objects.filter(as_of=as_of, is_open=True)
        .values("loan__risk_class", "loan__ifrs9_stage")
        .annotate(
            loans=Count("pk"),
            balance=Sum("outstanding_principal"),
            specific=Sum("specific_provision"),
            general=Sum("general_provision"),
        )
        .order_by()
    )
    loans_by_class: Counter[str] = Counter()
    balance_by_class: dict[str, Decimal] = {}
    loans_by_stage: Counter[str] = Counter()
    totals = {"balance": Decimal(0), "specific": Decimal(0), "general": Decimal(0)}
    for row in groups:
        risk_class = str(row["loan__risk_class"])
        loans_by_class[risk_class] += row["loans"]
        balance_by_class[risk_class] = balance_by_class.get(risk_class, Decimal(0)) + row["balance"]
        loans_by_stage[str(row["loan__ifrs9_stage"])] += row["loans"]
        for total in totals:
            totals[total] += row[total]
    warnings = (
        EarlyWarning.objects.filter(status__in=WarningStatus.active())
        .values("rule_code")
        .annotate(count=Count("pk"))
        .order_by()
    )
    return {
        "open_loans": sum(loans_by_class.values()),
        "loans_by_class": dict(loans_by_class),
        "balance_by_class": {key: str(value) for key, value in balance_by_class.items()},
        "loans_by_stage": dict(loans_by_stage),
        "active_warnings_by_rule": {row["rule_code"]: row["count"] for row in warnings},
        "balance": str(totals["balance"]),
        "specific_provision": str(totals["specific"]),
        "general_provision": str(totals["general"]),
    }
