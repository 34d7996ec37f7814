"""Close-of-day step 2: evaluate the warning rules and merge them into warnings.

The hits of every rule for the chunk are computed once into a temporary
table, with each rule's family, severity and deadline. Then four statements
for all the rules together: refresh the active warnings whose rule still
fires, open a warning where none is active, and resolve or mark the active
warnings whose condition cleared. In phase 1 a fifth statement updates the
branch and officer copies on the chunk's other active warnings. The number
of statements does not grow with the number of rules or loans. The partial
unique index on (loan, rule) for active warnings keeps one active warning
per loan and rule even if two runs overlap.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import date

from django.db import connection
from django.utils import timezone

from ..rules import ConfiguredRule, configured_rules
from ..services import deadline_days
from ..sql import analyze, as_of_param, is_distinct, json_object, shift_date

ACTIVE = "('open', 'acknowledged', 'in_progress')"

# Counts kept per rule, as `<code>_<step>` in the run's counts.
STEPS = ("refreshed", "opened", "cleared")


def _evidence(rule: ConfiguredRule) -> str:
    return json_object({**rule.evidence, "as_of": "CAST(p.as_of AS TEXT)"})


# Every position of the chunk is as of the run date here, because the rules
# run in the transaction that has just refreshed (phase 1) or classified
# (phase 2) them, so the select needs no filter on `as_of`. PostgreSQL does not
# carry the range of `p.loan_id` over to `l.id` through the join. The loans
# therefore get the range too, because a condition on `l` scanned the whole table.
def _hits_select(rules: list[ConfiguredRule], days_to_resolve: dict[str, int]) -> str:
    """Return one row per loan of the chunk and rule that fires, with the evidence.

    Codes, families and severities are checked identifiers (see `_literal`),
    written into the statement as constants.
    """
    return " UNION ALL ".join(
        f"""
        SELECT p.loan_id, l.branch_id, l.officer_id, {_literal(rule.code)} AS rule_code,
               {_literal(rule.family)} AS family, {_literal(rule.severity)} AS severity,
               {int(days_to_resolve[rule.severity])} AS deadline_days,
               {_evidence(rule)} AS evidence
        FROM loans_loanposition p
        JOIN loans_loan l ON l.id = p.loan_id AND l.id BETWEEN %(low)s AND %(high)s
        {rule.joins}
        WHERE p.loan_id BETWEEN %(low)s AND %(high)s AND p.is_open AND ({rule.condition})
        """
        for rule in rules
    )


def _literal(identifier: str) -> str:
    """Return `identifier` as a SQL string literal, after checking it is a plain code."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", identifier):
        raise ValueError(f"Invalid rule identifier {identifier!r}.")
    return f"'{identifier}'"


def _codes(rules: list[ConfiguredRule]) -> str:
    return "(" + ", ".join(_literal(rule.code) for rule in rules) + ")"


def _refresh_active(hits: str) -> str:
    return f"""
        UPDATE monitoring_earlywarning
        SET last_seen_on = {as_of_param()}, cleared_on = NULL, evidence = h.evidence,
            severity = h.severity, branch_id = h.branch_id, officer_id = h.officer_id
        FROM {hits} h
        WHERE monitoring_earlywarning.loan_id = h.loan_id
          AND monitoring_earlywarning.rule_code = h.rule_code
          AND monitoring_earlywarning.loan_id BETWEEN %(low)s AND %(high)s
          AND monitoring_earlywarning.status IN {ACTIVE}
        RETURNING monitoring_earlywarning.rule_code
    """


def _open_new(hits: str) -> str:
    """Return the insert of a warning for each hit with no active warning.

    The deadline is the run date plus the days of the warning's severity, so
    the run does not update the new warnings again afterwards.

    The conflict target is the partial unique index on (loan, rule) for
    active warnings, so the check is one index probe per hit and a warning
    opened meanwhile by an overlapping run is skipped, not an error.
    """
    d = as_of_param()
    return f"""
        INSERT INTO monitoring_earlywarning (
            loan_id, branch_id, officer_id, rule_code, family, severity, status, first_seen_on,
            last_seen_on, cleared_on, evidence, closing_reason, created_by_run_id, deadline
        )
        SELECT h.loan_id, h.branch_id, h.officer_id, h.rule_code, h.family, h.severity, 'open',
               {d}, {d}, NULL, h.evidence, '', %(run_id)s, {shift_date(d, "h.deadline_days")}
        FROM {hits} h
        WHERE true
        ON CONFLICT (loan_id, rule_code) WHERE status IN {ACTIVE} DO NOTHING
        RETURNING rule_code, id, severity
    """


