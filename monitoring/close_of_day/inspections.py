"""Close-of-day inspection step: post-loan plans, scheduled inspections, overdue marks.

Most of it runs in each phase-2 chunk's transaction. Right after
classification, `refresh_plans_and_inspections` derives the plan of every
open loan of the chunk (the rules of `monitoring.inspections.plans`, written
set-wise) into a temporary table. From that table one upsert writes only the
plans that are new or whose values changed, and the next statement records
each of them in the plan's history. Then come the first and routine
inspections that fall due within the policy's lookahead, the overdue marks
and the cancellation of scheduled inspections of closed loans. After the
rules of either phase, in that phase's chunk transaction,
`schedule_special_inspections` schedules a special inspection for each loan
with a red warning the rules have just opened.

Inserts use ON CONFLICT DO NOTHING on the inspection's unique constraints:
one inspection per loan, kind and due date, and one pending inspection per
loan and kind. Two runs for one date therefore create each inspection once.
Every inspection the run creates, marks overdue or cancels gets a history row. The
number of statements per chunk does not depend on the number of loans.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import date

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from loans.models import RiskClass

from ..inspections.plans import PlanSettings, load_plan_settings, next_statement_due
from ..models import Inspection, InspectionPolicy, PostLoanPlan
from ..rules.collateral import _latest_valuation_join as latest_valuation_join
from ..sql import (
    analyze,
    as_of_param,
    calendar_months_between,
    fence,
    greatest,
    in_parameter,
    in_parameter_value,
    is_distinct,
    is_postgresql,
    serial_plans,
    shift_date,
    shift_months,
)

PENDING = "('scheduled', 'draft', 'returned')"
DONE = "('submitted', 'approved')"
ACTIVE_WARNING = "('open', 'acknowledged', 'in_progress')"
# The history table keeps at most this many characters of a change reason.
REASON_MAX_LENGTH = 100
# The first key of the advisory lock that `_lock_chunk` takes. The second is
# the chunk's first loan id.
PLAN_LOCK_KEY = 7240
INTERVAL_FIELDS = (
    "normal_months",
    "large_loan_months",
    "special_mention_months",
    "non_performing_months",
)


def refresh_plans_and_inspections(as_of: date, low: int, high: int, run_id: int) -> dict[str, int]:
    """Write the chunk's plans, create the inspections due soon, mark the overdue ones.

    Call it in the transaction that has just classified the chunk, so that
    the plans follow today's classes. Return the counts `plans_created`,
    `plans_changed`, `inspections_created_first`, `inspections_created_routine`,
    `inspections_overdue` and `inspections_cancelled`.
    """
    settings = load_plan_settings()
    _check_intervals(settings.policy)
    params = _params(as_of, low, high, run_id)
    params["statement_due"] = next_statement_due(settings.policy, as_of)
    suffix = uuid.uuid4().hex[:12]
    facts, revaluation, table = (f"cod_{name}_{suffix}" for name in ("facts", "reval", "plan"))
    with connection.cursor() as cursor, serial_plans(cursor):
        _lock_chunk(cursor, low)
        _fill_temporary(cursor, facts, _inspection_facts(), params)
        _fill_temporary(cursor, revaluation, _revaluations(settings), params)
        select = _plan_select(settings, facts, revaluation, _new_plan_id(cursor))
        # Later statements only scan the plan table from start to end, so it
        # needs neither an index nor statistics.
        cursor.execute(f"CREATE TEMPORARY TABLE {table} AS {select}", params)
        counts = _write_plans(cursor, table, params)
        # Cancelling first leaves the inspections created below out of its scan.
        counts["inspections_cancelled"] = _cancel_closed(cursor, params)
        counts.update(_create_scheduled(cursor, table, settings.policy, params))
        for name in (table, revaluation, facts):
            cursor.execute(f"DROP TABLE {name}")
        counts["inspections_overdue"] = _mark_overdue(cursor, params)
    return counts


def schedule_special_inspections(
    as_of: date, low: int, high: int, run_id: int, warning_ids: list[int]
) -> dict[str, int]:
    """Schedule a special inspection for each loan of the chunk with a new red warning.

    `warning_ids` are the warnings the run's rules have just opened in the
    chunk (`RuleCounts.opened_red`). Of those, a warning counts when it is
    active, red and first seen on the run date. The inspection is due the
    policy's special-inspection days after the run date and names the
    loan's lowest such warning. A loan that already has a pending special
    inspection gets none. Return `special_inspections`.

    The warnings are read by id, in a subquery of their own so that the
    planner cannot prefer an index on the other conditions, and the statement
    costs nothing on a night without new red warnings. Found by their
    first-seen date instead, right after a run had opened them, the planner's
    stale statistics made it read 459,000 warnings per chunk
    (benchmarks/inspections.py). The loans with their warnings, and the
    chunk's loans with a pending special inspection, then go to analysed
    temporary tables, for the same reason as the plan step's. Against the
    inspection table itself, whose statistics still counted it empty at the
    start of a first run, the planner took a chunk's 2,300 new red warnings
    for one and, for each of them, read every pending inspection of the
    chunk: 0.85 to 0.95 s per chunk of 25,000 loans.
    """
    if not warning_ids:
        return {"special_inspections": 0}
    policy = InspectionPolicy.current()
    params = _params(as_of, low, high, run_id) | {"ids": in_parameter_value(warning_ids)}
    due = shift_date(as_of_param(), str(int(policy.special_inspection_days)))
    red = f"""
        SELECT w.loan_id, l.branch_id, l.officer_id, MIN(w.id) AS warning_id
        FROM (
            SELECT x.id, x.loan_id, x.status, x.severity, x.first_seen_on
            FROM monitoring_earlywarning x
            WHERE {in_parameter("x.id", "ids")}
            {fence()}
        ) w
        JOIN loans_loan l ON l.id = w.loan_id
        WHERE w.loan_id BETWEEN %(low)s AND %(high)s
          AND w.status IN {ACTIVE_WARNING} AND w.severity = 'red'
          AND w.first_seen_on = {as_of_param()}
        GROUP BY w.loan_id, l.branch_id, l.officer_id
    """
    pending = f"""
        SELECT DISTINCT i.loan_id FROM monitoring_inspection i
        WHERE i.loan_id BETWEEN %(low)s AND %(high)s
          AND i.kind = 'special' AND i.status IN {PENDING}
    """
    suffix = uuid.uuid4().hex[:12]
    table, pending_table = f"cod_red_{suffix}", f"cod_special_{suffix}"
    source = f"""
        SELECT n.loan_id, n.branch_id, n.officer_id, 'special' AS kind, {due} AS due_date,
               n.warning_id
        FROM {table} n
        WHERE NOT EXISTS (SELECT 1 FROM {pending_table} s WHERE s.loan_id = n.loan_id)
    """
    with connection.cursor() as cursor, serial_plans(cursor):
        _fill_temporary(cursor, table, red, params)
        _fill_temporary(cursor, pending_table, pending, params)
        created = _insert_inspections(cursor, source, params)
        for name in (table, pending_table):
            cursor.execute(f"DROP TABLE {name}")
    return {"special_inspections": len(created)}


def _fill_temporary(
    cursor, table: str, select: str, params: dict, columns: tuple[str, ...] = ("loan_id",)
) -> None:
    """Create an indexed and analysed temporary table of `select`, keyed by `loan_id`.

    Right after a run has filled them, the statistics of the warnings,
    inspections and positions still describe the tables before it. Joined
    directly, the planner then took a chunk's 20,000 rows for one and
    rescanned a subquery for each. A chunk of 25,000 loans took 35 to 47 s
    that way and 0.7 s from temporary tables, which have fresh statistics
    (PostgreSQL 15, benchmarks/inspections.py on a shared machine). Only
    the `columns` that later statements join or filter on are analysed.
    """
    cursor.execute(f"CREATE TEMPORARY TABLE {table} AS {select}", params)
    cursor.execute(f"CREATE INDEX {table}_key ON {table} (loan_id)")
    analyze(cursor, table, columns)


def _lock_chunk(cursor, low: int) -> None:
    """Wait for any other transaction writing the plans of the chunk starting at `low`.

    Two runs can overlap: starting a run abandons the one still running for
    its date, whose chunk tasks may not have finished. The lock lasts until
    the transaction ends. Each later statement of the chunk then reads what
    the other transaction committed. SQLite lets one transaction write at a
    time anyway.
    """
    if is_postgresql():
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [PLAN_LOCK_KEY, low])


def _params(as_of: date, low: int, high: int, run_id: int) -> dict:
    return {
        "as_of": as_of,
        "low": low,
        "high": high,
        "run_id": run_id,
        "now": timezone.now(),
        "reason_prefix": f"close-of-day {as_of.isoformat()}: ",
    }


def _check_intervals(policy: InspectionPolicy) -> None:
    """Raise ValueError for a routine interval of 0 months, which the SQL would divide by."""
    for name in INTERVAL_FIELDS:
        if getattr(policy, name) < 1:
            raise ValueError(f"Invalid inspection policy: {name} is 0; set at least 1 month.")


def _date_parameter(name: str) -> str:
    return f"CAST(%({name})s AS DATE)" if is_postgresql() else f"%({name})s"


# --- Plans ---------------------------------------------------------------


def _code_literal(code: str) -> str:
    """Return a product or collateral kind as a SQL string literal, after checking it."""
    if not re.fullmatch(r"[a-z0-9_]+", code):
        raise ValueError(f"Invalid code {code!r} in the inspection settings.")
    return f"'{code}'"


def _case(column: str, values: dict[str, int]) -> str:
    """Return a CASE over `column` giving each code's whole number, else NULL."""
    if not values:
        return "CAST(NULL AS INTEGER)"
    branches = " ".join(f"WHEN {_code_literal(code)} THEN {int(n)}" for code, n in values.items())
    return f"CASE {column} {branches} END"


