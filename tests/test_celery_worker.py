"""Close-of-day through a real Celery worker on Redis, and after a killed run.

The worker test starts `celery -A postloan worker` as a subprocess against
the test database and Redis database 15. The worker is another process, so
the test commits its rows (a transactional test) and needs PostgreSQL: the
SQLite test database lives in memory, where no other process can see it.

Each test run sends its tasks to a queue of its own and deletes only that
queue's keys afterwards. Test runs going on at the same time on one machine,
each with its own test database, then never take each other's tasks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings
from django.db import connection

from loans import services
from loans.models import Loan, LoanPosition, LoanStatus
from loans.schedules import add_months
from monitoring.close_of_day import run as cod
from monitoring.models import (
    ClassificationChange,
    ClassificationProposal,
    EarlyWarning,
    Inspection,
    JobRun,
    JobStatus,
    PostLoanPlan,
)
from monitoring.tasks import dispatch_close_of_day
from postloan.celery import app

from .factories import BorrowerFactory

REDIS_URL = "redis://127.0.0.1:6379/15"
AS_OF = date(2024, 2, 15)
# 60 loans in ranges of 7 ids give 9 ranges, so 18 chunks over both phases.
CHUNK_SIZE = 7
WORKER_TIMEOUT_SECONDS = 120
WORKER_STOP_SECONDS = 15

POSITION_FIELDS = [field.attname for field in LoanPosition._meta.concrete_fields]
WARNING_FIELDS = [
    "loan__contract_number",
    "rule_code",
    "family",
    "severity",
    "status",
    "first_seen_on",
    "last_seen_on",
    "cleared_on",
    "evidence",
    "closing_reason",
]
CHANGE_FIELDS = [
    "loan__contract_number",
    "as_of",
    "previous_class",
    "new_class",
    "previous_stage",
    "new_stage",
    "reason_code",
    "reason",
    "source",
    "ratified",
]


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path
    queue: str

    def read_log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def task_queue() -> Iterator[str]:
    """Return a queue name for this test run, and delete the queue's Redis keys after."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        pytest.skip(f"Redis is not reachable at {REDIS_URL}: {error}")
    queue = f"postloan-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield queue
    # kombu keeps the queue and its bindings in keys named after the queue.
    # The task results expire on their own after Celery's result_expires.
    queue_keys = list(client.scan_iter(match=f"*{queue}*"))
    if queue_keys:
        client.delete(*queue_keys)
    client.close()


@pytest.fixture
def celery_worker(transactional_db, task_queue, tmp_path) -> Iterator[WorkerProcess]:
    """Start a prefork worker on the test database, and stop it and its children afterwards."""
    if connection.vendor != "postgresql":
        pytest.skip("a Celery worker cannot open the in-memory SQLite test database")
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "postloan.settings.test",
        "DATABASE_URL": _test_database_url(),
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_RESULT_BACKEND": REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": task_queue,
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "postloan",
        "worker",
        "--loglevel=INFO",
        "--concurrency=2",
        "--pool=prefork",
        f"--queues={task_queue}",
        f"--hostname={task_queue}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    log_path = tmp_path / "celery-worker.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    yield WorkerProcess(process, log_path, task_queue)
    _stop_process_group(process)


@contextmanager
def _tasks_sent_to_redis(queue: str) -> Iterator[None]:
    """Send tasks from this process to `queue` on Redis instead of running them eagerly."""
    keys = ("task_always_eager", "broker_url", "result_backend", "task_default_queue")
    saved = {key: app.conf[key] for key in keys}
    app.conf.update(
        task_always_eager=False,
        broker_url=REDIS_URL,
        result_backend=REDIS_URL,
        task_default_queue=queue,
    )
    _drop_cached_connections()
    try:
        yield
    finally:
        app.conf.update(saved)
        _drop_cached_connections()


@pytest.fixture
def loan_book(make_scheduled_loan, branch_north, branch_south) -> list[Loan]:
    """Build 60 loans of 20 borrowers in two branches with mixed repayment records.

    Each borrower has three loans in different id ranges, so debtor contagion
    crosses chunks. Repayment patterns by loan number modulo 6: paid to date,
    never paid, stopped after one to four instalments, one instalment late and
    paid after the as-of date, paid off and closed, half of the first
    instalment paid. The last loan is disbursed after the as-of date.
    """
    borrowers = [
        BorrowerFactory(branch=branch_north if number % 2 == 0 else branch_south)
        for number in range(20)
    ]
    loans = []
    for number in range(59):
        loan = make_scheduled_loan(
            borrower=borrowers[number % 20],
            disbursement_date=add_months(date(2022, 9, 1), number % 15),
        )
        _repay(loan, number)
        loans.append(loan)
    loans.append(make_scheduled_loan(borrower=borrowers[0], disbursement_date=date(2024, 3, 1)))
    return loans


