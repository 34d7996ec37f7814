"""Reads of the committee pages: who may do what, the inbox, a proposal's evidence.

Proposals are read through `visible_proposals`, scoped like the loans: a
credit officer or branch manager sees the proposals of their branches'
loans, the bank-wide roles see every proposal.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from loans.access import (
    ADMINISTRATOR,
    AUDITOR,
    BRANCH_MANAGER,
    COMMITTEE_MEMBER,
    CREDIT_OFFICER,
    RISK_MANAGER,
    User,
    has_role,
    sees_whole_book,
    visible_loans,
)
from loans.models import (
    CollateralPledge,
    CollateralValuation,
    Guarantee,
    Instalment,
    Loan,
    RepaymentAllocation,
    RiskClass,
)

from ..models import (
    ChangeSource,
    ClassificationChange,
    ClassificationProposal,
    CommitteePolicy,
    EarlyWarning,
    Inspection,
    MeetingStatus,
    ProposalStatus,
    ProposalVote,
    ReviewMeeting,
    VoteDecision,
    WarningStatus,
)
from ..selectors import get_business_date
from .floors import NON_PERFORMING, Floor, loan_figures, loan_floor_detail, npl_exit_blockers

# Inspections and month ends shown as a proposal's evidence.
EVIDENCE_INSPECTIONS = 3
DPD_MONTHS = 12

# Reason codes of classification changes, as the committee pages label them.
CHANGE_REASON_LABELS = {
    "written_off": _("Written off"),
    "dpd_over_loss": _("Over 360 days past due"),
    "dpd_over_doubtful": _("Over 270 days past due"),
    "dpd_over_substandard": _("Over 90 days past due"),
    "overdue": _("Overdue beyond the technical delay"),
    "restructured": _("Restructured"),
    "restructured_observation": _("Restructuring observation period"),
    "restructured_again": _("Restructured again during observation"),
    "debtor_contagion": _("Debtor contagion"),
    "ifrs9_stage": _("IFRS 9 stage change"),
    "committee": _("Committee decision"),
}


def business_date() -> date:
    """Return the business date, or today before the first close-of-day run."""
    return get_business_date() or timezone.localdate()


# ---- Who may do what -----------------------------------------------------------


def may_see_inbox(user: User) -> bool:
    """Tell whether the user may open the committee inbox (scoped to their branches)."""
    return user.is_authenticated and (
        user.is_superuser
        or has_role(
            user,
            COMMITTEE_MEMBER,
            RISK_MANAGER,
            AUDITOR,
            ADMINISTRATOR,
            CREDIT_OFFICER,
            BRANCH_MANAGER,
        )
    )


def may_see_ratifications(user: User) -> bool:
    return may_see_inbox(user) and sees_whole_book(user)


def is_committee_member(user: User) -> bool:
    return user.is_authenticated and has_role(user, COMMITTEE_MEMBER)


def may_propose(user: User, loan: Loan) -> bool:
    """Tell whether the user may propose a class change for the loan.

    Credit officers and branch managers may for the loans of their
    branches, risk managers for every loan.
    """
    if not user.is_authenticated:
        return False
    if has_role(user, RISK_MANAGER):
        return True
    if has_role(user, CREDIT_OFFICER, BRANCH_MANAGER):
        return visible_loans(user).filter(pk=loan.pk).exists()
    return False


def vote_refusal(user: User, proposal: ClassificationProposal, my_vote: str | None) -> str:
    """Return why the user may not vote on the proposal now, or "" when they may."""
    if not is_committee_member(user):
        return str(_("Only committee members vote on proposals."))
    if proposal.status != ProposalStatus.PENDING:
        return str(_("Voting is closed: the proposal is %(status)s.")) % {
            "status": proposal.get_status_display().lower()
        }
    if proposal.proposed_by_id == user.pk:
        return str(_("You made this proposal, so other committee members decide on it."))
    if my_vote:
        return str(_("You have already voted on this proposal."))
    return ""


# ---- Proposals -----------------------------------------------------------------


def visible_proposals(user: User) -> QuerySet[ClassificationProposal]:
    proposals = ClassificationProposal.objects.all()
    if sees_whole_book(user):
        return proposals
    return proposals.filter(loan__in=visible_loans(user))


def get_proposal(user: User, pk: int) -> ClassificationProposal | None:
    return (
        visible_proposals(user)
        .select_related(
            "loan", "loan__borrower", "loan__branch", "loan__officer", "proposed_by", "inspection"
        )
        .filter(pk=pk)
        .first()
    )


def _approval_count() -> Coalesce:
    approvals = (
        ProposalVote.objects.filter(proposal=OuterRef("pk"), decision=VoteDecision.APPROVE)
        .order_by()
        .values("proposal")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return Coalesce(Subquery(approvals), Value(0))


# Filter values of the inbox's direction filter.
DIRECTION_UPGRADE = "upgrade"
DIRECTION_DOWNGRADE = "downgrade"
# Sort keys accepted in ?sort= on the inbox: the ordering expression and whether
# the key sorts the other way round (a larger age is an earlier creation time).
INBOX_SORTS = {
    "age": (F("created_at"), True),
    "contract": (F("loan__contract_number"), False),
    "borrower": (F("loan__borrower__legal_name"), False),
    "branch": (F("loan__branch__name"), False),
    "current": (F("current_class"), False),
    "proposed": (F("proposed_class"), False),
    "source": (F("source"), False),
    "approvals": (F("approval_count"), False),
}
DEFAULT_INBOX_SORT = "-age"


def pending_inbox(user: User, filters: dict[str, Any] | None = None) -> QuerySet:
    """Return the pending proposals the user sees, with vote counts and the user's vote.

    `filters` takes the cleaned data of `InboxFilterForm`: branch, source,
    direction ("upgrade" or "downgrade"), proposed class, and `awaiting_me`
    (proposals the user may still vote on).
    """
    filters = filters or {}
    proposals = visible_proposals(user).filter(status=ProposalStatus.PENDING)
    if filters.get("branch"):
        proposals = proposals.filter(loan__branch=filters["branch"])
    if filters.get("source"):
        proposals = proposals.filter(source=filters["source"])
    if filters.get("proposed_class"):
        proposals = proposals.filter(proposed_class=filters["proposed_class"])
    if filters.get("direction") == DIRECTION_UPGRADE:
        proposals = proposals.filter(proposed_class__lt=F("current_class"))
    elif filters.get("direction") == DIRECTION_DOWNGRADE:
        proposals = proposals.filter(proposed_class__gt=F("current_class"))
    if filters.get("awaiting_me"):
        voted = ProposalVote.objects.filter(proposal=OuterRef("pk"), member_id=user.pk)
        proposals = proposals.exclude(proposed_by_id=user.pk).exclude(Exists(voted))
    return proposals


def sort_inbox(proposals: QuerySet, sort: str | None) -> tuple[QuerySet, str]:
    """Order by a key of INBOX_SORTS such as "-age", and return the key used."""
    sort = sort or DEFAULT_INBOX_SORT
    key = sort.removeprefix("-")
    if key not in INBOX_SORTS:
        sort = DEFAULT_INBOX_SORT
        key = sort.removeprefix("-")
    expression, reversed_order = INBOX_SORTS[key]
    descending = sort.startswith("-") != reversed_order
    ordering = expression.desc() if descending else expression.asc()
    if key == "approvals":
        # Counted only for this sort: a count per pending proposal costs more
        # than the page itself.
        proposals = proposals.alias(approval_count=_approval_count())
    return proposals.order_by(ordering, "pk"), sort


def rows_in_order(queryset: QuerySet, ids: list[int]) -> list:
    """Return the rows of `queryset` with the given ids, in the order of `ids`.

    The list pages paginate ids over the table alone and then load the page's
    rows with their relations. Joining first made PostgreSQL join every
    pending proposal or floor change to its loan before sorting: 90 ms and
    200 ms for 10,000 proposals and 20,000 changes (benchmarks/committee_inbox.py).
    """
    by_pk = queryset.in_bulk(ids)
    return [by_pk[pk] for pk in ids if pk in by_pk]


def inbox_rows(ids: list[int]) -> list[ClassificationProposal]:
    """Load the inbox rows of the given proposals with loan, borrower, branch and proposer."""
    proposals = ClassificationProposal.objects.select_related(
        "loan", "loan__borrower", "loan__branch", "proposed_by"
    )
    return rows_in_order(proposals, ids)


def ratification_rows(ids: list[int]) -> list[ClassificationChange]:
    changes = ClassificationChange.objects.select_related("loan", "loan__borrower", "loan__branch")
    return rows_in_order(changes, ids)


def annotate_votes(rows, user: User) -> list:
    """Set approvals, rejections and the user's vote on each row, from one query."""
    rows = list(rows)
    votes = ProposalVote.objects.filter(proposal_id__in=[row.pk for row in rows]).values_list(
        "proposal_id", "member_id", "decision"
    )
    by_proposal: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for proposal_id, member_id, decision in votes:
        by_proposal[proposal_id].append((member_id, decision))
    for row in rows:
        cast = by_proposal[row.pk]
        row.approvals = sum(1 for _member, decision in cast if decision == VoteDecision.APPROVE)
        row.rejections = sum(1 for _member, decision in cast if decision == VoteDecision.REJECT)
        row.my_vote = next((d for member, d in cast if member == user.pk), None)
    return rows


