"""Writes of the early-warning lifecycle: one atomic function per step.

A warning is open, then acknowledged and assigned, then worked with disposal
actions, then resolved or dismissed with a reason. Every step writes a
WarningAction row (who, when, what) and a simple-history record of the
warning. Closed warnings (resolved or dismissed) take no further steps.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import models, transaction
from django.db.models import Case, F, Func, Value, When
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from loans.access import BRANCH_MANAGER, RISK_MANAGER, User, sees_whole_book, visible_loans
from loans.models import Branch

from .inspections.scheduling import schedule_special_inspection
from .models import (
    ActionKind,
    EarlyWarning,
    Notification,
    Severity,
    SeverityDeadline,
    WarningAction,
    WarningStatus,
)
from .selectors import can_manage_warnings, can_record_disposal

logger = logging.getLogger(__name__)

# Days to resolve a warning when no SeverityDeadline row sets them.
DEFAULT_DEADLINE_DAYS = {Severity.RED: 3, Severity.ORANGE: 10, Severity.YELLOW: 30}
CLOSING_REASON_MAX_LENGTH = EarlyWarning._meta.get_field("closing_reason").max_length


class AddDays(Func):
    """A date column plus a whole number of days, as a date on PostgreSQL and SQLite."""

    output_field = models.DateField()

    def __init__(self, expression: str, days: int) -> None:
        super().__init__(F(expression), Value(days))

    def as_postgresql(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(%(expressions)s)", arg_joiner=" + ")

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler,
            connection,
            template="DATE(%(expressions)s || ' days')",
            arg_joiner=", '+' || ",
        )


# ---- Checks ------------------------------------------------------------------


def _require_manager(user: User) -> None:
    if not can_manage_warnings(user):
        raise PermissionDenied(_("Only risk managers and administrators may do this."))


def _require_recorder(user: User, warning: EarlyWarning) -> None:
    if not can_record_disposal(user):
        raise PermissionDenied(_("Your role may not record actions on warnings."))
    if not sees_whole_book(user) and not visible_loans(user).filter(pk=warning.loan_id).exists():
        raise PermissionDenied(_("The warning's loan is outside your branches."))


def _require_active(warning: EarlyWarning) -> None:
    if warning.status not in WarningStatus.active():
        raise ValidationError(
            _("This warning is %(status)s, and a closed warning takes no further actions.")
            % {"status": warning.get_status_display().lower()},
            code="closed",
        )


def _require_reason(reason: str, missing_message: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(missing_message, code="required")
    if len(reason) > CLOSING_REASON_MAX_LENGTH:
        raise ValidationError(
            _("The reason has %(length)s characters; shorten it to %(max)s.")
            % {"length": len(reason), "max": CLOSING_REASON_MAX_LENGTH},
            code="max_length",
        )
    return reason


# ---- Helpers -----------------------------------------------------------------


def _lock(warning: EarlyWarning) -> EarlyWarning:
    """Return the warning re-read under a row lock, so two users never step on each other."""
    return EarlyWarning.objects.select_for_update().get(pk=warning.pk)


def _save(warning: EarlyWarning, user: User | None, fields: list[str]) -> None:
    """Save the fields, and let simple-history record the change with `user` as its author."""
    warning._history_user = user
    warning.save(update_fields=fields)


def _add_action(
    warning: EarlyWarning,
    kind: str,
    user: User | None,
    note: str = "",
    assigned_to: User | None = None,
) -> WarningAction:
    return WarningAction.objects.create(
        warning=warning,
        kind=kind,
        note=note,
        performed_by=user,
        performed_at=timezone.now(),
        assigned_to=assigned_to,
    )


# ---- One warning -------------------------------------------------------------


@transaction.atomic
def acknowledge(warning: EarlyWarning, user: User) -> EarlyWarning:
    """Mark an open warning as seen by a risk manager."""
    _require_manager(user)
    warning = _lock(warning)
    _require_active(warning)
    if warning.status != WarningStatus.OPEN:
        raise ValidationError(
            _("This warning is already %(status)s.")
            % {"status": warning.get_status_display().lower()},
            code="invalid_status",
        )
    warning.status = WarningStatus.ACKNOWLEDGED
    _save(warning, user, ["status"])
    _add_action(warning, ActionKind.ACKNOWLEDGE, user)
    return warning


@transaction.atomic
def start_work(warning: EarlyWarning, user: User) -> EarlyWarning:
    """Move an open or acknowledged warning to in progress."""
    _require_manager(user)
    warning = _lock(warning)
    _require_active(warning)
    if warning.status == WarningStatus.IN_PROGRESS:
        raise ValidationError(_("Work on this warning has already started."), code="invalid_status")
    warning.status = WarningStatus.IN_PROGRESS
    _save(warning, user, ["status"])
    _add_action(warning, ActionKind.START, user)
    return warning


@transaction.atomic
def record_action(warning: EarlyWarning, user: User, kind: str, note: str = "") -> EarlyWarning:
    """Record a disposal action or a note, and move an open or acknowledged warning in progress."""
    _require_recorder(user, warning)
    if kind not in ActionKind.disposals():
        raise ValidationError(
            _("%(kind)s is not a disposal action.") % {"kind": kind}, code="invalid_kind"
        )
    note = (note or "").strip()
    if kind == ActionKind.NOTE and not note:
        raise ValidationError(_("Enter the text of the note."), code="required")
    warning = _lock(warning)
    _require_active(warning)
    if warning.status != WarningStatus.IN_PROGRESS:
        warning.status = WarningStatus.IN_PROGRESS
        _save(warning, user, ["status"])
    _add_action(warning, kind, user, note)
    if kind == ActionKind.SPECIAL_INSPECTION:
        schedule_special_inspection(warning, user)
    return warning


def _close(warning: EarlyWarning, user: User, status: str, kind: str, reason: str) -> EarlyWarning:
    warning = _lock(warning)
    _require_active(warning)
    warning.status = status
    warning.closed_at = timezone.now()
    warning.closing_reason = reason
    _save(warning, user, ["status", "closed_at", "closing_reason"])
    _add_action(warning, kind, user, reason)
    return warning


@transaction.atomic
def resolve(warning: EarlyWarning, user: User, reason: str) -> EarlyWarning:
    """Close the warning because its cause was dealt with. A blank reason raises ValidationError."""
    _require_manager(user)
    reason = _require_reason(reason, _("Enter the reason for resolving the warning."))
    return _close(warning, user, WarningStatus.RESOLVED, ActionKind.RESOLVE, reason)


@transaction.atomic
def dismiss(warning: EarlyWarning, user: User, reason: str) -> EarlyWarning:
    """Close the warning as needing no action, such as a false alarm.

    A blank reason raises ValidationError.
    """
    _require_manager(user)
    reason = _require_reason(reason, _("Enter the reason for dismissing the warning."))
    return _close(warning, user, WarningStatus.DISMISSED, ActionKind.DISMISS, reason)


# ---- Many warnings -----------------------------------------------------------


def _check_assignee_sees(assignee: User, warnings: list[EarlyWarning]) -> None:
    """Raise ValidationError if the assignee could not open one of the warnings' loans."""
    if sees_whole_book(assignee):
        return
    loan_ids = {warning.loan_id for warning in warnings}
    visible = set(visible_loans(assignee).filter(pk__in=loan_ids).values_list("pk", flat=True))
    hidden = sorted(
        {warning.loan.contract_number for warning in warnings if warning.loan_id not in visible}
    )
    if hidden:
        raise ValidationError(
            _("%(user)s cannot see the loans %(contracts)s, so cannot own their warnings.")
            % {"user": assignee.get_username(), "contracts": ", ".join(hidden)},
            code="not_visible",
        )


