"""Early-warning pages: the queue, the warning page with its actions, and notifications.

Every view reads warnings through `selectors.visible_warnings`, so a warning
on a loan outside the user's branches is a 404. Each step checks the role
on the server and returns 403 when the role may not take it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from loans.access import role_required
from loans.views import query_without

from . import services
from .forms import AssignForm, BulkAssignForm, CloseForm, DisposalForm, WarningQueueFilterForm
from .models import EarlyWarning
from .selectors import (
    annotate_queue_rows,
    can_manage_warnings,
    can_record_disposal,
    get_business_date,
    get_warning,
    get_warning_detail,
    severity_counts,
    sort_warnings,
    user_notifications,
    visible_warnings,
    warning_queue,
)

PAGE_SIZE = 50
# Field name prefix of the queue's bulk-assign form, apart from the filter form's "assignee".
BULK_PREFIX = "bulk"


def _as_of() -> date:
    """Return the business date, or today before the first close-of-day run."""
    return get_business_date() or timezone.localdate()


def _warning_or_404(request: HttpRequest, pk: int) -> EarlyWarning:
    warning = get_warning(request.user, pk)
    if warning is None:
        raise Http404(_("Warning not found."))
    return warning


# ---- Queue -------------------------------------------------------------------


def _queue_filters(form: WarningQueueFilterForm) -> dict | None:
    """Return the filters of a valid or empty form, None when a filter is invalid."""
    if not form.is_bound:
        return {}
    return form.cleaned_data if form.is_valid() else None


@role_required
def warning_queue_view(request: HttpRequest) -> HttpResponse:
    as_of = _as_of()
    form = WarningQueueFilterForm(request.GET or None, user=request.user)
    filters = _queue_filters(form)
    if filters is None:
        warnings = EarlyWarning.objects.none()
        counts = severity_counts(warnings)
    else:
        warnings = warning_queue(request.user, filters, as_of)
        # The counts leave out the severity filter, so each count links to its severity.
        counts = severity_counts(warning_queue(request.user, {**filters, "severity": ""}, as_of))
    warnings, sort = sort_warnings(warnings, request.GET.get("sort"))
    paginator = Paginator(warnings, PAGE_SIZE)
    # The severity counts already hold the number of rows the queue lists, so
    # the paginator need not count them again.
    severity = filters.get("severity") if filters else ""
    paginator.count = counts[severity] if severity else counts["total"]
    page = paginator.get_page(request.GET.get("page"))
    page.object_list = annotate_queue_rows(page.object_list, as_of)
    may_assign = can_manage_warnings(request.user)
    return render(
        request,
        "monitoring/warning_queue.html",
        {
            "filter_form": form,
            "page_obj": page,
            "counts": counts,
            "current_sort": sort,
            "current_severity": request.GET.get("severity", ""),
            "query_without_page": query_without(request, "page"),
            "query_without_sort": query_without(request, "page", "sort"),
            "query_without_severity": query_without(request, "page", "severity"),
            "may_assign": may_assign,
            "bulk_form": AssignForm(prefix=BULK_PREFIX) if may_assign else None,
            "bulk_prefix": BULK_PREFIX,
            "as_of": as_of,
        },
    )


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("monitoring:warning_queue")


@role_required
@require_POST
def warning_bulk_assign(request: HttpRequest) -> HttpResponse:
    """Assign the ticked warnings to one person, then return to the queue with its filters."""
    if not can_manage_warnings(request.user):
        raise PermissionDenied(_("Only risk managers and administrators may assign warnings."))
    form = BulkAssignForm(request.POST, prefix=BULK_PREFIX, warnings=visible_warnings(request.user))
    if form.is_valid():
        try:
            count = services.assign(
                form.cleaned_data["warnings"], form.cleaned_data["assignee"], request.user
            )
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            assignee = form.cleaned_data["assignee"]
            messages.success(
                request,
                ngettext(
                    "%(count)s warning assigned to %(name)s.",
                    "%(count)s warnings assigned to %(name)s.",
                    count,
                )
                % {"count": count, "name": assignee.get_full_name() or assignee.get_username()},
            )
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
    return redirect(_safe_next(request))


# ---- Warning page and its actions ------------------------------------------


def _action_forms(warning: EarlyWarning) -> dict[str, object]:
    return {
        "assign_form": AssignForm(
            initial={"assignee": warning.assigned_to_id}, branch_id=warning.loan.branch_id
        ),
        "disposal_form": DisposalForm(),
        "close_form": CloseForm(),
    }


def _detail_context(request: HttpRequest, pk: int, **bound_forms) -> dict:
    detail = get_warning_detail(request.user, pk, _as_of())
    if detail is None:
        raise Http404(_("Warning not found."))
    return {
        "detail": detail,
        "warning": detail.warning,
        "loan": detail.warning.loan,
        "may_manage": can_manage_warnings(request.user),
        "may_record": can_record_disposal(request.user),
        **_action_forms(detail.warning),
        **bound_forms,
    }


@role_required
def warning_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "monitoring/warning_detail.html", _detail_context(request, pk))


def _acknowledge(request: HttpRequest, warning: EarlyWarning) -> tuple[str, dict]:
    services.acknowledge(warning, request.user)
    return _("Warning acknowledged."), {}


def _start(request: HttpRequest, warning: EarlyWarning) -> tuple[str, dict]:
    services.start_work(warning, request.user)
    return _("Work on the warning started."), {}


def _add_service_error(form: forms.Form, field: str, error: ValidationError) -> None:
    """Show a missing or too long value at the field, and any other failure above the form."""
    if getattr(error, "code", None) in ("required", "max_length", "not_visible"):
        form.add_error(field, error)
    else:
        form.add_error(None, error)


def _assign(request: HttpRequest, warning: EarlyWarning) -> tuple[str, dict]:
    form = AssignForm(request.POST, branch_id=warning.loan.branch_id)
    if not form.is_valid():
        return "", {"assign_form": form}
    try:
        services.assign([warning], form.cleaned_data["assignee"], request.user)
    except ValidationError as error:
        _add_service_error(form, "assignee", error)
        return "", {"assign_form": form}
    return _("Warning assigned."), {}


def _record(request: HttpRequest, warning: EarlyWarning) -> tuple[str, dict]:
    form = DisposalForm(request.POST)
    if not form.is_valid():
        return "", {"disposal_form": form}
    try:
        services.record_action(
            warning, request.user, form.cleaned_data["kind"], form.cleaned_data["note"]
        )
    except ValidationError as error:
        _add_service_error(form, "note", error)
        return "", {"disposal_form": form}
    return _("Action recorded."), {}


def _closer(
    service: Callable[..., EarlyWarning], done: Promise
) -> Callable[[HttpRequest, EarlyWarning], tuple[str, dict]]:
    """Return the step that resolves or dismisses a warning with the posted reason."""

    def close(request: HttpRequest, warning: EarlyWarning) -> tuple[str, dict]:
        form = CloseForm(request.POST)
        if not form.is_valid():
            return "", {"close_form": form}
        try:
            service(warning, request.user, form.cleaned_data["reason"])
        except ValidationError as error:
            _add_service_error(form, "reason", error)
            return "", {"close_form": form}
        return str(done), {}

    return close


# Each step posted to warning_action: who may take it and the function that takes it.
# A function returns the success message ("" on failure) and the bound forms to show.
ACTIONS: dict[str, tuple[Callable, Callable]] = {
    "acknowledge": (can_manage_warnings, _acknowledge),
    "start": (can_manage_warnings, _start),
    "assign": (can_manage_warnings, _assign),
    "record": (can_record_disposal, _record),
    "resolve": (
        can_manage_warnings,
        _closer(services.resolve, gettext_lazy("Warning resolved.")),
    ),
    "dismiss": (
        can_manage_warnings,
        _closer(services.dismiss, gettext_lazy("Warning dismissed.")),
    ),
}


@role_required
@require_POST
def warning_action(request: HttpRequest, pk: int) -> HttpResponse:
    """Take one step on the warning, named by the POST field "action".

    With htmx the response is the actions panel and, out of band, the
    timeline. Without htmx it is a redirect to the warning page after
    success, or the page with the form's errors. Every step on a closed
    warning fails with a message.
    """
    warning = _warning_or_404(request, pk)
    action = request.POST.get("action", "")
    step = ACTIONS.get(action)
    if step is None:
        return HttpResponseBadRequest(
            _("Invalid action %(action)r. Expected one of: %(choices)s.")
            % {"action": action, "choices": ", ".join(ACTIONS)}
        )
    allowed, take = step
    if not allowed(request.user):
        raise PermissionDenied(_("Your role may not take this action on warnings."))

    errors: list[str] = []
    try:
        done, bound_forms = take(request, warning)
    except ValidationError as error:
        done, bound_forms = "", {}
        errors = error.messages

    if not request.htmx:
        if done:
            messages.success(request, done)
            return redirect("monitoring:warning_detail", pk=pk)
        for message in errors:
            messages.error(request, message)
        return render(
            request, "monitoring/warning_detail.html", _detail_context(request, pk, **bound_forms)
        )
    context = _detail_context(request, pk, **bound_forms)
    context.update({"feedback": done, "errors": errors})
    actions = render_to_string("monitoring/_warning_actions.html", context, request)
    timeline = render_to_string(
        "monitoring/_warning_timeline.html", {**context, "swap_oob": True}, request
    )
    return HttpResponse(actions + timeline)


# ---- Notifications -----------------------------------------------------------


@role_required
def notification_list(request: HttpRequest) -> HttpResponse:
    page = Paginator(user_notifications(request.user), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "monitoring/notifications.html",
        {"page_obj": page, "query_without_page": query_without(request, "page")},
    )


@role_required
@require_POST
def notification_mark_read(request: HttpRequest) -> HttpResponse:
    """Mark one notification (POST "notification") or all of the user's notifications read."""
    notification_id = request.POST.get("notification")
    if notification_id:
        if not notification_id.isdigit():
            return HttpResponseBadRequest(
                _("Invalid notification id %(value)r.") % {"value": notification_id}
            )
        services.mark_notifications_read(request.user, [int(notification_id)])
    else:
        count = services.mark_notifications_read(request.user)
        messages.success(
            request,
            ngettext(
                "%(count)s notification marked read.", "%(count)s notifications marked read.", count
            )
            % {"count": count},
        )
    return redirect(_safe_next(request) if request.POST.get("next") else "monitoring:notifications")
