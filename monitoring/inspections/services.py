"""Writes of an inspection's lifecycle: one atomic function per step.

An inspection is scheduled by the close-of-day run or started by an officer.
A credit officer of its branch saves it as a draft and submits it. A branch
manager of that branch or a risk manager then approves it or returns it for
changes, and a returned inspection is edited and submitted again. Submitted and approved
inspections are read-only. simple-history records every change of the
inspection and its checklist with the user and a change reason.

Data errors raise ValidationError with a dict: keys are the form field names,
and `check_key(item, field)` for a checklist answer or comment. A user whose
role may not take a step, or a step on a read-only inspection, raises
PermissionDenied.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loans.access import User
from loans.models import Loan, RiskClass

from ..models import (
    ChecklistAnswer,
    ChecklistItem,
    ClassificationProposal,
    Inspection,
    InspectionCheck,
    InspectionKind,
    InspectionPolicy,
    InspectionStatus,
    ProposalSource,
    ProposalStatus,
)
from .selectors import business_date, may_edit, may_review, may_start

logger = logging.getLogger(__name__)

# The inspection's own fields that the officer fills in.
FORM_FIELDS = ("inspected_on", "place", "people_met", "findings", "risk_opinion", "suggested_class")
CHECKLIST_ITEMS = tuple(ChecklistItem)
Checks = Mapping[str, Mapping[str, Any]]


def check_key(item: str, field: str) -> str:
    """Return the ValidationError key of a checklist item's "answer" or "comment"."""
    return f"{item}.{field}"


# ---- Checks ------------------------------------------------------------------


def _require_editor(user: User, inspection: Inspection) -> None:
    if not may_edit(user, inspection):
        raise PermissionDenied(
            _("Only a credit officer of the loan's branch may fill in this inspection.")
        )
    if not inspection.is_editable:
        raise PermissionDenied(
            _("This inspection is %(status)s and can no longer be changed.")
            % {"status": inspection.get_status_display().lower()}
        )


def _require_reviewer(user: User, inspection: Inspection) -> None:
    if not may_review(user, inspection):
        raise PermissionDenied(
            _("Only a branch manager of the loan's branch or a risk manager may review it.")
        )
    if inspection.submitted_by_id == user.pk:
        raise PermissionDenied(
            _("You submitted this inspection, so another manager must review it.")
        )
    if inspection.status != InspectionStatus.SUBMITTED:
        raise ValidationError(
            _("This inspection is %(status)s; only a submitted inspection can be reviewed.")
            % {"status": inspection.get_status_display().lower()},
            code="invalid_status",
        )


def _clean_checks(checks: Checks, complete: bool) -> tuple[dict[str, tuple[str, str]], dict]:
    """Return the answered items as {item: (answer, comment)} and the errors found.

    Every "no" needs a comment, because a check constraint rejects one without. With
    `complete`, every item needs an answer.
    """
    unknown = sorted(set(checks) - set(ChecklistItem.values))
    if unknown:
        raise ValueError(f"unknown checklist items {unknown}; expected {ChecklistItem.values}")
    answered: dict[str, tuple[str, str]] = {}
    errors: dict[str, list[str]] = {}
    for item in CHECKLIST_ITEMS:
        values = checks.get(item.value) or {}
        answer = values.get("answer") or ""
        comment = (values.get("comment") or "").strip()
        if not answer:
            if complete:
                errors[check_key(item, "answer")] = [
                    _("%(item)s: choose yes, no or not applicable.") % {"item": item.label}
                ]
            continue
        if answer not in ChecklistAnswer.values:
            errors[check_key(item, "answer")] = [
                _("%(item)s: %(answer)r is not one of yes, no or not applicable.")
                % {"item": item.label, "answer": answer}
            ]
            continue
        if answer == ChecklistAnswer.NO and not comment:
            errors[check_key(item, "comment")] = [
                _("%(item)s: the answer is no, so explain it in the comment.")
                % {"item": item.label}
            ]
            continue
        answered[item.value] = (answer, comment)
    return answered, errors


