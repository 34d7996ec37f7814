"""External signal pages: record and end a borrower's signals, list them, the watch list.

Who may do what:

- credit officers record and end signals of the borrowers of their branches,
  and another branch's borrower or signal is a 404;
- risk managers and administrators do so for the whole book;
- auditors and committee members read everything, and a POST from them is a
  403, because they review signals but do not keep the record.
"""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _

from loans.access import (
    ADMINISTRATOR,
    CREDIT_OFFICER,
    RISK_MANAGER,
    User,
    get_visible_borrower,
    has_role,
    role_required,
    visible_borrowers,
)
from loans.models import Borrower, Loan
from loans.views import query_without

from .forms import (
    SIGNAL_STATE_ANY,
    SIGNAL_STATE_ENDED,
    EndSignalForm,
    ExternalSignalForm,
    SignalFilterForm,
)
from .models import ExternalSignal, WatchedIndustry

PAGE_SIZE = 50


def can_record_signals(user: User) -> bool:
    """Tell whether the user may record and end signals on the borrowers they see."""
    return user.is_authenticated and (
        user.is_superuser or has_role(user, CREDIT_OFFICER, RISK_MANAGER, ADMINISTRATOR)
    )


def _require_recorder(user: User) -> None:
    if not can_record_signals(user):
        raise PermissionDenied(_("Your role may read signals but not record or end them."))


# ---- Writes ------------------------------------------------------------------

# NOTE: these two writes belong in monitoring/services.py with the other
# business actions; they are kept here until that module takes them.


@transaction.atomic
def record_signal(
    borrower: Borrower, user: User, kind: str, observed_on: date, description: str
) -> ExternalSignal:
    """Store a new signal against the borrower, with the user as its author in the history."""
    signal = ExternalSignal(
        borrower=borrower,
        kind=kind,
        observed_on=observed_on,
        description=description,
        recorded_by=user,
    )
    signal._history_user = user
    signal.save()
    return signal


@transaction.atomic
def end_signal(signal: ExternalSignal, user: User, ended_on: date) -> bool:
    """Set the signal's end date unless it has one already, and return whether it was set.

    The row is locked first, so of two people ending the same signal at once
    only the first sets the date.
    """
    locked = ExternalSignal.objects.select_for_update().get(pk=signal.pk)
    if locked.ended_on is not None:
        signal.ended_on = locked.ended_on
        return False
    locked.ended_on = ended_on
    locked._history_user = user
    locked.save(update_fields=["ended_on"])
    signal.ended_on = ended_on
    return True


# ---- Reads -------------------------------------------------------------------


def visible_signals(user: User) -> QuerySet[ExternalSignal]:
    """Return the signals of the borrowers the user may see, with what a list row shows."""
    return ExternalSignal.objects.filter(borrower__in=visible_borrowers(user)).select_related(
        "borrower", "borrower__branch", "recorded_by"
    )


