"""Inspection pages: the inspection form and review, My tasks, branch compliance.

Every view reads inspections through `selectors.visible_inspections`, so an
inspection outside the user's branches is a 404. A role that may not take a
step gets 403, checked here and again in the services.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from loans.access import get_visible_loan, role_required, sees_whole_book
from loans.views import query_without

from ..models import Inspection
from . import selectors, services
from .forms import (
    CompliancePeriodForm,
    InspectionForm,
    ReturnForm,
    add_errors,
    checklist_formset,
)

PAGE_SIZE = 50
# Colours of the compliance chart's bars: on time, late, missed, still due.
COMPLIANCE_COLOURS = ("#198754", "#e0a800", "#dc3545", "#adb5bd")


def _inspection_or_404(request: HttpRequest, pk: int) -> Inspection:
    inspection = selectors.get_inspection(request.user, pk)
    if inspection is None:
        raise Http404(_("Inspection not found."))
    return inspection


# ---- Inspection page ---------------------------------------------------------


def _page_context(request: HttpRequest, inspection: Inspection, **extra) -> dict:
    user = request.user
    editing = inspection.is_editable and selectors.may_edit(user, inspection)
    context = {
        "inspection": inspection,
        "loan": inspection.loan,
        "editing": editing,
        "checks": list(inspection.checks.all()),
        "proposals": list(inspection.proposals.order_by("created_at", "pk")),
        "history": selectors.inspection_history(inspection),
        "as_of": selectors.business_date(),
        **_review_context(request, inspection),
    }
    if editing:
        context.setdefault("form", InspectionForm(instance=inspection))
        context.setdefault("formset", checklist_formset(inspection))
    context.update(extra)
    return context


def _review_context(request: HttpRequest, inspection: Inspection) -> dict:
    user = request.user
    reviewer = selectors.may_review(user, inspection)
    return {
        "may_review": reviewer
        and inspection.status == "submitted"
        and inspection.submitted_by_id != user.pk,
        "own_submission": reviewer and inspection.submitted_by_id == user.pk,
        "return_form": ReturnForm(),
    }


@role_required
def inspection_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show the inspection: the form while the user may edit it, read-only otherwise.

    A POST with action "save" stores a draft, and one with action "submit" submits it.
    """
    inspection = _inspection_or_404(request, pk)
    if request.method == "POST":
        return _save_or_submit(request, inspection)
    return render(
        request, "monitoring/inspections/inspection_detail.html", _page_context(request, inspection)
    )


def _save_or_submit(request: HttpRequest, inspection: Inspection) -> HttpResponse:
    action = request.POST.get("action", "")
    steps = {"save": services.save_draft, "submit": services.submit}
    if action not in steps:
        return HttpResponseBadRequest(
            _("Invalid action %(action)r. Expected save or submit.") % {"action": action}
        )
    if not selectors.may_edit(request.user, inspection):
        raise PermissionDenied(_("Your role may not fill in inspections of this branch."))
    if not inspection.is_editable:
        raise PermissionDenied(
            _("This inspection is %(status)s and can no longer be changed.")
            % {"status": inspection.get_status_display().lower()}
        )

    form = InspectionForm(request.POST, instance=inspection)
    formset = checklist_formset(inspection, request.POST)
    if form.is_valid() and formset.is_valid():
        try:
            steps[action](inspection, request.user, form.cleaned_data, formset.answers())
        except ValidationError as error:
            add_errors(form, formset, error)
        else:
            if action == "save":
                messages.success(request, _("Draft saved."))
            else:
                messages.success(request, _("Inspection submitted for review."))
            return redirect("monitoring:inspection_detail", pk=inspection.pk)
    context = _page_context(request, inspection, form=form, formset=formset, failed_action=action)
    return render(request, "monitoring/inspections/inspection_detail.html", context)