def _clean_data(
    inspection: Inspection, data: Mapping[str, Any], complete: bool
) -> tuple[dict, dict]:
    """Return the inspection's fields from `data`, stripped, and the errors found.

    The inspection date may not be after the business date nor before the
    disbursement. With `complete`, the date, place and findings are required,
    and a suggested class other than the loan's needs a risk opinion.
    """
    values = {name: data.get(name) for name in FORM_FIELDS}
    for name in ("place", "people_met", "findings", "risk_opinion"):
        values[name] = (values[name] or "").strip()
    errors: dict[str, list[str]] = {}
    for name in ("place", "people_met"):
        limit = Inspection._meta.get_field(name).max_length
        if len(values[name]) > limit:
            errors[name] = [
                _("%(length)s characters is too long; shorten it to %(max)s.")
                % {"length": len(values[name]), "max": limit}
            ]

    inspected_on = values["inspected_on"]
    loan = inspection.loan
    as_of = business_date()
    if inspected_on is not None and inspected_on > as_of:
        errors["inspected_on"] = [
            _("The inspection date %(date)s is after the business date %(as_of)s.")
            % {"date": inspected_on, "as_of": as_of}
        ]
    elif inspected_on is not None and inspected_on < loan.disbursement_date:
        errors["inspected_on"] = [
            _("The inspection date %(date)s is before the loan was disbursed on %(disbursed)s.")
            % {"date": inspected_on, "disbursed": loan.disbursement_date}
        ]

    suggested = values["suggested_class"]
    if suggested is not None and suggested not in RiskClass.values:
        errors["suggested_class"] = [_("%(value)r is not a risk class.") % {"value": suggested}]
    if not complete:
        return values, errors

    if inspected_on is None:
        errors["inspected_on"] = [_("Enter the date of the inspection.")]
    if not values["place"]:
        errors["place"] = [_("Enter where the inspection took place.")]
    if not values["findings"]:
        errors["findings"] = [_("Enter the findings.")]
    if (
        suggested in RiskClass.values
        and suggested != loan.risk_class
        and not values["risk_opinion"]
    ):
        errors["risk_opinion"] = [
            _("Explain in the risk opinion why the loan should be %(class)s.")
            % {"class": RiskClass(suggested).label.lower()}
        ]
    return values, errors


# ---- Helpers -----------------------------------------------------------------


def _lock(inspection: Inspection) -> Inspection:
    """Return the inspection re-read under a row lock, so two users never step on each other."""
    locked = Inspection.objects.select_for_update().get(pk=inspection.pk)
    locked.loan = Loan.objects.get(pk=locked.loan_id)
    return locked


def _save(inspection: Inspection, user: User, reason: str, fields: list[str]) -> None:
    """Save the fields; simple-history records the change with the user and the reason."""
    inspection._history_user = user
    inspection._change_reason = reason
    inspection.save(update_fields=fields)


def _write_checks(
    inspection: Inspection, user: User, answered: dict[str, tuple[str, str]], reason: str
) -> None:
    """Make the stored checklist equal to `answered`: add, change and remove answers."""
    stored = {check.item: check for check in inspection.checks.all()}
    for item, (answer, comment) in answered.items():
        check = stored.pop(item, None) or InspectionCheck(inspection=inspection, item=item)
        if check.pk is not None and (check.answer, check.comment) == (answer, comment):
            continue
        check.answer, check.comment = answer, comment
        check._history_user = user
        check._change_reason = reason
        check.save()
    for check in stored.values():
        check._history_user = user
        check._change_reason = reason
        check.delete()


def _raise_if(errors: dict) -> None:
    if errors:
        raise ValidationError(errors)


def _withdraw_other_proposals(inspection: Inspection, user: User) -> None:
    """Withdraw this inspection's pending proposals of a class it no longer suggests.

    An officer may change the suggested class after the inspection is returned.
    """
    stale = inspection.proposals.filter(status=ProposalStatus.PENDING).exclude(
        proposed_class=inspection.suggested_class
    )
    for proposal in stale:
        proposal.status = ProposalStatus.WITHDRAWN
        proposal.decided_at = timezone.now()
        proposal._history_user = user
        proposal._change_reason = "Withdrawn by a resubmitted inspection"
        proposal.save(update_fields=["status", "decided_at"])


def _propose_class(inspection: Inspection, user: User) -> ClassificationProposal | None:
    """Propose the suggested class unless it is the loan's class or already proposed.

    The loan row is locked first, so two submissions at once never propose the
    same class twice.
    """
    suggested = inspection.suggested_class
    loan = Loan.objects.select_for_update().get(pk=inspection.loan_id)
    _withdraw_other_proposals(inspection, user)
    if suggested is None or suggested == loan.risk_class:
        return None
    pending = ClassificationProposal.objects.filter(
        loan=loan, proposed_class=suggested, status=ProposalStatus.PENDING
    )
    if pending.exists():
        return None
    proposal = ClassificationProposal(
        loan=loan,
        current_class=loan.risk_class,
        proposed_class=suggested,
        source=ProposalSource.INSPECTION,
        proposed_by=user,
        inspection=inspection,
        reasons=inspection.risk_opinion,
    )
    proposal._history_user = user
    proposal._change_reason = "Suggested by an inspection"
    proposal.save()
    logger.info(
        "inspection %s proposed class %s for loan %s (proposal %s)",
        inspection.pk,
        suggested,
        loan.pk,
        proposal.pk,
    )
    return proposal


# ---- Steps -------------------------------------------------------------------


@transaction.atomic
def save_draft(
    inspection: Inspection, user: User, data: Mapping[str, Any], checks: Checks
) -> Inspection:
    """Store what the officer has filled in so far, and make the inspection a draft.

    Any field and any checklist item may still be empty, but a "no" needs its
    comment and the inspection date must be possible.
    """
    inspection = _lock(inspection)
    _require_editor(user, inspection)
    values, errors = _clean_data(inspection, data, complete=False)
    answered, check_errors = _clean_checks(checks, complete=False)
    _raise_if({**errors, **check_errors})

    for name, value in values.items():
        setattr(inspection, name, value)
    inspection.status = InspectionStatus.DRAFT
    _save(inspection, user, "Draft saved", [*FORM_FIELDS, "status"])
    _write_checks(inspection, user, answered, "Draft saved")
    return inspection