def _interval_case(policy: InspectionPolicy) -> str:
    """Return the routine interval in months for loan `l`, as `routine_interval_months`."""
    return f"""
        CASE WHEN l.risk_class = {int(RiskClass.NORMAL)}
                 THEN CASE WHEN l.principal > {policy.large_loan_amount}
                           THEN {int(policy.large_loan_months)}
                           ELSE {int(policy.normal_months)} END
             WHEN l.risk_class = {int(RiskClass.SPECIAL_MENTION)}
                 THEN {int(policy.special_mention_months)}
             ELSE {int(policy.non_performing_months)}
        END
    """


def _inspection_facts() -> str:
    """Return, for each chunk loan with inspections, what the plan step needs to know of them.

    `last_inspected_on` is the latest date of a carried-out inspection on or
    before the run date, `has_first` is 1 when the loan has a first
    inspection in any status, and `routine_pending` is 1 when it has a
    pending routine inspection.
    """
    return f"""
        SELECT i.loan_id,
               MAX(CASE WHEN i.status IN {DONE} AND i.inspected_on <= {as_of_param()}
                        THEN i.inspected_on END) AS last_inspected_on,
               MAX(CASE WHEN i.kind = 'first' THEN 1 ELSE 0 END) AS has_first,
               MAX(CASE WHEN i.kind = 'routine' AND i.status IN {PENDING} THEN 1 ELSE 0 END)
                   AS routine_pending
        FROM monitoring_inspection i
        WHERE i.loan_id BETWEEN %(low)s AND %(high)s
        GROUP BY i.loan_id
    """


