"""The dashboard of each role: one page, one tab per role the user has.

Only the selected tab is computed, so each tab costs its own queries and no
more. A tab of a role the user lacks is refused with 403.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from loans.access import User, role_required
from loans.models import RiskClass
from monitoring.models import Severity
from monitoring.selectors import get_business_date

from . import dashboards as board
from .views import BUCKET_COLOURS, CLASS_COLOURS

# Colours of the severities, as the severity badges of the warning pages.
SEVERITY_COLOURS = {"red": "#b02a37", "orange": "#fd7e14", "yellow": "#ffc107"}
# IFRS 9 stages 1 to 3 in the colours of normal, special mention and NPL.
STAGE_COLOURS = ("#198754", "#e0a800", "#dc3545")
# Trend lines: balance in blue, ratios in the colours of their classes.
BALANCE_COLOUR = "#0a58ca"
NPL_COLOUR = "#dc3545"
SPECIAL_MENTION_COLOUR = "#e0a800"
# Age bands of active warnings, from new (light) to old (dark).
AGE_COLOURS = ("#9ec5fe", "#6ea8fe", "#0a58ca", "#052c65")
# Branches or industries drawn in a chart; the table lists them all.
CHART_GROUPS = 15


# ---- Chart.js configs -----------------------------------------------------------


def _axes(x_title: str, y_title: str, stacked: bool, horizontal: bool, counts: bool) -> dict:
    value_axis = {
        "beginAtZero": True,
        "stacked": stacked,
        "title": {"display": True, "text": y_title},
    }
    if counts:
        # Whole numbers only: a count has no tick at 0.5.
        value_axis["ticks"] = {"precision": 0}
    label_axis = {"stacked": stacked, "title": {"display": True, "text": x_title}}
    if horizontal:
        return {"x": value_axis, "y": label_axis}
    return {"x": label_axis, "y": value_axis}


def bar_chart(
    labels: list[str],
    datasets: list[dict],
    x_title: str,
    y_title: str,
    *,
    stacked: bool = False,
    horizontal: bool = False,
    counts: bool = False,
) -> dict:
    """Return a Chart.js bar chart config with titled axes, and a legend for several series.

    `counts` keeps the value axis to whole numbers.
    """
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": {
            "maintainAspectRatio": False,
            "indexAxis": "y" if horizontal else "x",
            "plugins": {"legend": {"display": len(datasets) > 1}},
            "scales": _axes(x_title, y_title, stacked, horizontal, counts),
        },
    }


def _amount(value) -> float:
    # Chart.js draws numbers; the tables next to the charts show the exact amounts.
    return float(value)


def _balance_bars(rows, colours: tuple[str, ...], x_title: str) -> dict:
    return bar_chart(
        [row.label for row in rows],
        [
            {
                "label": _("Outstanding balance"),
                "data": [_amount(row.balance) for row in rows],
                "backgroundColor": list(colours[: len(rows)]),
            }
        ],
        x_title,
        _("Outstanding balance"),
    )


def _class_stacks(groups: list[board.GroupRow], x_title: str, horizontal: bool = False) -> dict:
    """Return bars of each group's balance, stacked by risk class."""
    datasets = [
        {
            "label": str(risk_class.label),
            "data": [_amount(group.totals.by_class.get(risk_class.value, 0)) for group in groups],
            "backgroundColor": CLASS_COLOURS[index],
        }
        for index, risk_class in enumerate(RiskClass)
    ]
    return bar_chart(
        [group.label for group in groups],
        datasets,
        x_title,
        _("Outstanding balance"),
        stacked=True,
        horizontal=horizontal,
    )


def _severity_stacks(labels: list[str], counts: list[dict[str, int]], x_title: str) -> dict:
    datasets = [
        {
            "label": str(severity.label),
            "data": [row[severity.value] for row in counts],
            "backgroundColor": SEVERITY_COLOURS[severity.value],
        }
        for severity in Severity
    ]
    return bar_chart(labels, datasets, x_title, _("Active warnings"), stacked=True, counts=True)


