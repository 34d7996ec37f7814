"""Writes of review meetings: one atomic function per step, each with its history record.

A meeting is planned, then held, then its minutes are closed. Until the
minutes are closed its details, attendees, agenda and decisions may change;
after that nothing in it does. Every step checks that the user may run
meetings and raises PermissionDenied otherwise, or when the minutes are closed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Max
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from simple_history.utils import bulk_create_with_history, bulk_update_with_history

from loans.access import User
from loans.models import Branch, Loan

from ..models import (
    AgendaItem,
    AgendaItemKind,
    ClassificationProposal,
    EarlyWarning,
    ItemDecision,
    MeetingStatus,
    ReviewMeeting,
)
from . import selectors

logger = logging.getLogger(__name__)

# Most items one agenda holds. Positions stay within 1..MAX_AGENDA_ITEMS, and
# reordering parks moved items above it for a moment (see _renumber).
MAX_AGENDA_ITEMS = 500
TITLE_MAX_LENGTH = AgendaItem._meta.get_field("title").max_length


@dataclass(frozen=True)
class AgendaCaps:
    """Most records each source adds to an agenda in one step."""

    proposals: int = 20
    warnings: int = 20
    loans: int = 20


DEFAULT_CAPS = AgendaCaps()


@dataclass
class AddedItems:
    items: list[AgendaItem] = field(default_factory=list)
    # Picked records left out: already on the agenda, or no longer a candidate
    # (a proposal decided, a warning closed, a loan reclassified or closed).
    skipped: int = 0


# ---- Checks ------------------------------------------------------------------


def _require_runner(user: User) -> None:
    if not selectors.can_run_meetings(user):
        raise PermissionDenied(_("Only committee members and risk managers may run meetings."))


def check_open(meeting: ReviewMeeting) -> None:
    """Raise PermissionDenied when the meeting's minutes are closed."""
    if meeting.status == MeetingStatus.CLOSED:
        raise PermissionDenied(
            _("The minutes of “%(title)s” are closed, so the meeting can no longer be changed.")
            % {"title": meeting.title}
        )


def _lock_open_meeting(meeting: ReviewMeeting) -> ReviewMeeting:
    """Return the meeting re-read under a row lock; raise PermissionDenied once it is closed.

    Every change to a meeting or its agenda takes this lock first, so two
    users never add the same record twice or give two items one position.
    """
    locked = ReviewMeeting.objects.select_for_update().get(pk=meeting.pk)
    check_open(locked)
    return locked


def _required_title(title: str) -> str:
    title = title.strip()
    if not title:
        raise ValidationError({"title": _("Enter the title.")}, code="required")
    return title


def _save(instance: ReviewMeeting | AgendaItem, user: User, fields: list[str]) -> None:
    """Save the fields, and let simple-history record the change with `user` as its author."""
    instance._history_user = user
    instance.save(update_fields=fields)


# ---- Meeting -----------------------------------------------------------------


@transaction.atomic
def create_meeting(
    user: User,
    *,
    title: str,
    held_on: date,
    location: str = "",
    attendees: Iterable[User] = (),
    notes: str = "",
) -> ReviewMeeting:
    _require_runner(user)
    meeting = ReviewMeeting(
        title=_required_title(title),
        held_on=held_on,
        location=location.strip(),
        notes=notes,
        created_by=user,
    )
    meeting._history_user = user
    meeting.save()
    meeting.attendees.set(attendees)
    logger.info("Meeting %s created by user %s", meeting.pk, user.pk)
    return meeting


@transaction.atomic
def update_meeting(
    meeting: ReviewMeeting,
    user: User,
    *,
    title: str,
    held_on: date,
    location: str,
    attendees: Iterable[User],
    notes: str,
) -> ReviewMeeting:
    """Change the meeting's details and attendees; each change gets its history record."""
    _require_runner(user)
    meeting = _lock_open_meeting(meeting)
    meeting.title = _required_title(title)
    meeting.held_on = held_on
    meeting.location = location.strip()
    meeting.notes = notes
    _save(meeting, user, ["title", "held_on", "location", "notes"])
    # The attendee changes each write a history record of the meeting (post_add,
    # post_remove), which reads the author from the instance.
    meeting.attendees.set(attendees)
    return meeting