def _revaluations(settings: PlanSettings) -> str:
    """Return each chunk loan's earliest revaluation due date over its pledged items.

    An item counts when its kind has an interval and it has a valuation on or
    before the run date: its due date is that valuation's date + the interval.
    """
    months = _case("c.kind", settings.revaluation_months)
    kinds = ", ".join(_code_literal(kind) for kind in settings.revaluation_months) or "''"
    return f"""
        SELECT pl.loan_id, MIN({shift_months("lv.valued_on", months)}) AS next_revaluation_due
        FROM loans_collateralpledge pl
        JOIN loans_collateral c ON c.id = pl.collateral_id
        {latest_valuation_join()}
        WHERE pl.loan_id BETWEEN %(low)s AND %(high)s AND c.kind IN ({kinds})
        GROUP BY pl.loan_id
    """


def _new_plan_id(cursor) -> str:
    """Return the SQL expression that numbers a new plan of the chunk's plan select.

    The plan step gives new plans their ids when it derives them, so that
    their history rows come from the same temporary table instead of reading
    the plans back. PostgreSQL takes them from the table's own sequence.
    SQLite, where one transaction writes at a time, counts on from the
    highest id.
    """
    if is_postgresql():
        cursor.execute("SELECT pg_get_serial_sequence('monitoring_postloanplan', 'id')")
        return f"nextval('{cursor.fetchone()[0]}')"
    cursor.execute("SELECT COALESCE(MAX(id), 0) FROM monitoring_postloanplan")
    return f"{int(cursor.fetchone()[0])} + ROW_NUMBER() OVER (ORDER BY l.id)"


