"""Close-of-day step 3: classification floors, IFRS 9 stage and provisions.

Runs after every chunk's positions are written, because debtor contagion
looks at all the loans of a borrower, whichever chunk they are in. One
grouped query over the whole book (`contagious_loans`) finds them, and each
chunk receives its share of the result.

Per chunk, the decision for each loan is computed once into a temporary
table. The class changes, the loan updates, the loan history rows and the
provision updates are then set-wise statements over that table. Floors only
move a class down (to a worse class); moving up needs the committee. The
positions step has already written provisions for the class each loan's own
floors give, so only the positions that debtor contagion and the
restructuring floors move are rewritten.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from dateutil.relativedelta import relativedelta
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from loans.models import Loan, RiskClass

from ..sql import (
    analyze,
    as_of_param,
    disable_parallel_query,
    greatest,
    in_parameter,
    in_parameter_value,
    is_distinct,
)


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


def _own_floor_case(
    policy: ClassificationPolicy, loan: str = "l", position: str = "p"
) -> tuple[str, str]:
    """Return SQL for each loan's own floor and the reason code behind it.

    `loan` and `position` are the aliases of the rows holding the loan's
    status and its new position's `is_open` and `days_past_due`.
    """
    rules = [
        (
            f"{loan}.status = 'written_off' AND NOT {position}.is_open",
            RiskClass.LOSS,
            "written_off",
        ),
        (f"{position}.days_past_due > {policy.loss_after_days}", RiskClass.LOSS, "dpd_over_loss"),
        (
            f"{position}.days_past_due > {policy.doubtful_after_days}",
            RiskClass.DOUBTFUL,
            "dpd_over_doubtful",
        ),
        (
            f"{position}.days_past_due > {policy.substandard_after_days}",
            RiskClass.SUBSTANDARD,
            "dpd_over_substandard",
        ),
        (
            f"{position}.days_past_due > {policy.technical_delay_days}",
            RiskClass.SPECIAL_MENTION,
            "overdue",
        ),
        (
            f"{loan}.status = 'restructured' AND {position}.is_open",
            RiskClass.SPECIAL_MENTION,
            "restructured",
        ),
    ]
    floor = " ".join(f"WHEN {condition} THEN {int(cls)}" for condition, cls, _ in rules)
    reason = " ".join(f"WHEN {condition} THEN '{code}'" for condition, _, code in rules)
    return f"CASE {floor} ELSE 1 END", f"CASE {reason} ELSE '' END"


def _default_trigger(policy: ClassificationPolicy, position: str, risk_class: str) -> str:
    """Return the condition that makes an open loan count as defaulted on the as-of date."""
    npl = ", ".join(str(int(c)) for c in RiskClass.non_performing())
    return (
        f"{position}.is_open AND ({position}.days_past_due > {policy.stage_3_after_days} "
        f"OR {risk_class} IN ({npl}))"
    )


def _provision_columns(policy: ClassificationPolicy, position: str, risk_class: str) -> dict:
    """Return SQL for the provisions and default trigger of a loan in class `risk_class`.

    `position` is the alias of a row with `is_open`, `days_past_due` and
    `outstanding_principal`; the trigger column is the as-of date or NULL.
    """
    p = position
    specific_rate = _specific_rate_case(policy, risk_class)
    return {
        "specific_provision": (
            f"CASE WHEN {p}.is_open THEN ROUND({p}.outstanding_principal * {specific_rate}, 2) "
            f"ELSE 0 END"
        ),
        "general_provision": (
            f"CASE WHEN {p}.is_open "
            f"THEN ROUND({p}.outstanding_principal * {policy.general_provision_rate}, 2) "
            f"ELSE 0 END"
        ),
        "last_default_trigger_on": (
            f"CASE WHEN {_default_trigger(policy, p, risk_class)} THEN {as_of_param()} END"
        ),
    }


def provisional_provisions(policy: ClassificationPolicy, position: str) -> dict[str, str]:
    """Return SQL for a position's provisions before debtor contagion is known.

    Used by the positions step, where `position` is the alias of a row with
    the loan's `status` and `risk_class` and its new figures. The class
    assumed is the loan's class moved down to its own floor. Only debtor
    contagion can make the final class worse, and classification rewrites
    the positions of the loans it moves.
    """
    own_floor, _reason = _own_floor_case(policy, loan=position, position=position)
    return _provision_columns(policy, position, greatest(f"{position}.risk_class", own_floor))


def contagious_loans_query(policy: ClassificationPolicy) -> str:
    """Return the loans of every borrower that debtor contagion makes non-performing.

    A borrower is contagious when more than the contagion share of its open
    outstanding principal is non-performing, counting each loan at its class
    moved down to its own floor. Classification only ever moves a class down
    to these floors or to the contagion floor, so chunks that have already
    run do not change which borrowers are contagious. Computing the set once,
    before the chunks, therefore gives the same result as computing it in
    each chunk.
    """
    d = as_of_param()
    own_floor, _reason = _own_floor_case(policy)
    npl = ", ".join(str(int(c)) for c in RiskClass.non_performing())
    return f"""
        SELECT l.id FROM loans_loan l
        WHERE l.borrower_id IN (
            SELECT l.borrower_id
            FROM loans_loan l
            JOIN loans_loanposition p ON p.loan_id = l.id AND p.as_of = {d}
            WHERE p.is_open
            GROUP BY l.borrower_id
            HAVING SUM(p.outstanding_principal) > 0
               AND SUM(CASE WHEN {greatest("l.risk_class", own_floor)} IN ({npl})
                            THEN p.outstanding_principal ELSE 0 END)
                   > SUM(p.outstanding_principal) * {policy.contagion_share}
        )
        ORDER BY l.id
    """


def contagious_loans(as_of: date) -> list[int]:
    """Return the ids of the loans of contagious borrowers, as of `as_of`, in order.

    Run it after every position is refreshed and before any chunk is classified.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        disable_parallel_query(cursor)
        cursor.execute(contagious_loans_query(current_policy()), {"as_of": as_of})
        return [row[0] for row in cursor.fetchall()]


