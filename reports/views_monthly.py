"""Monthly report pages: the list, one version with charts, its progress, its files.

Who may do what:

- risk managers, committee members, auditors and administrators read
  every report;
- credit officers and branch managers read the reports of their branches,
  and any other version is a 404 for them;
- risk managers and administrators request a report or a new version, and
  a request from any other role is a 403.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from loans.access import role_required
from loans.views import query_without
from monitoring.selectors import get_business_date

from .models import MonthlyReport, ReportStatus
from .monthly import selectors
from .monthly.charts import chartjs_config, report_charts
from .monthly.forms import ReportRequestForm
from .monthly.layout import report_sections
from .monthly.periods import previous_month
from .monthly.presentation import frozen_scope_label, month_label, report_heading, scope_label
from .monthly.services import request_report

PAGE_SIZE = 50
FILE_FORMATS = {
    "pdf": ("pdf", "application/pdf"),
    "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
}


def _get_report(request: HttpRequest, pk: int) -> MonthlyReport:
    report = selectors.get_visible_report(request.user, pk)
    if report is None:
        raise Http404("No such report.")
    return report


def _request_form(request: HttpRequest, data=None) -> ReportRequestForm:
    """Return the request form, proposing the month before the business date."""
    business_date = get_business_date() or timezone.localdate()
    initial = {"month": f"{previous_month(business_date):%Y-%m}"}
    return ReportRequestForm(data, initial=initial, today=timezone.localdate())


@role_required
def report_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.report_groups(request.user), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    groups = list(page.object_list)
    versions = selectors.versions_by_group(request.user, groups)
    rows = []
    for group in groups:
        group_versions = versions.get((group["month"], group["branch_id"]), [])
        if group_versions:
            rows.append({"latest": group_versions[0], "versions": group_versions})
    may_generate = selectors.may_generate(request.user)
    return render(
        request,
        "reports/monthly/list.html",
        {
            "page_obj": page,
            "rows": rows,
            "may_generate": may_generate,
            "form": _request_form(request) if may_generate else None,
            "query_without_page": query_without(request, "page"),
        },
    )


@role_required
@require_POST
def report_generate(request: HttpRequest) -> HttpResponse:
    if not selectors.may_generate(request.user):
        raise PermissionDenied(_("Your role may read monthly reports but not generate them."))
    form = _request_form(request, request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("reports:monthly_report_list")
    report = request_report(form.cleaned_data["month"], form.cleaned_data["branch"], request.user)
    messages.success(
        request,
        _("Version %(version)s of the report for %(month)s, %(scope)s, is queued.")
        % {"version": report.version, "month": month_label(report), "scope": scope_label(report)},
    )
    return redirect("reports:monthly_report_detail", pk=report.pk)


def _detail_context(request: HttpRequest, report: MonthlyReport) -> dict:
    versions = list(
        selectors.visible_reports(request.user)
        .filter(month=report.month, branch=report.branch)
        .defer("figures")
        .order_by("-version")
    )
    context = {
        "report": report,
        "heading": report_heading(report),
        "scope": frozen_scope_label(report),
        "month": month_label(report),
        "versions": versions,
        "may_generate": selectors.may_generate(request.user),
        "sections": [],
        "charts": {},
    }
    if report.status == ReportStatus.COMPLETED and report.figures:
        context["sections"] = report_sections(report.figures)
        context["charts"] = {
            chart.section: {"chart": chart, "config": chartjs_config(chart)}
            for chart in report_charts(report.figures)
        }
    return context


@role_required
def report_detail(request: HttpRequest, pk: int) -> HttpResponse:
    report = _get_report(request, pk)
    return render(request, "reports/monthly/detail.html", _detail_context(request, report))


@role_required
def report_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """Render the status of a version, which htmx polls every 2 s while it is queued or running.

    Once the version has ended, htmx reloads the page so that the figures appear.
    """
    report = _get_report(request, pk)
    response = render(request, "reports/monthly/_progress.html", {"report": report})
    if request.htmx and report.status in (ReportStatus.COMPLETED, ReportStatus.FAILED):
        response["HX-Refresh"] = "true"
    return response


@role_required
def report_download(request: HttpRequest, pk: int, file_format: str) -> FileResponse:
    report = _get_report(request, pk)
    if file_format not in FILE_FORMATS:
        raise Http404("No such file format.")
    extension, content_type = FILE_FORMATS[file_format]
    stored = report.pdf if file_format == "pdf" else report.xlsx
    if report.status != ReportStatus.COMPLETED or not stored:
        raise Http404("This version has no file yet.")
    scope = "bank" if report.branch_id is None else report.branch.code
    filename = f"monthly-report-{report.month:%Y-%m}-{scope}-v{report.version}.{extension}"
    return FileResponse(
        stored.open("rb"), as_attachment=True, filename=filename, content_type=content_type
    )
