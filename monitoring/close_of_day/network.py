"""Close-of-day step between the phases: the guarantee network and the flagged guarantees.

The guarantor rules (monitoring/rules/guarantor.py) look at borrowers and
guarantors in other chunks, so this step computes what they need once for
the whole book, after phase 1 has refreshed every position and before phase
2 classifies. It replaces every row of two tables:

- `GuaranteeNetworkMember`: the open loans of the borrowers inside a
  guarantee circle, and of the borrowers on a chain of three or more with a
  non-performing member (see monitoring/guarantee_network.py for both
  searches);
- `FlaggedGuarantee`: for each enabled rule of GUARANTOR_CHECKS and each open
  loan with a guarantor that the rule flags, the worst such guarantor.

A loan is open when its position for the run date has `is_open` set. A
borrower is non-performing when one of its open loans is in a
non-performing class after today's classification. Phase 2 has not run yet,
so the class is computed here as classification will set it. That is the
loan's class moved down to its own floor, such as substandard for more days
past due than the policy's limit (90 by default). Debtor contagion is the
only other floor, and it only reaches borrowers that already have such a
loan, so the set of non-performing borrowers and their worst classes are
the ones phase 2 leaves.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from django.db import connection, transaction

from loans.models import RiskClass

from ..guarantee_network import ChainMembership, OpenLoans, circles_and_chains
from ..models import FlaggedGuarantee, GuaranteeNetworkMember, NetworkKind
from ..rules import ConfiguredRule, configured_rules
from ..rules.guarantor import GUARANTOR_CHECKS
from ..sql import analyze, as_of_param, disable_jit, greatest, is_postgresql
from .classification import ClassificationPolicy, _own_floor_case, current_policy

logger = logging.getLogger(__name__)

# Non-performing member ids listed per row. The count includes the others.
NPL_MEMBERS_LISTED = 20

_MEMBER_COLUMNS = (
    ("borrower_id", "BIGINT"),
    ("kind", "TEXT"),
    ("circle_id", "BIGINT"),
    ("member_count", "INTEGER"),
    ("chain_length", "INTEGER"),
    ("npl_member_count", "INTEGER"),
    ("npl_members", "JSONB"),
)


def projected_class_sql(policy: ClassificationPolicy) -> str:
    """Return the class that phase 2 gives loan `l` with position `p`, before debtor contagion."""
    own_floor, _reason = _own_floor_case(policy)
    return greatest("l.risk_class", own_floor)


def npl_borrowers_sql(policy: ClassificationPolicy) -> str:
    """Return a SELECT of the non-performing borrowers (`borrower_id`) on the `as_of` parameter."""
    classes = ", ".join(str(int(risk_class)) for risk_class in RiskClass.non_performing())
    return f"""
        SELECT DISTINCT l.borrower_id AS borrower_id
        FROM loans_loan l
        JOIN loans_loanposition p ON p.loan_id = l.id
        WHERE p.as_of = {as_of_param()} AND p.is_open
          AND {projected_class_sql(policy)} IN ({classes})
    """


def guarantor_standing_sql(policy: ClassificationPolicy) -> str:
    """Return a SELECT of each guarantor with a guarantee valid on `as_of` on an open loan.

    Columns: guarantor_id, borrower_id (the guarantor's, when it is also a
    borrower), total_guaranteed, net_worth, and the worst days_past_due and
    risk_class of the guarantor's own open loans (NULL when it has none). A
    guarantee counts at its amount, or else at its percentage of the loan's
    outstanding principal rounded to cents (half away from zero).
    """
    d = as_of_param()
    return f"""
        SELECT gr.id AS guarantor_id, gr.borrower_id, t.total_guaranteed, gr.net_worth,
               own.days_past_due, own.risk_class
        FROM (
            SELECT g.guarantor_id,
                   SUM(COALESCE(g.amount, ROUND(g.percentage * p.outstanding_principal / 100, 2)))
                       AS total_guaranteed
            FROM loans_guarantee g
            JOIN loans_loanposition p ON p.loan_id = g.loan_id
            WHERE p.as_of = {d} AND p.is_open
              AND g.valid_from <= {d} AND (g.valid_to IS NULL OR g.valid_to >= {d})
            GROUP BY g.guarantor_id
        ) t
        JOIN loans_guarantor gr ON gr.id = t.guarantor_id
        LEFT JOIN (
            SELECT l.borrower_id, MAX(p.days_past_due) AS days_past_due,
                   MAX({projected_class_sql(policy)}) AS risk_class
            FROM loans_loan l
            JOIN loans_loanposition p ON p.loan_id = l.id
            WHERE p.as_of = {d} AND p.is_open
              AND l.borrower_id IN (
                  SELECT borrower_id FROM loans_guarantor WHERE borrower_id IS NOT NULL
              )
            GROUP BY l.borrower_id
        ) own ON own.borrower_id = gr.borrower_id
    """


def _flag_guarantees_sql(rule: ConfiguredRule, guarantor_table: str) -> str:
    """Return the INSERT of the worst guarantor that `rule` flags on each open loan.

    `guarantor_table` is the table of `guarantor_standing_sql`. A guarantee
    by the loan's own borrower is skipped, because it protects nothing.
    """
    check = GUARANTOR_CHECKS[rule.code]
    d = as_of_param()
    sql = f"""
        INSERT INTO monitoring_flaggedguarantee (
            loan_id, reason, as_of, guarantor_id, days_past_due, risk_class,
            total_guaranteed, net_worth, flagged_guarantors
        )
        SELECT f.loan_id, '{check.reason}', {d}, f.guarantor_id, f.days_past_due, f.risk_class,
               f.total_guaranteed, f.net_worth, f.flagged_guarantors
        FROM (
            SELECT g.loan_id, s.guarantor_id, s.days_past_due, s.risk_class,
                   s.total_guaranteed, s.net_worth,
                   COUNT(*) OVER (PARTITION BY g.loan_id) AS flagged_guarantors,
                   ROW_NUMBER() OVER (
                       PARTITION BY g.loan_id ORDER BY {check.worst_first("s")}, s.guarantor_id
                   ) AS guarantor_rank
            FROM {guarantor_table} s
            JOIN loans_guarantee g ON g.guarantor_id = s.guarantor_id
            JOIN loans_loan l ON l.id = g.loan_id
            JOIN loans_loanposition p ON p.loan_id = g.loan_id
            WHERE ({check.qualifies("s")})
              AND g.valid_from <= {d} AND (g.valid_to IS NULL OR g.valid_to >= {d})
              AND p.as_of = {d} AND p.is_open
              AND (s.borrower_id IS NULL OR s.borrower_id <> l.borrower_id)
        ) f
        WHERE f.guarantor_rank = 1
    """
    return rule.rule.render(sql, rule.thresholds)


def refresh_guarantee_network(as_of: date, run_id: int) -> dict[str, int]:
    """Replace the network members and flagged guarantees with those of `as_of`; return counts.

    Call it after every position of the run date is written. The two tables
    are independent. On PostgreSQL, outside a transaction, they are rewritten
    at the same time on two connections, each in a transaction of its own. A
    failure then leaves the previous rows of that table in place until the
    next run rewrites both. Otherwise both are rewritten in one transaction.
    """
    started = time.perf_counter()
    policy = current_policy()
    parts = (_refresh_members, _refresh_flags)
    if is_postgresql() and not connection.in_atomic_block:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            futures = [pool.submit(_on_own_connection, part, as_of, policy) for part in parts]
            counts = {key: value for future in futures for key, value in future.result().items()}
    else:
        with transaction.atomic():
            counts = {key: value for part in parts for key, value in part(as_of, policy).items()}
    logger.info(
        "close_of_day run=%d as_of=%s guarantee network circles=%d circle_members=%d "
        "chain_members=%d flagged_guarantees=%d seconds=%.2f",
        run_id,
        as_of,
        counts["guarantee_circles"],
        counts["guarantee_circle_members"],
        counts["guarantee_chain_members"],
        counts["flagged_guarantees"],
        time.perf_counter() - started,
    )
    return counts


def _on_own_connection(part, as_of: date, policy: ClassificationPolicy) -> dict[str, int]:
    """Run `part` in a transaction on this thread's own connection, then close it."""
    try:
        with transaction.atomic():
            return part(as_of, policy)
    finally:
        connection.close()


