"""Close-of-day step after classification: class change proposals for the committee.

Per chunk, set-wise:
- an upgrade proposal for each open non-performing loan whose objective
  conditions for leaving non-performing hold (overdue amounts repaid, the
  instalments due in the last six months all paid on time and at least two
  of them, no running observation period of a restructuring made while it
  was non-performing). The class proposed is the better of special mention
  and the loan's floor; the committee can propose more by hand.
- a downgrade proposal to special mention for each open normal loan with an
  active red warning.
- the run's own pending proposals whose loan has since changed class are
  withdrawn, because the committee would vote on a move that no longer
  starts from the loan's class.

No proposal is made for a loan that has a pending one, nor twice for one
loan on re-runs of a date, nor again for a move that the committee rejected
while the loan's class has not changed since.
"""

from __future__ import annotations

import logging
from datetime import date

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from loans.models import RiskClass

from ..committee.floors import NPL_EXIT_MIN_INSTALMENTS, exit_conditions_query, exit_window_start
from ..models import ClassificationProposal, ProposalSource, ProposalStatus, Severity, WarningStatus
from ..sql import as_of_param, greatest, is_postgresql, json_object, money_text
from .classification import ClassificationPolicy, _own_floor_case, current_policy
from .classification import restructuring_floors_query as _restructuring_floors

logger = logging.getLogger(__name__)

SPECIAL_MENTION = int(RiskClass.SPECIAL_MENTION)
SUBSTANDARD = int(RiskClass.SUBSTANDARD)
_ACTIVE = ", ".join(f"'{status}'" for status in WarningStatus.active())
_TABLE = ClassificationProposal._meta.db_table


def propose_chunk(as_of: date, low: int, high: int, run_id: int) -> dict[str, int]:
    """Make the run's proposals for the chunk's loans; return counts.

    Run it after `classify_chunk` and the phase-2 warning rules of the
    chunk, so that the classes, floors and red warnings are those of `as_of`.
    """
    policy = current_policy()
    params = {
        "as_of": as_of,
        "as_of_text": as_of.isoformat(),
        "window_start": exit_window_start(as_of),
        "low": low,
        "high": high,
        "run_id": run_id,
        "now": timezone.now(),
        "upgrade_reasons": _(
            "Close-of-day run: the overdue amounts are repaid and the instalments due in the "
            "last six months were paid on time. The committee records whether the debtor's "
            "position has improved."
        ),
        "downgrade_reasons": _("Close-of-day run: the loan has an active red warning."),
        "withdrawn_comment": _("Withdrawn by the close-of-day run: the loan's class has changed."),
    }
    with connection.cursor() as cursor:
        withdrawn = _withdraw_stale(cursor, params)
        upgrades = _insert(cursor, _upgrade_candidates(policy), params, "upgrade_reasons")
        downgrades = _insert(cursor, _downgrade_candidates(policy), params, "downgrade_reasons")
        _write_history(cursor, params)
    logger.info(
        "close_of_day run=%d proposals chunk=%d-%d upgrades=%d downgrades=%d withdrawn=%d",
        run_id,
        low,
        high,
        upgrades,
        downgrades,
        withdrawn,
    )
    return {
        "proposals_upgrade": upgrades,
        "proposals_downgrade": downgrades,
        "proposals_withdrawn": withdrawn,
    }