def _repay(loan: Loan, number: int) -> None:
    instalments = list(loan.instalments.order_by("due_date"))
    due = [instalment for instalment in instalments if instalment.due_date <= AS_OF]
    pattern = number % 6
    if pattern == 0 and due:
        _pay(loan, due[-1].due_date, due, "to-date")
    elif pattern == 2:
        paid = due[: number % 4 + 1]
        _pay(loan, paid[-1].due_date, paid, "stopped")
    elif pattern == 3 and len(due) > 1:
        _pay(loan, due[-2].due_date, due[:-1], "late")
        _pay(loan, AS_OF + timedelta(days=5), due[-1:], "after-as-of")
    elif pattern == 4:
        paid_on = instalments[0].due_date
        _pay(loan, paid_on, instalments, "paid-off")
        Loan.objects.filter(pk=loan.pk).update(status=LoanStatus.PAID_OFF, closed_on=paid_on)
    elif pattern == 5:
        half = (instalments[0].total_due / 2).quantize(Decimal("0.01"))
        services.record_repayment(loan, instalments[0].due_date, half, f"{loan.pk}-half")


def _pay(loan: Loan, value_date: date, instalments: list, label: str) -> None:
    amount = sum((instalment.total_due for instalment in instalments), Decimal("0.00"))
    services.record_repayment(loan, value_date, amount, f"{loan.pk}-{label}")


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_worker_run_matches_in_process_run(celery_worker, loan_book):
    starting_classes = _loan_classes()
    in_process_run = dispatch_close_of_day(AS_OF, chunk_size=CHUNK_SIZE)
    in_process_run.refresh_from_db()
    in_process_state = _derived_state()
    _reset_derived_state(starting_classes)
    chunks = cod.plan_chunks(CHUNK_SIZE)

    with _tasks_sent_to_redis(celery_worker.queue):
        worker_run = dispatch_close_of_day(AS_OF, chunk_size=CHUNK_SIZE)
        worker_run = _wait_for_run(worker_run.pk, celery_worker)

    worker_log = celery_worker.read_log()
    assert in_process_run.status == JobStatus.COMPLETED
    assert worker_run.status == JobStatus.COMPLETED, worker_log
    assert worker_run.chunk_count == 2 * len(chunks)
    assert worker_run.chunks_done == worker_run.chunk_count
    assert in_process_run.chunks_done == in_process_run.chunk_count
    assert _derived_state() == in_process_state
    assert _counts_without_timings(worker_run) == _counts_without_timings(in_process_run)
    assert _chunk_log_lines(worker_log, worker_run.pk) == {
        f"{low}-{high}": 2 for low, high in chunks
    }, worker_log


@pytest.mark.django_db
@pytest.mark.parametrize("killed_in_phase", ["refresh", "classify"])
def test_killed_run_then_rerun_matches(loan_book, killed_in_phase):
    starting_classes = _loan_classes()
    dispatch_close_of_day(AS_OF, chunk_size=CHUNK_SIZE)
    clean_state = _derived_state()
    _reset_derived_state(starting_classes)
    stale_run = _start_and_kill_run(killed_in_phase)

    rerun = dispatch_close_of_day(AS_OF, chunk_size=CHUNK_SIZE)

    stale_run.refresh_from_db()
    rerun.refresh_from_db()
    assert stale_run.status == JobStatus.ABANDONED
    assert stale_run.finished_at is not None
    assert rerun.status == JobStatus.COMPLETED
    assert rerun.chunks_done == rerun.chunk_count
    assert _derived_state() == clean_state


def test_loan_book_exercises_every_step(db, loan_book):
    dispatch_close_of_day(AS_OF, chunk_size=CHUNK_SIZE)

    state = _derived_state()
    buckets = {position["dpd_bucket"] for position in state["positions"]}
    reasons = {change["reason_code"] for change in state["changes"]}
    assert len(state["positions"]) == 59
    assert sum(not position["is_open"] for position in state["positions"]) == 10
    assert {"1-30", "31-60", "61-90", "91-180", "181-360", "over_360"} <= buckets
    assert {
        "overdue",
        "dpd_over_substandard",
        "dpd_over_doubtful",
        "dpd_over_loss",
        "debtor_contagion",
    } <= reasons
    assert state["warnings"]
    assert len(cod.plan_chunks(CHUNK_SIZE)) == 9


