"""Inspection family: overdue first and routine inspections, adverse findings.

These rules run in phase 2, after the close-of-day inspection step has
created today's inspections and marked the overdue ones. An inspection is
pending while it is scheduled, a draft or returned to the officer. Its days
overdue are the run date minus its due date, so an inspection due on the run
date is not overdue yet. With several qualifying inspections on a loan, the
evidence names the one due first (the lowest id among those due the same
day). Every rule closes itself: the warning resolves on the first run after
the inspection is submitted, or after the adverse inspection stops being the
latest or falls out of the lookback.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..sql import as_of_param, days_between, shift_date
from . import ChunkTable, Rule, register

FAMILY = "inspection"

PENDING = "('scheduled', 'draft', 'returned')"
DONE = "('submitted', 'approved')"

# The chunk's pending inspections due before the run date, and each loan's
# latest inspection carried out on or before it. Filled into analysed
# temporary tables: right after the run has created and marked inspections,
# the table's statistics are out of date and a direct join was planned as a
# rescan per loan.
OVERDUE_INSPECTIONS = ChunkTable(
    name="cod_overdue_inspections",
    select=f"""
        SELECT i.loan_id, i.id, i.kind, i.due_date
        FROM monitoring_inspection i
        WHERE i.loan_id BETWEEN %(low)s AND %(high)s AND i.status IN {PENDING}
          AND i.due_date < {as_of_param()}
    """,
)
LATEST_INSPECTIONS = ChunkTable(
    name="cod_latest_inspections",
    select=f"""
        SELECT ranked.loan_id, ranked.id, ranked.kind, ranked.inspected_on, ranked.adverse
        FROM (
            SELECT i.loan_id, i.id, i.kind, i.inspected_on, i.adverse,
                   ROW_NUMBER() OVER (
                       PARTITION BY i.loan_id ORDER BY i.inspected_on DESC, i.id DESC
                   ) AS latest
            FROM monitoring_inspection i
            WHERE i.loan_id BETWEEN %(low)s AND %(high)s AND i.status IN {DONE}
              AND i.inspected_on <= {as_of_param()}
        ) ranked
        WHERE ranked.latest = 1
    """,
)

_GRACE_SCHEMA = {"grace_days": {"type": "integer", "minimum": 0, "maximum": 365}}


def _overdue_join(kinds: str) -> str:
    """Return the join of the loan's pending inspections of `kinds` overdue by over `grace_days`."""
    return f"""
        JOIN (
            SELECT o.loan_id, o.id, o.kind, o.due_date,
                   ROW_NUMBER() OVER (PARTITION BY o.loan_id ORDER BY o.due_date, o.id)
                       AS earliest
            FROM cod_overdue_inspections o
            WHERE o.kind IN {kinds}
              AND o.due_date < {shift_date(as_of_param(), "-{grace_days}")}
        ) overdue ON overdue.loan_id = p.loan_id
    """


_OVERDUE_EVIDENCE = {
    "inspection_id": "overdue.id",
    "inspection_kind": "overdue.kind",
    "due_date": "CAST(overdue.due_date AS TEXT)",
    "days_overdue": days_between(as_of_param(), "overdue.due_date"),
    "grace_days": "{grace_days}",
}

FIRST_OVERDUE = register(
    Rule(
        code="INS_FIRST_OVERDUE",
        family=FAMILY,
        severity="orange",
        description=_("First inspection (fund use) overdue by more than %(grace_days)s days."),
        joins=_overdue_join("('first')"),
        chunk_tables=(OVERDUE_INSPECTIONS,),
        condition="overdue.earliest = 1",
        evidence=_OVERDUE_EVIDENCE,
        thresholds={"grace_days": 0},
        schema=_GRACE_SCHEMA,
        phase=2,
    )
)

ROUTINE_OVERDUE = register(
    Rule(
        code="INS_ROUTINE_OVERDUE",
        family=FAMILY,
        severity="orange",
        description=_("Routine or special inspection overdue by more than %(grace_days)s days."),
        joins=_overdue_join("('routine', 'special')"),
        chunk_tables=(OVERDUE_INSPECTIONS,),
        condition="overdue.earliest = 1",
        evidence=_OVERDUE_EVIDENCE,
        thresholds={"grace_days": 0},
        schema=_GRACE_SCHEMA,
        phase=2,
    )
)

# An inspection exactly `lookback_days` old counts. A later inspection
# without adverse findings becomes the latest and clears the warning.
_LATEST_DONE = f"""
    JOIN cod_latest_inspections done ON done.loan_id = p.loan_id
        AND done.inspected_on >= {shift_date(as_of_param(), "-{lookback_days}")}
"""

ADVERSE_FINDINGS = register(
    Rule(
        code="INS_ADVERSE_FINDINGS",
        family=FAMILY,
        severity="orange",
        description=_(
            "The latest inspection, within the last %(lookback_days)s days, has adverse findings."
        ),
        joins=_LATEST_DONE,
        chunk_tables=(LATEST_INSPECTIONS,),
        condition="done.adverse",
        evidence={
            "inspection_id": "done.id",
            "inspection_kind": "done.kind",
            "inspected_on": "CAST(done.inspected_on AS TEXT)",
            "lookback_days": "{lookback_days}",
        },
        thresholds={"lookback_days": 90},
        schema={"lookback_days": {"type": "integer", "minimum": 1, "maximum": 3650}},
        phase=2,
    )
)