def _open_first(signals: QuerySet[ExternalSignal]) -> QuerySet[ExternalSignal]:
    still_open = Case(
        When(ended_on__isnull=True, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    return signals.order_by(still_open, "-observed_on", "-pk")


def filter_signals(signals: QuerySet[ExternalSignal], filters: dict) -> QuerySet[ExternalSignal]:
    """Apply the cleaned filters of SignalFilterForm. An empty state selects open signals only."""
    if filters.get("kind"):
        signals = signals.filter(kind=filters["kind"])
    state = filters.get("state") or ""
    if state == SIGNAL_STATE_ENDED:
        signals = signals.filter(ended_on__isnull=False)
    elif state != SIGNAL_STATE_ANY:
        signals = signals.filter(ended_on__isnull=True)
    branch = filters.get("branch")
    if branch is not None:
        lent_by_branch = Loan.objects.filter(borrower=OuterRef("borrower"), branch=branch)
        signals = signals.filter(Exists(lent_by_branch) | Q(borrower__branch=branch))
    return signals


def _signal_or_404(user: User, pk: int) -> ExternalSignal:
    signal = visible_signals(user).filter(pk=pk).first()
    if signal is None:
        raise Http404(_("Signal not found."))
    return signal


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return default


# ---- Pages -------------------------------------------------------------------


@role_required
def signal_list(request: HttpRequest) -> HttpResponse:
    """List the signals of the user's borrowers, only open ones unless the state filter differs."""
    form = SignalFilterForm(request.GET or None, user=request.user)
    if not form.is_bound:
        signals = filter_signals(visible_signals(request.user), {})
    elif form.is_valid():
        signals = filter_signals(visible_signals(request.user), form.cleaned_data)
    else:
        signals = ExternalSignal.objects.none()
    page = Paginator(_open_first(signals), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "monitoring/signals/signal_list.html",
        {
            "filter_form": form,
            "page_obj": page,
            "query_without_page": query_without(request, "page"),
            "may_record": can_record_signals(request.user),
            "return_to": request.get_full_path(),
        },
    )


@role_required
def borrower_signals(request: HttpRequest, pk: int) -> HttpResponse:
    """List one borrower's signals: a whole page, or for htmx the card of the borrower page."""
    borrower = get_visible_borrower(request.user, pk)
    signals = _open_first(visible_signals(request.user).filter(borrower=borrower))
    borrower_page = reverse("loans:borrower_detail", args=[borrower.pk])
    context = {
        "borrower": borrower,
        "signals": list(signals),
        "may_record": can_record_signals(request.user),
        "return_to": borrower_page if request.htmx else request.get_full_path(),
    }
    if request.htmx:
        return render(request, "monitoring/signals/_borrower_signals.html", context)
    return render(request, "monitoring/signals/borrower_signals.html", context)


@role_required
def signal_create(request: HttpRequest, pk: int) -> HttpResponse:
    """Record a signal against a borrower visible to the user, then return to the borrower page."""
    borrower = get_visible_borrower(request.user, pk)
    _require_recorder(request.user)
    today = timezone.localdate()
    form = ExternalSignalForm(request.POST or None, today=today)
    if request.method == "POST" and form.is_valid():
        signal = record_signal(borrower, request.user, **form.cleaned_data)
        messages.success(
            request,
            _(
                "%(kind)s recorded. The next close-of-day run opens a warning on the "
                "borrower's open loans."
            )
            % {"kind": signal.get_kind_display()},
        )
        return redirect("loans:borrower_detail", pk=borrower.pk)
    return render(
        request,
        "monitoring/signals/signal_form.html",
        {"borrower": borrower, "form": form, "today": today},
    )


@role_required
def signal_end(request: HttpRequest, pk: int) -> HttpResponse:
    """Record the date from which a signal no longer applies."""
    signal = _signal_or_404(request.user, pk)
    _require_recorder(request.user)
    today = timezone.localdate()
    back = _safe_next(request, reverse("loans:borrower_detail", args=[signal.borrower_id]))
    form = EndSignalForm(request.POST or None, signal=signal, today=today)
    if request.method == "POST" and signal.ended_on is None and form.is_valid():
        if end_signal(signal, request.user, form.cleaned_data["ended_on"]):
            messages.success(
                request,
                _(
                    "%(kind)s ended on %(date)s. From the next close-of-day run, warnings that "
                    "rest on no other open signal show as cleared until someone resolves them."
                )
                % {"kind": signal.get_kind_display(), "date": signal.ended_on.isoformat()},
            )
            return redirect(back)
    if signal.ended_on is not None and request.method == "POST":
        messages.error(
            request,
            _("This signal already ended on %(date)s, so it was not changed.")
            % {"date": signal.ended_on.isoformat()},
        )
    return render(
        request,
        "monitoring/signals/signal_end.html",
        {"signal": signal, "form": form, "next": back, "today": today},
    )


@role_required
def watched_industry_list(request: HttpRequest) -> HttpResponse:
    """Show the industry watch list, which administrators change in the Django admin."""
    industries = WatchedIndustry.objects.order_by("-active", "code_prefix")
    return render(
        request,
        "monitoring/signals/watched_industries.html",
        {
            "industries": industries,
            "may_change": request.user.has_perm("monitoring.change_watchedindustry"),
        },
    )