@transaction.atomic
def assign(
    warnings: Iterable[EarlyWarning] | models.QuerySet[EarlyWarning], assignee: User, user: User
) -> int:
    """Make `assignee` the owner of the warnings and return how many were assigned.

    Assigning is triage, so open warnings become acknowledged. One UPDATE
    changes every warning; the actions, history records and the assignee's
    notifications are bulk-inserted. If any warning is closed, nothing changes.
    """
    _require_manager(user)
    ids = [warning.pk for warning in warnings]
    locked = list(
        EarlyWarning.objects.select_for_update(of=("self",))
        .select_related("loan")
        .filter(pk__in=ids)
        .order_by("pk")
    )
    if not locked:
        raise ValidationError(_("Select at least one warning to assign."), code="required")
    closed = [warning for warning in locked if warning.status not in WarningStatus.active()]
    if closed:
        raise ValidationError(
            ngettext(
                "%(count)s of the selected warnings is closed and cannot be assigned.",
                "%(count)s of the selected warnings are closed and cannot be assigned.",
                len(closed),
            )
            % {"count": len(closed)},
            code="closed",
        )
    _check_assignee_sees(assignee, locked)

    now = timezone.now()
    EarlyWarning.objects.filter(pk__in=[warning.pk for warning in locked]).update(
        assigned_to=assignee,
        status=Case(
            When(status=WarningStatus.OPEN, then=Value(WarningStatus.ACKNOWLEDGED)),
            default=F("status"),
        ),
    )
    for warning in locked:
        warning.assigned_to = assignee
        if warning.status == WarningStatus.OPEN:
            warning.status = WarningStatus.ACKNOWLEDGED
    EarlyWarning.history.bulk_history_create(
        locked, update=True, default_user=user, default_date=now
    )
    WarningAction.objects.bulk_create(
        WarningAction(
            warning=warning,
            kind=ActionKind.ASSIGN,
            performed_by=user,
            performed_at=now,
            assigned_to=assignee,
        )
        for warning in locked
    )
    if assignee.pk != user.pk:
        Notification.objects.bulk_create(
            Notification(recipient=assignee, warning=warning, message=_assigned_message(warning))
            for warning in locked
        )
    logger.info("User %s assigned %d warnings to user %s", user.pk, len(locked), assignee.pk)
    return len(locked)


