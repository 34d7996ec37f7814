"""Close-of-day step 2: evaluate the warning rules and merge them into warnings.

For each rule and chunk, three statements: refresh the active warnings whose
rule still fires, open a warning where none is active, and mark the active
warnings whose condition cleared. The partial unique index on (loan, rule)
for active warnings keeps one active warning per loan and rule even if two
runs overlap.
"""

from __future__ import annotations

from datetime import date

from django.db import connection
from django.utils import timezone

from ..rules import Rule, all_rules
from ..sql import as_of_param, json_object

ACTIVE = "('open', 'acknowledged', 'in_progress')"

_CHUNK_POSITIONS = """
    FROM loans_loanposition p
    JOIN loans_loan l ON l.id = p.loan_id
    WHERE p.loan_id BETWEEN %(low)s AND %(high)s AND p.as_of = {d} AND p.is_open
"""


def _evidence(rule: Rule) -> str:
    return json_object({**rule.evidence, "as_of": "CAST(p.as_of AS TEXT)"})


def _refresh_active(rule: Rule) -> str:
    d = as_of_param()
    return f"""
        UPDATE monitoring_earlywarning
        SET last_seen_on = {d}, cleared_on = NULL, evidence = s.evidence
        FROM (
            SELECT p.loan_id, {_evidence(rule)} AS evidence
            {_CHUNK_POSITIONS.format(d=d)} AND {rule.condition}
        ) s
        WHERE monitoring_earlywarning.loan_id = s.loan_id
          AND monitoring_earlywarning.rule_code = %(rule_code)s
          AND monitoring_earlywarning.status IN {ACTIVE}
    """


def _open_new(rule: Rule) -> str:
    d = as_of_param()
    return f"""
        INSERT INTO monitoring_earlywarning (
            loan_id, rule_code, family, severity, status, first_seen_on, last_seen_on,
            cleared_on, evidence, closing_reason, created_by_run_id
        )
        SELECT p.loan_id, %(rule_code)s, %(family)s, %(severity)s, 'open', {d}, {d},
               NULL, {_evidence(rule)}, '', %(run_id)s
        {_CHUNK_POSITIONS.format(d=d)} AND {rule.condition}
          AND NOT EXISTS (
              SELECT 1 FROM monitoring_earlywarning w
              WHERE w.loan_id = p.loan_id AND w.rule_code = %(rule_code)s
                AND w.status IN {ACTIVE}
          )
    """


def _cleared_condition(rule: Rule) -> str:
    """Return the condition of active warnings of the chunk whose rule stopped firing."""
    d = as_of_param()
    return f"""
        loan_id BETWEEN %(low)s AND %(high)s
        AND rule_code = %(rule_code)s
        AND status IN {ACTIVE}
        AND first_seen_on <= {d}
        AND loan_id NOT IN (
            SELECT p.loan_id {_CHUNK_POSITIONS.format(d=d)} AND {rule.condition}
        )
    """


def _close_cleared(rule: Rule) -> str:
    d = as_of_param()
    return f"""
        UPDATE monitoring_earlywarning
        SET status = 'resolved', cleared_on = {d}, closed_at = %(now)s,
            closing_reason = %(reason)s
        WHERE {_cleared_condition(rule)}
    """


def _mark_cleared(rule: Rule) -> str:
    d = as_of_param()
    return f"""
        UPDATE monitoring_earlywarning SET cleared_on = {d}
        WHERE cleared_on IS NULL AND {_cleared_condition(rule)}
    """


def evaluate_rules(as_of: date, low: int, high: int, run_id: int) -> dict[str, int]:
    """Merge every rule's hits for the chunk into warnings; return counts per rule."""
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for rule in all_rules():
            params = {
                "as_of": as_of,
                "low": low,
                "high": high,
                "rule_code": rule.code,
                "family": rule.family,
                "severity": rule.severity,
                "run_id": run_id,
                "now": timezone.now(),
                "reason": f"Condition cleared on {as_of.isoformat()}.",
            }
            cursor.execute(_refresh_active(rule), params)
            counts[f"{rule.code}_refreshed"] = cursor.rowcount
            cursor.execute(_open_new(rule), params)
            counts[f"{rule.code}_opened"] = cursor.rowcount
            statement = _close_cleared(rule) if rule.closes_itself else _mark_cleared(rule)
            cursor.execute(statement, params)
            counts[f"{rule.code}_cleared"] = cursor.rowcount
    return counts