@transaction.atomic
def mark_held(meeting: ReviewMeeting, user: User) -> ReviewMeeting:
    _require_runner(user)
    meeting = _lock_open_meeting(meeting)
    if meeting.status != MeetingStatus.PLANNED:
        raise ValidationError(
            _("Only a planned meeting can be marked as held; this one is %(status)s.")
            % {"status": meeting.get_status_display().lower()},
            code="not_planned",
        )
    meeting.status = MeetingStatus.HELD
    _save(meeting, user, ["status"])
    logger.info("Meeting %s marked held by user %s", meeting.pk, user.pk)
    return meeting


@transaction.atomic
def close_minutes(meeting: ReviewMeeting, user: User) -> ReviewMeeting:
    """Close the minutes of a held meeting whose items all have a decision.

    After this nothing in the meeting changes: every step raises PermissionDenied.
    """
    _require_runner(user)
    meeting = _lock_open_meeting(meeting)
    if meeting.status != MeetingStatus.HELD:
        raise ValidationError(
            _("Mark the meeting as held before closing its minutes."), code="not_held"
        )
    undecided = meeting.items.filter(decision=ItemDecision.PENDING).count()
    if undecided:
        raise ValidationError(
            _(
                "%(count)s agenda items have no decision yet. Record one on each "
                "(deferred or noted if nothing was decided) before closing the minutes."
            )
            % {"count": undecided},
            code="undecided_items",
        )
    meeting.status = MeetingStatus.CLOSED
    _save(meeting, user, ["status"])
    logger.info("Minutes of meeting %s closed by user %s", meeting.pk, user.pk)
    return meeting


# ---- Agenda ------------------------------------------------------------------


def _proposal_title(proposal: ClassificationProposal) -> str:
    return _("Reclassify %(contract)s (%(borrower)s) from %(current)s to %(proposed)s") % {
        "contract": proposal.loan.contract_number,
        "borrower": proposal.loan.borrower.legal_name,
        "current": proposal.get_current_class_display(),
        "proposed": proposal.get_proposed_class_display(),
    }


def _warning_title(warning: EarlyWarning) -> str:
    return _("Red warning %(rule)s on %(contract)s (%(borrower)s)") % {
        "rule": warning.rule_code,
        "contract": warning.loan.contract_number,
        "borrower": warning.loan.borrower.legal_name,
    }


def _loan_title(loan: Loan) -> str:
    return _("Non-performing loan %(contract)s (%(borrower)s), %(risk_class)s") % {
        "contract": loan.contract_number,
        "borrower": loan.borrower.legal_name,
        "risk_class": loan.get_risk_class_display(),
    }


def _fit_title(title: str) -> str:
    return Truncator(title).chars(TITLE_MAX_LENGTH)


def _new_items(
    meeting: ReviewMeeting,
    proposals: Sequence[ClassificationProposal],
    warnings: Sequence[EarlyWarning],
    loans: Sequence[Loan],
) -> list[AgendaItem]:
    """Build the unsaved items, proposals first, then warnings, then loans."""
    items = [
        AgendaItem(
            meeting=meeting,
            kind=AgendaItemKind.PROPOSAL,
            title=_fit_title(_proposal_title(proposal)),
            loan=proposal.loan,
            proposal=proposal,
        )
        for proposal in proposals
    ]
    items += [
        AgendaItem(
            meeting=meeting,
            kind=AgendaItemKind.WARNING,
            title=_fit_title(_warning_title(warning)),
            loan=warning.loan,
            warning=warning,
        )
        for warning in warnings
    ]
    items += [
        AgendaItem(
            meeting=meeting,
            kind=AgendaItemKind.NON_PERFORMING,
            title=_fit_title(_loan_title(loan)),
            loan=loan,
        )
        for loan in loans
    ]
    return items