def _plan_select(settings: PlanSettings, facts: str, revaluation: str, new_id: str) -> str:
    """Return each open loan of the chunk with its derived plan, its stored plan and the change.

    `change_type` is '+' for a loan without a plan, '~' for a plan whose values
    differ and NULL otherwise. `reason` is the history's change reason.
    `plan_pk` is the stored plan's id, or `new_id` (`_new_plan_id`) for a new one.
    `facts` and `revaluation` are the temporary tables of `_inspection_facts`
    and `_revaluations`; the facts come along for `_create_scheduled`. Every
    position of the chunk is as of the run date, because phase 1 has just
    refreshed those of the loans disbursed by then.
    """
    d = as_of_param()
    derived = f"""
        SELECT l.id AS loan_id, l.branch_id, l.officer_id, l.risk_class, l.disbursement_date,
               plan.id AS plan_id, COALESCE(plan.id, {new_id}) AS plan_pk,
               plan.officer_id AS old_officer_id,
               plan.derived_for_class AS old_class, plan.first_inspection_due AS old_first_due,
               plan.routine_interval_months AS old_interval,
               plan.next_routine_due AS old_routine_due,
               plan.next_revaluation_due AS old_revaluation_due,
               plan.next_statement_due AS old_statement_due,
               COALESCE(plan.starts_on, {greatest("l.disbursement_date", d)}) AS starts_on,
               {_case("l.product", settings.first_inspection_days)} AS first_days,
               {_interval_case(settings.policy)} AS interval_months,
               facts.last_inspected_on, COALESCE(facts.has_first, 0) AS has_first,
               COALESCE(facts.routine_pending, 0) AS routine_pending,
               revaluation.next_revaluation_due
        FROM loans_loanposition p
        JOIN loans_loan l ON l.id = p.loan_id AND l.id BETWEEN %(low)s AND %(high)s
        LEFT JOIN monitoring_postloanplan plan
            ON plan.loan_id = l.id AND plan.loan_id BETWEEN %(low)s AND %(high)s
        LEFT JOIN {facts} facts ON facts.loan_id = l.id
        LEFT JOIN {revaluation} revaluation ON revaluation.loan_id = l.id
        WHERE p.loan_id BETWEEN %(low)s AND %(high)s AND p.is_open
          AND l.disbursement_date <= {d}
        {fence()}
    """
    first_due = shift_date("x.disbursement_date", "x.first_days")
    with_first = f"""
        SELECT x.*,
               CASE WHEN {first_due} >= x.starts_on THEN {first_due} END AS first_due,
               {calendar_months_between("x.starts_on", "x.disbursement_date")}
                   / x.interval_months AS periods
        FROM ({derived}) x
        {fence()}
    """
    anchor = "COALESCE(y.last_inspected_on, y.first_due)"
    anniversary = shift_months("y.disbursement_date", "y.periods * y.interval_months")
    routine = f"""
        CASE WHEN {anchor} IS NOT NULL THEN {shift_months(anchor, "y.interval_months")}
             WHEN y.periods >= 1 AND {anniversary} > y.starts_on THEN {anniversary}
             ELSE {shift_months("y.disbursement_date", "(y.periods + 1) * y.interval_months")}
        END
    """
    with_routine = f"""
        SELECT y.*, {routine} AS next_routine_due,
               {_date_parameter("statement_due")} AS next_statement_due
        FROM ({with_first}) y
        {fence()}
    """
    # The reason is only built for the plans that change.
    with_change = f"""
        SELECT z.*, {_change_case()} AS change_type
        FROM ({with_routine}) z
        {fence()}
    """
    return f"""
        SELECT z.*, CASE WHEN z.change_type IS NOT NULL THEN {_reason()} END AS reason
        FROM ({with_change}) z
    """


