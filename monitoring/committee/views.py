"""Committee pages: the inbox, ratification, a proposal with its votes, a new proposal.

Proposals are read through `selectors.visible_proposals`, so a proposal on a
loan outside the user's branches is a 404. A role that may not act gets
403, checked here and again in the services.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from loans.access import get_visible_loan, role_required
from loans.views import query_without

from ..models import ClassificationProposal
from . import selectors, services
from .forms import InboxFilterForm, ProposalForm, RatificationFilterForm, RatifyForm, VoteForm

PAGE_SIZE = 25


def _require_inbox(request: HttpRequest) -> None:
    if not selectors.may_see_inbox(request.user):
        raise PermissionDenied(_("Your role does not include the committee pages."))


def _proposal_or_404(request: HttpRequest, pk: int) -> ClassificationProposal:
    proposal = selectors.get_proposal(request.user, pk)
    if proposal is None:
        raise Http404(_("Proposal not found."))
    return proposal


def _filters(form) -> dict | None:
    """Return the filters of a valid or empty form, None when a filter is invalid."""
    if not form.is_bound:
        return {}
    return form.cleaned_data if form.is_valid() else None


def _meetings_url_exists() -> bool:
    try:
        reverse("monitoring:meeting_detail", args=[1])
    except NoReverseMatch:
        return False
    return True


# ---- Inbox -------------------------------------------------------------------


def _pending_page(request: HttpRequest, as_of) -> tuple:
    form = InboxFilterForm(_bound(request, InboxFilterForm), user=request.user)
    filters = _filters(form)
    if filters is None:
        proposals = ClassificationProposal.objects.none()
    else:
        proposals = selectors.pending_inbox(request.user, filters)
    proposals, sort = selectors.sort_inbox(proposals, request.GET.get("sort"))
    page = Paginator(proposals.values_list("pk", flat=True), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = selectors.inbox_rows(list(page.object_list))
    rows = selectors.annotate_votes(rows, request.user)
    page.object_list = selectors.annotate_ages(rows, as_of)
    return form, page, sort


def _bound(request: HttpRequest, form_class) -> dict | None:
    """Return the query string when it contains one of the form's fields, else None."""
    names = set(form_class.base_fields)
    return request.GET if names & set(request.GET) else None


def _ratification_context(request: HttpRequest) -> dict:
    if not selectors.may_see_ratifications(request.user):
        return {"show_ratifications": False}
    form = RatificationFilterForm(_bound(request, RatificationFilterForm), user=request.user)
    filters = _filters(form)
    changes = selectors.unratified_changes(request.user, filters or {})
    if filters is None:
        changes = changes.none()
    page = Paginator(changes.values_list("pk", flat=True), PAGE_SIZE).get_page(
        request.GET.get("rpage")
    )
    page.object_list = selectors.ratification_rows(list(page.object_list))
    return {
        "show_ratifications": True,
        "may_ratify": selectors.is_committee_member(request.user),
        "ratification_form": form,
        "ratification_page": page,
        "query_without_rpage": query_without(request, "rpage"),
        "reason_labels": selectors.CHANGE_REASON_LABELS,
    }


@role_required
def committee_inbox(request: HttpRequest) -> HttpResponse:
    _require_inbox(request)
    as_of = selectors.business_date()
    form, page, sort = _pending_page(request, as_of)
    return render(
        request,
        "monitoring/committee/inbox.html",
        {
            "filter_form": form,
            "page_obj": page,
            "current_sort": sort,
            "query_without_page": query_without(request, "page"),
            "query_without_sort": query_without(request, "page", "sort"),
            "as_of": as_of,
            "is_member": selectors.is_committee_member(request.user),
            "meetings": selectors.upcoming_meetings(as_of),
            "meeting_links": _meetings_url_exists(),
            **_ratification_context(request),
        },
    )


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


@role_required
@require_POST
def committee_ratify(request: HttpRequest) -> HttpResponse:
    """Ratify the ticked floor changes, then return to the inbox with its filters."""
    if not selectors.is_committee_member(request.user):
        raise PermissionDenied(_("Only committee members ratify floor changes."))
    form = RatifyForm(request.POST, changes=selectors.unratified_changes(request.user))
    if form.is_valid():
        count = services.ratify(
            form.cleaned_data["changes"], request.user, form.cleaned_data["comment"]
        )
        messages.success(
            request,
            ngettext("%(count)s floor change ratified.", "%(count)s floor changes ratified.", count)
            % {"count": count},
        )
    else:
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
    return redirect(_safe_next(request, reverse("monitoring:committee_inbox")))


# ---- Proposal page -----------------------------------------------------------


def _render_detail(request: HttpRequest, pk: int, vote_form: VoteForm | None = None, status=200):
    detail = selectors.get_proposal_detail(request.user, pk)
    if detail is None:
        raise Http404(_("Proposal not found."))
    proposal = detail.proposal
    return render(
        request,
        "monitoring/committee/proposal_detail.html",
        {
            "detail": detail,
            "proposal": proposal,
            "loan": proposal.loan,
            "vote_form": vote_form or VoteForm(),
            "may_withdraw": proposal.status == "pending"
            and proposal.proposed_by_id == request.user.pk,
        },
        status=status,
    )


@role_required
def proposal_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, pk)


@role_required
@require_POST
def proposal_vote(request: HttpRequest, pk: int) -> HttpResponse:
    proposal = _proposal_or_404(request, pk)
    if not selectors.is_committee_member(request.user):
        raise PermissionDenied(_("Only committee members vote on proposals."))
    form = VoteForm(request.POST)
    if not form.is_valid():
        return _render_detail(request, pk, form, status=400)
    try:
        services.cast_vote(
            proposal, request.user, form.cleaned_data["decision"], form.cleaned_data["comment"]
        )
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return _render_detail(request, pk, form, status=409)
    proposal.refresh_from_db()
    if proposal.status == "pending":
        messages.success(request, _("Your vote is recorded."))
    else:
        messages.success(
            request,
            _("Your vote is recorded, and it decided the proposal: %(status)s.")
            % {"status": proposal.get_status_display().lower()},
        )
    return redirect("monitoring:proposal_detail", pk=pk)


@role_required
@require_POST
def proposal_withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    proposal = _proposal_or_404(request, pk)
    try:
        services.withdraw(proposal, request.user)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("The proposal is withdrawn."))
    return redirect("monitoring:proposal_detail", pk=pk)


# ---- New proposal ------------------------------------------------------------


@role_required
def proposal_create(request: HttpRequest, pk: int) -> HttpResponse:
    loan = get_visible_loan(request.user, pk)
    if not selectors.may_propose(request.user, loan):
        raise PermissionDenied(_("Your role may not propose class changes."))
    as_of = selectors.business_date()
    form = ProposalForm(request.POST or None, current_class=loan.risk_class)
    if request.method == "POST" and form.is_valid():
        try:
            proposal = services.propose(
                loan,
                request.user,
                form.cleaned_data["proposed_class"],
                form.cleaned_data["reasons"],
                form.cleaned_data["position_improved"],
                as_of=as_of,
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, _("Proposal sent to the committee."))
            return redirect("monitoring:proposal_detail", pk=proposal.pk)
    return render(
        request,
        "monitoring/committee/proposal_form.html",
        {
            "form": form,
            "loan": loan,
            "as_of": as_of,
            **selectors.loan_proposal_context(loan, as_of),
        },
        status=400 if form.errors else 200,
    )


def _add_errors(form: ProposalForm, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)