def _append(meeting: ReviewMeeting, user: User, items: list[AgendaItem]) -> list[AgendaItem]:
    """Store the items after the agenda's last one, with their history records."""
    if not items:
        return []
    current = meeting.items.aggregate(last=Max("position"))["last"] or 0
    if current + len(items) > MAX_AGENDA_ITEMS:
        raise ValidationError(
            _(
                "The agenda would have %(total)s items, more than the %(max)s one meeting "
                "may have. Pick fewer records, or plan another meeting for the rest."
            )
            % {"total": current + len(items), "max": MAX_AGENDA_ITEMS},
            code="too_many_items",
        )
    for offset, item in enumerate(items, start=1):
        item.position = current + offset
    return bulk_create_with_history(items, AgendaItem, default_user=user)


@transaction.atomic
def add_agenda_items(
    meeting: ReviewMeeting,
    user: User,
    *,
    proposal_ids: Iterable[int] = (),
    warning_ids: Iterable[int] = (),
    loan_ids: Iterable[int] = (),
) -> AddedItems:
    """Add the picked pending proposals, active red warnings and open non-performing loans.

    Each source's records go in the order of its candidate list (oldest first),
    proposals before warnings before loans. A picked record that is already on
    the agenda or no longer a candidate is skipped and counted.
    """
    _require_runner(user)
    meeting = _lock_open_meeting(meeting)
    proposal_ids, warning_ids, loan_ids = set(proposal_ids), set(warning_ids), set(loan_ids)

    proposals = list(selectors.proposal_candidates(meeting).filter(pk__in=proposal_ids))
    warnings = list(selectors.warning_candidates(meeting).filter(pk__in=warning_ids))
    loans = list(selectors.non_performing_candidates(meeting).filter(pk__in=loan_ids))

    items = _append(meeting, user, _new_items(meeting, proposals, warnings, loans))
    picked = len(proposal_ids) + len(warning_ids) + len(loan_ids)
    logger.info("Meeting %s: %s agenda items added by user %s", meeting.pk, len(items), user.pk)
    return AddedItems(items=items, skipped=picked - len(items))


@transaction.atomic
def build_agenda(
    meeting: ReviewMeeting,
    user: User,
    *,
    caps: AgendaCaps = DEFAULT_CAPS,
    branch: Branch | None = None,
) -> AddedItems:
    """Add the oldest candidates of each source, up to its cap, that are not on the agenda yet.

    The order is the pending classification proposals, then the active red
    warnings, then the open non-performing loans. Running it again adds the
    next oldest candidates, never a record twice.
    """
    _require_runner(user)
    meeting = _lock_open_meeting(meeting)
    proposals = list(selectors.proposal_candidates(meeting, branch)[: caps.proposals])
    warnings = list(selectors.warning_candidates(meeting, branch)[: caps.warnings])
    loans = list(selectors.non_performing_candidates(meeting, branch)[: caps.loans])
    items = _append(meeting, user, _new_items(meeting, proposals, warnings, loans))
    logger.info(
        "Meeting %s: agenda built with %s items by user %s", meeting.pk, len(items), user.pk
    )
    return AddedItems(items=items)


@transaction.atomic
def add_other_item(
    meeting: ReviewMeeting, user: User, *, title: str, notes: str = "", loan: Loan | None = None
) -> AgendaItem:
    """Add an "other" item, about a subject outside the three sources, with a loan or without."""
    _require_runner(user)
    meeting = _lock_open_meeting(meeting)
    item = AgendaItem(
        meeting=meeting,
        kind=AgendaItemKind.OTHER,
        title=_required_title(title),
        notes=notes,
        loan=loan,
    )
    return _append(meeting, user, [item])[0]