def _differences() -> dict[str, str]:
    """Return, by the word the history reason uses, the condition that a plan value changed."""
    return {
        "officer": is_distinct("z.officer_id", "z.old_officer_id"),
        "interval": "z.interval_months <> z.old_interval",
        "routine due": "z.next_routine_due <> z.old_routine_due",
        "revaluation due": is_distinct("z.next_revaluation_due", "z.old_revaluation_due"),
        "statements due": "z.next_statement_due <> z.old_statement_due",
        "first inspection due": is_distinct("z.first_due", "z.old_first_due"),
    }


def _change_case() -> str:
    changed = " OR ".join(["z.risk_class <> z.old_class", *_differences().values()])
    return f"CASE WHEN z.plan_id IS NULL THEN '+' WHEN {changed} THEN '~' END"


def _reason() -> str:
    """Return the history reason, such as `close-of-day 2025-06-30: class 1 -> 3; routine due`."""
    parts = [
        "CASE WHEN z.risk_class <> z.old_class THEN 'class ' || CAST(z.old_class AS TEXT)"
        " || ' -> ' || CAST(z.risk_class AS TEXT) || '; ' ELSE '' END",
        *(
            f"CASE WHEN {condition} THEN '{word}; ' ELSE '' END"
            for word, condition in _differences().items()
        ),
    ]
    changes = f"RTRIM({' || '.join(parts)}, '; ')"
    reason = (
        f"%(reason_prefix)s || CASE WHEN z.plan_id IS NULL THEN 'plan derived' ELSE {changes} END"
    )
    return f"SUBSTR({reason}, 1, {REASON_MAX_LENGTH})"


PLAN_COLUMNS = {
    "loan_id": "t.loan_id",
    "officer_id": "t.officer_id",
    "starts_on": "t.starts_on",
    "derived_for_class": "t.risk_class",
    "first_inspection_due": "t.first_due",
    "routine_interval_months": "t.interval_months",
    "next_routine_due": "t.next_routine_due",
    "next_revaluation_due": "t.next_revaluation_due",
    "next_statement_due": "t.next_statement_due",
}


def _write_plans(cursor, table: str, params: dict) -> dict[str, int]:
    """Insert the new plans and update the changed ones, then add a history row for each.

    Return the counts `plans_created` and `plans_changed`. Only the run
    writes plans, one transaction per chunk, and `_lock_chunk` keeps a
    second run's transaction for the same chunk waiting until this one has
    committed: the new plans need no ON CONFLICT, whose check of the unique
    index before each insert cost 20 to 30 ms for a chunk's 20,000 plans.
    The history rows come from the temporary table, which contains every
    value of the plans written, their ids included.
    """
    columns = {"id": "t.plan_pk"} | PLAN_COLUMNS | {"updated_on": as_of_param()}
    cursor.execute(
        f"""
        INSERT INTO monitoring_postloanplan ({", ".join(columns)})
        SELECT {", ".join(columns.values())}
        FROM {table} t
        WHERE t.change_type = '+'
        """,
        params,
    )
    created = cursor.rowcount
    updates = ", ".join(
        f"{column} = {value}"
        for column, value in columns.items()
        if column not in ("id", "loan_id")
    )
    cursor.execute(
        f"""
        UPDATE monitoring_postloanplan SET {updates}
        FROM {table} t
        WHERE t.change_type = '~' AND t.loan_id = monitoring_postloanplan.loan_id
        """,
        params,
    )
    changed = cursor.rowcount
    written = ", ".join(f"{value} AS {column}" for column, value in columns.items())
    source = f"""
        FROM (
            SELECT {written}, t.reason, t.change_type
            FROM {table} t
            WHERE t.change_type IS NOT NULL
        ) r
    """
    _insert_history(cursor, PostLoanPlan, source, "r.reason", "r.change_type", params)
    return {"plans_created": created, "plans_changed": changed}


