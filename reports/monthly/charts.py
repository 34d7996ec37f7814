"""The report's charts: a Chart.js config for the browser and inline SVG for the PDF.

Both are drawn from the same `Chart` data, built from the frozen figures.
The PDF has no JavaScript, so its charts are horizontal bar charts written
as SVG here; the browser draws the same bars with Chart.js.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.utils import formats
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from loans.models import RiskClass
from loans.selectors import dpd_bucket_label
from monitoring.models import Severity, WarningFamily

from ..views import BUCKET_COLOURS, CLASS_COLOURS

SEVERITY_COLOURS = {"red": "#dc3545", "orange": "#fd7e14", "yellow": "#e0a800"}

# Geometry of the SVG charts, in CSS pixels (WeasyPrint prints 96 of them per inch).
SVG_WIDTH = 640
LABEL_WIDTH = 170
VALUE_WIDTH = 110
BAR_HEIGHT = 18
BAR_GAP = 8
LEGEND_HEIGHT = 22
FONT_SIZE = 11


@dataclass(frozen=True)
class Series:
    name: str
    values: list[Decimal]
    colours: list[str]


@dataclass(frozen=True)
class Chart:
    key: str
    section: str
    title: str
    labels: list[str]
    series: list[Series]
    money: bool

    @property
    def stacked(self) -> bool:
        return len(self.series) > 1

    @property
    def description(self) -> str:
        return _("Bar chart: %(title)s. The figures are in the table of this section.") % {
            "title": self.title
        }


def report_charts(figures: dict) -> list[Chart]:
    """Return the balance by class, the balance by DPD bucket and new warnings by family."""
    by_class = figures["classification"]["by_class"]
    by_bucket = figures["asset_quality"]["by_bucket"]
    warnings = figures["warnings"]["rows"]
    new_warnings = {(row["family"], row["severity"]): row["new"] for row in warnings}
    return [
        Chart(
            "class-chart",
            "classification",
            _("Outstanding balance by risk class"),
            [str(RiskClass(int(row["code"])).label) for row in by_class],
            [
                Series(
                    _("Outstanding balance"),
                    [Decimal(r["balance"]) for r in by_class],
                    list(CLASS_COLOURS),
                )
            ],
            money=True,
        ),
        Chart(
            "bucket-chart",
            "asset_quality",
            _("Outstanding balance by days past due"),
            [str(dpd_bucket_label(row["code"])) for row in by_bucket],
            [
                Series(
                    _("Outstanding balance"),
                    [Decimal(r["balance"]) for r in by_bucket],
                    list(BUCKET_COLOURS),
                )
            ],
            money=True,
        ),
        Chart(
            "warning-chart",
            "warnings",
            _("New warnings in the month by family and severity"),
            [str(label) for label in WarningFamily.labels],
            [
                Series(
                    str(severity.label),
                    [
                        Decimal(new_warnings.get((family, severity.value), 0))
                        for family in WarningFamily.values
                    ],
                    [SEVERITY_COLOURS[severity.value]] * len(WarningFamily.values),
                )
                for severity in Severity
            ],
            money=False,
        ),
    ]


def chartjs_config(chart: Chart) -> dict:
    """Return the Chart.js config of a horizontal bar chart, stacked when it has several series."""
    return {
        "type": "bar",
        "data": {
            "labels": chart.labels,
            "datasets": [
                {
                    "label": series.name,
                    "data": [str(value) for value in series.values],
                    "backgroundColor": series.colours,
                }
                for series in chart.series
            ],
        },
        "options": {
            "indexAxis": "y",
            "maintainAspectRatio": False,
            "plugins": {"legend": {"display": chart.stacked}},
            "scales": {
                "x": {"beginAtZero": True, "stacked": chart.stacked},
                "y": {"stacked": chart.stacked},
            },
        },
    }


def _format(value: Decimal, money: bool) -> str:
    if money:
        return formats.number_format(value, decimal_pos=2, force_grouping=True)
    return formats.number_format(int(value), force_grouping=True)


def _legend(chart: Chart) -> list[str]:
    parts = []
    x = LABEL_WIDTH
    for series in chart.series:
        parts.append(
            f'<rect x="{x}" y="4" width="12" height="12" fill="{series.colours[0]}"/>'
            f'<text x="{x + 16}" y="14">{escape(series.name)}</text>'
        )
        x += 24 + 7 * len(series.name)
    return parts


def chart_svg(chart: Chart) -> SafeString:
    """Return the chart as an inline SVG element of horizontal bars with their totals."""
    columns = zip(*(series.values for series in chart.series), strict=True)
    totals = [sum(values, Decimal(0)) for values in columns]
    largest = max(totals, default=Decimal(0)) or Decimal(1)
    bar_area = SVG_WIDTH - LABEL_WIDTH - VALUE_WIDTH
    top = LEGEND_HEIGHT if chart.stacked else 4
    height = top + len(chart.labels) * (BAR_HEIGHT + BAR_GAP) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{height}" '
        f'viewBox="0 0 {SVG_WIDTH} {height}" role="img" aria-label="{escape(chart.description)}" '
        f'font-family="DejaVu Sans, sans-serif" font-size="{FONT_SIZE}" fill="#212529">'
    ]
    if chart.stacked:
        parts += _legend(chart)

    for index, label in enumerate(chart.labels):
        y = top + index * (BAR_HEIGHT + BAR_GAP)
        text_y = y + BAR_HEIGHT / 2 + FONT_SIZE / 2 - 1
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{text_y:.1f}" text-anchor="end">{escape(label)}</text>'
        )
        x = float(LABEL_WIDTH)
        for series in chart.series:
            width = float(series.values[index] / largest) * bar_area
            if width > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{max(width, 1):.1f}" height="{BAR_HEIGHT}" '
                    f'fill="{series.colours[index]}"/>'
                )
            x += width
        parts.append(
            f'<text x="{x + 6:.1f}" y="{text_y:.1f}">{_format(totals[index], chart.money)}</text>'
        )

    parts.append(
        f'<line x1="{LABEL_WIDTH}" y1="{top - 2}" x2="{LABEL_WIDTH}" y2="{height - 2}" '
        'stroke="#6c757d" stroke-width="1"/>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every text above is escaped