def restructuring_floors_query() -> str:
    """Return the restructuring floor and its reason code of each loan of the chunk that has one.

    A restructuring's observation period runs until the day before
    `observation_ends_on`. While it runs, a loan that was non-performing
    before the restructuring stays at least substandard and any other loan
    is at least special mention. A loan restructured again before an
    earlier restructuring's period ended is at least substandard until the
    new period ends. Restructurings dated after the as-of date do not count.
    Takes the named parameters `as_of`, `low` and `high`.
    """
    d = as_of_param()
    substandard = int(RiskClass.SUBSTANDARD)
    again = """EXISTS (
        SELECT 1 FROM monitoring_restructuring e
        WHERE e.loan_id = r.loan_id AND e.restructured_on < r.restructured_on
          AND r.restructured_on < e.observation_ends_on
    )"""
    return f"""
        SELECT x.loan_id, MAX(x.floor) AS restructuring_floor,
               CASE WHEN MAX(x.again) = 1 THEN 'restructured_again'
                    ELSE 'restructured_observation' END AS restructuring_reason
        FROM (
            SELECT r.loan_id,
                   CASE WHEN r.class_before >= {substandard} OR {again} THEN {substandard}
                        ELSE {int(RiskClass.SPECIAL_MENTION)} END AS floor,
                   CASE WHEN {again} THEN 1 ELSE 0 END AS again
            FROM monitoring_restructuring r
            WHERE r.loan_id BETWEEN %(low)s AND %(high)s
              AND r.restructured_on <= {d} AND {d} < r.observation_ends_on
        ) x
        GROUP BY x.loan_id
    """


def _decision_select(policy: ClassificationPolicy) -> str:
    """Return each loan of the chunk with its new class, stage and provisions.

    The parameter `contagious` contains the chunk's loans of contagious
    borrowers. The restructuring floors are not counted in debtor contagion
    on the day they first apply, only from the next run, once they have set
    the loan's class.
    """
    d = as_of_param()
    own_floor, own_reason = _own_floor_case(policy)
    contagious = in_parameter("l.id", "contagious")
    floors = ("f.risk_class", "f.own_floor", "f.restructuring_floor", "f.contagion_floor")
    decision = f"""
        WITH f AS (
            SELECT l.id AS loan_id, l.risk_class, l.ifrs9_stage, l.status,
                   p.is_open, p.days_past_due, p.outstanding_principal,
                   p.last_default_trigger_on, p.specific_provision, p.general_provision,
                   {own_floor} AS own_floor, {own_reason} AS own_reason,
                   CASE WHEN p.is_open AND {contagious} THEN {int(RiskClass.SUBSTANDARD)}
                        ELSE 1 END AS contagion_floor,
                   CASE WHEN p.is_open THEN COALESCE(rf.restructuring_floor, 1)
                        ELSE 1 END AS restructuring_floor,
                   rf.restructuring_reason
            FROM loans_loan l
            JOIN loans_loanposition p ON p.loan_id = l.id AND p.as_of = {d}
            LEFT JOIN ({restructuring_floors_query()}) rf ON rf.loan_id = l.id
            WHERE l.id BETWEEN %(low)s AND %(high)s AND p.loan_id BETWEEN %(low)s AND %(high)s
        )
        SELECT f.loan_id, f.risk_class AS previous_class, f.ifrs9_stage AS previous_stage,
               f.status, f.is_open, f.days_past_due, f.outstanding_principal,
               f.last_default_trigger_on, f.specific_provision, f.general_provision,
               {greatest(*floors)} AS new_class,
               CASE WHEN f.own_floor >= f.restructuring_floor AND f.own_floor >= f.contagion_floor
                        THEN f.own_reason
                    WHEN f.restructuring_floor >= f.contagion_floor THEN f.restructuring_reason
                    ELSE 'debtor_contagion' END AS reason_code
        FROM f
    """
    provisions = _provision_columns(policy, "t", "t.new_class")
    return f"""
        SELECT t.*, {_stage_case(policy)} AS new_stage,
               {provisions["specific_provision"]} AS new_specific_provision,
               {provisions["general_provision"]} AS new_general_provision,
               COALESCE({provisions["last_default_trigger_on"]}, t.last_default_trigger_on)
                   AS new_last_default_trigger_on
        FROM ({decision}) t
    """


