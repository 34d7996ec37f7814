"""Repayment family: arrears measured by the close-of-day position."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..sql import money_text
from . import Rule, register

_ARREARS_EVIDENCE = {
    "days_past_due": "p.days_past_due",
    "overdue_principal": money_text("p.overdue_principal"),
    "overdue_interest": money_text("p.overdue_interest"),
    "oldest_unpaid_due_date": "CAST(p.oldest_unpaid_due_date AS TEXT)",
}


def _days_past_due_rule(code: str, days: int, severity: str) -> Rule:
    return Rule(
        code=code,
        family="repayment",
        severity=severity,
        description=_("More than %(days)s days past due.") % {"days": days},
        condition=f"p.days_past_due > {days}",
        evidence={**_ARREARS_EVIDENCE, "threshold_days": str(days)},
        thresholds={"days_past_due_over": days},
    )


ANY_OVERDUE = register(
    Rule(
        code="REP_OVERDUE",
        family="repayment",
        severity="yellow",
        description=_("Principal or interest overdue."),
        condition="(p.overdue_principal > 0 OR p.overdue_interest > 0)",
        evidence=_ARREARS_EVIDENCE,
    )
)
DPD_OVER_30 = register(_days_past_due_rule("REP_DPD_30", 30, "orange"))
DPD_OVER_90 = register(_days_past_due_rule("REP_DPD_90", 90, "red"))
