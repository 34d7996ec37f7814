"""Benchmark the close-of-day run on a synthetic loan book in PostgreSQL.

    .venv/bin/python benchmarks/close_of_day.py --loans 100000

Steps, each printed with its figures:

1. Create and migrate the benchmark database, then generate the loan book
   set-wise (benchmarks/loan_book.py), unless --reuse-data finds one of the
   same size.
2. Time a hand-written query that computes days past due and overdue
   amounts for every loan in one statement: the lower bound that the
   days-past-due step of the run is compared with.
3. Run the whole close-of-day through `dispatch_close_of_day`, once with
   tasks in-process (eager) and once with Celery workers started here
   against Redis. The run's output is reset in between, so both runs do
   the same work. Print seconds per run, phase and step, and peak memory.

It sets up Django itself with postloan.settings.base. The database named in
--database-url is the benchmark's own: generation empties the loans and
monitoring tables there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postloan_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
DEFAULT_AS_OF = "2025-06-30"
WORKER_START_TIMEOUT = 60
RUN_TIMEOUT = 3600


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loans", type=int, default=100_000, help="Loans to generate.")
    parser.add_argument(
        "--as-of",
        type=date.fromisoformat,
        default=date.fromisoformat(DEFAULT_AS_OF),
        help="Business date of the run, YYYY-MM-DD.",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="Loans per chunk; default POSTLOAN_CLOSE_OF_DAY_CHUNK_SIZE from the settings.",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="Celery worker processes (prefork concurrency)."
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL)
    parser.add_argument(
        "--reuse-data",
        action="store_true",
        help="Keep the loan book already in the database when it has --loans loans.",
    )
    parser.add_argument(
        "--skip-hand-written",
        action="store_true",
        help="Skip the hand-written query and the comparisons with it.",
    )
    parser.add_argument("--skip-eager", action="store_true", help="Skip the in-process run.")
    parser.add_argument("--skip-workers", action="store_true", help="Skip the Celery run.")
    parser.add_argument(
        "--next-day",
        action="store_true",
        help="After the Celery run, run again for the next date without resetting, "
        "so positions and warnings already exist (the nightly case).",
    )
    parser.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    return parser.parse_args(argv)


def configure_environment(args: argparse.Namespace) -> None:
    """Point Django at the benchmark database and Celery at the benchmark broker."""
    if urlsplit(args.database_url).scheme not in ("postgres", "postgresql"):
        raise SystemExit(
            f"Invalid --database-url {args.database_url!r}: expected a postgres:// URL."
        )
    os.environ["DJANGO_SETTINGS_MODULE"] = "postloan.settings.base"
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["CELERY_BROKER_URL"] = args.broker_url
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if args.chunk_size:
        os.environ["POSTLOAN_CLOSE_OF_DAY_CHUNK_SIZE"] = str(args.chunk_size)
    sys.path.insert(0, str(REPO))


def create_database(url: str) -> None:
    """Create the database named in `url` if it does not exist."""
    import psycopg2

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    connection = psycopg2.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
        dbname="postgres",
    )
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()


# --- Figures -------------------------------------------------------------


@dataclass
class RunFigures:
    mode: str
    as_of: str
    seconds: float
    loans_per_second: float
    phases: dict[str, float]
    steps: dict[str, float]
    counts: dict[str, int]
    load_average_before: float = 0.0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    mismatches_with_hand_written_query: int | None = None


def machine_figures(command: str) -> dict[str, object]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0]
        settings = {}
        for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit"):
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    return {
        "command": command,
        "nproc": int(nproc),
        "memory_gib": round(_meminfo_kib("MemTotal") / 1024**2, 1),
        "postgresql": version,
        "postgresql_settings": settings,
    }


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


# --- Hand-written lower bound --------------------------------------------

HAND_WRITTEN_ARREARS = """
    CREATE TEMPORARY TABLE bench_arrears AS
    SELECT i.loan_id,
           COALESCE(MAX(%(as_of)s::date - i.due_date) FILTER (
               WHERE i.principal_due > COALESCE(a.principal, 0)
                  OR i.interest_due > COALESCE(a.interest, 0)
           ), 0) AS days_past_due,
           SUM(i.principal_due - COALESCE(a.principal, 0)) AS overdue_principal,
           SUM(i.interest_due - COALESCE(a.interest, 0)) AS overdue_interest
    FROM loans_instalment i
    LEFT JOIN (
        SELECT instalment_id, SUM(principal) AS principal, SUM(interest) AS interest
        FROM loans_repaymentallocation
        WHERE value_date <= %(as_of)s
        GROUP BY instalment_id
    ) a ON a.instalment_id = i.id
    WHERE i.due_date < %(as_of)s
    GROUP BY i.loan_id
