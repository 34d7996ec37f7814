"""Close-of-day job runs: list, detail, and the progress fragment that htmx polls."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from loans.access import role_required
from loans.models import Ifrs9Stage, RiskClass
from loans.views import query_without

from .models import JobRun
from .rules import rule_descriptions

PAGE_SIZE = 50


def _step_totals(run: JobRun) -> dict[str, int]:
    """Return the headline counts of a run: positions written, warnings opened, class changes."""
    steps = (run.counts or {}).get("steps", {})
    return {
        "positions": steps.get("positions_written", 0),
        "warnings_opened": sum(v for k, v in steps.items() if k.endswith("_opened")),
        "class_changes": steps.get("class_changes", 0),
    }


def _summary_rows(run: JobRun) -> dict:
    """Return the run's stored summary as labelled rows for the template."""
    summary = (run.counts or {}).get("summary", {})
    descriptions = rule_descriptions()
    by_class = summary.get("loans_by_class", {})
    balances = summary.get("balance_by_class", {})
    by_stage = summary.get("loans_by_stage", {})
    return {
        "open_loans": summary.get("open_loans"),
        "balance": summary.get("balance"),
        "specific_provision": summary.get("specific_provision"),
        "general_provision": summary.get("general_provision"),
        "by_class": [
            (c.value, c.label, by_class.get(str(c.value), 0), balances.get(str(c.value)))
            for c in RiskClass
        ],
        "by_stage": [(s.label, by_stage.get(str(s.value), 0)) for s in Ifrs9Stage],
        "by_rule": [
            (code, descriptions.get(code, ""), count)
            for code, count in sorted(summary.get("active_warnings_by_rule", {}).items())
        ],
    }


def _run_context(run: JobRun) -> dict:
    steps = (run.counts or {}).get("steps", {})
    return {
        "run": run,
        "steps": sorted(steps.items()),
        "summary": _summary_rows(run) if run.counts.get("summary") else None,
    }


@role_required
def jobrun_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(JobRun.objects.order_by("-started_at", "-pk"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    page.object_list = list(page.object_list)
    for run in page.object_list:
        run.totals = _step_totals(run)
    return render(
        request,
        "monitoring/jobrun_list.html",
        {"page_obj": page, "query_without_page": query_without(request, "page")},
    )


@role_required
def jobrun_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(JobRun, pk=pk)
    return render(request, "monitoring/jobrun_detail.html", _run_context(run))


@role_required
def jobrun_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """Render the run's status, progress and counts, which htmx polls every 2 s while it runs."""
    run = get_object_or_404(JobRun, pk=pk)
    return render(request, "monitoring/_jobrun_progress.html", _run_context(run))
