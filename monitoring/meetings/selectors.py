"""Reads of the meeting pages and minutes: who may do what, meetings, agendas and candidates.

Every role may read meetings. Credit officers and branch managers see only
the agenda items about loans of their branches. Committee members and risk
managers create and run meetings. Auditors and administrators read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Prefetch, Q, QuerySet

from loans.access import (
    BRANCH_ROLES,
    COMMITTEE_MEMBER,
    RISK_MANAGER,
    ROLES,
    User,
    has_any_role,
    has_role,
    sees_whole_book,
)
from loans.models import Branch, Loan, LoanStatus, RiskClass

from ..models import (
    AgendaItem,
    AgendaItemKind,
    ClassificationProposal,
    EarlyWarning,
    ItemDecision,
    ProposalStatus,
    ProposalVote,
    ReviewMeeting,
    Severity,
    WarningStatus,
)

# Roles whose users create meetings, build agendas and record decisions.
RUNNER_ROLES = (COMMITTEE_MEMBER, RISK_MANAGER)

# Decisions an item may take, by kind. A proposal item may also take the
# committee's decision on the proposal, once its votes have decided it.
_DECISIONS_BY_KIND = {
    AgendaItemKind.PROPOSAL: (ItemDecision.NOTED, ItemDecision.DEFERRED),
    AgendaItemKind.WARNING: (ItemDecision.NOTED, ItemDecision.ACTION, ItemDecision.DEFERRED),
    AgendaItemKind.NON_PERFORMING: (
        ItemDecision.NOTED,
        ItemDecision.ACTION,
        ItemDecision.DEFERRED,
    ),
    AgendaItemKind.OTHER: (
        ItemDecision.APPROVED,
        ItemDecision.REJECTED,
        ItemDecision.NOTED,
        ItemDecision.ACTION,
        ItemDecision.DEFERRED,
    ),
}
_DECISION_OF_PROPOSAL = {
    ProposalStatus.APPROVED: ItemDecision.APPROVED,
    ProposalStatus.REJECTED: ItemDecision.REJECTED,
}


# ---- Access ------------------------------------------------------------------


def can_read_meetings(user: User) -> bool:
    return has_any_role(user)


def can_run_meetings(user: User) -> bool:
    """Tell whether the user may create meetings, build agendas and record decisions."""
    return user.is_authenticated and (user.is_superuser or has_role(user, *RUNNER_ROLES))


def sees_every_item(user: User) -> bool:
    return sees_whole_book(user)


def visible_items(user: User, meeting: ReviewMeeting) -> QuerySet[AgendaItem]:
    """Return the meeting's items the user may see, in agenda order.

    Branch roles see only the items about loans of their branches, so an item
    with no loan (an "other" item about no loan) is hidden from them.
    """
    items = AgendaItem.objects.filter(meeting=meeting).order_by("position", "id")
    if sees_whole_book(user):
        return items
    if not has_role(user, *BRANCH_ROLES):
        return items.none()
    return items.filter(loan__branch__staff=user)


def get_meeting(user: User, pk: int) -> ReviewMeeting | None:
    if not can_read_meetings(user):
        return None
    return ReviewMeeting.objects.select_related("created_by").filter(pk=pk).first()


def allowed_decisions(item: AgendaItem) -> list[str]:
    """Return the decisions the item may be recorded with, "" (not yet decided) first."""
    decisions = [ItemDecision.PENDING, *_DECISIONS_BY_KIND[item.kind]]
    if item.kind == AgendaItemKind.PROPOSAL and item.proposal is not None:
        settled = _DECISION_OF_PROPOSAL.get(item.proposal.status)
        if settled is not None:
            decisions.insert(1, settled)
    return [str(decision) for decision in decisions]


# ---- Meeting list ------------------------------------------------------------


@dataclass
class MeetingLists:
    upcoming: QuerySet[ReviewMeeting]
    past: QuerySet[ReviewMeeting]


def meeting_lists(user: User, filters: dict[str, Any], today: date) -> MeetingLists:
    """Return the meetings on or after `today` (soonest first) and before it (latest first).

    Each meeting carries `item_count`, the number of its items the user may see.
    """
    meetings = ReviewMeeting.objects.select_related("created_by")
    if filters.get("status"):
        meetings = meetings.filter(status=filters["status"])
    if filters.get("date_from"):
        meetings = meetings.filter(held_on__gte=filters["date_from"])
    if filters.get("date_to"):
        meetings = meetings.filter(held_on__lte=filters["date_to"])
    if sees_whole_book(user):
        item_count = Count("items")
    else:
        # A user with no branch, or no branch role, counts no item.
        item_count = Count("items", filter=Q(items__loan__branch__staff=user))
    meetings = meetings.annotate(item_count=item_count)
    return MeetingLists(
        upcoming=meetings.filter(held_on__gte=today).order_by("held_on", "id"),
        past=meetings.filter(held_on__lt=today).order_by("-held_on", "-id"),
    )


# ---- Meeting page and minutes ------------------------------------------------


def agenda_rows(user: User, meeting: ReviewMeeting) -> list[AgendaItem]:
    """Return the items the user may see, with loans, proposals, warnings and votes loaded.

    The number of queries does not depend on the number of items.
    """
    votes = ProposalVote.objects.select_related("member").order_by("cast_at", "id")
    items = visible_items(user, meeting).select_related(
        "loan__borrower",
        "loan__branch",
        "loan__position",
        "proposal__proposed_by",
        "warning",
    )
    return list(items.prefetch_related(Prefetch("proposal__votes", queryset=votes)))


def attendee_list(meeting: ReviewMeeting) -> list:
    return list(meeting.attendees.order_by("last_name", "first_name", "username"))


def attendee_choices() -> QuerySet:
    """Return the active users with a Postloan role, who may attend meetings."""
    users = get_user_model().objects.filter(is_active=True, groups__name__in=ROLES)
    return users.distinct().order_by("last_name", "first_name", "username")


# ---- Agenda candidates -------------------------------------------------------
# The three lists the agenda builder shows, oldest first, without the records
# already on the meeting's agenda. Only the roles that run meetings, who see
# the whole book, read them.


def proposal_candidates(
    meeting: ReviewMeeting, branch: Branch | None = None
) -> QuerySet[ClassificationProposal]:
    """Return the pending classification proposals, oldest first."""
    on_agenda = AgendaItem.objects.filter(meeting=meeting, proposal__isnull=False)
    proposals = (
        ClassificationProposal.objects.filter(status=ProposalStatus.PENDING)
        .exclude(pk__in=on_agenda.values("proposal_id"))
        .select_related("loan__borrower", "loan__branch", "proposed_by")
        .order_by("created_at", "id")
    )
    if branch is not None:
        proposals = proposals.filter(loan__branch=branch)
    return proposals


def warning_candidates(
    meeting: ReviewMeeting, branch: Branch | None = None
) -> QuerySet[EarlyWarning]:
    """Return the active red warnings, first seen earliest first."""
    on_agenda = AgendaItem.objects.filter(meeting=meeting, warning__isnull=False)
    # The order is that of the index warning_queue_first_seen_idx, whose
    # entries are exactly the active warnings.
    warnings = (
        EarlyWarning.objects.filter(status__in=WarningStatus.active(), severity=Severity.RED)
        .exclude(pk__in=on_agenda.values("warning_id"))
        .select_related("loan__borrower", "branch", "assigned_to")
        .order_by("first_seen_on", "id")
    )
    if branch is not None:
        warnings = warnings.filter(branch=branch)
    return warnings


def non_performing_candidates(
    meeting: ReviewMeeting, branch: Branch | None = None
) -> QuerySet[Loan]:
    """Return the open non-performing loans, oldest unpaid instalment first.

    Loans with no arrears on record (no position, or nothing unpaid) come last.
    """
    on_agenda = AgendaItem.objects.filter(meeting=meeting, kind=AgendaItemKind.NON_PERFORMING)
    # NOTE: no index contains risk_class (see Loan.Meta), so this list reads
    # every open loan of the book or the branch.
    loans = (
        Loan.objects.filter(risk_class__in=RiskClass.non_performing(), closed_on__isnull=True)
        .exclude(status__in=[LoanStatus.PAID_OFF, LoanStatus.WRITTEN_OFF])
        .exclude(pk__in=on_agenda.values("loan_id"))
        .select_related("borrower", "branch", "position")
        .order_by(F("position__oldest_unpaid_due_date").asc(nulls_last=True), "contract_number")
    )
    if branch is not None:
        loans = loans.filter(branch=branch)
    return loans
