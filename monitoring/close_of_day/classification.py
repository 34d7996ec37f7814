"""Close-of-day step 3: classification floors, IFRS 9 stage and provisions.

Runs after every chunk's positions are written, because debtor contagion
looks at all the loans of a borrower, whichever chunk they are in.

Per chunk, the decision for each loan is computed once into a temporary
table; the class changes, the loan updates, the loan history rows and the
provision updates are then set-wise statements over that table. Floors only
move a class down (to a worse class); moving up needs the committee.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import connection
from django.utils import timezone

from loans.models import Loan, RiskClass

from ..sql import as_of_param, greatest


@dataclass(frozen=True)
class ClassificationPolicy:
    """The configurable figures of the objective floors and provisions."""

    technical_delay_days: int = 7
    substandard_after_days: int = 90
    doubtful_after_days: int = 270
    loss_after_days: int = 360
    contagion_share: Decimal = Decimal("0.10")
    stage_2_after_days: int = 30
    stage_3_after_days: int = 90
    stage_3_cure_months: int = 3
    stage_3_cure_months_restructured: int = 12
    general_provision_rate: Decimal = Decimal("0.01")
    specific_provision_rates: tuple[tuple[int, Decimal], ...] = (
        (RiskClass.NORMAL, Decimal("0")),
        (RiskClass.SPECIAL_MENTION, Decimal("0.02")),
        (RiskClass.SUBSTANDARD, Decimal("0.25")),
        (RiskClass.DOUBTFUL, Decimal("0.50")),
        (RiskClass.LOSS, Decimal("1.00")),
    )


def current_policy() -> ClassificationPolicy:
    overrides = getattr(settings, "POSTLOAN_CLASSIFICATION_POLICY", {})
    return ClassificationPolicy(**overrides)


def _own_floor_case(policy: ClassificationPolicy) -> tuple[str, str]:
    """Return SQL for each loan's own floor and the reason code behind it."""
    rules = [
        ("l.status = 'written_off' AND NOT p.is_open", RiskClass.LOSS, "written_off"),
        (f"p.days_past_due > {policy.loss_after_days}", RiskClass.LOSS, "dpd_over_loss"),
        (f"p.days_past_due > {policy.doubtful_after_days}", RiskClass.DOUBTFUL, "dpd_over_doubtful"),
        (
            f"p.days_past_due > {policy.substandard_after_days}",
            RiskClass.SUBSTANDARD,
            "dpd_over_substandard",
        ),
        (
            f"p.days_past_due > {policy.technical_delay_days}",
            RiskClass.SPECIAL_MENTION,
            "overdue",
        ),
        ("l.status = 'restructured' AND p.is_open", RiskClass.SPECIAL_MENTION, "restructured"),
    ]
    floor = " ".join(f"WHEN {condition} THEN {int(cls)}" for condition, cls, _ in rules)
    reason = " ".join(f"WHEN {condition} THEN '{code}'" for condition, _, code in rules)
    return f"CASE {floor} ELSE 1 END", f"CASE {reason} ELSE '' END"


def _decision_select(policy: ClassificationPolicy) -> str:
    d = as_of_param()
    own_floor, own_reason = _own_floor_case(policy)
    npl = ", ".join(str(int(c)) for c in RiskClass.non_performing())
    contagion_floor = (
        f"CASE WHEN f.is_open AND b.total_outstanding > 0 "
        f"AND b.npl_outstanding > b.total_outstanding * {policy.contagion_share} "
        f"THEN {int(RiskClass.SUBSTANDARD)} ELSE 1 END"
    )
    new_class = greatest("f.risk_class", "f.own_floor", contagion_floor)
    return f"""
        WITH f AS (
            SELECT l.id AS loan_id, l.borrower_id, l.risk_class, l.ifrs9_stage, l.status,
                   p.is_open, p.days_past_due, p.outstanding_principal,
                   p.last_default_trigger_on,
                   {own_floor} AS own_floor, {own_reason} AS own_reason
            FROM loans_loan l
            JOIN loans_loanposition p ON p.loan_id = l.id AND p.as_of = {d}
            WHERE l.borrower_id IN (
                SELECT borrower_id FROM loans_loan WHERE id BETWEEN %(low)s AND %(high)s
            )
        ),
        b AS (
            SELECT borrower_id,
                   SUM(outstanding_principal) AS total_outstanding,
                   SUM(CASE WHEN {greatest("risk_class", "own_floor")} IN ({npl})
                            THEN outstanding_principal ELSE 0 END) AS npl_outstanding
            FROM f WHERE is_open GROUP BY borrower_id
        )
        SELECT f.loan_id, f.risk_class AS previous_class, f.ifrs9_stage AS previous_stage,
               f.status, f.is_open, f.days_past_due, f.outstanding_principal,
               f.last_default_trigger_on,
               {new_class} AS new_class,
               CASE WHEN f.own_floor >= {contagion_floor} THEN f.own_reason
                    ELSE 'debtor_contagion' END AS reason_code
        FROM f LEFT JOIN b ON b.borrower_id = f.borrower_id
        WHERE f.loan_id BETWEEN %(low)s AND %(high)s
    """


