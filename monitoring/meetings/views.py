"""Meeting pages: the list, a meeting with its agenda and decisions, the agenda builder, minutes.

Every role reads meetings. Credit officers and branch managers see only the
agenda items about loans of their branches, so the id of another item is a
404. Committee members and risk managers run meetings. Any other role gets
403 on a change, and so does everyone once the minutes are closed. The
services check both again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from loans.access import role_required
from loans.views import query_without

from ..models import AgendaItem, MeetingStatus, ReviewMeeting
from ..selectors import get_business_date
from . import selectors, services
from .forms import (
    BuildAgendaForm,
    CandidateFilterForm,
    DecisionForm,
    MeetingFilterForm,
    MeetingForm,
    OtherItemForm,
    PickCandidatesForm,
)
from .services import AgendaCaps

PAGE_SIZE = 25
CANDIDATE_PAGE_SIZE = 25
# Maximum upcoming meetings listed above the past ones. A committee plans only a few ahead.
UPCOMING_LIMIT = 50


def _meeting_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a meeting view: a role is required, and a refusal is a 403 page with its reason."""

    @role_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except PermissionDenied as error:
            return _forbidden(request, str(error))

    return wrapper


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    message = message or _("Your role may not take this step in meetings.")
    if request.htmx:
        return HttpResponse(message, status=403, content_type="text/plain; charset=utf-8")
    return render(request, "monitoring/meetings/forbidden.html", {"message": message}, status=403)


def _require_runner(request: HttpRequest) -> None:
    if not selectors.can_run_meetings(request.user):
        raise PermissionDenied(_("Only committee members and risk managers may run meetings."))


def _meeting_or_404(request: HttpRequest, pk: int) -> ReviewMeeting:
    meeting = selectors.get_meeting(request.user, pk)
    if meeting is None:
        raise Http404(_("Meeting not found."))
    return meeting


def _open_meeting_for_runner(request: HttpRequest, pk: int) -> ReviewMeeting:
    """Return the meeting for a change: 404 if missing, 403 for a reader or closed minutes."""
    meeting = _meeting_or_404(request, pk)
    _require_runner(request)
    services.check_open(meeting)
    return meeting


def _item_or_404(request: HttpRequest, meeting: ReviewMeeting, item_pk: int) -> AgendaItem:
    item = (
        selectors.visible_items(request.user, meeting)
        .select_related("proposal", "meeting")
        .filter(pk=item_pk)
        .first()
    )
    if item is None:
        raise Http404(_("Agenda item not found."))
    return item


