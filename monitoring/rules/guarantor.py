"""Guarantor family: weak guarantors, over-extended guarantors, guarantee circles and chains.

Mutual guarantees between SMEs spread one default to many, so these rules
look beyond the loan's own borrower. They run in phase 2 and read two
tables that `refresh_guarantee_network` (monitoring/close_of_day/network.py)
wrote for the whole book between the phases. `monitoring_flaggedguarantee`
has the worst guarantor of each loan that a guarantor rule flags (see
GUARANTOR_CHECKS). `monitoring_guaranteenetworkmember` has the loans of the
borrowers in a circle or on a chain. A row whose `as_of` is not the run
date is ignored, so a rule never fires on another date's figures.

A guarantee counts when it is valid on the run date (valid_from <= date <=
valid_to, valid_to empty meaning open-ended). A non-performing borrower has
an open loan in class 3 (substandard) or worse after today's
classification. The guarantor rules skip a loan's guarantee by its own
borrower, which protects nothing, but the guarantor's total counts it.

Each rule with its default severity, whether the run resolves its warnings
when the condition clears (closes_itself), and when it fires on a loan:

- GUA_GUARANTOR_OVERDUE, orange, closes itself: a guarantor of the loan is
  a borrower more than `days` days past due on one of its open loans.
- GUA_GUARANTOR_NPL, red, stays open: a guarantor of the loan is a
  non-performing borrower.
- GUA_OVEREXTENDED, yellow, closes itself: a guarantor of the loan has a
  known net worth and guarantees more than `multiple` times it on open
  loans. Exactly the multiple does not fire.
- GUA_CIRCLE, orange, closes itself: the loan's borrower is inside a
  guarantee circle of any length with no non-performing member.
- GUA_CIRCLE_NPL, red, stays open: the same with a non-performing member.
- GUA_CHAIN_NPL, orange, stays open: the loan's borrower is on a guarantee
  chain of `min_chain_length` (3) or more borrowers with a non-performing
  member.

Warnings about a non-performing borrower stay open, marked as cleared, when
the condition clears, because the default may already have spread through
the guarantees and a person should check before closing them. The other conditions are
measured figures (days past due, amounts, whether a circle still exists)
and their warnings are resolved by the first run on which they clear. The
two circle rules exclude each other, so a circle that gains a
non-performing member resolves its orange warnings and opens red ones.

Where several guarantors of a loan qualify, the evidence names the worst
(the most days past due, the worst class, the largest excess over the
multiple), and `flagged_guarantors` counts all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from loans.models import RiskClass

from ..guarantee_network import MAX_CHAIN_EDGES
from ..models import GuarantorFlag, NetworkKind
from ..sql import as_of_param, is_postgresql, money_text
from . import Rule, register

FAMILY = "guarantor"

_NON_PERFORMING = ", ".join(str(int(risk_class)) for risk_class in RiskClass.non_performing())


@dataclass(frozen=True)
class GuarantorCheck:
    """The SQL with which the network step flags the guarantors of one guarantor rule.

    Both functions take the alias of a row with the guarantor's
    `days_past_due`, `risk_class`, `total_guaranteed` and `net_worth`, and
    return SQL that may refer to the rule's thresholds as `{name}`.
    `qualifies` is the condition for flagging the guarantor; `worst_first`
    orders the flagged guarantors of a loan, the worst first, whose figures
    become the evidence.
    """

    reason: str
    qualifies: Callable[[str], str]
    worst_first: Callable[[str], str]


# Per rule code. The rules re-check `qualifies` on the stored row, so a
# threshold raised after the network step takes effect in the same run.
GUARANTOR_CHECKS: dict[str, GuarantorCheck] = {
    "GUA_GUARANTOR_OVERDUE": GuarantorCheck(
        GuarantorFlag.OVERDUE.value,
        lambda row: f"{row}.days_past_due > {{days}}",
        lambda row: f"{row}.days_past_due DESC, {row}.risk_class DESC",
    ),
    "GUA_GUARANTOR_NPL": GuarantorCheck(
        GuarantorFlag.NON_PERFORMING.value,
        lambda row: f"{row}.risk_class IN ({_NON_PERFORMING})",
        lambda row: f"{row}.risk_class DESC, {row}.days_past_due DESC",
    ),
    # A net worth of zero or less makes any guarantee an over-extension.
    "GUA_OVEREXTENDED": GuarantorCheck(
        GuarantorFlag.OVER_EXTENDED.value,
        lambda row: (
            f"{row}.net_worth IS NOT NULL"
            f" AND {row}.total_guaranteed > {{multiple}} * {row}.net_worth"
        ),
        lambda row: f"{row}.total_guaranteed - {{multiple}} * {row}.net_worth DESC",
    ),
}


def _json_column(expression: str) -> str:
    """Return `expression`, a JSON column, as a value that nests inside a built JSON object."""
    return expression if is_postgresql() else f"json({expression})"


def _flagged_join(code: str) -> str:
    """Return the JOIN of each loan of the chunk to its flagged guarantee for rule `code`."""
    d = as_of_param()
    return f"""
        JOIN monitoring_flaggedguarantee fg
            ON fg.loan_id = p.loan_id AND fg.loan_id BETWEEN %(low)s AND %(high)s
            AND fg.reason = '{GUARANTOR_CHECKS[code].reason}' AND fg.as_of = {d}
        JOIN loans_guarantor gr ON gr.id = fg.guarantor_id
    """


def _network_join(kind: str) -> str:
    return f"""
        JOIN monitoring_guaranteenetworkmember gn
            ON gn.loan_id = p.loan_id AND gn.loan_id BETWEEN %(low)s AND %(high)s
            AND gn.kind = '{kind}' AND gn.as_of = {as_of_param()}
    """


def _guarantor_rule(code: str, **fields) -> Rule:
    return Rule(
        code=code,
        family=FAMILY,
        phase=2,
        joins=_flagged_join(code),
        condition=GUARANTOR_CHECKS[code].qualifies("fg"),
        **fields,
    )


_GUARANTOR_EVIDENCE = {
    "guarantor_id": "fg.guarantor_id",
    "guarantor_name": "gr.name",
    "guarantor_borrower_id": "gr.borrower_id",
    "guarantor_days_past_due": "fg.days_past_due",
    "guarantor_risk_class": "fg.risk_class",
    "flagged_guarantors": "fg.flagged_guarantors",
}

GUARANTOR_OVERDUE = register(
    _guarantor_rule(
        "GUA_GUARANTOR_OVERDUE",
        severity="orange",
        description=_("A guarantor is more than %(days)s days past due on its own loan."),
        evidence={**_GUARANTOR_EVIDENCE, "threshold_days": "{days}"},
        # 30 days is where IFRS 9 presumes a significant increase in credit
        # risk. Shorter delays are mostly technical.
        thresholds={"days": 30},
        schema={"days": {"type": "integer", "minimum": 0, "maximum": 3650}},
    )
)

GUARANTOR_NPL = register(
    _guarantor_rule(
        "GUA_GUARANTOR_NPL",
        severity="red",
        description=_("A guarantor has a non-performing loan."),
        evidence=_GUARANTOR_EVIDENCE,
        closes_itself=False,
    )
)

OVEREXTENDED = register(
    _guarantor_rule(
        "GUA_OVEREXTENDED",
        severity="yellow",
        description=_(
            "A guarantor's guarantees on open loans exceed %(multiple)s times its net worth."
        ),
        evidence={
            "guarantor_id": "fg.guarantor_id",
            "guarantor_name": "gr.name",
            "guarantor_total_guaranteed": money_text("fg.total_guaranteed"),
            "guarantor_net_worth": money_text("fg.net_worth"),
            "flagged_guarantors": "fg.flagged_guarantors",
            "threshold_multiple": "{multiple}",
        },
        # The domain gives no figure for "far above the net worth". At 1 the
        # guarantor could not honour every guarantee at once.
        thresholds={"multiple": 1},
        schema={"multiple": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}},
    )
)

_CIRCLE_EVIDENCE = {
    "circle_id": "gn.circle_id",
    "circle_members": "gn.member_count",
    "npl_members": "gn.npl_member_count",
    "npl_borrower_ids": _json_column("gn.npl_members"),
}

CIRCLE = register(
    Rule(
        code="GUA_CIRCLE",
        family=FAMILY,
        phase=2,
        severity="orange",
        description=_("The borrower is inside a guarantee circle."),
        joins=_network_join(NetworkKind.CIRCLE.value),
        condition="gn.npl_member_count = 0",
        evidence=_CIRCLE_EVIDENCE,
    )
)

CIRCLE_NPL = register(
    Rule(
        code="GUA_CIRCLE_NPL",
        family=FAMILY,
        phase=2,
        severity="red",
        description=_("The borrower is inside a guarantee circle with a non-performing member."),
        joins=_network_join(NetworkKind.CIRCLE.value),
        condition="gn.npl_member_count > 0",
        evidence=_CIRCLE_EVIDENCE,
        closes_itself=False,
    )
)

CHAIN_NPL = register(
    Rule(
        code="GUA_CHAIN_NPL",
        family=FAMILY,
        phase=2,
        severity="orange",
        description=_(
            "The borrower is on a guarantee chain of %(min_chain_length)s or more borrowers"
            " with a non-performing member."
        ),
        joins=_network_join(NetworkKind.CHAIN.value),
        condition="gn.chain_length >= {min_chain_length}",
        evidence={
            "chain_length": "gn.chain_length",
            "npl_members": "gn.npl_member_count",
            "npl_borrower_ids": _json_column("gn.npl_members"),
            "threshold_chain_length": "{min_chain_length}",
        },
        closes_itself=False,
        thresholds={"min_chain_length": 3},
        # The network step stores chains of 3 or more borrowers, and finds a
        # non-performing member at most MAX_CHAIN_EDGES edges away.
        schema={
            "min_chain_length": {
                "type": "integer",
                "minimum": 3,
                "maximum": MAX_CHAIN_EDGES + 1,
            }
        },
    )
)