# --- Inspections ---------------------------------------------------------


def _create_scheduled(cursor, table: str, policy: InspectionPolicy, params: dict) -> dict[str, int]:
    """Create the first and routine inspections that fall due within the lookahead.

    A due date already past counts too, so a run after a gap still creates
    the inspection (and the overdue step then marks it). A loan gets a first
    inspection only when it never had one, and a routine one only when none
    is pending, by the facts the plan table carries. Asked of the inspection
    table in a NOT EXISTS instead, at the start of a first run, when its
    statistics still counted it empty, PostgreSQL scanned the whole table
    for each of a chunk's 6,800 loans: 3.6 s for one chunk.
    """
    horizon = shift_date(as_of_param(), str(int(policy.lookahead_days)))
    source = f"""
        SELECT t.loan_id, t.branch_id, t.officer_id, 'first' AS kind, t.first_due AS due_date,
               CAST(NULL AS BIGINT) AS warning_id
        FROM {table} t
        WHERE t.first_due IS NOT NULL AND t.first_due <= {horizon} AND t.has_first = 0
        UNION ALL
        SELECT t.loan_id, t.branch_id, t.officer_id, 'routine' AS kind,
               t.next_routine_due AS due_date, CAST(NULL AS BIGINT) AS warning_id
        FROM {table} t
        WHERE t.next_routine_due <= {horizon} AND t.routine_pending = 0
    """
    created = Counter(kind for _id, kind in _insert_inspections(cursor, source, params))
    return {
        "inspections_created_first": created["first"],
        "inspections_created_routine": created["routine"],
    }


def _insert_inspections(cursor, source: str, params: dict) -> list[tuple[int, str]]:
    """Insert a scheduled inspection per row of `source`; return the (id, kind) inserted.

    `source` gives `loan_id`, `branch_id`, `officer_id` (the loan's), `kind`,
    `due_date` and `warning_id` (the triggering warning or NULL).
    """
    values = {
        "loan_id": "n.loan_id",
        "branch_id": "n.branch_id",
        "officer_id": "n.officer_id",
        "kind": "n.kind",
        "status": "'scheduled'",
        "due_date": "n.due_date",
        "overdue_since": "NULL",
        "trigger_warning_id": "n.warning_id",
        "created_by_run_id": "%(run_id)s",
        "inspected_on": "NULL",
        "place": "''",
        "people_met": "''",
        "findings": "''",
        "risk_opinion": "''",
        "suggested_class": "NULL",
        "adverse": "FALSE",
        "submitted_at": "NULL",
        "submitted_by_id": "NULL",
        "reviewed_at": "NULL",
        "reviewed_by_id": "NULL",
        "review_comment": "''",
        "created_at": "%(now)s",
    }
    # The statement has a WHERE before ON CONFLICT, because SQLite would
    # otherwise read ON CONFLICT as the join's ON.
    insert = f"""
        INSERT INTO monitoring_inspection ({", ".join(values)})
        SELECT {", ".join(values.values())}
        FROM ({source}) n
        WHERE true
        ON CONFLICT DO NOTHING
    """
    reason = (
        "%(reason_prefix)s || CASE WHEN r.trigger_warning_id IS NULL THEN 'scheduled by the plan'"
        " ELSE 'red warning ' || CAST(r.trigger_warning_id AS TEXT) END"
    )
    if is_postgresql():
        # The history reads the new rows from the insert itself. Read back by
        # id, they were looked for in a table the chunks keep growing while
        # its statistics still describe it empty: the planner chose to scan
        # it whole, 130 to 140 ms per chunk (benchmarks/inspections.py).
        history = _history_insert(Inspection, "FROM r", reason, "'+'")
        cursor.execute(f"WITH r AS ({insert} RETURNING *) {history} RETURNING id, kind", params)
        return cursor.fetchall()
    cursor.execute(f"{insert} RETURNING id, kind", params)
    created = cursor.fetchall()
    _insert_inspection_history(cursor, [row[0] for row in created], reason, "'+'", params)
    return created


