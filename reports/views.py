"""The portfolio summary, the home page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from loans.access import role_required, sees_whole_book
from loans.selectors import scoped_branches
from monitoring.selectors import get_business_date

from .selectors import BreakdownRow, portfolio_summary

# Bar colours of the risk classes, from normal (green) to loss (dark red).
CLASS_COLOURS = ("#198754", "#e0a800", "#fd7e14", "#dc3545", "#58151c")
# Bar colours of the DPD buckets, from current to over 360 days.
BUCKET_COLOURS = ("#198754", "#9ec400", "#e0a800", "#fd7e14", "#dc3545", "#a52834", "#58151c")


def _bar_chart(rows: list[BreakdownRow], colours: tuple[str, ...]) -> dict:
    """Return a Chart.js bar chart config of the outstanding balance of each row."""
    return {
        "type": "bar",
        "data": {
            "labels": [row.label for row in rows],
            "datasets": [
                {
                    "label": _("Outstanding balance"),
                    "data": [row.balance for row in rows],
                    "backgroundColor": list(colours[: len(rows)]),
                }
            ],
        },
        "options": {
            "maintainAspectRatio": False,
            "plugins": {"legend": {"display": False}},
            "scales": {"y": {"beginAtZero": True}},
        },
    }


@role_required
def portfolio(request: HttpRequest) -> HttpResponse:
    business_date = get_business_date()
    context: dict = {"summary": None}
    if business_date is not None:
        summary = portfolio_summary(request.user, business_date)
        context = {
            "summary": summary,
            "scope_branches": (
                None if sees_whole_book(request.user) else list(scoped_branches(request.user))
            ),
            "class_chart": _bar_chart(summary.by_class, CLASS_COLOURS),
            "bucket_chart": _bar_chart(summary.by_bucket, BUCKET_COLOURS),
        }
    return render(request, "reports/portfolio.html", context)