def annotate_ages(rows, as_of: date) -> list:
    rows = list(rows)
    for row in rows:
        row.age_days = max((as_of - timezone.localtime(row.created_at).date()).days, 0)
    return rows


def unratified_changes(
    user: User, filters: dict[str, Any] | None = None
) -> QuerySet[ClassificationChange]:
    """Return the floor changes awaiting ratification, newest first, scoped to the user."""
    filters = filters or {}
    changes = ClassificationChange.objects.filter(source=ChangeSource.FLOOR, ratified=False)
    if not sees_whole_book(user):
        changes = changes.filter(loan__in=visible_loans(user))
    if filters.get("ratify_branch"):
        changes = changes.filter(loan__branch=filters["ratify_branch"])
    if filters.get("reason_code"):
        changes = changes.filter(reason_code=filters["reason_code"])
    return changes.order_by("-as_of", "-pk")


def upcoming_meetings(as_of: date, limit: int = 5) -> list[ReviewMeeting]:
    return list(
        ReviewMeeting.objects.filter(status=MeetingStatus.PLANNED, held_on__gte=as_of).order_by(
            "held_on", "pk"
        )[:limit]
    )


# ---- Evidence ----------------------------------------------------------------


def _money_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return str(Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _latest_valuations(pledges: list[CollateralPledge], as_of: date) -> dict[int, Any]:
    ids = [pledge.collateral_id for pledge in pledges]
    latest: dict[int, CollateralValuation] = {}
    for valuation in CollateralValuation.objects.filter(
        collateral_id__in=ids, valued_on__lte=as_of
    ).order_by("collateral_id", "-valued_on"):
        latest.setdefault(valuation.collateral_id, valuation)
    return latest


@dataclass
class CollateralLine:
    pledge: CollateralPledge
    valuation: CollateralValuation | None

    @property
    def pledged_value(self) -> Decimal | None:
        if self.valuation is None:
            return None
        return (self.valuation.value * self.pledge.share).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )


def collateral_lines(loan: Loan, as_of: date) -> list[CollateralLine]:
    pledges = list(
        loan.pledges.select_related("collateral").order_by(
            "collateral__lien_rank", "collateral__reference"
        )
    )
    latest = _latest_valuations(pledges, as_of)
    return [CollateralLine(pledge, latest.get(pledge.collateral_id)) for pledge in pledges]


def collateral_coverage(lines: list[CollateralLine], outstanding: Decimal) -> Decimal | None:
    """Return the pledged collateral value over the outstanding principal, to 4 places."""
    values = [line.pledged_value for line in lines if line.pledged_value is not None]
    if not values or outstanding <= 0:
        return None
    return (sum(values, Decimal(0)) / outstanding).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )


def active_warnings(loan: Loan) -> list[EarlyWarning]:
    return list(
        loan.warnings.filter(status__in=WarningStatus.active()).order_by("severity", "rule_code")
    )


def last_inspections(loan: Loan) -> list[Inspection]:
    return list(
        loan.inspections.select_related("submitted_by").order_by("-due_date", "-pk")[
            :EVIDENCE_INSPECTIONS
        ]
    )


def proposal_evidence(loan: Loan, as_of: date) -> dict[str, Any]:
    """Return the facts recorded with a proposal, as JSON-ready values.

    Keys: as_of, days_past_due, overdue_principal, overdue_interest,
    outstanding_principal, floor, floor_reason_code, floor_reason, warnings
    (code, severity), inspections, guarantors, collateral_value and
    collateral_coverage (pledged value over outstanding principal).
    """
    floor = loan_floor_detail(loan, as_of)
    figures = floor.figures
    outstanding = figures.outstanding_principal if figures else Decimal(0)
    lines = collateral_lines(loan, as_of)
    pledged = [line.pledged_value for line in lines if line.pledged_value is not None]
    coverage = collateral_coverage(lines, outstanding)
    return {
        "as_of": as_of.isoformat(),
        "days_past_due": figures.days_past_due if figures else 0,
        "overdue_principal": _money_text(figures.overdue_principal if figures else None),
        "overdue_interest": _money_text(figures.overdue_interest if figures else None),
        "outstanding_principal": _money_text(outstanding),
        "floor": floor.risk_class,
        "floor_reason_code": floor.reason_code,
        "floor_reason": floor.reason,
        "warnings": [
            {"code": w.rule_code, "severity": w.severity, "first_seen_on": str(w.first_seen_on)}
            for w in active_warnings(loan)
        ],
        "inspections": [
            {
                "id": i.pk,
                "kind": i.kind,
                "status": i.status,
                "due_date": str(i.due_date),
                "inspected_on": str(i.inspected_on) if i.inspected_on else None,
                "adverse": i.adverse,
                "suggested_class": i.suggested_class,
            }
            for i in last_inspections(loan)
        ],
        "guarantors": [
            {
                "name": g.guarantor.name,
                "kind": g.guarantor.kind,
                "amount": _money_text(g.amount),
                "percentage": str(g.percentage) if g.percentage is not None else None,
            }
            for g in loan.guarantees.select_related("guarantor").order_by("valid_from", "pk")
        ],
        "collateral_value": _money_text(sum(pledged, Decimal(0))) if pledged else None,
        "collateral_coverage": str(coverage) if coverage is not None else None,
    }