def _upgrade_candidates(policy: ClassificationPolicy) -> str:
    """Return the chunk's non-performing loans that may leave it, with the class to propose."""
    d = as_of_param()
    own_floor, own_reason = _own_floor_case(policy)
    candidates = f"""
        SELECT l.id AS loan_id, l.borrower_id, l.risk_class, p.days_past_due,
               p.overdue_principal, p.overdue_interest, x.on_time,
               {greatest(own_floor, "COALESCE(rf.restructuring_floor, 1)")} AS objective_floor,
               CASE WHEN COALESCE(rf.restructuring_floor, 1) > {own_floor}
                    THEN rf.restructuring_reason ELSE {own_reason} END AS objective_reason
        FROM loans_loan l
        JOIN loans_loanposition p ON p.loan_id = l.id AND p.as_of = {d}
        JOIN ({exit_conditions_query(f"l.risk_class >= {SUBSTANDARD}")}) x ON x.loan_id = l.id
        LEFT JOIN ({_restructuring_floors()}) rf ON rf.loan_id = l.id
        WHERE l.id BETWEEN %(low)s AND %(high)s AND p.loan_id BETWEEN %(low)s AND %(high)s
          AND p.is_open AND l.risk_class >= {SUBSTANDARD}
          AND p.overdue_principal = 0 AND p.overdue_interest = 0
          AND x.on_time >= {NPL_EXIT_MIN_INSTALMENTS} AND x.late = 0
          AND x.observation_ends_on IS NULL
    """
    contagious = _contagion_condition(policy)
    return f"""
        SELECT c.*, {greatest("c.floor", str(SPECIAL_MENTION))} AS proposed_class
        FROM (
            SELECT k.*,
                   CASE WHEN {contagious} THEN {greatest("k.objective_floor", str(SUBSTANDARD))}
                        ELSE k.objective_floor END AS floor,
                   CASE WHEN {contagious} AND k.objective_floor < {SUBSTANDARD}
                        THEN 'debtor_contagion' ELSE k.objective_reason END AS floor_reason_code
            FROM ({candidates}) k
        ) c
    """


def _contagion_condition(policy: ClassificationPolicy) -> str:
    """Return whether debtor contagion keeps candidate `k` non-performing.

    As in `committee.floors`: the candidate counts at its objective floor,
    the borrower's other open loans at their class, or at the class of a
    pending upgrade proposal, and never better than their own floors.
    """
    d = as_of_param()
    sibling_floor, _reason = _own_floor_case(policy, loan="l2", position="p2")
    pending_upgrade = f"""(
        SELECT MIN(q.proposed_class) FROM {_TABLE} q
        WHERE q.loan_id = l2.id AND q.status = 'pending' AND q.proposed_class < q.current_class
    )"""
    counted = f"""CASE WHEN l2.id = k.loan_id THEN k.objective_floor
        ELSE {greatest(f"COALESCE({pending_upgrade}, l2.risk_class)", sibling_floor)} END"""
    return f"""(
        SELECT CASE WHEN SUM(p2.outstanding_principal) > 0
                     AND SUM(CASE WHEN {counted} >= {SUBSTANDARD}
                                  THEN p2.outstanding_principal ELSE 0 END)
                         > SUM(p2.outstanding_principal) * {policy.contagion_share}
                    THEN 1 ELSE 0 END
        FROM loans_loan l2
        JOIN loans_loanposition p2 ON p2.loan_id = l2.id AND p2.as_of = {d}
        WHERE l2.borrower_id = k.borrower_id AND p2.is_open
    ) = 1"""


def _downgrade_candidates(policy: ClassificationPolicy) -> str:
    """Return the chunk's open normal loans with an active red warning."""
    d = as_of_param()
    own_floor, own_reason = _own_floor_case(policy)
    return f"""
        SELECT l.id AS loan_id, l.risk_class, p.days_past_due, p.overdue_principal,
               p.overdue_interest, NULL AS on_time, {own_floor} AS floor,
               {own_reason} AS floor_reason_code, {SPECIAL_MENTION} AS proposed_class
        FROM loans_loan l
        JOIN loans_loanposition p ON p.loan_id = l.id AND p.as_of = {d}
        WHERE l.id BETWEEN %(low)s AND %(high)s AND p.loan_id BETWEEN %(low)s AND %(high)s
          AND p.is_open AND l.risk_class = {int(RiskClass.NORMAL)}
          AND EXISTS (
              SELECT 1 FROM monitoring_earlywarning w
              WHERE w.loan_id = l.id AND w.severity = '{Severity.RED}' AND w.status IN ({_ACTIVE})
          )
    """


def _warnings_json() -> str:
    """Return the JSON array of the active warnings of candidate `c`: code and severity."""
    where = f"w.loan_id = c.loan_id AND w.status IN ({_ACTIVE})"
    if is_postgresql():
        return f"""COALESCE((
            SELECT jsonb_agg(jsonb_build_object('code', w.rule_code, 'severity', w.severity)
                             ORDER BY w.rule_code)
            FROM monitoring_earlywarning w WHERE {where}
        ), '[]'::jsonb)"""
    return f"""json(COALESCE((
        SELECT json_group_array(json_object('code', w.rule_code, 'severity', w.severity))
        FROM (SELECT * FROM monitoring_earlywarning w WHERE {where} ORDER BY w.rule_code) w
    ), '[]'))"""