@role_required
@require_POST
def inspection_review(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve or return the inspection, named by the POST field "action".

    With htmx the response is the review panel and, out of band, the status
    badge, the history and the documents panel. Without htmx it is a redirect
    after success, or the page with the form's errors.
    """
    inspection = _inspection_or_404(request, pk)
    action = request.POST.get("action", "")
    if action not in ("approve", "return"):
        return HttpResponseBadRequest(
            _("Invalid action %(action)r. Expected approve or return.") % {"action": action}
        )
    if not selectors.may_review(request.user, inspection):
        raise PermissionDenied(_("Your role may not review inspections of this branch."))

    return_form = ReturnForm(request.POST if action == "return" else None)
    feedback, errors = "", []
    try:
        if action == "approve":
            inspection = services.approve(inspection, request.user)
            feedback = _("Inspection approved.")
        elif return_form.is_valid():
            inspection = services.return_for_changes(
                inspection, request.user, return_form.cleaned_data["comment"]
            )
            feedback = _("Inspection returned to the officer.")
    except ValidationError as error:
        if hasattr(error, "error_dict") and "comment" in error.error_dict:
            return_form.add_error("comment", error.error_dict["comment"])
        else:
            errors = error.messages

    if not request.htmx:
        if feedback:
            messages.success(request, feedback)
            return redirect("monitoring:inspection_detail", pk=pk)
        for message in errors:
            messages.error(request, message)
        context = _page_context(request, _inspection_or_404(request, pk))
        if action == "return":
            context["return_form"] = return_form
        return render(request, "monitoring/inspections/inspection_detail.html", context)

    context = _page_context(request, _inspection_or_404(request, pk))
    context.update({"feedback": feedback, "errors": errors, "swap_oob": True})
    if action == "return" and not feedback:
        context["return_form"] = return_form
    panel = render_to_string("monitoring/inspections/_review_panel.html", context, request)
    status = render_to_string("monitoring/inspections/_header_status.html", context, request)
    history = render_to_string("monitoring/inspections/_history.html", context, request)
    documents = render_to_string("monitoring/inspections/_documents.html", context, request)
    return HttpResponse(panel + status + history + documents)


@role_required
@require_POST
def inspection_start(request: HttpRequest, pk: int) -> HttpResponse:
    """Start an unscheduled special inspection of the loan and open its form."""
    loan = get_visible_loan(request.user, pk)
    if not selectors.may_start(request.user, loan):
        raise PermissionDenied(_("Only a credit officer of the loan's branch may log inspections."))
    inspection, created = services.start_inspection(loan, request.user)
    if created:
        messages.success(request, _("Special inspection started."))
    else:
        messages.info(
            request,
            _("This loan already has a special inspection in progress; it is opened here."),
        )
    return redirect("monitoring:inspection_detail", pk=inspection.pk)


# ---- My tasks ----------------------------------------------------------------


def _selected_bucket(requested: str, buckets: list[str], counts: dict[str, int]) -> str:
    """Return the requested bucket, or else the first bucket that has inspections."""
    if requested in buckets:
        return requested
    return next((bucket for bucket in buckets if counts[bucket]), buckets[0])


@role_required
def my_tasks(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not selectors.has_tasks(user):
        raise PermissionDenied(_("My tasks lists the work of officers and their reviewers."))
    as_of = selectors.business_date()
    buckets = selectors.task_buckets(user)
    counts = selectors.task_counts(user, as_of)
    bucket = _selected_bucket(request.GET.get("bucket", ""), buckets, counts)

    inspections, sort = selectors.sort_tasks(
        selectors.task_bucket(user, bucket, as_of), request.GET.get("sort")
    )
    paginator = Paginator(inspections, PAGE_SIZE)
    # The bucket counts already contain the number of rows, so the paginator need not count.
    paginator.count = counts[bucket]
    page = paginator.get_page(request.GET.get("page"))
    rows = list(page.object_list)
    for inspection in rows:
        inspection.days_overdue = selectors.days_overdue(inspection, as_of)
    page.object_list = rows
    return render(
        request,
        "monitoring/inspections/my_tasks.html",
        {
            "tabs": [(name, selectors.BUCKET_LABELS[name], counts[name]) for name in buckets],
            "bucket": bucket,
            "bucket_label": selectors.BUCKET_LABELS[bucket],
            "page_obj": page,
            "current_sort": sort,
            "query_without_page": query_without(request, "page"),
            "query_without_sort": query_without(request, "page", "sort"),
            "query_without_bucket": query_without(request, "page", "sort", "bucket"),
            "as_of": as_of,
            "due_soon_days": selectors.DUE_SOON_DAYS,
        },
    )


# ---- Branch compliance -------------------------------------------------------


def _compliance_form(request: HttpRequest, as_of) -> CompliancePeriodForm:
    start, end = selectors.quarter_of(as_of)
    data = request.GET.copy()
    if not data.get("date_from"):
        data["date_from"] = start.isoformat()
    if not data.get("date_to"):
        data["date_to"] = end.isoformat()
    return CompliancePeriodForm(
        data,
        branches=selectors.compliance_branches(request.user),
        whole_book=sees_whole_book(request.user),
    )


def _compliance_chart(rows: list[dict]) -> dict:
    """Return a Chart.js stacked bar config of each officer's inspections by outcome."""
    series = (
        ("on_time", _("On time")),
        ("late", _("Late")),
        ("missed", _("Missed")),
        ("still_due", _("Still due")),
    )
    return {
        "type": "bar",
        "data": {
            "labels": [row["officer_name"] for row in rows],
            "datasets": [
                {"label": label, "data": [row[key] for row in rows], "backgroundColor": colour}
                for (key, label), colour in zip(series, COMPLIANCE_COLOURS, strict=True)
            ],
        },
        "options": {
            "indexAxis": "y",
            "maintainAspectRatio": False,
            "scales": {
                "x": {"stacked": True, "beginAtZero": True, "ticks": {"precision": 0}},
                "y": {"stacked": True},
            },
        },
    }


def _officer_name(row: dict) -> str:
    if row["officer"] is None:
        return _("Unassigned")
    full_name = f"{row['officer__first_name']} {row['officer__last_name']}".strip()
    return full_name or row["officer__username"]


@role_required
def inspection_compliance(request: HttpRequest) -> HttpResponse:
    as_of = selectors.business_date()
    form = _compliance_form(request, as_of)
    context: dict = {"form": form, "as_of": as_of, "page_obj": None}
    if form.is_valid():
        branch = form.cleaned_data["branch"]
        if branch is not None:
            branches = [branch.pk]
        elif sees_whole_book(request.user):
            branches = None
        else:
            branches = list(form.fields["branch"].queryset.values_list("pk", flat=True))
        period = selectors.CompliancePeriod(
            branches=branches,
            date_from=form.cleaned_data["date_from"],
            date_to=form.cleaned_data["date_to"],
            as_of=as_of,
        )
        all_rows = selectors.compliance_by_officer(period)
        page = Paginator(all_rows, PAGE_SIZE).get_page(request.GET.get("page"))
        rows = selectors.add_compliance_rates(list(page.object_list))
        for row in rows:
            row["officer_name"] = _officer_name(row)
        page.object_list = rows
        totals = selectors.compliance_totals(all_rows)
        totals["rate"] = selectors.compliance_rate(
            totals["on_time"], totals["late"], totals["missed"]
        )
        context.update(
            {
                "period": period,
                "branch": branch,
                "page_obj": page,
                "totals": totals,
                "chart": _compliance_chart(rows),
                "query_without_page": query_without(request, "page"),
            }
        )
    return render(request, "monitoring/inspections/compliance.html", context)
