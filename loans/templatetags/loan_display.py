"""Template filters for showing loan book codes: risk class badges, stages, DPD buckets."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils.translation import gettext_lazy as _

from loans.models import Ifrs9Stage, RiskClass
from loans.selectors import dpd_bucket_label

register = template.Library()


@register.filter
def risk_class_slug(value: int | None) -> str:
    """Return the CSS code that risk_class_badge.html expects for a stored class (1 -> "normal")."""
    if value in RiskClass.values:
        return RiskClass(value).slug
    return ""


@register.filter
def risk_class_label(value: int | None) -> str:
    if value in RiskClass.values:
        return str(RiskClass(value).label)
    return ""


@register.filter
def ifrs9_stage_label(value: int | None) -> str:
    if value in Ifrs9Stage.values:
        return str(Ifrs9Stage(value).label)
    return ""


@register.filter
def bucket_label(code: str | None) -> str:
    """Return the display name of a days-past-due bucket code such as "31-60"."""
    return dpd_bucket_label(code) if code else ""


@register.filter
def rate_percent(value: Decimal | None) -> str:
    """Format an annual rate stored as a fraction (0.0575) as a percentage ("5.75")."""
    if value is None:
        return ""
    text = f"{Decimal(value) * 100:.4f}".rstrip("0")
    whole, _dot, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


@register.filter
def share_percent(value: Decimal | None) -> str:
    """Format a share stored as a fraction (0.5) as a percentage with two decimals ("50.00")."""
    if value is None:
        return ""
    return str((Decimal(value) * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


# Reason codes written by the close-of-day run, with the floor each stands for.
REASON_LABELS = {
    "written_off": _("Written off"),
    "dpd_over_loss": _("Over 360 days past due"),
    "dpd_over_doubtful": _("Over 270 days past due"),
    "dpd_over_substandard": _("Over 90 days past due"),
    "overdue": _("Overdue beyond the technical delay"),
    "restructured": _("Restructured"),
    "debtor_contagion": _("Debtor contagion"),
    "ifrs9_stage": _("IFRS 9 stage change"),
    "restructured_observation": _("Restructuring observation period"),
    "restructured_again": _("Restructured again during observation"),
    "committee": _("Committee decision"),
}


@register.filter
def reason_label(code: str | None) -> str:
    if not code:
        return ""
    return str(REASON_LABELS.get(code, code))