def _renumber(user: User, ordered: list[AgendaItem]) -> None:
    """Give the items positions 1, 2, ... in the given order, with a history record per move.

    The unique (meeting, position) constraint is checked row by row on
    PostgreSQL, so the moved items first go above MAX_AGENDA_ITEMS, where no
    position is taken, and then to their new positions.
    """
    moved = [item for index, item in enumerate(ordered, start=1) if item.position != index]
    if not moved:
        return
    AgendaItem.objects.filter(pk__in=[item.pk for item in moved]).update(
        position=F("position") + MAX_AGENDA_ITEMS
    )
    for index, item in enumerate(ordered, start=1):
        item.position = index
    bulk_update_with_history(moved, AgendaItem, ["position"], default_user=user)


@transaction.atomic
def reorder_agenda(meeting: ReviewMeeting, user: User, item_ids: Sequence[int]) -> None:
    """Put the meeting's items in the order of `item_ids`, which must name each item once."""
    _require_runner(user)
    meeting = _lock_open_meeting(meeting)
    items = {item.pk: item for item in meeting.items.all()}
    if sorted(item_ids) != sorted(items):
        raise ValidationError(
            _("The new order must list every item of the agenda once. Reload the page and retry."),
            code="invalid_order",
        )
    _renumber(user, [items[pk] for pk in item_ids])


@transaction.atomic
def move_item(item: AgendaItem, user: User, offset: int) -> None:
    """Move the item `offset` places up (negative) or down, stopping at either end."""
    _require_runner(user)
    meeting = _lock_open_meeting(item.meeting)
    ordered = list(meeting.items.order_by("position", "id"))
    index = next(i for i, candidate in enumerate(ordered) if candidate.pk == item.pk)
    target = min(max(index + offset, 0), len(ordered) - 1)
    ordered.insert(target, ordered.pop(index))
    _renumber(user, ordered)


@transaction.atomic
def remove_item(item: AgendaItem, user: User) -> None:
    """Take the item off the agenda and close the gap it leaves; history keeps the deletion."""
    _require_runner(user)
    meeting = _lock_open_meeting(item.meeting)
    item = AgendaItem.objects.get(pk=item.pk, meeting=meeting)
    item._history_user = user
    item.delete()
    _renumber(user, list(meeting.items.order_by("position", "id")))


# ---- Decisions ---------------------------------------------------------------


def _check_decision(item: AgendaItem, decision: str) -> None:
    if decision in selectors.allowed_decisions(item):
        return
    label = ItemDecision(decision).label if decision in ItemDecision.values else decision
    if item.kind == AgendaItemKind.PROPOSAL:
        raise ValidationError(
            {
                "decision": _(
                    "The proposal is %(status)s, so this item cannot be recorded as "
                    "%(decision)s. The committee decides a proposal by its votes on the "
                    "proposal's page; until then record the item as deferred or noted."
                )
                % {
                    "status": item.proposal.get_status_display().lower(),
                    "decision": str(label).lower(),
                }
            },
            code="proposal_not_decided",
        )
    raise ValidationError(
        {
            "decision": _("An item of kind %(kind)s cannot be recorded as %(decision)s.")
            % {"kind": item.get_kind_display().lower(), "decision": str(label).lower()}
        },
        code="invalid_decision",
    )


@transaction.atomic
def record_decision(item: AgendaItem, user: User, *, decision: str, notes: str) -> AgendaItem:
    """Record the item's decision and notes.

    A proposal item may be recorded as approved or rejected only after the
    committee's votes have decided the proposal that way. Until then it is
    recorded as deferred or noted.
    """
    _require_runner(user)
    meeting = _lock_open_meeting(item.meeting)
    item = (
        AgendaItem.objects.select_for_update(of=("self",))
        .select_related("proposal")
        .get(pk=item.pk, meeting=meeting)
    )
    _check_decision(item, decision)
    item.decision = decision
    item.notes = notes
    _save(item, user, ["decision", "notes"])
    return item