def _trend_chart(points: list[board.TrendPoint], with_balance: bool) -> dict:
    """Return the month-end trend: ratios as lines on a percent axis, the balance as bars."""
    labels = [point.month_end.strftime("%Y-%m") for point in points]

    def series(values) -> list[float | None]:
        return [None if value is None else _amount(value) for value in values]

    datasets = [
        {
            "type": "line",
            "label": _("NPL ratio (%)"),
            "data": series(point.npl_ratio for point in points),
            "borderColor": NPL_COLOUR,
            "backgroundColor": NPL_COLOUR,
            "yAxisID": "ratio",
            "spanGaps": False,
        }
    ]
    scales = {
        "x": {"title": {"display": True, "text": _("Month end")}},
        "ratio": {
            "position": "left",
            "beginAtZero": True,
            "title": {"display": True, "text": _("Share of the balance (%)")},
        },
    }
    if with_balance:
        datasets.append(
            {
                "type": "line",
                "label": _("Special-mention ratio (%)"),
                "data": series(point.special_mention_ratio for point in points),
                "borderColor": SPECIAL_MENTION_COLOUR,
                "backgroundColor": SPECIAL_MENTION_COLOUR,
                "yAxisID": "ratio",
                "spanGaps": False,
            }
        )
        datasets.append(
            {
                "type": "bar",
                "label": _("Outstanding balance"),
                "data": series(point.balance for point in points),
                "backgroundColor": "rgba(10, 88, 202, 0.25)",
                "borderColor": BALANCE_COLOUR,
                "borderWidth": 1,
                "yAxisID": "balance",
            }
        )
        scales["balance"] = {
            "position": "right",
            "beginAtZero": True,
            "grid": {"drawOnChartArea": False},
            "title": {"display": True, "text": _("Outstanding balance")},
        }
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": {
            "maintainAspectRatio": False,
            "plugins": {"legend": {"display": True}},
            "scales": scales,
        },
    }


# ---- Sections ---------------------------------------------------------------------


def _branch_ids(user: User) -> list[int]:
    return list(user.branches.values_list("pk", flat=True))


def _portfolio_charts(figures: board.PortfolioFigures) -> dict:
    return {
        "class_chart": _balance_bars(figures.by_class, CLASS_COLOURS, _("Risk class")),
        "bucket_chart": _balance_bars(figures.by_bucket, BUCKET_COLOURS, _("Days past due")),
    }


def _officer_section(user: User, business_date: date, as_of: date | None) -> dict:
    branch_ids = _branch_ids(user)
    context: dict = {
        "tasks": board.officer_tasks(user, business_date),
        "warnings": board.warning_severity_counts(board.active_warnings(branch_ids, officer=user)),
        "attention": board.attention_loans(user, branch_ids, business_date),
        "officer_id": user.pk,
        "warning_query": f"officer={user.pk}&",
    }
    if as_of is not None:
        figures = board.portfolio_figures(as_of, branch_ids=branch_ids, officer=user)
        context.update(figures=figures, **_portfolio_charts(figures))
    return context


def _branch_section(user: User, business_date: date, as_of: date | None) -> dict:
    branch_ids = _branch_ids(user)
    warning_rows = board.warnings_by_officer(branch_ids)
    task_rows = board.tasks_by_officer(branch_ids, business_date)
    context: dict = {
        "warnings": board.warning_severity_counts(board.active_warnings(branch_ids)),
        "task_buckets": [(code, board.TASK_LABELS[code]) for code in board.TASK_BUCKETS],
        "warning_chart": _severity_stacks(
            [row.label for row in warning_rows],
            [row.counts for row in warning_rows],
            _("Credit officer"),
        ),
    }
    portfolio_rows: list[board.GroupRow] = []
    if as_of is not None:
        figures = board.portfolio_figures(as_of, branch_ids=branch_ids, by=("officer", "branch"))
        portfolio_rows = figures.by_officer
        context.update(
            figures=figures,
            officer_chart=_class_stacks(portfolio_rows, _("Credit officer")),
            **_portfolio_charts(figures),
        )
    context["officers"] = board.officer_overview(portfolio_rows, warning_rows, task_rows)
    return context