# ---- Days past due at month ends ---------------------------------------------


def month_ends(as_of: date, count: int = DPD_MONTHS) -> list[date]:
    """Return the last `count` month ends on or before `as_of`, oldest first."""
    ends = []
    year, month = as_of.year, as_of.month
    while len(ends) < count:
        end = date(year, month, calendar.monthrange(year, month)[1])
        if end <= as_of:
            ends.append(end)
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return list(reversed(ends))


def days_past_due_history(loan: Loan, dates: list[date]) -> list[tuple[date, int]]:
    """Return the loan's days past due on each date, from two queries.

    An instalment is unpaid on a date when the principal and interest
    allocated to it with a value date up to that date are less than what is
    due, and it is overdue when its due date is before the date, as in the
    close-of-day positions.
    """
    instalments = list(
        Instalment.objects.filter(loan=loan).values_list(
            "pk", "due_date", "principal_due", "interest_due"
        )
    )
    allocations: dict[int, list[tuple[date, Decimal]]] = defaultdict(list)
    for instalment_id, value_date, principal, interest in RepaymentAllocation.objects.filter(
        loan=loan
    ).values_list("instalment_id", "value_date", "principal", "interest"):
        allocations[instalment_id].append((value_date, principal + interest))
    result = []
    for day in dates:
        oldest = None
        if loan.disbursement_date <= day and (loan.closed_on is None or loan.closed_on > day):
            for pk, due_date, principal_due, interest_due in instalments:
                if due_date >= day:
                    continue
                paid = sum((amount for when, amount in allocations[pk] if when <= day), Decimal(0))
                if paid < principal_due + interest_due and (oldest is None or due_date < oldest):
                    oldest = due_date
        result.append((day, (day - oldest).days if oldest else 0))
    return result


# ---- Proposal page -----------------------------------------------------------


@dataclass
class Check:
    """One line of the proposal page's checklist: passed or not, and the message."""

    passed: bool
    label: str
    detail: str = ""


@dataclass
class ProposalDetail:
    proposal: ClassificationProposal
    as_of: date
    floor: Floor
    checks: list[Check]
    votes: list[ProposalVote]
    approvals: int
    rejections: int
    quorum: int
    my_vote: str | None
    vote_refusal: str
    dpd_history: list[tuple[date, int]]
    warnings: list[EarlyWarning]
    inspections: list[Inspection]
    guarantees: list[Guarantee]
    collateral: list[CollateralLine]
    coverage: Decimal | None
    history: list = field(default_factory=list)

    @property
    def is_upgrade(self) -> bool:
        return self.proposal.proposed_class < self.proposal.current_class


