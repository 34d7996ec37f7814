"""Writes of the committee: proposing, voting, withdrawing and ratifying.

Each function is one business action in one transaction. A role that may
not take the action raises PermissionDenied. An action that the rules reject,
such as a missing comment, a closed vote or an approval that would break a
floor, raises ValidationError with messages for the user. simple-history records every
change of a proposal, vote and loan with the user and a change reason.

A proposal is decided by the committee's quorum (`CommitteePolicy`): the
proposal row is locked while a vote is cast and counted, so of two votes
cast at the same moment one sees the other's result, and a proposal is
decided exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date

from dateutil.relativedelta import relativedelta
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from loans.access import User
from loans.models import Loan, LoanPosition, RiskClass

from ..close_of_day.classification import _stage_case, current_policy
from ..models import (
    ChangeSource,
    ClassificationChange,
    ClassificationProposal,
    CommitteePolicy,
    ProposalSource,
    ProposalStatus,
    ProposalVote,
    VoteDecision,
)
from ..sql import is_postgresql
from . import selectors
from .floors import NON_PERFORMING, loan_figures, loan_floor_detail, npl_exit_blockers

logger = logging.getLogger(__name__)

# simple-history keeps the change reason in a column of 100 characters.
CHANGE_REASON_LENGTH = 100


def _required_text(value: str, field: str, message: str) -> str:
    text = (value or "").strip()
    if not text:
        raise ValidationError({field: message}, code="required")
    return text


def _save(instance, user: User | None, reason: str, fields: list[str] | None = None) -> None:
    instance._history_user = user
    instance._change_reason = reason[:CHANGE_REASON_LENGTH]
    instance.save(update_fields=fields)


# ---- Proposing ---------------------------------------------------------------


@transaction.atomic
def propose(
    loan: Loan,
    user: User,
    proposed_class: int,
    reasons: str,
    position_improved: bool = False,
    as_of: date | None = None,
) -> ClassificationProposal:
    """Propose a class change for the committee, with the evidence as of the business date.

    Credit officers and branch managers may propose for the loans of their
    branches, risk managers for any loan. The loan row is locked, so two
    proposals for one loan made at once never both stay pending.
    """
    if not selectors.may_propose(user, loan):
        raise PermissionDenied(
            _(
                "Only credit officers and branch managers of the loan's branch, and risk "
                "managers, may propose a class change."
            )
        )
    reasons = _required_text(reasons, "reasons", _("Give the reasons for the proposed class."))
    if proposed_class not in RiskClass.values:
        raise ValidationError(
            {"proposed_class": _("Invalid class %(value)s.") % {"value": proposed_class}},
            code="invalid",
        )
    as_of = as_of or selectors.business_date()
    loan = Loan.objects.select_for_update().get(pk=loan.pk)
    _require_proposable(loan, proposed_class, as_of)
    proposal = ClassificationProposal(
        loan=loan,
        current_class=loan.risk_class,
        proposed_class=proposed_class,
        source=ProposalSource.MANUAL,
        proposed_by=user,
        reasons=reasons,
        position_improved=bool(position_improved),
        evidence=selectors.proposal_evidence(loan, as_of),
    )
    _save(proposal, user, "Proposed by hand")
    logger.info(
        "proposal %s loan=%s class %s->%s by user=%s",
        proposal.pk,
        loan.pk,
        proposal.current_class,
        proposed_class,
        user.pk,
    )
    return proposal


def _require_proposable(loan: Loan, proposed_class: int, as_of: date) -> None:
    if proposed_class == loan.risk_class:
        raise ValidationError(
            {
                "proposed_class": _("The loan is already %(class)s; propose another class.")
                % {"class": loan.get_risk_class_display()}
            },
            code="same_class",
        )
    if loan.closed_on is not None and loan.closed_on <= as_of:
        raise ValidationError(
            _("Loan %(contract)s was closed on %(date)s; closed loans keep their last class.")
            % {"contract": loan.contract_number, "date": loan.closed_on},
            code="closed",
        )
    pending = ClassificationProposal.objects.filter(
        loan=loan, status=ProposalStatus.PENDING
    ).first()
    if pending is not None:
        raise ValidationError(
            _(
                "Proposal %(number)s for this loan (%(current)s to %(proposed)s) is still "
                "pending; wait for the committee's decision or have it withdrawn."
            )
            % {
                "number": pending.pk,
                "current": pending.get_current_class_display(),
                "proposed": pending.get_proposed_class_display(),
            },
            code="pending_exists",
        )


@transaction.atomic
def withdraw(proposal: ClassificationProposal, user: User) -> ClassificationProposal:
    """Withdraw a pending proposal; only the user who proposed it may."""
    proposal = ClassificationProposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.proposed_by_id is None or proposal.proposed_by_id != user.pk:
        raise PermissionDenied(_("Only the user who made a proposal may withdraw it."))
    _require_pending(proposal)
    proposal.status = ProposalStatus.WITHDRAWN
    proposal.decided_at = timezone.now()
    proposal.decision_comment = _("Withdrawn by the proposer.")
    _save(proposal, user, "Withdrawn by the proposer", ["status", "decided_at", "decision_comment"])
    logger.info("proposal %s withdrawn by user=%s", proposal.pk, user.pk)
    return proposal


def _require_pending(proposal: ClassificationProposal) -> None:
    if proposal.status != ProposalStatus.PENDING:
        raise ValidationError(
            _("Voting is closed: the proposal was %(status)s on %(date)s.")
            % {
                "status": proposal.get_status_display().lower(),
                "date": timezone.localtime(proposal.decided_at).strftime("%Y-%m-%d %H:%M")
                if proposal.decided_at
                else "",
            },
            code="closed",
        )


# ---- Voting ------------------------------------------------------------------


@transaction.atomic
def cast_vote(
    proposal: ClassificationProposal,
    member: User,
    decision: str,
    comment: str,
    as_of: date | None = None,
) -> ProposalVote:
    """Record a committee member's vote, and decide the proposal once a quorum agrees.

    The proposal row stays locked from the checks to the count, so the
    votes counted include every vote committed before, and a proposal that
    another vote has just decided is closed. An approval is refused, and
    not recorded, when the proposed class is better than the loan's floor
    or when the loan would leave non-performing before the conditions hold.
    """
    if not selectors.is_committee_member(member):
        raise PermissionDenied(_("Only committee members vote on proposals."))
    if decision not in VoteDecision.values:
        raise ValidationError(
            {"decision": _("Invalid decision %(value)s.") % {"value": decision}}, code="invalid"
        )
    comment = _required_text(comment, "comment", _("Give a comment with your vote."))
    proposal = (
        ClassificationProposal.objects.select_for_update()
        .select_related("loan")
        .get(pk=proposal.pk)
    )
    _require_pending(proposal)
    if proposal.proposed_by_id == member.pk:
        raise ValidationError(
            _("You made this proposal, so other committee members decide on it."),
            code="own_proposal",
        )
    if proposal.votes.filter(member=member).exists():
        raise ValidationError(_("You have already voted on this proposal."), code="already_voted")
    as_of = as_of or selectors.business_date()
    loan = Loan.objects.select_for_update().get(pk=proposal.loan_id)
    if decision == VoteDecision.APPROVE:
        _require_approvable(proposal, loan, as_of)

    vote = ProposalVote(proposal=proposal, member=member, decision=decision, comment=comment)
    _save(vote, member, f"Vote {decision} on proposal {proposal.pk}")
    logger.info("proposal %s vote %s by user=%s", proposal.pk, decision, member.pk)

    _decide_if_quorum(proposal, loan, member, as_of)
    return vote


def approval_refusals(proposal: ClassificationProposal, loan: Loan, as_of: date) -> list[str]:
    """Return why an approval of the proposal would be refused on `as_of`; empty when allowed."""
    if loan.risk_class != proposal.current_class:
        return [
            _(
                "The loan's class changed from %(old)s to %(new)s after this proposal was made; "
                "reject it and propose again."
            )
            % {
                "old": proposal.get_current_class_display(),
                "new": loan.get_risk_class_display(),
            }
        ]
    refusals = []
    floor = loan_floor_detail(loan, as_of)
    if proposal.proposed_class < floor.risk_class:
        refusals.append(
            _("The floor is %(floor)s, better classes may not be approved: %(reason)s")
            % {"floor": RiskClass(floor.risk_class).label, "reason": floor.reason}
        )
    if loan.risk_class in NON_PERFORMING and proposal.proposed_class not in NON_PERFORMING:
        refusals.extend(npl_exit_blockers(loan, as_of, proposal.position_improved))
    return refusals


def _require_approvable(proposal: ClassificationProposal, loan: Loan, as_of: date) -> None:
    refusals = approval_refusals(proposal, loan, as_of)
    if refusals:
        raise ValidationError(refusals, code="floor")


def _decide_if_quorum(
    proposal: ClassificationProposal, loan: Loan, member: User, as_of: date
) -> None:
    quorum = CommitteePolicy.current().quorum
    votes = list(proposal.votes.select_related("member").order_by("cast_at", "pk"))
    approvals = [v for v in votes if v.decision == VoteDecision.APPROVE]
    rejections = [v for v in votes if v.decision == VoteDecision.REJECT]
    if len(approvals) >= quorum:
        _apply(proposal, loan, member, approvals, as_of)
    elif len(rejections) >= quorum:
        _close(proposal, member, ProposalStatus.REJECTED, rejections)


def _voters(votes: list[ProposalVote]) -> str:
    return ", ".join(vote.member.get_username() for vote in votes)


def _close(
    proposal: ClassificationProposal, member: User, status: str, votes: list[ProposalVote]
) -> None:
    proposal.status = status
    proposal.decided_at = timezone.now()
    lines = [f"{vote.member.get_username()}: {vote.comment}" for vote in votes]
    label = ProposalStatus(status).label
    proposal.decision_comment = "\n".join([f"{label} ({_voters(votes)})", *lines])
    _save(
        proposal,
        member,
        f"{label} by the committee: {_voters(votes)}",
        ["status", "decided_at", "decision_comment"],
    )
    logger.info("proposal %s %s by quorum", proposal.pk, status)


def _apply(
    proposal: ClassificationProposal,
    loan: Loan,
    member: User,
    approvals: list[ProposalVote],
    as_of: date,
) -> None:
    """Move the loan to the approved class and stage, and record the change."""
    previous_class, previous_stage = loan.risk_class, loan.ifrs9_stage
    new_stage = ifrs9_stage_for(loan, proposal.proposed_class, as_of)
    loan.risk_class = proposal.proposed_class
    loan.ifrs9_stage = new_stage
    _save(
        loan,
        member,
        f"Committee proposal {proposal.pk} approved: {_voters(approvals)}",
        ["risk_class", "ifrs9_stage"],
    )
    now = timezone.now()
    ClassificationChange.objects.create(
        loan=loan,
        as_of=as_of,
        previous_class=previous_class,
        new_class=proposal.proposed_class,
        previous_stage=previous_stage,
        new_stage=new_stage,
        reason_code="committee",
        reason=f"Proposal {proposal.pk} approved by {_voters(approvals)}"[:255],
        source=ChangeSource.COMMITTEE,
        ratified=True,
        ratified_at=now,
        ratified_by=member,
        ratification_comment=f"Decided by the committee's vote on proposal {proposal.pk}.",
    )
    _close(proposal, member, ProposalStatus.APPROVED, approvals)
    logger.info(
        "proposal %s applied loan=%s class %s->%s stage %s->%s",
        proposal.pk,
        loan.pk,
        previous_class,
        proposal.proposed_class,
        previous_stage,
        new_stage,
    )


def _parameter(name: str, sql_type: str) -> str:
    if is_postgresql():
        return f"CAST(%({name})s AS {sql_type})"
    return f"%({name})s"


def ifrs9_stage_for(loan: Loan, new_class: int, as_of: date) -> int:
    """Return the IFRS 9 stage of the loan in `new_class`, by the close-of-day run's rule.

    Stage 3 is for non-performing loans and loans over 90 days past due, and
    it is held for the cure period after the last default trigger. Stage 2 is
    for special mention and over 30 days past due, stage 1 for the rest. The trigger is the later of
    the one stored by the last run and `as_of` when the loan is in default
    now.
    """
    policy = current_policy()
    figures = loan_figures([loan.pk], as_of).get(loan.pk)
    days = figures.days_past_due if figures else 0
    is_open = figures.is_open if figures else False
    trigger = (
        LoanPosition.objects.filter(loan=loan)
        .values_list("last_default_trigger_on", flat=True)
        .first()
    )
    in_default_now = loan.risk_class in NON_PERFORMING or days > policy.stage_3_after_days
    if is_open and in_default_now:
        trigger = max(trigger, as_of) if trigger else as_of
    row = ", ".join(
        [
            f"{_parameter('is_open', 'BOOLEAN')} AS is_open",
            f"{_parameter('status', 'VARCHAR(20)')} AS status",
            f"{_parameter('days', 'INTEGER')} AS days_past_due",
            f"{_parameter('new_class', 'INTEGER')} AS new_class",
            f"{_parameter('previous_stage', 'INTEGER')} AS previous_stage",
            f"{_parameter('trigger', 'DATE')} AS last_default_trigger_on",
        ]
    )
    params = {
        "is_open": is_open,
        "status": loan.status,
        "days": days,
        "new_class": int(new_class),
        "previous_stage": loan.ifrs9_stage,
        "trigger": trigger,
        "cure": as_of - relativedelta(months=policy.stage_3_cure_months),
        "cure_restructured": as_of - relativedelta(months=policy.stage_3_cure_months_restructured),
    }
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_stage_case(policy)} FROM (SELECT {row}) t", params)
        return int(cursor.fetchone()[0])


# ---- Ratification ------------------------------------------------------------


@transaction.atomic
def ratify(changes: Iterable[ClassificationChange | int], member: User, comment: str = "") -> int:
    """Mark floor changes as ratified by the member, now; return how many were ratified.

    Changes already ratified, and committee changes, are left as they are,
    so ratifying a list twice ratifies each change once.
    """
    if not selectors.is_committee_member(member):
        raise PermissionDenied(_("Only committee members ratify floor changes."))
    ids = [change if isinstance(change, int) else change.pk for change in changes]
    count = ClassificationChange.objects.filter(
        pk__in=ids, source=ChangeSource.FLOOR, ratified=False
    ).update(
        ratified=True,
        ratified_at=timezone.now(),
        ratified_by=member,
        ratification_comment=(comment or "").strip(),
    )
    logger.info("ratified %d floor changes by user=%s", count, member.pk)
    return count