def _risk_section(user: User, business_date: date, as_of: date | None) -> dict:
    matrix = board.warning_matrix(business_date)
    context: dict = {
        "matrix": matrix,
        "family_chart": _severity_stacks(
            [label for _code, label, _counts in matrix.families],
            [counts for _code, _label, counts in matrix.families],
            _("Warning family"),
        ),
        "age_chart": bar_chart(
            [label for _code, label, _count in matrix.ages],
            [
                {
                    "label": _("Active warnings"),
                    "data": [count for _code, _label, count in matrix.ages],
                    "backgroundColor": list(AGE_COLOURS),
                }
            ],
            _("Days since first seen"),
            _("Active warnings"),
            counts=True,
        ),
    }
    if as_of is not None:
        version = board.summary_version()
        figures = board.cached(
            f"book:{as_of}",
            version,
            lambda: board.portfolio_figures(as_of, by=("branch", "industry")),
        )
        trend = board.cached(f"trend:{as_of}", version, lambda: board.month_end_trend(as_of))
        context.update(
            figures=figures,
            trend=trend,
            trend_chart=_trend_chart(trend, with_balance=True),
            stage_chart=_balance_bars(figures.by_stage, STAGE_COLOURS, _("IFRS 9 stage")),
            branch_chart=_class_stacks(figures.by_branch[:CHART_GROUPS], _("Branch")),
            industry_chart=_class_stacks(
                figures.by_industry[:CHART_GROUPS], _("Industry (NAICS sector)"), horizontal=True
            ),
            **_portfolio_charts(figures),
        )
    return context


def _committee_section(user: User, business_date: date, as_of: date | None) -> dict:
    figures = board.committee_figures()
    context: dict = {
        "committee": figures,
        "business_date": business_date,
        "direction_chart": bar_chart(
            [_("Downgrades"), _("Upgrades")],
            [
                {
                    "label": _("Pending proposals"),
                    "data": [figures.downgrades, figures.upgrades],
                    "backgroundColor": [NPL_COLOUR, CLASS_COLOURS[0]],
                }
            ],
            _("Proposed direction"),
            _("Pending proposals"),
            counts=True,
        ),
    }
    if as_of is not None:
        version = board.summary_version()
        trend = board.cached(f"trend:{as_of}", version, lambda: board.month_end_trend(as_of))
        context.update(trend=trend, trend_chart=_trend_chart(trend, with_balance=False))
    return context


def _audit_section(user: User, business_date: date, as_of: date | None) -> dict:
    return {"changes": board.recent_changes()}


SECTION_BUILDERS: dict[str, Callable[[User, date, date | None], dict]] = {
    board.OFFICER: _officer_section,
    board.BRANCH: _branch_section,
    board.RISK: _risk_section,
    board.COMMITTEE: _committee_section,
    board.AUDIT: _audit_section,
}


@role_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Show the dashboard tab named in ?view=, or the first tab of the user's roles."""
    sections = board.dashboard_sections(request.user)
    if not sections:
        raise PermissionDenied(_("Your role has no dashboard."))
    selected = request.GET.get("view") or sections[0]
    if selected not in SECTION_BUILDERS:
        raise Http404(_("No such dashboard."))
    if selected not in sections:
        raise PermissionDenied(_("This dashboard belongs to another role."))

    business_date = get_business_date()
    context: dict = {
        "tabs": [(code, board.SECTION_LABELS[code]) for code in sections],
        "selected": selected,
        "section_template": f"reports/dashboards/_{selected}.html",
        "as_of": None,
    }
    if business_date is not None:
        # The audit tab shows no portfolio figures.
        as_of = None if selected == board.AUDIT else board.summary_date(business_date)
        context["as_of"] = as_of
        context["business_day"] = business_date
        context.update(SECTION_BUILDERS[selected](request.user, business_date, as_of))
    return render(request, "reports/dashboards/dashboard.html", context)