def _assigned_message(warning: EarlyWarning) -> str:
    return _("Warning %(rule)s on loan %(contract)s was assigned to you.") % {
        "rule": warning.rule_code,
        "contract": warning.loan.contract_number,
    }


def deadline_days() -> dict[str, int]:
    """Return the days to resolve per severity: the SeverityDeadline rows, else the defaults."""
    days = {str(severity): value for severity, value in DEFAULT_DEADLINE_DAYS.items()}
    days.update(SeverityDeadline.objects.values_list("severity", "days"))
    return days


@transaction.atomic
def set_missing_deadlines(as_of: date) -> int:
    """Set deadline = first_seen_on + the severity's days on active warnings that have none.

    The close-of-day run gives the warnings it opens their deadline and calls
    this at its end for any warning left without one (opened by another path,
    or before deadlines existed): one UPDATE per severity. Returns the number
    of warnings set.
    NOTE: the UPDATE writes no simple-history records, like the run's own
    set-wise statements; each warning's deadline is visible on the warning.
    """
    updated = 0
    for severity, days in deadline_days().items():
        updated += EarlyWarning.objects.filter(
            severity=severity, status__in=WarningStatus.active(), deadline__isnull=True
        ).update(deadline=AddDays("first_seen_on", days))
    logger.info("Set the deadline of %d warnings as of %s", updated, as_of.isoformat())
    return updated


# ---- Escalation --------------------------------------------------------------


@dataclass
class _Recipients:
    """Users to notify per warning, with their e-mail addresses."""

    by_warning: dict[int, set[int]]
    emails: dict[int, str]


def _escalation_recipients(warnings: list[EarlyWarning]) -> _Recipients:
    """Return the risk managers, and the branch managers of each warning's loan branch."""
    users = get_user_model().objects.filter(is_active=True)
    managers = dict(users.filter(groups__name=RISK_MANAGER).values_list("pk", "email"))
    branch_ids = {warning.loan.branch_id for warning in warnings}
    heads_by_branch: dict[int, set[int]] = defaultdict(set)
    emails = dict(managers)
    staff = Branch.staff.through.objects.filter(
        branch_id__in=branch_ids, user__is_active=True, user__groups__name=BRANCH_MANAGER
    ).values_list("branch_id", "user_id", "user__email")
    for branch_id, user_id, email in staff:
        heads_by_branch[branch_id].add(user_id)
        emails[user_id] = email
    by_warning = {
        warning.pk: set(managers) | heads_by_branch[warning.loan.branch_id]
        for warning in warnings
    }
    return _Recipients(by_warning=by_warning, emails=emails)