def _stage_case(policy: ClassificationPolicy) -> str:
    """Return SQL for the IFRS 9 stage, holding stage 3 through its cure period.

    Evaluated over the decision row `t`.
    """
    npl = ", ".join(str(int(c)) for c in RiskClass.non_performing())
    trigger = f"(t.days_past_due > {policy.stage_3_after_days} OR t.new_class IN ({npl}))"
    return f"""
        CASE
            WHEN NOT t.is_open AND t.status = 'written_off' THEN 3
            WHEN {trigger} THEN 3
            WHEN t.previous_stage = 3 AND t.last_default_trigger_on IS NOT NULL
                 AND t.last_default_trigger_on > CASE WHEN t.status = 'restructured'
                     THEN %(cure_restructured)s ELSE %(cure)s END THEN 3
            WHEN t.days_past_due > {policy.stage_2_after_days}
                 OR t.new_class = {int(RiskClass.SPECIAL_MENTION)} THEN 2
            ELSE 1
        END
    """


def _specific_rate_case(policy: ClassificationPolicy, risk_class: str) -> str:
    whens = " ".join(f"WHEN {cls} THEN {rate}" for cls, rate in policy.specific_provision_rates)
    return f"CASE {risk_class} {whens} ELSE 0 END"


def classify_chunk(
    as_of: date, low: int, high: int, run_id: int, contagious: list[int]
) -> dict[str, int]:
    """Apply the floors to the chunk, set stages and provisions; return counts.

    `contagious` lists the chunk's loans of contagious borrowers (see
    `contagious_loans`).
    """
    policy = current_policy()
    table = f"cod_decision_{uuid.uuid4().hex[:12]}"
    params = {
        "as_of": as_of,
        "low": low,
        "high": high,
        "contagious": in_parameter_value(contagious),
        "run_id": run_id,
        "now": timezone.now(),
        "cure": as_of - relativedelta(months=policy.stage_3_cure_months),
        "cure_restructured": as_of - relativedelta(months=policy.stage_3_cure_months_restructured),
    }
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {table} AS {_decision_select(policy)}", params)
        analyze(cursor, table)
        counts = _record_changes(cursor, table, params)
        _update_provisions(cursor, table, params)
        cursor.execute(f"DROP TABLE {table}")
    return counts


def _record_changes(cursor, table: str, params: dict) -> dict[str, int]:
    changed = "(t.new_class <> t.previous_class OR t.new_stage <> t.previous_stage)"
    cursor.execute(
        f"""
        INSERT INTO monitoring_classificationchange (
            loan_id, as_of, previous_class, new_class, previous_stage, new_stage,
            reason_code, reason, source, job_run_id, ratified, ratification_comment, created_at
        )
        SELECT t.loan_id, {as_of_param()}, t.previous_class, t.new_class,
               t.previous_stage, t.new_stage,
               CASE WHEN t.new_class <> t.previous_class THEN t.reason_code ELSE 'ifrs9_stage' END,
               'Days past due ' || t.days_past_due,
               'floor', %(run_id)s, FALSE, '', %(now)s
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
          AND loans_loan.id BETWEEN %(low)s AND %(high)s
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
        SELECT {loan_columns}, %(now)s,
               CASE WHEN t.new_class <> t.previous_class
                    THEN 'Close-of-day floor: ' || t.reason_code
                    ELSE 'Close-of-day IFRS 9 stage: days past due ' || t.days_past_due END,
               '~', NULL
        FROM loans_loan l JOIN {table} t ON t.loan_id = l.id
        WHERE {changed} AND l.id BETWEEN %(low)s AND %(high)s
        """,
        params,
    )


def _update_provisions(cursor, table: str, params: dict) -> None:
    """Write the provisions and default trigger of the positions whose figures changed."""
    changed = " OR ".join(
        [
            "t.new_specific_provision <> t.specific_provision",
            "t.new_general_provision <> t.general_provision",
            is_distinct("t.new_last_default_trigger_on", "t.last_default_trigger_on"),
        ]
    )
    cursor.execute(
        f"""
        UPDATE loans_loanposition
        SET specific_provision = t.new_specific_provision,
            general_provision = t.new_general_provision,
            last_default_trigger_on = t.new_last_default_trigger_on
        FROM {table} t
        WHERE loans_loanposition.loan_id = t.loan_id AND ({changed})
          AND loans_loanposition.loan_id BETWEEN %(low)s AND %(high)s
        """,
        params,
    )
