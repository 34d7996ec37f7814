"""Collateral family: loan-to-value, falling values, stale valuations, insurance.

Only valuations dated on or before the run date count, so a run for a past
date ignores the valuations dated after it. Loan-to-value follows
`loans.collateral.collateral_support`: each item supports its latest value x
the share pledged to the loan x the item's own loan-to-value limit.

The item rules (value drop, stale valuation, insurance) fire once per loan.
Their evidence describes the loan's worst item, and `items` counts the
loan's items that meet the condition.

Every rule in this family closes itself. Each condition is recomputed from
stored data on every run, so the warning resolves on the first run where the
data no longer meets it: after a repayment, a new valuation or a renewed
insurance. A value drop clears with the next valuation of the item, because
the rule compares the latest two. A lasting loss of value then still shows
in the loan-to-value rule.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..sql import (
    as_of_param,
    days_between,
    decimal_text,
    is_postgresql,
    money_text,
    shift_date,
    shift_months,
)
from . import ChunkTable, Rule, register

FAMILY = "collateral"


def _latest_valuation_join() -> str:
    """Return the join of the latest valuation on or before the run date of pledge `pl`'s item.

    It gives `lv.valued_on` and `lv.value`, and `lv.previous_on` and
    `lv.previous_value` of the valuation before it. The columns are NULL
    where there is no such valuation.

    On PostgreSQL a LATERAL subquery reads at most two entries of the index
    on (collateral_id, valued_on DESC) per pledge. Written as a join, the
    same lookup made PostgreSQL 15 hash the chunk's items and scan every
    valuation of the book in each chunk, about twice as slow for 25,000
    loans, 300,000 items and 600,000 valuations (2 shared vCPUs). SQLite has
    no LATERAL, so there a window ranks the valuations of the chunk's items,
    and the IN subquery reads each item once even when several loans of the
    chunk share it.
    """
    if is_postgresql():
        return _latest_valuation_lateral()
    return f"""
        LEFT JOIN (
            SELECT v.collateral_id, v.valued_on, v.value,
                   LEAD(v.valued_on) OVER newest_first AS previous_on,
                   LEAD(v.value) OVER newest_first AS previous_value,
                   ROW_NUMBER() OVER newest_first AS recency
            FROM loans_collateralvaluation v
            WHERE v.collateral_id IN (
                    SELECT chunk_pledge.collateral_id
                    FROM loans_collateralpledge chunk_pledge
                    WHERE chunk_pledge.loan_id BETWEEN %(low)s AND %(high)s
                )
              AND v.valued_on <= {as_of_param()}
            WINDOW newest_first AS (PARTITION BY v.collateral_id ORDER BY v.valued_on DESC)
        ) lv ON lv.collateral_id = pl.collateral_id AND lv.recency = 1
    """


def _latest_valuation_lateral() -> str:
    newest = f"""
        SELECT v.valued_on, v.value FROM loans_collateralvaluation v
        WHERE v.collateral_id = pl.collateral_id AND v.valued_on <= {as_of_param()}
        ORDER BY v.valued_on DESC
    """
    return f"""
        LEFT JOIN LATERAL (
            SELECT recent.valued_on, recent.value,
                   LEAD(recent.valued_on) OVER newest_first AS previous_on,
                   LEAD(recent.value) OVER newest_first AS previous_value
            FROM ({newest} LIMIT 2) recent
            WINDOW newest_first AS (ORDER BY recent.valued_on DESC)
            ORDER BY recent.valued_on DESC
            LIMIT 1
        ) lv ON TRUE
    """


# Every item pledged to a loan of the chunk, with its latest two valuations on
# or before the run date. The five rules read it instead of each joining the
# pledges, the items and the valuations again.
COLLATERAL_ITEMS = ChunkTable(
    name="cod_collateral_items",
    select=f"""
        SELECT pl.loan_id, pl.share, c.reference, c.kind, c.ltv_limit, c.insurance_expires_on,
               lv.valued_on, lv.value, lv.previous_on, lv.previous_value
        FROM loans_collateralpledge pl
        JOIN loans_collateral c ON c.id = pl.collateral_id
        {_latest_valuation_join()}
        WHERE pl.loan_id BETWEEN %(low)s AND %(high)s
    """,
)

# Only valued items add to `pledged_value` and `support`, and a loan with no
# valued item is left out. `items` counts every item pledged to the loan.
_COVER = """
    JOIN (
        SELECT ci.loan_id,
               SUM(ci.value * ci.share) AS pledged_value,
               SUM(ci.value * ci.share * ci.ltv_limit) AS support,
               COUNT(*) AS items,
               COUNT(ci.value) AS valued_items
        FROM cod_collateral_items ci
        GROUP BY ci.loan_id
        HAVING COUNT(ci.value) > 0
    ) cover ON cover.loan_id = p.loan_id
