"""Titles of a report version, shared by its pages, its PDF and its Excel file."""

from __future__ import annotations

from django.utils import formats
from django.utils.translation import gettext as _

from ..models import MonthlyReport


def scope_label(report: MonthlyReport) -> str:
    """Return "Whole bank" or the branch's code and name; select the branch with the report."""
    if report.branch_id is None:
        return _("Whole bank")
    return f"{report.branch.code} {report.branch.name}"


def frozen_scope_label(report: MonthlyReport) -> str:
    """Return the scope as the figures froze it, so a renamed branch keeps its old name here."""
    scope = (report.figures or {}).get("scope") or {}
    if report.branch_id is None or not scope.get("branch_code"):
        return scope_label(report)
    return f"{scope['branch_code']} {scope['name']}"


def month_label(report: MonthlyReport) -> str:
    return formats.date_format(report.month, "F Y")


def report_heading(report: MonthlyReport) -> str:
    return _("Monthly post-loan report, %(month)s, %(scope)s, version %(version)s") % {
        "month": month_label(report),
        "scope": frozen_scope_label(report),
        "version": report.version,
    }