def _refresh_members(as_of: date, policy: ClassificationPolicy) -> dict[str, int]:
    """Rewrite the members of guarantee circles and of chains with a non-performing member."""
    params = {"as_of": as_of}
    suffix = uuid.uuid4().hex[:12]
    npl_table, members_table = (f"cod_{name}_{suffix}" for name in ("npl", "members"))
    with connection.cursor() as cursor:
        disable_jit(cursor)
        _create_table(cursor, npl_table, npl_borrowers_sql(policy), params, "borrower_id")
        cursor.execute(f"SELECT borrower_id FROM {npl_table}")
        npl = {row[0] for row in cursor.fetchall()}
        circles, chains = circles_and_chains(
            as_of, OpenLoans.POSITION, npl_sql=f"SELECT borrower_id FROM {npl_table}"
        )
        _empty_for_rewrite(cursor, GuaranteeNetworkMember._meta.db_table)
        members = _circle_rows(circles, npl) + _chain_rows(chains)
        member_loans = _insert_members(cursor, as_of, members, members_table)
        analyze(cursor, GuaranteeNetworkMember._meta.db_table)
        for table in (members_table, npl_table):
            cursor.execute(f"DROP TABLE {table}")
    return {
        "guarantee_circles": len(set(circles.values())),
        "guarantee_circle_members": len(circles),
        "guarantee_chain_members": len(chains),
        "guarantee_network_loans": member_loans,
        "npl_borrowers": len(npl),
    }