"""

# `* 1.0` keeps the division decimal on SQLite, which stores whole amounts
# as integers.
LTV_OVER_LIMIT = register(
    Rule(
        code="COL_LTV_OVER_LIMIT",
        family=FAMILY,
        severity="orange",
        description=_("Outstanding principal above what the pledged collateral supports."),
        joins=_COVER,
        chunk_tables=(COLLATERAL_ITEMS,),
        # Support is compared rounded to cents, as collateral_support returns it.
        condition="p.outstanding_principal > ROUND(cover.support, 2)",
        evidence={
            "outstanding_principal": money_text("p.outstanding_principal"),
            "support": money_text("cover.support"),
            "ltv": decimal_text("p.outstanding_principal * 1.0 / cover.pledged_value", 4),
            "items": "cover.items",
            "valued_items": "cover.valued_items",
        },
    )
)

# A drop of exactly `drop_percent` does not fire. The comparison multiplies
# instead of dividing, so it is exact on PostgreSQL.
_VALUE_DROPS = """
    JOIN (
        SELECT ci.loan_id, ci.reference, ci.valued_on, ci.value, ci.previous_on,
               ci.previous_value,
               ROW_NUMBER() OVER (
                   PARTITION BY ci.loan_id
                   ORDER BY ci.value * 1.0 / ci.previous_value, ci.reference
               ) AS worst,
               COUNT(*) OVER (PARTITION BY ci.loan_id) AS items
        FROM cod_collateral_items ci
        WHERE (ci.previous_value - ci.value) * 100 > {drop_percent} * ci.previous_value
    ) dropped ON dropped.loan_id = p.loan_id
"""

VALUE_DROP = register(
    Rule(
        code="COL_VALUE_DROP",
        family=FAMILY,
        severity="orange",
        description=_(
            "Collateral value down more than %(drop_percent)s%% since its previous valuation."
        ),
        joins=_VALUE_DROPS,
        chunk_tables=(COLLATERAL_ITEMS,),
        condition="dropped.worst = 1",
        evidence={
            "collateral_reference": "dropped.reference",
            "previous_valued_on": "CAST(dropped.previous_on AS TEXT)",
            "previous_value": money_text("dropped.previous_value"),
            "valued_on": "CAST(dropped.valued_on AS TEXT)",
            "value": money_text("dropped.value"),
            "drop_percent": decimal_text(
                "(dropped.previous_value - dropped.value) * 100.0 / dropped.previous_value", 2
            ),
            "items": "dropped.items",
            "threshold_drop_percent": "{drop_percent}",
        },
        thresholds={"drop_percent": 20},
        schema={"drop_percent": {"type": "number", "exclusiveMinimum": 0, "maximum": 100}},
    )
)

# Revaluation interval in months per kind of collateral. Receivables,
# deposits and equity have none, so only a missing valuation counts for them.
_MOVABLES = ("equipment", "vehicles", "inventory")
_INTERVAL_THRESHOLDS = {
    "commercial_real_estate": "commercial_real_estate_months",
    "residential_real_estate": "residential_real_estate_months",
    **dict.fromkeys(_MOVABLES, "movables_months"),
}


def _by_kind(value_sql: str) -> str:
    """Return a CASE over `ci.kind` of `value_sql` for each kind with an interval, else NULL.

    `{threshold}` in `value_sql` is the placeholder of the kind's interval threshold.
    """
    branches = " ".join(
        f"WHEN '{kind}' THEN {value_sql.format(threshold='{' + name + '}')}"
        for kind, name in _INTERVAL_THRESHOLDS.items()
    )
    return f"CASE ci.kind {branches} END"


# An item is stale when its latest valuation is older than its interval, so
# a valuation exactly 12 months old is still current. The evidence shows an
# item never valued first, else the item with the oldest valuation.
_STALE_VALUATIONS = f"""
    JOIN (
        SELECT ci.loan_id, ci.reference, ci.kind, ci.valued_on,
               {_by_kind("{threshold}")} AS interval_months,
               ROW_NUMBER() OVER (
                   PARTITION BY ci.loan_id
                   ORDER BY CASE WHEN ci.valued_on IS NULL THEN 0 ELSE 1 END, ci.valued_on,
                            ci.reference
               ) AS oldest,
               COUNT(*) OVER (PARTITION BY ci.loan_id) AS items
        FROM cod_collateral_items ci
        WHERE ci.valued_on IS NULL
           OR ci.valued_on < {_by_kind(shift_months(as_of_param(), "-{threshold}"))}
    ) stale ON stale.loan_id = p.loan_id