def _escalation_message(warning: EarlyWarning) -> str:
    return _(
        "Red warning %(rule)s on loan %(contract)s (%(borrower)s) is past its deadline "
        "of %(deadline)s and is escalated."
    ) % {
        "rule": warning.rule_code,
        "contract": warning.loan.contract_number,
        "borrower": warning.loan.borrower.legal_name,
        "deadline": warning.deadline.isoformat(),
    }


def _send_escalation_emails(messages_by_user: dict[int, list[str]], emails: dict[int, str]) -> None:
    """Send each recipient with an e-mail address one message listing their escalations."""
    subject = _("Postloan: red warnings past their deadline")
    outgoing = [
        EmailMessage(
            subject=subject,
            body="\n".join(
                [
                    _("These red warnings are past their deadline:"),
                    "",
                    *lines,
                    "",
                    _("Open the warning queue in Postloan to handle them."),
                ]
            ),
            to=[emails[user_id]],
        )
        for user_id, lines in messages_by_user.items()
        if emails.get(user_id)
    ]
    if not outgoing:
        return
    try:
        sent = get_connection().send_messages(outgoing)
    except OSError:
        logger.exception("Sending %d escalation e-mails failed", len(outgoing))
        return
    logger.info("Sent %s escalation e-mails", sent)


def _escalation_rows(
    warnings: list[EarlyWarning], recipients: _Recipients, now: datetime
) -> tuple[list[WarningAction], list[Notification], dict[int, list[str]]]:
    """Return the ESCALATE actions, the notifications, and each recipient's e-mail lines."""
    actions = []
    notifications = []
    lines_by_user: dict[int, list[str]] = defaultdict(list)
    for warning in warnings:
        message = _escalation_message(warning)
        users = sorted(recipients.by_warning[warning.pk])
        note = ngettext(
            "Past the deadline of %(deadline)s. %(count)s user notified.",
            "Past the deadline of %(deadline)s. %(count)s users notified.",
            len(users),
        ) % {"deadline": warning.deadline.isoformat(), "count": len(users)}
        actions.append(
            WarningAction(warning=warning, kind=ActionKind.ESCALATE, performed_at=now, note=note)
        )
        for user_id in users:
            notifications.append(
                Notification(recipient_id=user_id, warning=warning, message=message)
            )
            lines_by_user[user_id].append(f"- {message}")
    return actions, notifications, lines_by_user


@transaction.atomic
def escalate_overdue(as_of: date) -> int:
    """Escalate active red warnings whose deadline is before `as_of` and return how many.

    Each gets escalated_at, an ESCALATE action by the close-of-day run (no
    user), and an in-app notification to each recipient. The e-mails go after
    the commit. A warning is escalated once, because the claim is a conditional
    update on escalated_at, and rows locked by a concurrent run are skipped.
    """
    now = timezone.now()
    candidates = list(
        EarlyWarning.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("loan", "loan__borrower")
        .filter(
            severity=Severity.RED,
            status__in=WarningStatus.active(),
            deadline__lt=as_of,
            escalated_at__isnull=True,
        )
        .order_by("pk")
    )
    if not candidates:
        logger.info("No red warnings to escalate as of %s", as_of.isoformat())
        return 0

    EarlyWarning.objects.filter(
        pk__in=[warning.pk for warning in candidates], escalated_at__isnull=True
    ).update(escalated_at=now)
    for warning in candidates:
        warning.escalated_at = now
    EarlyWarning.history.bulk_history_create(candidates, update=True, default_date=now)

    recipients = _escalation_recipients(candidates)
    actions, notifications, lines_by_user = _escalation_rows(candidates, recipients, now)
    WarningAction.objects.bulk_create(actions)
    Notification.objects.bulk_create(notifications)
    transaction.on_commit(lambda: _send_escalation_emails(lines_by_user, recipients.emails))
    logger.info(
        "Escalated %d red warnings as of %s and notified %d users",
        len(candidates),
        as_of.isoformat(),
        len(lines_by_user),
    )
    return len(candidates)


# ---- Notifications -----------------------------------------------------------


def mark_notifications_read(user: User, ids: Iterable[int] | None = None) -> int:
    """Mark the user's unread notifications read (only `ids` if given) and return how many."""
    unread = Notification.objects.filter(recipient=user, read_at__isnull=True)
    if ids is not None:
        unread = unread.filter(pk__in=list(ids))
    return unread.update(read_at=timezone.now())
