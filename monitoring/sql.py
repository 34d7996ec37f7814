"""SQL fragments that differ between PostgreSQL and SQLite.

The close-of-day run is written as set-wise SQL; these helpers keep the
statements identical on both backends apart from the few functions that
are spelled differently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def days_between(later: str, earlier: str) -> str:
    """Return an expression for the whole days from `earlier` to `later`."""
    if is_postgresql():
        return f"(({later})::date - ({earlier})::date)"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def greatest(*expressions: str) -> str:
    name = "GREATEST" if is_postgresql() else "MAX"
    return f"{name}({', '.join(expressions)})"


def is_distinct(left: str, right: str) -> str:
    """Return a comparison that is true when the two values differ, NULL counting as a value."""
    operator = "IS DISTINCT FROM" if is_postgresql() else "IS NOT"
    return f"({left}) {operator} ({right})"


def in_parameter(column: str, name: str) -> str:
    """Return a test of `column` against the list of ids in the named parameter `name`.

    Pass the list through `in_parameter_value`: an array on PostgreSQL, a
    JSON text on SQLite, which cannot bind a list.
    """
    if is_postgresql():
        return f"{column} = ANY(CAST(%({name})s AS BIGINT[]))"
    return f"{column} IN (SELECT value FROM json_each(%({name})s))"


def in_parameter_value(ids: list[int]) -> list[int] | str:
    return list(ids) if is_postgresql() else json.dumps(list(ids))


def json_object(pairs: dict[str, str]) -> str:
    """Return an expression building a JSON object from SQL expressions."""
    arguments = ", ".join(f"'{key}', {value}" for key, value in pairs.items())
    if is_postgresql():
        return f"jsonb_build_object({arguments})"
    return f"json_object({arguments})"


def money_text(expression: str) -> str:
    """Return an expression rendering a money amount as text with two decimals."""
    if is_postgresql():
        return f"CAST(ROUND(({expression})::numeric, 2) AS TEXT)"
    # The doubled percent sign survives the driver's parameter substitution.
    return f"printf('%%.2f', {expression})"


def as_of_param() -> str:
    """Return the placeholder of the named `as_of` date parameter."""
    return "CAST(%(as_of)s AS DATE)" if is_postgresql() else "%(as_of)s"


def disable_jit(cursor) -> None:
    """Turn off PostgreSQL's JIT compilation until the end of the current transaction.

    The planner counts every correlated subquery of the close-of-day chunk
    statements once per row, although most rows skip it. It then compiled
    them at a cost above the statement's own run time: 2.5 s against 0.3 s
    for a chunk of 3,000 loans, measured on PostgreSQL 15.
    """
    if is_postgresql():
        cursor.execute("SET LOCAL jit = off")


def disable_parallel_query(cursor) -> None:
    """Turn off PostgreSQL's parallel query until the end of the current transaction.

    For the debtor contagion query over the whole book, PostgreSQL 15 planned
    a parallel hash join, and every parallel worker computed its hash side
    (the aggregate per borrower) again. That took 8.1 s against 3.9 s without
    parallel query for 1,000,000 loans (benchmarks/close_of_day.py, 2 cores).
    """
    if is_postgresql():
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")


@contextmanager
def serial_plans(cursor) -> Iterator[None]:
    """Plan the statements inside without parallel workers (PostgreSQL only).

    For the close-of-day steps whose chunks already run in parallel, one per
    worker process: each parallel worker of a chunk's statement competes with
    the other chunks for the same cores. The inspection step's first run over
    1,000,000 loans took 14.0 to 14.3 s without them and 14.0 to 15.9 s with
    them (benchmarks/inspections.py, 2 cores, 2 processes). The setting the
    transaction had before is restored afterwards.
    """
    if not is_postgresql():
        yield
        return
    cursor.execute("SELECT current_setting('max_parallel_workers_per_gather')")
    previous = cursor.fetchone()[0]
    cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
    yield
    cursor.execute("SELECT set_config('max_parallel_workers_per_gather', %s, true)", [previous])


def tune_chunk_transaction(cursor) -> None:
    """Set PostgreSQL options for the rest of one close-of-day chunk's transaction.

    Besides `disable_jit`, the commit does not wait for the WAL flush
    (synchronous_commit off), so the next chunk's work overlaps it. A crash
    can then lose the last chunks committed, but never silently. The
    chunk's count in the run record is written in the same transaction, and
    the run is marked completed by a commit that does wait, which flushes
    all earlier WAL. A run that did not complete is recomputed by the next
    run for its date.
    """
    disable_jit(cursor)
    if is_postgresql():
        cursor.execute("SET LOCAL synchronous_commit = off")


def analyze(cursor, table: str, columns: tuple[str, ...] = ()) -> None:
    """Collect planner statistics for `table` (PostgreSQL only).

    Autovacuum never analyses temporary tables, and analyses a table that a
    run has just rewritten only some time later. Without fresh statistics
    the planner guesses row counts and may join row by row or scan a whole
    index.
    """
    if is_postgresql():
        # Statistics of only the join columns are much cheaper where other
        # columns hold JSON: 0.065 s against 0.008 s for 19,000 warning hits.
        column_list = f" ({', '.join(columns)})" if columns else ""
        cursor.execute(f"ANALYZE {table}{column_list}")


def shift_date(expression: str, days: str) -> str:
    """Return an expression for the date `days` days after `expression` (negative: before)."""
    if is_postgresql():
        return f"(CAST({expression} AS DATE) + ({days}))"
    return f"date({expression}, CAST(({days}) AS TEXT) || ' days')"


def shift_months(expression: str, months: str) -> str:
    """Return an expression for the date `months` calendar months after `expression`.

    A day missing from the target month becomes that month's last day
    (31 March minus one month is 28 or 29 February), as PostgreSQL's
    interval arithmetic does. SQLite's own month modifier would roll over
    into the next month instead, so there the day is capped explicitly.
    """
    if is_postgresql():
        return f"CAST(CAST({expression} AS DATE) + ({months}) * INTERVAL '1 month' AS DATE)"
    same_day = (
        f"date({expression}, 'start of month', CAST(({months}) AS TEXT) || ' months',"
        f" CAST(CAST(strftime('%%d', {expression}) AS INTEGER) - 1 AS TEXT) || ' days')"
    )
    month_end = (
        f"date({expression}, 'start of month', CAST(({months}) + 1 AS TEXT) || ' months',"
        " '-1 days')"
    )
    return f"MIN({same_day}, {month_end})"


def fence() -> str:
    """Return the clause that keeps PostgreSQL from merging a subquery into the query around it.

    Merged, a column computed in the subquery is computed again wherever the
    outer query names it, once per row each time. `OFFSET 0` changes no
    result. SQLite does not merge such subqueries the same way and would
    need a LIMIT before the OFFSET, so it gets nothing.
    """
    return "OFFSET 0" if is_postgresql() else ""


def binary_text(expression: str) -> str:
    """Return `expression` compared by code point, whatever the database's collation."""
    if is_postgresql():
        return f'({expression} COLLATE "C")'
    return expression  # SQLite's default BINARY collation compares text byte by byte.