"""

_MONTHS_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 120}

VALUATION_STALE = register(
    Rule(
        code="COL_VALUATION_STALE",
        family=FAMILY,
        severity="yellow",
        description=_(
            "Collateral valuation out of date: commercial real estate older than"
            " %(commercial_real_estate_months)s months, residential older than"
            " %(residential_real_estate_months)s months, movables older than"
            " %(movables_months)s months, or missing."
        ),
        joins=_STALE_VALUATIONS,
        chunk_tables=(COLLATERAL_ITEMS,),
        condition="stale.oldest = 1",
        evidence={
            "collateral_reference": "stale.reference",
            "collateral_kind": "stale.kind",
            "last_valued_on": "CAST(stale.valued_on AS TEXT)",
            "interval_months": "stale.interval_months",
            "items": "stale.items",
        },
        thresholds={
            "commercial_real_estate_months": 12,
            "residential_real_estate_months": 36,
            "movables_months": 6,
        },
        schema={
            "commercial_real_estate_months": _MONTHS_SCHEMA,
            "residential_real_estate_months": _MONTHS_SCHEMA,
            "movables_months": _MONTHS_SCHEMA,
        },
    )
)


def _insurance_join(expiry_condition: str) -> str:
    """Return the join of the loan's pledged items whose insurance expiry meets the condition.

    Items without an expiry date never match. The item expiring first is
    the one in the evidence.
    """
    return f"""
        JOIN (
            SELECT ci.loan_id, ci.reference, ci.insurance_expires_on,
                   ROW_NUMBER() OVER (
                       PARTITION BY ci.loan_id ORDER BY ci.insurance_expires_on, ci.reference
                   ) AS earliest,
                   COUNT(*) OVER (PARTITION BY ci.loan_id) AS items
            FROM cod_collateral_items ci
            WHERE {expiry_condition}
        ) insured ON insured.loan_id = p.loan_id
    """


_INSURANCE_EVIDENCE = {
    "collateral_reference": "insured.reference",
    "insurance_expires_on": "CAST(insured.insurance_expires_on AS TEXT)",
    "items": "insured.items",
}

INSURANCE_EXPIRED = register(
    Rule(
        code="COL_INSURANCE_EXPIRED",
        family=FAMILY,
        severity="orange",
        description=_("Insurance of pledged collateral expired."),
        joins=_insurance_join(f"ci.insurance_expires_on < {as_of_param()}"),
        chunk_tables=(COLLATERAL_ITEMS,),
        condition="insured.earliest = 1",
        evidence={
            **_INSURANCE_EVIDENCE,
            "days_expired": days_between(as_of_param(), "insured.insurance_expires_on"),
        },
    )
)

# Insurance that expires on the run date is still in force that day, so it
# counts as expiring, not expired.
INSURANCE_EXPIRING = register(
    Rule(
        code="COL_INSURANCE_EXPIRING",
        family=FAMILY,
        severity="yellow",
        description=_("Insurance of pledged collateral expires within %(days)s days."),
        joins=_insurance_join(
            f"ci.insurance_expires_on >= {as_of_param()}"
            f" AND ci.insurance_expires_on <= {shift_date(as_of_param(), '{days}')}"
        ),
        chunk_tables=(COLLATERAL_ITEMS,),
        condition="insured.earliest = 1",
        evidence={
            **_INSURANCE_EVIDENCE,
            "days_left": days_between("insured.insurance_expires_on", as_of_param()),
            "threshold_days": "{days}",
        },
        thresholds={"days": 30},
        schema={"days": {"type": "integer", "minimum": 1, "maximum": 365}},
    )
)