def _stage_case(policy: ClassificationPolicy) -> str:
    """Return SQL for the IFRS 9 stage, holding stage 3 through its cure period.

    Evaluated in an UPDATE of the decision table, so columns are unqualified.
    """
    npl = ", ".join(str(int(c)) for c in RiskClass.non_performing())
    trigger = f"(days_past_due > {policy.stage_3_after_days} OR new_class IN ({npl}))"
    return f"""
        CASE
            WHEN NOT is_open AND status = 'written_off' THEN 3
            WHEN {trigger} THEN 3
            WHEN previous_stage = 3 AND last_default_trigger_on IS NOT NULL
                 AND last_default_trigger_on > CASE WHEN status = 'restructured'
                     THEN %(cure_restructured)s ELSE %(cure)s END THEN 3
            WHEN days_past_due > {policy.stage_2_after_days}
                 OR new_class = {int(RiskClass.SPECIAL_MENTION)} THEN 2
            ELSE 1
        END
    """


def _specific_rate_case(policy: ClassificationPolicy) -> str:
    whens = " ".join(f"WHEN {cls} THEN {rate}" for cls, rate in policy.specific_provision_rates)
    return f"CASE t.new_class {whens} ELSE 0 END"


def classify_chunk(as_of: date, low: int, high: int, run_id: int) -> dict[str, int]:
    """Apply the floors to the chunk, set stages and provisions; return counts."""
    policy = current_policy()
    table = f"cod_decision_{uuid.uuid4().hex[:12]}"
    params = {
        "as_of": as_of,
        "low": low,
        "high": high,
        "run_id": run_id,
        "now": timezone.now(),
        "cure": as_of - relativedelta(months=policy.stage_3_cure_months),
        "cure_restructured": as_of - relativedelta(months=policy.stage_3_cure_months_restructured),
    }
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {table} AS {_decision_select(policy)}", params)
        cursor.execute(f"ALTER TABLE {table} ADD COLUMN new_stage INTEGER")
        cursor.execute(f"UPDATE {table} SET new_stage = {_stage_case(policy)}", params)
        counts = _record_changes(cursor, table, params)
        _update_provisions(cursor, table, params, policy)
        cursor.execute(f"DROP TABLE {table}")
    return counts


def _record_changes(cursor, table: str, params: dict) -> dict[str, int]:
    changed = "(t.new_class <> t.previous_class OR t.new_stage <> t.previous_stage)"
    cursor.execute(
        f"""
        INSERT INTO monitoring_classificationchange (
            loan_id, as_of, previous_class, new_class, previous_stage, new_stage,
            reason_code, reason, source, job_run_id, ratified, created_at
        )
        SELECT t.loan_id, {as_of_param()}, t.previous_class, t.new_class,
               t.previous_stage, t.new_stage,
               CASE WHEN t.new_class <> t.previous_class THEN t.reason_code ELSE 'ifrs9_stage' END,
               'Days past due ' || t.days_past_due,
               'floor', %(run_id)s, FALSE, %(now)s
        FROM {table} t WHERE {changed}
        """,
        params,
    )
    change_count = cursor.rowcount
    cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE new_class <> previous_class")
    class_changes = cursor.fetchone()[0] or 0
    cursor.execute(
        f"""
        UPDATE loans_loan SET risk_class = t.new_class, ifrs9_stage = t.new_stage
        FROM {table} t
        WHERE loans_loan.id = t.loan_id AND {changed}
        """,
        params,
    )
    _write_loan_history(cursor, table, changed, params)
    return {"class_changes": class_changes, "stage_changes": change_count}


def _write_loan_history(cursor, table: str, changed: str, params: dict) -> None:
    """Insert one history row per changed loan, as django-simple-history would."""
    history_model = Loan.history.model
    columns = [
        field.column
        for field in history_model._meta.concrete_fields
        if not field.name.startswith("history_")
    ]
    loan_columns = ", ".join(f"l.{column}" for column in columns)
    cursor.execute(
        f"""
        INSERT INTO {history_model._meta.db_table} (
            {", ".join(columns)}, history_date, history_change_reason, history_type,
            history_user_id
        )
        SELECT {loan_columns}, %(now)s, 'Close-of-day floor: ' || t.reason_code, '~', NULL
        FROM loans_loan l JOIN {table} t ON t.loan_id = l.id
        WHERE {changed}
        """,
        params,
    )


def _update_provisions(cursor, table: str, params: dict, policy: ClassificationPolicy) -> None:
    npl = ", ".join(str(int(c)) for c in RiskClass.non_performing())
    d = as_of_param()
    cursor.execute(
        f"""
        UPDATE loans_loanposition
        SET specific_provision = CASE WHEN t.is_open
                THEN ROUND(t.outstanding_principal * {_specific_rate_case(policy)}, 2)
                ELSE 0 END,
            general_provision = CASE WHEN t.is_open
                THEN ROUND(t.outstanding_principal * {policy.general_provision_rate}, 2)
                ELSE 0 END,
            last_default_trigger_on = CASE
                WHEN t.is_open AND (t.days_past_due > {policy.stage_3_after_days}
                                    OR t.new_class IN ({npl}))
                THEN {d} ELSE loans_loanposition.last_default_trigger_on END
        FROM {table} t
        WHERE loans_loanposition.loan_id = t.loan_id
        """,
        params,
    )
