"""Repayment family: arrears measured by the close-of-day position, late payments, maturity."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..sql import as_of_param, money_text, shift_date
from . import Rule, register

FAMILY = "repayment"

_ARREARS_EVIDENCE = {
    "days_past_due": "p.days_past_due",
    "overdue_principal": money_text("p.overdue_principal"),
    "overdue_interest": money_text("p.overdue_interest"),
    "oldest_unpaid_due_date": "CAST(p.oldest_unpaid_due_date AS TEXT)",
}

_DAYS_SCHEMA = {"days": {"type": "integer", "minimum": 1, "maximum": 3650}}


def _days_past_due_rule(code: str, days: int, severity: str) -> Rule:
    return Rule(
        code=code,
        family=FAMILY,
        severity=severity,
        description=_("More than %(days)s days past due."),
        condition="p.days_past_due > {days}",
        evidence={**_ARREARS_EVIDENCE, "threshold_days": "{days}"},
        thresholds={"days": days},
        schema=_DAYS_SCHEMA,
    )


ANY_OVERDUE = register(
    Rule(
        code="REP_OVERDUE",
        family=FAMILY,
        severity="yellow",
        description=_("Principal or interest overdue."),
        condition="(p.overdue_principal > 0 OR p.overdue_interest > 0)",
        evidence=_ARREARS_EVIDENCE,
    )
)
DPD_OVER_30 = register(_days_past_due_rule("REP_DPD_30", 30, "orange"))
DPD_OVER_60 = register(_days_past_due_rule("REP_DPD_60", 60, "orange"))
DPD_OVER_90 = register(_days_past_due_rule("REP_DPD_90", 90, "red"))

# An instalment was paid late when it was settled more than `grace_days`
# after its due date, or is still unpaid that long after it. Only instalments
# due in the window before the run date count; one settled after the run date
# was unpaid on it. The last condition repeats that of `instalment_late_idx`
# word for word, so that PostgreSQL reads the instalments from that index.
_LATE_INSTALMENTS = f"""
    JOIN (
        SELECT i.loan_id, COUNT(*) AS late_count
        FROM loans_instalment i
        WHERE i.loan_id BETWEEN %(low)s AND %(high)s
          AND i.due_date > {shift_date(as_of_param(), "-{window_days}")}
          AND i.due_date < {shift_date(as_of_param(), "-{grace_days}")}
          AND (i.settled_on IS NULL OR i.settled_on > {shift_date("i.due_date", "{grace_days}")})
          AND (i.settled_on IS NULL OR i.settled_on > i.due_date)
        GROUP BY i.loan_id
        HAVING COUNT(*) >= {{late_payments}}
    ) late ON late.loan_id = p.loan_id
"""

LATE_PAYMENTS = register(
    Rule(
        code="REP_LATE_PAYMENTS",
        family=FAMILY,
        severity="orange",
        description=_(
            "%(late_payments)s or more instalments paid late in the last %(window_days)s days."
        ),
        joins=_LATE_INSTALMENTS,
        condition="late.late_count >= {late_payments}",
        evidence={
            "late_instalments": "late.late_count",
            "threshold_late_payments": "{late_payments}",
            "window_days": "{window_days}",
            "grace_days": "{grace_days}",
        },
        thresholds={"late_payments": 3, "window_days": 365, "grace_days": 0},
        ordered=(("grace_days", "window_days"),),
        schema={
            "late_payments": {"type": "integer", "minimum": 1, "maximum": 100},
            "window_days": {"type": "integer", "minimum": 28, "maximum": 3650},
            "grace_days": {"type": "integer", "minimum": 0, "maximum": 90},
        },
    )
)

MATURITY_NEAR = register(
    Rule(
        code="REP_MATURITY_NEAR",
        family=FAMILY,
        severity="yellow",
        description=_("Matures within %(days)s days with principal still outstanding."),
        condition=(
            f"l.maturity_date >= {as_of_param()}"
            f" AND l.maturity_date <= {shift_date(as_of_param(), '{days}')}"
            " AND p.outstanding_principal > 0"
        ),
        evidence={
            "maturity_date": "CAST(l.maturity_date AS TEXT)",
            "outstanding_principal": money_text("p.outstanding_principal"),
            "threshold_days": "{days}",
        },
        thresholds={"days": 30},
        schema={"days": {"type": "integer", "minimum": 1, "maximum": 365}},
    )
)