def _insert_inspection_history(
    cursor, ids: list[int], reason: str, history_type: str, params: dict
) -> None:
    """Insert a history row for each inspection of `ids`; `reason` is SQL over the row `r`."""
    if ids:
        source = f"FROM monitoring_inspection r WHERE {in_parameter('r.id', 'ids')}"
        ids_param = {"ids": in_parameter_value(ids)}
        _insert_history(cursor, Inspection, source, reason, history_type, params | ids_param)


def _mark_overdue(cursor, params: dict) -> int:
    """Set `overdue_since` on the chunk's pending inspections past their due date; return how many.

    The mark is set once, to the day after the due date. Only inspections of
    loans open on the run date are marked.
    """
    cursor.execute(
        f"""
        UPDATE monitoring_inspection SET overdue_since = {shift_date("due_date", "1")}
        WHERE loan_id BETWEEN %(low)s AND %(high)s AND status IN {PENDING}
          AND overdue_since IS NULL AND due_date < {as_of_param()}
          AND EXISTS (
              SELECT 1 FROM loans_loanposition p
              WHERE p.loan_id = monitoring_inspection.loan_id AND p.is_open
          )
        RETURNING id
        """,
        params,
    )
    ids = [row[0] for row in cursor.fetchall()]
    _insert_inspection_history(cursor, ids, "%(reason_prefix)s || 'overdue'", "'~'", params)
    return len(ids)


def _cancel_closed(cursor, params: dict) -> int:
    """Cancel the chunk's scheduled inspections of closed loans; return how many.

    A loan is closed when its position on the run date is not open: paid
    off or written off. Only inspections still untouched (scheduled) are cancelled.
    A draft or a returned inspection keeps the officer's work and stays
    with them to submit.
    """
    cursor.execute(
        """
        UPDATE monitoring_inspection SET status = 'cancelled'
        WHERE loan_id BETWEEN %(low)s AND %(high)s AND status = 'scheduled'
          AND EXISTS (
              SELECT 1 FROM loans_loanposition p
              WHERE p.loan_id = monitoring_inspection.loan_id AND NOT p.is_open
          )
        RETURNING id
        """,
        params,
    )
    ids = [row[0] for row in cursor.fetchall()]
    _insert_inspection_history(cursor, ids, "%(reason_prefix)s || 'loan closed'", "'~'", params)
    return len(ids)


def _history_insert(model: type[Model], source: str, reason: str, history_type: str) -> str:
    """Return an INSERT of a history row for each row `r` of `source`, as simple-history would.

    `source` is a FROM clause (with its WHERE) naming the model's rows `r`;
    `reason` and `history_type` are SQL over it.
    """
    history_model = model.history.model
    columns = [
        field.column
        for field in history_model._meta.concrete_fields
        if not field.name.startswith("history_")
    ]
    return f"""
        INSERT INTO {history_model._meta.db_table} (
            {", ".join(columns)}, history_date, history_change_reason, history_type,
            history_user_id
        )
        SELECT {", ".join(f"r.{column}" for column in columns)}, %(now)s, {reason},
               {history_type}, NULL
        {source}
    """


def _insert_history(
    cursor, model: type[Model], source: str, reason: str, history_type: str, params: dict
) -> None:
    """Insert a history row for each row `r` of `source` (see `_history_insert`)."""
    cursor.execute(_history_insert(model, source, reason, history_type), params)
