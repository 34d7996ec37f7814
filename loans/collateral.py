"""Collateral coverage: how much of a loan's outstanding the pledged items support.

Each item supports its latest value x the share pledged to the loan x its own
loan-to-value limit. The loan's support is the sum over its items. Limits
apply to the outstanding amount, never to the sanctioned principal.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, OuterRef, Subquery, Sum

from .models import CollateralPledge, CollateralValuation

CENT = Decimal("0.01")


def collateral_support(loan_ids: Iterable[int]) -> dict[int, Decimal]:
    """Return the amount the pledged collateral supports, per loan id, in one query."""
    latest_value = (
        CollateralValuation.objects.filter(collateral=OuterRef("collateral"))
        .order_by("-valued_on")
        .values("value")[:1]
    )
    supported = ExpressionWrapper(
        Subquery(latest_value) * F("share") * F("collateral__ltv_limit"),
        output_field=DecimalField(max_digits=24, decimal_places=8),
    )
    rows = (
        CollateralPledge.objects.filter(loan_id__in=list(loan_ids))
        .values("loan_id")
        .annotate(support=Sum(supported))
    )
    return {
        row["loan_id"]: Decimal(row["support"] or 0).quantize(CENT, rounding=ROUND_HALF_UP)
        for row in rows
    }


def collateral_shortfall(outstanding: Decimal, support: Decimal) -> Decimal:
    return max(outstanding - support, Decimal("0.00"))
