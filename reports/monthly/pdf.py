"""Render a report version as PDF with WeasyPrint, from the frozen figures.

The print template draws the charts as inline SVG and loads nothing from
the network: WeasyPrint is given no base URL, so the PDF depends on the
figures and the templates alone.
"""

from __future__ import annotations

from django.template.loader import render_to_string

from ..models import MonthlyReport
from .charts import chart_svg, report_charts
from .layout import report_sections
from .presentation import report_heading


def print_context(report: MonthlyReport) -> dict:
    charts = {
        chart.section: {"title": chart.title, "svg": chart_svg(chart)}
        for chart in report_charts(report.figures)
    }
    return {
        "report": report,
        "heading": report_heading(report),
        "sections": report_sections(report.figures),
        "charts": charts,
    }


def render_pdf(report: MonthlyReport) -> bytes:
    from weasyprint import HTML

    html = render_to_string("reports/monthly/print.html", print_context(report))
    return HTML(string=html).write_pdf()