@transaction.atomic
def submit(
    inspection: Inspection, user: User, data: Mapping[str, Any], checks: Checks
) -> Inspection:
    """Submit the inspection for review. From then on it is read-only.

    Every checklist item needs an answer. The inspection is adverse when an
    answer is "no" or the suggested class is worse than the loan's. A suggested
    class other than the loan's becomes a classification proposal, unless the
    same class is already proposed and pending for the loan.
    """
    inspection = _lock(inspection)
    _require_editor(user, inspection)
    values, errors = _clean_data(inspection, data, complete=True)
    answered, check_errors = _clean_checks(checks, complete=True)
    _raise_if({**errors, **check_errors})

    for name, value in values.items():
        setattr(inspection, name, value)
    any_no = any(answer == ChecklistAnswer.NO for answer, _comment in answered.values())
    worse_class = (
        inspection.suggested_class is not None
        and inspection.suggested_class > inspection.loan.risk_class
    )
    inspection.adverse = any_no or worse_class
    inspection.status = InspectionStatus.SUBMITTED
    inspection.submitted_at = timezone.now()
    inspection.submitted_by = user
    # A resubmission after a return waits for a new review.
    inspection.reviewed_at = None
    inspection.reviewed_by = None
    inspection.review_comment = ""
    _save(
        inspection,
        user,
        "Submitted",
        [
            *FORM_FIELDS,
            "adverse",
            "status",
            "submitted_at",
            "submitted_by",
            "reviewed_at",
            "reviewed_by",
            "review_comment",
        ],
    )
    _write_checks(inspection, user, answered, "Submitted")
    _propose_class(inspection, user)
    logger.info("inspection %s submitted by user %s", inspection.pk, user.pk)
    return inspection


def _review(
    inspection: Inspection, user: User, status: str, comment: str, reason: str
) -> Inspection:
    inspection.status = status
    inspection.reviewed_at = timezone.now()
    inspection.reviewed_by = user
    inspection.review_comment = comment
    _save(inspection, user, reason, ["status", "reviewed_at", "reviewed_by", "review_comment"])
    logger.info("inspection %s %s by user %s", inspection.pk, status, user.pk)
    return inspection


@transaction.atomic
def approve(inspection: Inspection, user: User) -> Inspection:
    """Accept a submitted inspection. Its submitter may not approve it."""
    inspection = _lock(inspection)
    _require_reviewer(user, inspection)
    return _review(inspection, user, InspectionStatus.APPROVED, "", "Approved")


@transaction.atomic
def return_for_changes(inspection: Inspection, user: User, comment: str) -> Inspection:
    """Send a submitted inspection back to the officers with what to change.

    A blank comment raises ValidationError. Its submitter may not return it.
    """
    inspection = _lock(inspection)
    _require_reviewer(user, inspection)
    comment = (comment or "").strip()
    if not comment:
        raise ValidationError(
            {"comment": [_("Enter what the officer should change before resubmitting.")]}
        )
    return _review(inspection, user, InspectionStatus.RETURNED, comment, "Returned for changes")


@transaction.atomic
def start_inspection(
    loan: Loan, user: User, kind: str = InspectionKind.SPECIAL
) -> tuple[Inspection, bool]:
    """Schedule an unscheduled inspection of the loan, carried out by `user`.

    Return the inspection and True, or the loan's pending inspection of that
    kind and False when there is one, because a loan has at most one pending
    inspection of each kind. It is due within the policy's days for special
    inspections, counted from the business date.
    """
    if not may_start(user, loan):
        raise PermissionDenied(_("Only a credit officer of the loan's branch may log inspections."))
    loan = Loan.objects.select_for_update().get(pk=loan.pk)
    pending = loan.inspections.filter(kind=kind, status__in=InspectionStatus.pending()).first()
    if pending is not None:
        return pending, False

    due_date = business_date() + timedelta(days=InspectionPolicy.current().special_inspection_days)
    # Due dates are unique per loan and kind, and an earlier inspection of
    # the same kind may have been done and submitted on the same date already.
    used_due_dates = set(
        loan.inspections.filter(kind=kind, due_date__gte=due_date).values_list(
            "due_date", flat=True
        )
    )
    while due_date in used_due_dates:
        due_date += timedelta(days=1)

    inspection = Inspection(
        loan=loan, branch_id=loan.branch_id, officer=user, kind=kind, due_date=due_date
    )
    inspection._history_user = user
    inspection._change_reason = "Started by an officer"
    inspection.save()
    logger.info("inspection %s of loan %s started by user %s", inspection.pk, loan.pk, user.pk)
    return inspection, True