def _sync_copies() -> str:
    """Return the update of the chunk's active warnings whose loan changed branch or officer.

    The refresh copies both onto the warnings that fire again. This update
    catches the others, such as a warning that waits for a person after its
    condition cleared. It writes only the rows that differ.
    """
    return f"""
        UPDATE monitoring_earlywarning SET branch_id = l.branch_id, officer_id = l.officer_id
        FROM loans_loan l
        WHERE l.id = monitoring_earlywarning.loan_id AND l.id BETWEEN %(low)s AND %(high)s
          AND monitoring_earlywarning.loan_id BETWEEN %(low)s AND %(high)s
          AND monitoring_earlywarning.status IN {ACTIVE}
          AND (monitoring_earlywarning.branch_id <> l.branch_id
               OR {is_distinct("monitoring_earlywarning.officer_id", "l.officer_id")})
    """


def _cleared_condition(hits: str, codes: str) -> str:
    """Return the condition of active warnings of the chunk whose rule stopped firing."""
    return f"""
        loan_id BETWEEN %(low)s AND %(high)s
        AND rule_code IN {codes}
        AND status IN {ACTIVE}
        AND first_seen_on <= {as_of_param()}
        AND NOT EXISTS (
            SELECT 1 FROM {hits} h
            WHERE h.loan_id = monitoring_earlywarning.loan_id
              AND h.rule_code = monitoring_earlywarning.rule_code
        )
    """


def _close_cleared(hits: str, codes: str) -> str:
    return f"""
        UPDATE monitoring_earlywarning
        SET status = 'resolved', cleared_on = {as_of_param()}, closed_at = %(now)s,
            closing_reason = %(reason)s
        WHERE {_cleared_condition(hits, codes)}
        RETURNING rule_code
    """


def _mark_cleared(hits: str, codes: str) -> str:
    return f"""
        UPDATE monitoring_earlywarning SET cleared_on = {as_of_param()}
        WHERE cleared_on IS NULL AND {_cleared_condition(hits, codes)}
        RETURNING rule_code
    """


class RuleCounts(dict):
    """Counts per rule and step, as `{code}_{step}`, and the red warnings just opened.

    `opened_red` lists the ids of the red warnings the insert opened. The
    special inspections start from it instead of looking for them again.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.opened_red: list[int] = []


def evaluate_rules(
    as_of: date,
    low: int,
    high: int,
    run_id: int,
    phase: int | None = 1,
    codes: list[str] | None = None,
) -> RuleCounts:
    """Merge the hits of the enabled rules of `phase` for the chunk into warnings.

    Return counts per rule. Call it for phase 1 in the transaction that has
    just refreshed the chunk's positions, for phase 2 in the one that has
    classified them. `phase=None` evaluates the rules of both phases and
    `codes` limits the rules to those codes (the benchmark times them one
    by one). The result also lists the red warnings it opened (`opened_red`).
    """
    rules = configured_rules(phase=phase, codes=codes)
    counts = RuleCounts()
    if not rules:
        return counts
    days_to_resolve = deadline_days()
    hits = f"cod_hits_{uuid.uuid4().hex[:12]}"
    params = {
        "as_of": as_of,
        "low": low,
        "high": high,
        "run_id": run_id,
        "now": timezone.now(),
        "reason": f"Condition cleared on {as_of.isoformat()}.",
    }
    chunk_tables = {table.name: table for rule in rules for table in rule.chunk_tables}
    closing = [rule for rule in rules if rule.closes_itself]
    waiting = [rule for rule in rules if not rule.closes_itself]
    tally: dict[str, Counter[str]] = {step: Counter() for step in STEPS}
    with connection.cursor() as cursor:
        for table in chunk_tables.values():
            cursor.execute(f"CREATE TEMPORARY TABLE {table.name} AS {table.select}", params)
            cursor.execute(f"CREATE INDEX {table.name}_key ON {table.name} ({table.key})")
            analyze(cursor, table.name, (table.key,))
        select = _hits_select(rules, days_to_resolve)
        cursor.execute(f"CREATE TEMPORARY TABLE {hits} AS {select}", params)
        # Both the refresh and the clearing look hits up by loan and rule, so
        # each lookup is an index probe whatever the planner estimates.
        cursor.execute(f"CREATE INDEX {hits}_key ON {hits} (loan_id, rule_code)")
        analyze(cursor, hits, ("loan_id", "rule_code"))
        statements = [("refreshed", _refresh_active(hits)), ("opened", _open_new(hits))]
        if closing:
            statements.append(("cleared", _close_cleared(hits, _codes(closing))))
        if waiting:
            statements.append(("cleared", _mark_cleared(hits, _codes(waiting))))
        for step, statement in statements:
            cursor.execute(statement, params)
            rows = cursor.fetchall()
            tally[step].update(row[0] for row in rows)
            if step == "opened":
                counts.opened_red = [row[1] for row in rows if row[2] == "red"]
        if phase in (1, None):
            cursor.execute(_sync_copies(), params)
        cursor.execute(f"DROP TABLE {hits}")
        for name in chunk_tables:
            cursor.execute(f"DROP TABLE {name}")
    for rule in rules:
        for step in STEPS:
            counts[f"{rule.code}_{step}"] = tally[step][rule.code]
    return counts