def _refresh_flags(as_of: date, policy: ClassificationPolicy) -> dict[str, int]:
    """Rewrite the worst flagged guarantor of each open loan, per guarantor rule."""
    params = {"as_of": as_of}
    guarantor_table = f"cod_guarantors_{uuid.uuid4().hex[:12]}"
    with connection.cursor() as cursor:
        disable_jit(cursor)
        _create_table(
            cursor, guarantor_table, guarantor_standing_sql(policy), params, "guarantor_id"
        )
        _empty_for_rewrite(cursor, FlaggedGuarantee._meta.db_table)
        flagged = 0
        for rule in configured_rules(phase=2, codes=list(GUARANTOR_CHECKS)):
            cursor.execute(_flag_guarantees_sql(rule, guarantor_table), params)
            flagged += cursor.rowcount
        analyze(cursor, FlaggedGuarantee._meta.db_table)
        cursor.execute(f"DROP TABLE {guarantor_table}")
    return {"flagged_guarantees": flagged}


def _create_table(cursor, table: str, select: str, params: dict, key: str) -> None:
    cursor.execute(f"CREATE TEMPORARY TABLE {table} AS {select}", params)
    cursor.execute(f"CREATE UNIQUE INDEX {table}_key ON {table} ({key})")
    analyze(cursor, table)


def _empty_for_rewrite(cursor, table: str) -> None:
    """Empty `table`; a second refresh waits until this one commits.

    On PostgreSQL, TRUNCATE gives the table a new file, so the rows of earlier
    runs leave no dead rows behind. Deleted instead, they doubled the tables'
    size run after run until a vacuum, and the refresh slowed by a second at
    1,000,000 loans. TRUNCATE locks out readers until the commit, a few
    seconds between the phases of the run, when only administrators' pages
    read these tables. SQLite has one writer at a time and no TRUNCATE.
    """
    if is_postgresql():
        cursor.execute(f"TRUNCATE {table}")
    else:
        cursor.execute(f"DELETE FROM {table}")


def _circle_rows(circles: dict[int, int], npl: set[int]) -> list[dict]:
    members_of: dict[int, list[int]] = {}
    for borrower_id, circle_id in circles.items():
        members_of.setdefault(circle_id, []).append(borrower_id)
    npl_of = {
        circle_id: sorted(borrower_id for borrower_id in members if borrower_id in npl)
        for circle_id, members in members_of.items()
    }
    return [
        {
            "borrower_id": borrower_id,
            "kind": NetworkKind.CIRCLE.value,
            "circle_id": circle_id,
            "member_count": len(members_of[circle_id]),
            "chain_length": None,
            "npl_member_count": len(npl_of[circle_id]),
            "npl_members": npl_of[circle_id][:NPL_MEMBERS_LISTED],
        }
        for borrower_id, circle_id in sorted(circles.items())
    ]


def _chain_rows(chains: dict[int, ChainMembership]) -> list[dict]:
    return [
        {
            "borrower_id": borrower_id,
            "kind": NetworkKind.CHAIN.value,
            "circle_id": None,
            "member_count": None,
            "chain_length": chain["chain_length"],
            "npl_member_count": len(chain["npl_members"]),
            "npl_members": chain["npl_members"][:NPL_MEMBERS_LISTED],
        }
        for borrower_id, chain in sorted(chains.items())
    ]


def _insert_members(cursor, as_of: date, members: list[dict], table: str) -> int:
    """Insert a row per open loan of each member borrower; return how many.

    The members travel as one JSON array in one parameter, whatever their
    number, into the temporary `table`. With its statistics the planner
    joins the loans by hash instead of one index probe per member.
    """
    names = [name for name, _type in _MEMBER_COLUMNS]
    if is_postgresql():
        record = ", ".join(f"{name} {sql_type}" for name, sql_type in _MEMBER_COLUMNS)
        source = f"SELECT * FROM jsonb_to_recordset(CAST(%(members)s AS JSONB)) AS m({record})"
    else:
        fields = ", ".join(f"json_extract(value, '$.{name}') AS {name}" for name in names)
        source = f"SELECT {fields} FROM json_each(%(members)s)"
    cursor.execute(f"CREATE TEMPORARY TABLE {table} AS {source}", {"members": json.dumps(members)})
    analyze(cursor, table)
    d = as_of_param()
    cursor.execute(
        f"""
        INSERT INTO {GuaranteeNetworkMember._meta.db_table} (as_of, loan_id, {", ".join(names)})
        SELECT {d}, l.id, {", ".join(f"m.{name}" for name in names)}
        FROM {table} m
        JOIN loans_loan l ON l.borrower_id = m.borrower_id
        JOIN loans_loanposition p ON p.loan_id = l.id
        WHERE p.as_of = {d} AND p.is_open
        """,
        {"as_of": as_of},
    )
    return cursor.rowcount