def _evidence() -> str:
    return json_object(
        {
            "as_of": "%(as_of_text)s",
            "days_past_due": "c.days_past_due",
            "overdue_principal": money_text("c.overdue_principal"),
            "overdue_interest": money_text("c.overdue_interest"),
            "on_time_instalments": "c.on_time",
            "floor": "c.floor",
            "floor_reason_code": "c.floor_reason_code",
            "warnings": _warnings_json(),
        }
    )


def _not_proposed_yet() -> str:
    """Return the conditions under which the run may propose `c.proposed_class` for `c`."""
    d = as_of_param()
    return f"""
        NOT EXISTS (
            SELECT 1 FROM {_TABLE} q WHERE q.loan_id = c.loan_id AND q.status = 'pending'
        )
        AND NOT EXISTS (
            SELECT 1 FROM {_TABLE} q JOIN monitoring_jobrun j ON j.id = q.created_by_run_id
            WHERE q.loan_id = c.loan_id AND q.source = 'run' AND j.as_of = {d}
        )
        AND NOT EXISTS (
            SELECT 1 FROM {_TABLE} q
            WHERE q.loan_id = c.loan_id AND q.source = 'run' AND q.status = 'rejected'
              AND q.current_class = c.risk_class AND q.proposed_class = c.proposed_class
              AND NOT EXISTS (
                  SELECT 1 FROM monitoring_classificationchange x
                  WHERE x.loan_id = c.loan_id AND x.created_at > q.decided_at
                    AND x.new_class <> x.previous_class
              )
        )
    """


def _insert(cursor, candidates: str, params: dict, reasons: str) -> int:
    cursor.execute(
        f"""
        INSERT INTO {_TABLE} (
            loan_id, current_class, proposed_class, source, proposed_by_id, inspection_id,
            created_by_run_id, reasons, position_improved, evidence, status, created_at,
            decided_at, decision_comment
        )
        SELECT c.loan_id, c.risk_class, c.proposed_class, '{ProposalSource.RUN}', NULL, NULL,
               %(run_id)s, %({reasons})s, FALSE, {_evidence()}, '{ProposalStatus.PENDING}',
               %(now)s, NULL, ''
        FROM ({candidates}) c
        WHERE c.proposed_class <> c.risk_class AND {_not_proposed_yet()}
        """,
        params,
    )
    return cursor.rowcount


def _withdraw_stale(cursor, params: dict) -> int:
    cursor.execute(
        f"""
        UPDATE {_TABLE}
        SET status = '{ProposalStatus.WITHDRAWN}', decided_at = %(now)s,
            decision_comment = %(withdrawn_comment)s
        WHERE loan_id BETWEEN %(low)s AND %(high)s AND source = '{ProposalSource.RUN}'
          AND status = '{ProposalStatus.PENDING}'
          AND current_class <> (
              SELECT l.risk_class FROM loans_loan l WHERE l.id = {_TABLE}.loan_id
          )
        """,
        params,
    )
    return cursor.rowcount


def _write_history(cursor, params: dict) -> None:
    """Insert a history row for each proposal the chunk created or withdrew.

    The rows are those simple-history would write, without a user.
    """
    history_model = ClassificationProposal.history.model
    columns = [
        f.column for f in history_model._meta.concrete_fields if not f.name.startswith("history_")
    ]
    cursor.execute(
        f"""
        INSERT INTO {history_model._meta.db_table} (
            {", ".join(columns)}, history_date, history_change_reason, history_type,
            history_user_id
        )
        SELECT {", ".join(f"q.{column}" for column in columns)}, %(now)s,
               CASE WHEN q.status = '{ProposalStatus.WITHDRAWN}'
                    THEN 'Withdrawn by the close-of-day run'
                    ELSE 'Proposed by the close-of-day run' END,
               CASE WHEN q.status = '{ProposalStatus.WITHDRAWN}' THEN '~' ELSE '+' END, NULL
        FROM {_TABLE} q
        WHERE q.loan_id BETWEEN %(low)s AND %(high)s AND q.source = '{ProposalSource.RUN}'
          AND (q.created_at = %(now)s OR q.decided_at = %(now)s)
        """,
        params,
    )