def _start_and_kill_run(killed_in_phase: str) -> JobRun:
    """Leave a running run with some chunks done, as a worker killed midway would."""
    run = cod.start_run(AS_OF, "killed-midway", CHUNK_SIZE)
    chunks = cod.plan_chunks(CHUNK_SIZE)
    if killed_in_phase == "refresh":
        for low, high in chunks[:3]:
            cod.run_refresh_chunk(run.pk, AS_OF, low, high)
    else:
        for low, high in chunks:
            cod.run_refresh_chunk(run.pk, AS_OF, low, high)
        for low, high in chunks[:2]:
            cod.run_classify_chunk(run.pk, AS_OF, low, high)
    run.refresh_from_db()
    assert run.status == JobStatus.RUNNING
    return run


def _loan_classes() -> dict[int, tuple[int, int]]:
    return {
        pk: (risk_class, stage)
        for pk, risk_class, stage in Loan.objects.values_list("pk", "risk_class", "ifrs9_stage")
    }


def _reset_derived_state(starting_classes: dict[int, tuple[int, int]]) -> None:
    """Delete what a close-of-day run writes and put the loans back in their classes."""
    LoanPosition.objects.all().delete()
    ClassificationProposal.objects.all().delete()
    Inspection.objects.all().delete()
    PostLoanPlan.objects.all().delete()
    EarlyWarning.objects.all().delete()
    ClassificationChange.objects.all().delete()
    by_class: dict[tuple[int, int], list[int]] = {}
    for pk, classes in starting_classes.items():
        by_class.setdefault(classes, []).append(pk)
    for (risk_class, stage), pks in by_class.items():
        Loan.objects.filter(pk__in=pks).update(risk_class=risk_class, ifrs9_stage=stage)


def _derived_state() -> dict[str, list]:
    """Return every value a run writes, without ids, run ids and timestamps."""
    return {
        "positions": list(LoanPosition.objects.order_by("loan_id").values(*POSITION_FIELDS)),
        "loans": list(
            Loan.objects.order_by("contract_number").values_list(
                "contract_number", "risk_class", "ifrs9_stage"
            )
        ),
        "warnings": list(
            EarlyWarning.objects.order_by("loan__contract_number", "rule_code", "status").values(
                *WARNING_FIELDS
            )
        ),
        "changes": list(
            ClassificationChange.objects.order_by(*CHANGE_FIELDS).values(*CHANGE_FIELDS)
        ),
        "inspections": list(
            Inspection.objects.order_by("loan__contract_number", "kind", "due_date").values_list(
                "loan__contract_number", "kind", "due_date", "status", "overdue_since"
            )
        ),
    }


def _counts_without_timings(run: JobRun) -> dict:
    """Return the run's counts without `timings`, which are wall-clock seconds."""
    return {key: value for key, value in run.counts.items() if key != "timings"}


def _wait_for_run(run_id: int, worker: WorkerProcess) -> JobRun:
    deadline = time.monotonic() + WORKER_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        run = JobRun.objects.get(pk=run_id)
        if run.status != JobStatus.RUNNING:
            return run
        if worker.process.poll() is not None:
            pytest.fail(
                f"Celery worker exited with code {worker.process.returncode} before run "
                f"{run_id} finished; worker log:\n{worker.read_log()}"
            )
        time.sleep(0.2)
    run = JobRun.objects.get(pk=run_id)
    pytest.fail(
        f"Close-of-day run {run_id} was still running after {WORKER_TIMEOUT_SECONDS} s "
        f"({run.chunks_done} of {run.chunk_count} chunks done); worker log:\n"
        f"{worker.read_log()}"
    )


def _chunk_log_lines(log: str, run_id: int) -> Counter[str]:
    """Count the "chunk done" log lines of one run per id range, one line per phase."""
    return Counter(re.findall(rf"\brun={run_id}\b.*?\bchunk=(\d+-\d+) done\b", log))


def _test_database_url() -> str:
    database = connection.settings_dict
    user = quote(database["USER"] or "", safe="")
    password = f":{quote(database['PASSWORD'], safe='')}" if database["PASSWORD"] else ""
    host = database["HOST"] or "127.0.0.1"
    port = database["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{database['NAME']}"


def _drop_cached_connections() -> None:
    # NOTE: Celery caches the broker pool and the result backend on first use
    # and has no public call to drop them after a configuration change. These
    # private attributes are the caches in Celery 5.7.
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)


def _stop_process_group(process: subprocess.Popen) -> None:
    """Ask the worker for a warm shutdown, then kill whatever is left of its group."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=WORKER_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=WORKER_STOP_SECONDS)