def _error_messages(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


def _detail_url(meeting: ReviewMeeting, item: AgendaItem | None = None) -> str:
    url = reverse("monitoring:meeting_detail", args=[meeting.pk])
    return f"{url}#item-{item.pk}" if item is not None else url


# ---- List --------------------------------------------------------------------


@_meeting_view
@require_GET
def meeting_list(request: HttpRequest) -> HttpResponse:
    form = MeetingFilterForm(request.GET or None)
    valid = not form.is_bound or form.is_valid()
    filters = form.cleaned_data if form.is_bound and valid else {}
    lists = selectors.meeting_lists(request.user, filters, timezone.localdate())
    upcoming = list(lists.upcoming[: UPCOMING_LIMIT + 1]) if valid else []
    past = lists.past if valid else ReviewMeeting.objects.none()
    return render(
        request,
        "monitoring/meetings/meeting_list.html",
        {
            "filter_form": form,
            "upcoming": upcoming[:UPCOMING_LIMIT],
            "more_upcoming": len(upcoming) > UPCOMING_LIMIT,
            "page_obj": Paginator(past, PAGE_SIZE).get_page(request.GET.get("page")),
            "query_without_page": query_without(request, "page"),
            "may_run": selectors.can_run_meetings(request.user),
        },
    )


# ---- Meeting -----------------------------------------------------------------


@_meeting_view
@require_http_methods(["GET", "POST"])
def meeting_create(request: HttpRequest) -> HttpResponse:
    _require_runner(request)
    form = MeetingForm(
        request.POST or None, initial={"held_on": timezone.localdate(), "attendees": [request.user]}
    )
    if request.method == "POST" and form.is_valid():
        meeting = services.create_meeting(request.user, **form.cleaned_data)
        messages.success(request, _("Meeting planned. Build its agenda next."))
        return redirect("monitoring:meeting_agenda", pk=meeting.pk)
    return render(request, "monitoring/meetings/meeting_form.html", {"form": form})


@_meeting_view
@require_http_methods(["GET", "POST"])
def meeting_edit(request: HttpRequest, pk: int) -> HttpResponse:
    meeting = _open_meeting_for_runner(request, pk)
    form = MeetingForm(request.POST or None, instance=meeting)
    if request.method == "POST" and form.is_valid():
        services.update_meeting(meeting, request.user, **form.cleaned_data)
        messages.success(request, _("Meeting saved."))
        return redirect("monitoring:meeting_detail", pk=meeting.pk)
    return render(
        request, "monitoring/meetings/meeting_form.html", {"form": form, "meeting": meeting}
    )


def _detail_context(request: HttpRequest, meeting: ReviewMeeting, **extra) -> dict:
    may_change = selectors.can_run_meetings(request.user) and meeting.status != MeetingStatus.CLOSED
    return {
        "meeting": meeting,
        "items": selectors.agenda_rows(request.user, meeting),
        "attendees": selectors.attendee_list(meeting),
        "every_item": selectors.sees_every_item(request.user),
        "may_change": may_change,
        "other_form": OtherItemForm() if may_change else None,
        **extra,
    }


@_meeting_view
@require_GET
def meeting_detail(request: HttpRequest, pk: int) -> HttpResponse:
    meeting = _meeting_or_404(request, pk)
    return render(
        request, "monitoring/meetings/meeting_detail.html", _detail_context(request, meeting)
    )


@_meeting_view
@require_POST
def meeting_mark_held(request: HttpRequest, pk: int) -> HttpResponse:
    meeting = _open_meeting_for_runner(request, pk)
    try:
        services.mark_held(meeting, request.user)
    except ValidationError as error:
        _error_messages(request, error)
    else:
        messages.success(request, _("Meeting marked as held."))
    return redirect("monitoring:meeting_detail", pk=pk)


@_meeting_view
@require_POST
def meeting_close(request: HttpRequest, pk: int) -> HttpResponse:
    meeting = _open_meeting_for_runner(request, pk)
    try:
        services.close_minutes(meeting, request.user)
    except ValidationError as error:
        _error_messages(request, error)
    else:
        messages.success(request, _("Minutes closed. The meeting can no longer be changed."))
    return redirect("monitoring:meeting_detail", pk=pk)


@_meeting_view
@require_GET
def meeting_minutes_pdf(request: HttpRequest, pk: int) -> HttpResponse:
    """Return the minutes as a PDF download, with the agenda items the user may see."""
    # Importing WeasyPrint takes about a second, so only this view loads it.
    from . import pdf

    meeting = _meeting_or_404(request, pk)
    content = pdf.render_minutes_pdf(meeting, request.user)
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{pdf.minutes_filename(meeting)}"'
    return response


# ---- Agenda items ------------------------------------------------------------


@_meeting_view
@require_POST
def meeting_item_other(request: HttpRequest, pk: int) -> HttpResponse:
    meeting = _open_meeting_for_runner(request, pk)
    form = OtherItemForm(request.POST)
    if form.is_valid():
        try:
            item = services.add_other_item(
                meeting,
                request.user,
                title=form.cleaned_data["title"],
                notes=form.cleaned_data["notes"],
                loan=form.cleaned_data["contract_number"],
            )
        except ValidationError as error:
            _error_messages(request, error)
        else:
            messages.success(request, _("Item added to the agenda."))
            return redirect(_detail_url(meeting, item))
    context = _detail_context(request, meeting, other_form=form)
    return render(request, "monitoring/meetings/meeting_detail.html", context)


@_meeting_view
@require_POST
def meeting_item_move(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    meeting = _open_meeting_for_runner(request, pk)
    item = _item_or_404(request, meeting, item_pk)
    offsets = {"up": -1, "down": 1}
    direction = request.POST.get("direction", "")
    if direction not in offsets:
        messages.error(
            request, _("Invalid direction %(value)r. Expected up or down.") % {"value": direction}
        )
    else:
        services.move_item(item, request.user, offsets[direction])
    return redirect(_detail_url(meeting, item))


@_meeting_view
@require_POST
def meeting_item_remove(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    meeting = _open_meeting_for_runner(request, pk)
    item = _item_or_404(request, meeting, item_pk)
    services.remove_item(item, request.user)
    messages.success(request, _("“%(title)s” removed from the agenda.") % {"title": item.title})
    return redirect("monitoring:meeting_detail", pk=pk)


def _decision_context(request: HttpRequest, item: AgendaItem, **extra) -> dict:
    return {
        "item": item,
        "meeting": item.meeting,
        "may_change": selectors.can_run_meetings(request.user)
        and item.meeting.status != MeetingStatus.CLOSED,
        **extra,
    }


@_meeting_view
@require_GET
def meeting_item(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """Return an item's decision block, which the Cancel button of its form swaps back in."""
    meeting = _meeting_or_404(request, pk)
    item = _item_or_404(request, meeting, item_pk)
    if not request.htmx:
        return redirect(_detail_url(meeting, item))
    return render(
        request, "monitoring/meetings/_item_decision.html", _decision_context(request, item)
    )


@_meeting_view
@require_http_methods(["GET", "POST"])
def meeting_item_decision(request: HttpRequest, pk: int, item_pk: int) -> HttpResponse:
    """Edit an item's decision and notes: in place with htmx, else on a page of its own."""
    meeting = _open_meeting_for_runner(request, pk)
    item = _item_or_404(request, meeting, item_pk)
    form = DecisionForm(request.POST or None, item=item)
    if request.method == "POST" and form.is_valid():
        try:
            item = services.record_decision(item, request.user, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            if not request.htmx:
                messages.success(request, _("Decision recorded."))
                return redirect(_detail_url(meeting, item))
            context = _decision_context(request, item, feedback=_("Decision recorded."))
            return render(request, "monitoring/meetings/_item_decision.html", context)
    context = _decision_context(request, item, form=form)
    if request.htmx:
        return render(request, "monitoring/meetings/_decision_form.html", context)
    return render(request, "monitoring/meetings/item_decision.html", context)


# ---- Agenda builder ----------------------------------------------------------


def _candidate_page(request: HttpRequest, rows: QuerySet, param: str) -> tuple[Page, str]:
    page = Paginator(rows, CANDIDATE_PAGE_SIZE).get_page(request.GET.get(param))
    return page, query_without(request, param)


def _annotate_ages(warnings: Page, as_of: date) -> None:
    for warning in warnings:
        warning.age_days = (as_of - warning.first_seen_on).days


@_meeting_view
@require_http_methods(["GET", "POST"])
def meeting_agenda(request: HttpRequest, pk: int) -> HttpResponse:
    """List the candidates of the three sources, and add the ticked ones to the agenda."""
    meeting = _open_meeting_for_runner(request, pk)
    if request.method == "POST":
        return _add_picked(request, meeting)

    filter_form = CandidateFilterForm(request.GET or None)
    branch = filter_form.cleaned_data["branch"] if filter_form.is_valid() else None
    as_of = get_business_date() or timezone.localdate()
    proposals, proposals_query = _candidate_page(
        request, selectors.proposal_candidates(meeting, branch), "proposals_page"
    )
    warnings, warnings_query = _candidate_page(
        request, selectors.warning_candidates(meeting, branch), "warnings_page"
    )
    loans, loans_query = _candidate_page(
        request, selectors.non_performing_candidates(meeting, branch), "loans_page"
    )
    _annotate_ages(warnings, as_of)
    return render(
        request,
        "monitoring/meetings/agenda_builder.html",
        {
            "meeting": meeting,
            "item_count": meeting.items.count(),
            "filter_form": filter_form,
            "build_form": BuildAgendaForm(initial={"branch": branch}),
            "proposals": proposals,
            "proposals_query": proposals_query,
            "warnings": warnings,
            "warnings_query": warnings_query,
            "loans": loans,
            "loans_query": loans_query,
            "as_of": as_of,
        },
    )


def _add_picked(request: HttpRequest, meeting: ReviewMeeting) -> HttpResponse:
    form = PickCandidatesForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect(request.get_full_path())
    try:
        added = services.add_agenda_items(
            meeting,
            request.user,
            proposal_ids=form.cleaned_data["proposal"],
            warning_ids=form.cleaned_data["warning"],
            loan_ids=form.cleaned_data["loan"],
        )
    except ValidationError as error:
        _error_messages(request, error)
        return redirect(request.get_full_path())
    _report_added(request, added)
    return redirect(request.get_full_path())


def _report_added(request: HttpRequest, added: services.AddedItems) -> None:
    count = len(added.items)
    messages.success(
        request,
        ngettext(
            "%(count)s item added to the agenda.", "%(count)s items added to the agenda.", count
        )
        % {"count": count},
    )
    if added.skipped:
        messages.warning(
            request,
            ngettext(
                "%(count)s ticked record was left out: it is already on the agenda or no "
                "longer pending, active or non-performing.",
                "%(count)s ticked records were left out: they are already on the agenda or no "
                "longer pending, active or non-performing.",
                added.skipped,
            )
            % {"count": added.skipped},
        )


@_meeting_view
@require_POST
def meeting_agenda_build(request: HttpRequest, pk: int) -> HttpResponse:
    """Add the oldest candidates of each source, up to the caps of the form."""
    meeting = _open_meeting_for_runner(request, pk)
    form = BuildAgendaForm(request.POST)
    if not form.is_valid():
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            messages.error(request, f"{label}: {' '.join(errors)}" if label else " ".join(errors))
        return redirect("monitoring:meeting_agenda", pk=pk)
    caps = AgendaCaps(
        proposals=form.cleaned_data["proposals"],
        warnings=form.cleaned_data["warnings"],
        loans=form.cleaned_data["loans"],
    )
    try:
        added = services.build_agenda(
            meeting, request.user, caps=caps, branch=form.cleaned_data["branch"]
        )
    except ValidationError as error:
        _error_messages(request, error)
        return redirect("monitoring:meeting_agenda", pk=pk)
    _report_added(request, added)
    return redirect("monitoring:meeting_detail", pk=pk)