"""

MISMATCHES = """
    SELECT COUNT(*)
    FROM loans_loanposition p LEFT JOIN bench_arrears b ON b.loan_id = p.loan_id
    WHERE p.is_open AND (
        p.days_past_due <> COALESCE(b.days_past_due, 0)
        OR p.overdue_principal <> COALESCE(b.overdue_principal, 0)
        OR p.overdue_interest <> COALESCE(b.overdue_interest, 0)
    )
"""


def time_hand_written_query(as_of: date, repeats: int = 2) -> list[float]:
    """Run the hand-written arrears query `repeats` times; keep the last result table."""
    from django.db import connection

    seconds = []
    with connection.cursor() as cursor:
        for _ in range(repeats):
            cursor.execute("DROP TABLE IF EXISTS bench_arrears")
            started = time.perf_counter()
            cursor.execute(HAND_WRITTEN_ARREARS, {"as_of": as_of})
            seconds.append(time.perf_counter() - started)
    return seconds


def count_mismatches() -> int:
    """Count the open loans whose run position differs from the hand-written query."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(MISMATCHES)
        return cursor.fetchone()[0]


# --- Close-of-day runs ---------------------------------------------------

RUN_OUTPUT_TABLES = (
    "loans_loanposition",
    "monitoring_earlywarning",
    "monitoring_historicalearlywarning",
    "monitoring_classificationchange",
    "loans_historicalloan",
)