def max_character() -> str:
    """Return an expression for the largest Unicode code point, U+10FFFF, as text."""
    return "CHR(1114111)" if is_postgresql() else "CHAR(1114111)"


def decimal_text(expression: str, places: int) -> str:
    """Return an expression rendering a number as text rounded to `places` decimals."""
    if is_postgresql():
        return f"CAST(ROUND(({expression})::numeric, {places}) AS TEXT)"
    return f"printf('%%.{places}f', {expression})"


def calendar_months_between(later: str, earlier: str) -> str:
    """Return an integer expression for the month boundaries from `earlier` to `later`.

    Days are ignored: from 31 January to 1 February is one month, from
    1 January to 31 January none. With `shift_months` it finds the
    anniversaries of a date.
    """
    return f"({_month_number(later)} - {_month_number(earlier)})"


def _month_number(expression: str) -> str:
    """Return an integer expression for year x 12 + month of a date."""
    if is_postgresql():
        # date_part returns a float, while EXTRACT returns a numeric, which took
        # twice as long over a million dates (PostgreSQL 15).
        return (
            f"CAST(date_part('year', CAST({expression} AS DATE)) * 12"
            f" + date_part('month', CAST({expression} AS DATE)) AS INTEGER)"
        )
    # The doubled percent signs survive the driver's parameter substitution.
    return (
        f"(CAST(strftime('%%Y', {expression}) AS INTEGER) * 12"
        f" + CAST(strftime('%%m', {expression}) AS INTEGER))"
    )
