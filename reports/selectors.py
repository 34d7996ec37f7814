"""Portfolio figures as of a business date, scoped to what the user may see."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Q, Sum

from loans.access import User, visible_loans
from loans.models import ZERO, Ifrs9Stage, RiskClass
from loans.selectors import dpd_bucket_label
from monitoring.close_of_day.positions import DPD_BUCKETS

CENT = Decimal("0.01")
HUNDRED = Decimal("100")


@dataclass(frozen=True)
class BreakdownRow:
    """One line of a breakdown: a class, a stage or a DPD bucket."""

    code: str
    label: str
    loans: int
    balance: Decimal
    share: Decimal | None


@dataclass(frozen=True)
class PortfolioSummary:
    as_of: date
    loans: int
    balance: Decimal
    npl_balance: Decimal
    npl_ratio: Decimal | None
    specific_provision: Decimal
    general_provision: Decimal
    by_class: list[BreakdownRow]
    by_stage: list[BreakdownRow]
    by_bucket: list[BreakdownRow]

    @property
    def required_provision(self) -> Decimal:
        return self.specific_provision + self.general_provision


def percent(part: Decimal, whole: Decimal) -> Decimal | None:
    """Return part / whole in percent rounded half-up to 0.01, or None when whole is zero."""
    if not whole:
        return None
    return (part * HUNDRED / whole).quantize(CENT, rounding=ROUND_HALF_UP)


def _group_aggregates(prefix: str, condition: Q) -> dict:
    return {
        f"{prefix}_loans": Count("pk", filter=condition),
        f"{prefix}_balance": Sum("position__outstanding_principal", filter=condition),
    }


def portfolio_summary(user: User, as_of: date) -> PortfolioSummary:
    """Aggregate the open positions of the user's loans as of `as_of` in one query.

    Every breakdown is a conditional aggregate of the same scan, so the page
    costs one query whatever the size of the book.
    NOTE: balances of loans in different currencies are added without conversion.
    """
    classes = [(str(c.value), c.label, Q(risk_class=c.value)) for c in RiskClass]
    stages = [(str(s.value), s.label, Q(ifrs9_stage=s.value)) for s in Ifrs9Stage]
    buckets = [
        (code, dpd_bucket_label(code), Q(position__dpd_bucket=code))
        for code, _low, _high in DPD_BUCKETS
    ]
    groups = {"class": classes, "stage": stages, "bucket": buckets}

    aggregates = {
        "loans": Count("pk"),
        "balance": Sum("position__outstanding_principal"),
        "npl_balance": Sum(
            "position__outstanding_principal",
            filter=Q(risk_class__in=RiskClass.non_performing()),
        ),
        "specific": Sum("position__specific_provision"),
        "general": Sum("position__general_provision"),
    }
    for name, rows in groups.items():
        for index, (_code, _label, condition) in enumerate(rows):
            aggregates.update(_group_aggregates(f"{name}_{index}", condition))

    totals = (
        visible_loans(user)
        .filter(position__as_of=as_of, position__is_open=True)
        .aggregate(**aggregates)
    )

    balance = _money(totals["balance"])
    npl_balance = _money(totals["npl_balance"])
    breakdowns = {
        name: [
            _breakdown_row(code, label, totals, f"{name}_{index}", balance)
            for index, (code, label, _condition) in enumerate(rows)
        ]
        for name, rows in groups.items()
    }
    return PortfolioSummary(
        as_of=as_of,
        loans=totals["loans"],
        balance=balance,
        npl_balance=npl_balance,
        npl_ratio=percent(npl_balance, balance),
        specific_provision=_money(totals["specific"]),
        general_provision=_money(totals["general"]),
        by_class=breakdowns["class"],
        by_stage=breakdowns["stage"],
        by_bucket=breakdowns["bucket"],
    )


def _money(value: Decimal | None) -> Decimal:
    return (value or ZERO).quantize(CENT, rounding=ROUND_HALF_UP)


def _breakdown_row(
    code: str, label: str, totals: dict, prefix: str, balance: Decimal
) -> BreakdownRow:
    group_balance = _money(totals[f"{prefix}_balance"])
    return BreakdownRow(
        code=code,
        label=str(label),
        loans=totals[f"{prefix}_loans"],
        balance=group_balance,
        share=percent(group_balance, balance),
    )