def reset_run_output() -> None:
    """Remove what a run wrote, so the next run starts from the generated book.

    CASCADE also empties the tables that refer to warnings or classification
    changes (actions taken on warnings, for example). The benchmark database
    has no other use.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(RUN_OUTPUT_TABLES)} CASCADE")
        cursor.execute(
            "UPDATE loans_loan SET risk_class = 1, ifrs9_stage = 1 "
            "WHERE risk_class <> 1 OR ifrs9_stage <> 1"
        )
        cursor.execute(f"VACUUM ANALYZE loans_loan, {', '.join(RUN_OUTPUT_TABLES)}")


def run_close_of_day(mode: str, as_of: date, loans: int, eager: bool) -> RunFigures:
    from monitoring.models import JobRun, JobStatus
    from monitoring.tasks import dispatch_close_of_day
    from postloan.celery import app

    app.conf.task_always_eager = eager
    load_average = os.getloadavg()[0]
    started = time.perf_counter()
    run = dispatch_close_of_day(as_of, triggered_by="benchmark")
    while True:
        run.refresh_from_db()
        if run.status != JobStatus.RUNNING:
            break
        if time.perf_counter() - started > RUN_TIMEOUT:
            raise SystemExit(f"Close-of-day run {run.pk} timed out after {RUN_TIMEOUT} s.")
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    if run.status != JobStatus.COMPLETED:
        raise SystemExit(f"Close-of-day run {run.pk} ended {run.status}: {run.errors}")
    run = JobRun.objects.get(pk=run.pk)
    timings = run.counts["timings"]
    return RunFigures(
        mode=mode,
        as_of=as_of.isoformat(),
        seconds=round(seconds, 2),
        loans_per_second=round(loans / seconds),
        phases=timings["phases"],
        steps=timings["steps"],
        counts=run.counts["steps"],
        load_average_before=round(load_average, 2),
    )


class CeleryWorkers:
    """A `celery worker` process with prefork children, started and stopped here."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.log_path = Path(tempfile.gettempdir()) / f"postloan-bench-worker-{os.getpid()}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> CeleryWorkers:
        from postloan.celery import app

        app.control.purge()
        celery = Path(sys.executable).parent / "celery"
        command = [
            str(celery),
            "-A",
            "postloan",
            "worker",
            f"--concurrency={self.concurrency}",
            "--pool=prefork",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname=bench-{os.getpid()}@%h",
        ]
        env = {**os.environ, "LOG_LEVEL": "INFO"}
        log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        self._wait_until_ready(app)
        return self

    def _wait_until_ready(self, app) -> None:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"Celery worker exited at start; see {self.log_path}.")
            if app.control.ping(timeout=1.0):
                return
        raise SystemExit(
            f"Celery worker not ready after {WORKER_START_TIMEOUT} s; see {self.log_path}."
        )

    def peak_rss_mib(self) -> dict[str, float]:
        """Return VmHWM (peak resident set) of the main process and each child, in MiB."""
        pids = {"main": self.process.pid}
        for number, pid in enumerate(_child_pids(self.process.pid), start=1):
            pids[f"child_{number}"] = pid
        return {name: round(_vm_hwm_kib(pid) / 1024, 1) for name, pid in pids.items()}

    def __exit__(self, *exc_info) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _child_pids(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name in brackets may contain spaces; fields after it are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent:
            children.append(int(entry.name))
    return sorted(children)


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise KeyError(f"VmHWM of {pid}")


# --- Report --------------------------------------------------------------


def print_run(figures: RunFigures, hand_written_seconds: float | None) -> None:
    print(f"\n== close-of-day, {figures.mode}, as of {figures.as_of}")
    print(f"total seconds:        {figures.seconds:.2f}")
    print(f"loans per second:     {figures.loans_per_second}")
    print(f"load average before:  {figures.load_average_before} (other processes share the CPUs)")
    for phase, seconds in figures.phases.items():
        print(f"phase {phase + ' wall':15} {seconds:.2f} s")
    for step, seconds in figures.steps.items():
        print(f"step {step + ' (sum)':24} {seconds:.2f} s")
    positions = figures.steps.get("refresh_positions")
    if positions is not None and hand_written_seconds:
        ratio = positions / hand_written_seconds
        print(f"days-past-due step / hand-written query: {ratio:.2f}")
    interesting = ("positions_written", "class_changes", "stage_changes")
    print("counts:", ", ".join(f"{key}={figures.counts.get(key)}" for key in interesting))
    opened = {key: value for key, value in figures.counts.items() if key.endswith("_opened")}
    print("warnings opened:", ", ".join(f"{key}={value}" for key, value in opened.items()))
    for name, mib in figures.peak_rss_mib.items():
        print(f"peak RSS {name:12} {mib:.1f} MiB")
    if figures.mismatches_with_hand_written_query is not None:
        print(
            f"open loans differing from the hand-written query: "
            f"{figures.mismatches_with_hand_written_query}"
        )


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    command = shlex.join([sys.executable, *sys.argv])
    configure_environment(args)
    create_database(args.database_url)

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from benchmarks import loan_book

    call_command("migrate", verbosity=0)
    machine = machine_figures(command)
    print(f"command:    {command}")
    print(f"machine:    nproc={machine['nproc']}, memory={machine['memory_gib']} GiB")
    print(f"postgresql: {machine['postgresql']}")
    print(
        f"settings:   {machine['postgresql_settings']}, "
        f"chunk size={settings.POSTLOAN_CLOSE_OF_DAY_CHUNK_SIZE}"
    )
    report: dict[str, object] = {"machine": machine, "loans": args.loans, "runs": []}

    if args.reuse_data and loan_book.loan_count() == args.loans:
        print(f"\n== loan book: reusing {args.loans} loans")
        reset_run_output()
    else:
        print(f"\n== loan book: generating {args.loans} loans")
        started = time.perf_counter()
        generation = loan_book.generate(args.loans, args.as_of)
        total = time.perf_counter() - started
        print(
            f"generation seconds:   {total:.1f}  "
            + ", ".join(f"{name}={seconds:.1f}" for name, seconds in generation.items())
        )
        report["generation_seconds"] = round(total, 1)
    print("loans by status:", loan_book.profile_counts())

    best = None
    if not args.skip_hand_written:
        hand_written = time_hand_written_query(args.as_of)
        best = min(hand_written)
        print("\n== hand-written arrears query (CREATE TEMP TABLE AS)")
        print("seconds per repeat:", ", ".join(f"{seconds:.2f}" for seconds in hand_written))
        report["hand_written_seconds"] = [round(seconds, 2) for seconds in hand_written]

    runs: list[RunFigures] = []
    if not args.skip_eager:
        figures = run_close_of_day("eager", args.as_of, args.loans, eager=True)
        figures.peak_rss_mib = {
            "benchmark": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        }
        if best is not None:
            figures.mismatches_with_hand_written_query = count_mismatches()
        runs.append(figures)
        print_run(figures, best)
    if not args.skip_workers:
        reset_run_output()
        with CeleryWorkers(args.workers) as workers:
            mode = f"{args.workers} Celery workers"
            figures = run_close_of_day(mode, args.as_of, args.loans, eager=False)
            if best is not None:
                figures.mismatches_with_hand_written_query = count_mismatches()
            figures.peak_rss_mib = workers.peak_rss_mib()
            runs.append(figures)
            print_run(figures, best)
            if args.next_day:
                next_day = args.as_of + timedelta(days=1)
                figures = run_close_of_day(f"{mode}, next day", next_day, args.loans, eager=False)
                figures.peak_rss_mib = workers.peak_rss_mib()
                runs.append(figures)
                print_run(figures, best)
            print(f"worker log: {workers.log_path}")

    report["runs"] = [asdict(figures) for figures in runs]
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