def proposal_checks(proposal: ClassificationProposal, floor: Floor, as_of: date) -> list[Check]:
    """Return the floor and NPL-exit checks an approval must pass, as a checklist."""
    loan = proposal.loan
    checks = []
    if loan.risk_class != proposal.current_class:
        checks.append(
            Check(
                False,
                str(_("The loan is still in the class the proposal starts from")),
                str(_("The loan is now %(class)s.")) % {"class": loan.get_risk_class_display()},
            )
        )
    floor_label = RiskClass(floor.risk_class).label
    checks.append(
        Check(
            proposal.proposed_class >= floor.risk_class,
            str(_("The proposed class is not better than the floor (%(floor)s)"))
            % {"floor": floor_label},
            floor.reason,
        )
    )
    leaves_npl = loan.risk_class in NON_PERFORMING and proposal.proposed_class not in NON_PERFORMING
    if leaves_npl:
        blockers = npl_exit_blockers(loan, as_of, proposal.position_improved)
        if blockers:
            checks.extend(
                Check(False, str(_("Condition for leaving non-performing")), text)
                for text in blockers
            )
        else:
            checks.append(Check(True, str(_("The conditions for leaving non-performing hold"))))
    return checks


def proposal_history(proposal: ClassificationProposal) -> list:
    return list(
        proposal.history.select_related("history_user").order_by("history_date", "history_id")
    )


def get_proposal_detail(user: User, pk: int) -> ProposalDetail | None:
    proposal = get_proposal(user, pk)
    if proposal is None:
        return None
    as_of = business_date()
    loan = proposal.loan
    votes = list(proposal.votes.select_related("member").order_by("cast_at", "pk"))
    my_vote = next((v.decision for v in votes if v.member_id == user.pk), None)
    floor = loan_floor_detail(loan, as_of)
    lines = collateral_lines(loan, as_of)
    figures = floor.figures
    return ProposalDetail(
        proposal=proposal,
        as_of=as_of,
        floor=floor,
        checks=(
            proposal_checks(proposal, floor, as_of)
            if proposal.status == ProposalStatus.PENDING
            else []
        ),
        votes=votes,
        approvals=sum(1 for v in votes if v.decision == VoteDecision.APPROVE),
        rejections=sum(1 for v in votes if v.decision == VoteDecision.REJECT),
        quorum=CommitteePolicy.current().quorum,
        my_vote=my_vote,
        vote_refusal=vote_refusal(user, proposal, my_vote),
        dpd_history=days_past_due_history(loan, month_ends(as_of)),
        warnings=active_warnings(loan),
        inspections=last_inspections(loan),
        guarantees=list(loan.guarantees.select_related("guarantor").order_by("valid_from", "pk")),
        collateral=lines,
        coverage=collateral_coverage(
            lines, figures.outstanding_principal if figures else Decimal(0)
        ),
        history=proposal_history(proposal),
    )


def loan_proposal_context(loan: Loan, as_of: date) -> dict[str, Any]:
    """Return what the new-proposal page shows about the loan: position, floor, pending."""
    floor = loan_floor_detail(loan, as_of)
    pending = (
        ClassificationProposal.objects.filter(loan=loan, status=ProposalStatus.PENDING)
        .order_by("-created_at")
        .first()
    )
    return {"floor": floor, "figures": floor.figures, "pending": pending}


# ---- Loan timeline -----------------------------------------------------------


@dataclass
class TimelineEntry:
    """A classification change or a proposal on the loan's classification timeline."""

    kind: str  # "change" or "proposal"
    at: Any
    change: ClassificationChange | None = None
    proposal: ClassificationProposal | None = None


def loan_classification_timeline(loan: Loan) -> list[TimelineEntry]:
    """Return the loan's classification changes and proposals, newest first, in three queries."""
    changes = ClassificationChange.objects.filter(loan=loan).select_related("ratified_by")
    proposals = (
        ClassificationProposal.objects.filter(loan=loan)
        .select_related("proposed_by")
        .prefetch_related(
            Prefetch(
                "votes",
                queryset=ProposalVote.objects.select_related("member").order_by("cast_at", "pk"),
            )
        )
    )
    entries = [TimelineEntry("change", change.created_at, change=change) for change in changes]
    entries += [
        TimelineEntry("proposal", proposal.created_at, proposal=proposal) for proposal in proposals
    ]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)


def figures_for(loan: Loan, as_of: date):
    return loan_figures([loan.pk], as_of).get(loan.pk)
