"""Classification proposals, committee votes under maker-checker, floors and ratification."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Max, Min
from django.urls import reverse
from django.utils import timezone

from loans import access
from loans import services as loan_services
from loans.models import Loan, RiskClass
from monitoring.close_of_day.proposals import propose_chunk
from monitoring.committee import services
from monitoring.committee.floors import loan_floor, npl_exit_blockers
from monitoring.committee.selectors import (
    days_past_due_history,
    loan_classification_timeline,
    month_ends,
)
from monitoring.models import (
    ChangeSource,
    ClassificationChange,
    ClassificationProposal,
    CommitteePolicy,
    EarlyWarning,
    JobRun,
    JobStatus,
    ProposalSource,
    ProposalStatus,
    ProposalVote,
    Restructuring,
    Severity,
    WarningFamily,
    WarningStatus,
)
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 11, 15)


# ---- Fixtures ------------------------------------------------------------------


@pytest.fixture
def business_date():
    return JobRun.objects.create(
        as_of=AS_OF, status=JobStatus.COMPLETED, finished_at=timezone.now()
    )


@pytest.fixture
def members(committee_member):
    second = UserFactory(username="committee2", roles=[access.COMMITTEE_MEMBER])
    third = UserFactory(username="committee3", roles=[access.COMMITTEE_MEMBER])
    return committee_member, second, third


def _pay(loan: Loan, number: int, on: date) -> None:
    instalment = loan.instalments.get(number=number)
    loan_services.record_repayment(loan, on, instalment.total_due, f"P{number}")


def _set_class(loan: Loan, risk_class: int, stage: int) -> Loan:
    loan.risk_class = risk_class
    loan.ifrs9_stage = stage
    loan.save(update_fields=["risk_class", "ifrs9_stage"])
    return loan


@pytest.fixture
def cured_loan(make_scheduled_loan, branch_north):
    """A substandard loan that paid its arrears on 2023-05-10 and every instalment since on time.

    Instalments fall due on the 1st from 2023-02-01; nos. 1-4 were paid late,
    nos. 5-10 (June to November) on their due dates.
    """
    borrower = BorrowerFactory(branch=branch_north, legal_name="Aster Tools Ltd")
    loan = make_scheduled_loan(borrower=borrower, disbursement_date=date(2023, 1, 1))
    for number in range(1, 5):
        _pay(loan, number, date(2023, 5, 10))
    for number in range(5, 11):
        _pay(loan, number, loan.instalments.get(number=number).due_date)
    return _set_class(loan, RiskClass.SUBSTANDARD, 3)


@pytest.fixture
def overdue_loan(make_scheduled_loan, branch_north):
    """A special-mention loan 45 days past due on AS_OF: its first instalment, due 2023-10-01."""
    borrower = BorrowerFactory(branch=branch_north, legal_name="Birch Bakery Ltd")
    loan = make_scheduled_loan(borrower=borrower, disbursement_date=date(2023, 9, 1))
    return _set_class(loan, RiskClass.SPECIAL_MENTION, 2)


def _proposal(loan: Loan, user, proposed_class: int, improved: bool = True):
    return services.propose(
        loan, user, proposed_class, "Arrears repaid, trading recovered.", improved, as_of=AS_OF
    )


def _vote(proposal, member, decision: str = "approve"):
    return services.cast_vote(proposal, member, decision, f"{decision} by {member}", as_of=AS_OF)


# ---- Proposing ---------------------------------------------------------------


def test_proposal_records_evidence(cured_loan, officer):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    evidence = proposal.evidence
    assert proposal.status == ProposalStatus.PENDING
    assert proposal.source == ProposalSource.MANUAL
    assert proposal.current_class == RiskClass.SUBSTANDARD
    assert evidence["as_of"] == "2023-11-15"
    assert evidence["days_past_due"] == 0
    assert evidence["overdue_principal"] == "0.00"
    assert evidence["floor"] == RiskClass.NORMAL
    assert evidence["warnings"] == []
    assert evidence["guarantors"] == []
    assert evidence["collateral_coverage"] is None


def test_proposal_of_current_class_refused(cured_loan, officer):
    with pytest.raises(ValidationError) as error:
        _proposal(cured_loan, officer, RiskClass.SUBSTANDARD)

    assert "already Substandard" in str(error.value)
    assert not ClassificationProposal.objects.exists()


def test_second_pending_proposal_refused(cured_loan, officer, risk_manager):
    first = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    with pytest.raises(ValidationError) as error:
        _proposal(cured_loan, risk_manager, RiskClass.NORMAL)

    assert f"Proposal {first.pk}" in str(error.value)
    assert ClassificationProposal.objects.count() == 1


@pytest.mark.parametrize("role", [access.AUDITOR, access.COMMITTEE_MEMBER, access.ADMINISTRATOR])
def test_roles_without_proposing_refused(cured_loan, role):
    user = UserFactory(username=f"user-{role}", roles=[role])

    with pytest.raises(PermissionDenied):
        _proposal(cured_loan, user, RiskClass.SPECIAL_MENTION)


def test_officer_of_other_branch_refused(cured_loan, branch_south):
    stranger = UserFactory(
        username="south-officer", roles=[access.CREDIT_OFFICER], branches=[branch_south]
    )

    with pytest.raises(PermissionDenied):
        _proposal(cured_loan, stranger, RiskClass.SPECIAL_MENTION)


def test_withdraw_only_by_proposer(cured_loan, officer, risk_manager):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    with pytest.raises(PermissionDenied):
        services.withdraw(proposal, risk_manager)
    services.withdraw(proposal, officer)

    proposal.refresh_from_db()
    assert proposal.status == ProposalStatus.WITHDRAWN
    assert proposal.decided_at is not None
    assert proposal.history.first().history_user == officer


# ---- Voting ------------------------------------------------------------------


def test_proposer_vote_refused(cured_loan, members):
    maker = UserFactory(
        username="risk-and-committee", roles=[access.RISK_MANAGER, access.COMMITTEE_MEMBER]
    )
    proposal = _proposal(cured_loan, maker, RiskClass.SPECIAL_MENTION)

    with pytest.raises(ValidationError) as error:
        _vote(proposal, maker)

    assert "You made this proposal" in str(error.value)
    assert not ProposalVote.objects.exists()


def test_vote_needs_committee_role(cured_loan, officer, risk_manager):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    with pytest.raises(PermissionDenied):
        _vote(proposal, risk_manager)


def test_vote_needs_comment(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    with pytest.raises(ValidationError) as error:
        services.cast_vote(proposal, members[0], "approve", "   ", as_of=AS_OF)

    assert "comment" in error.value.message_dict
    assert not ProposalVote.objects.exists()


def test_member_votes_once(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    _vote(proposal, members[0])

    with pytest.raises(ValidationError) as error:
        _vote(proposal, members[0], "reject")

    assert "already voted" in str(error.value)
    assert proposal.votes.count() == 1


def test_quorum_decides_once(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    _vote(proposal, members[0])
    proposal.refresh_from_db()
    status_after_one = proposal.status
    _vote(proposal, members[1])

    proposal.refresh_from_db()
    cured_loan.refresh_from_db()
    change = ClassificationChange.objects.get(loan=cured_loan)
    assert status_after_one == ProposalStatus.PENDING
    assert proposal.status == ProposalStatus.APPROVED
    assert proposal.decided_at is not None
    assert "committee2" in proposal.decision_comment
    assert cured_loan.risk_class == RiskClass.SPECIAL_MENTION
    # Stage 3 is held through the cure period after the last default trigger.
    assert cured_loan.ifrs9_stage == 3
    assert change.source == ChangeSource.COMMITTEE
    assert change.reason_code == "committee"
    assert (change.previous_class, change.new_class) == (RiskClass.SUBSTANDARD, 2)
    assert change.as_of == AS_OF
    assert f"Proposal {proposal.pk}" in change.reason


def test_third_member_finds_voting_closed(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    _vote(proposal, members[0])
    _vote(proposal, members[1])

    with pytest.raises(ValidationError) as error:
        _vote(proposal, members[2], "reject")

    assert "Voting is closed: the proposal was approved" in str(error.value)
    assert proposal.votes.count() == 2
    assert ClassificationChange.objects.count() == 1


def test_rejections_reach_quorum(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    _vote(proposal, members[0], "reject")
    _vote(proposal, members[1], "reject")

    proposal.refresh_from_db()
    cured_loan.refresh_from_db()
    assert proposal.status == ProposalStatus.REJECTED
    assert cured_loan.risk_class == RiskClass.SUBSTANDARD
    assert not ClassificationChange.objects.exists()


def test_quorum_follows_policy(cured_loan, officer, members):
    policy = CommitteePolicy.current()
    policy.quorum = 3
    policy.save()
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)

    _vote(proposal, members[0])
    _vote(proposal, members[1])
    proposal.refresh_from_db()
    after_two = proposal.status
    _vote(proposal, members[2])

    proposal.refresh_from_db()
    assert after_two == ProposalStatus.PENDING
    assert proposal.status == ProposalStatus.APPROVED


def test_approval_above_floor_refused(overdue_loan, officer, members):
    proposal = _proposal(overdue_loan, officer, RiskClass.NORMAL)

    with pytest.raises(ValidationError) as error:
        _vote(proposal, members[0])

    message = " ".join(error.value.messages)
    assert "The floor is Special mention" in message
    assert "45 days past due, over the limit of 7 days" in message
    assert not ProposalVote.objects.exists()


def test_rejection_above_floor_recorded(overdue_loan, officer, members):
    proposal = _proposal(overdue_loan, officer, RiskClass.NORMAL)

    _vote(proposal, members[0], "reject")

    assert proposal.votes.get().decision == "reject"


def test_downgrade_below_floor_allowed(overdue_loan, officer, members):
    proposal = _proposal(overdue_loan, officer, RiskClass.DOUBTFUL)

    _vote(proposal, members[0])
    _vote(proposal, members[1])

    overdue_loan.refresh_from_db()
    assert overdue_loan.risk_class == RiskClass.DOUBTFUL
    assert overdue_loan.ifrs9_stage == 3


def test_stale_proposal_approval_refused(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    _set_class(cured_loan, RiskClass.DOUBTFUL, 3)

    with pytest.raises(ValidationError) as error:
        _vote(proposal, members[0])

    assert "changed from Substandard to Doubtful" in str(error.value)


# ---- Leaving non-performing --------------------------------------------------------


def test_leaving_npl_refused_with_each_reason(make_scheduled_loan, officer, members):
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    loan.branch.staff.add(officer)
    _set_class(loan, RiskClass.SUBSTANDARD, 3)
    _pay(loan, 1, date(2023, 2, 20))
    Restructuring.objects.create(
        loan=loan,
        restructured_on=date(2023, 6, 1),
        class_before=RiskClass.SUBSTANDARD,
        first_repayment_on=date(2023, 7, 1),
        observation_ends_on=date(2024, 7, 1),
    )
    proposal = _proposal(loan, officer, RiskClass.SPECIAL_MENTION, improved=False)

    with pytest.raises(ValidationError) as error:
        _vote(proposal, members[0])

    messages = error.value.messages
    assert any("Overdue principal" in m and "not repaid" in m for m in messages)
    assert any("instalments due between 2023-05-16 and 2023-11-15" in m for m in messages)
    assert any(
        "were not paid on time" in m and "no. 5 due 2023-06-01, not paid" in m for m in messages
    )
    assert any("Only 0 instalments" in m for m in messages)
    assert any("position has improved" in m for m in messages)
    assert any("restructured on 2023-06-01" in m and "runs until 2024-07-01" in m for m in messages)
    assert any("The floor is Substandard" in m for m in messages)
    assert not ProposalVote.objects.exists()


def test_blockers_clear_after_conditions(cured_loan):
    blockers = npl_exit_blockers(cured_loan, AS_OF, position_improved=True)

    assert blockers == []


def test_one_on_time_instalment_blocks_exit(cured_loan):
    blockers = npl_exit_blockers(cured_loan, date(2023, 6, 15), position_improved=True)

    assert len(blockers) == 2
    assert "were not paid on time" in blockers[0]
    assert "Only 1 instalment due between 2022-12-16 and 2023-06-15 was paid on time" in blockers[1]


def test_missing_judgement_blocks_exit(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION, improved=False)

    with pytest.raises(ValidationError) as error:
        _vote(proposal, members[0])

    assert error.value.messages == [
        "No judgement that the debtor's position has improved is recorded."
    ]


# ---- Floors ------------------------------------------------------------------------


def test_floor_of_overdue_loan(overdue_loan):
    floor = loan_floor(overdue_loan, AS_OF)

    assert floor == (RiskClass.SPECIAL_MENTION, "45 days past due, over the limit of 7 days.")


def test_restructuring_floors(cured_loan):
    Restructuring.objects.create(
        loan=cured_loan,
        restructured_on=date(2023, 3, 1),
        class_before=RiskClass.SPECIAL_MENTION,
        first_repayment_on=date(2023, 4, 1),
        observation_ends_on=date(2024, 4, 1),
    )
    observation = loan_floor(cured_loan, AS_OF)
    Restructuring.objects.create(
        loan=cured_loan,
        restructured_on=date(2023, 9, 1),
        class_before=RiskClass.SPECIAL_MENTION,
        first_repayment_on=date(2023, 10, 1),
        observation_ends_on=date(2024, 10, 1),
    )

    again = loan_floor(cured_loan, AS_OF)
    for number in (11, 12):
        _pay(cured_loan, number, cured_loan.instalments.get(number=number).due_date)
    after = loan_floor(cured_loan, date(2024, 10, 1))

    assert observation[0] == RiskClass.SPECIAL_MENTION
    assert "observation period runs until 2024-04-01" in observation[1]
    assert again[0] == RiskClass.SUBSTANDARD
    assert "Restructured again on 2023-09-01" in again[1]
    assert after[0] == RiskClass.NORMAL


def test_contagion_floor_counts_other_loans(cured_loan, make_scheduled_loan):
    sibling = make_scheduled_loan(
        borrower=cured_loan.borrower, disbursement_date=date(2023, 10, 20)
    )
    _set_class(sibling, RiskClass.DOUBTFUL, 3)

    blocked = loan_floor(cured_loan, AS_OF)
    ClassificationProposal.objects.create(
        loan=sibling,
        current_class=RiskClass.DOUBTFUL,
        proposed_class=RiskClass.SPECIAL_MENTION,
        source=ProposalSource.MANUAL,
        reasons="Both loans cured.",
    )
    with_pending_upgrade = loan_floor(cured_loan, AS_OF)

    assert blocked[0] == RiskClass.SUBSTANDARD
    assert "of the borrower's open debt is non-performing, over 10.00 %" in blocked[1]
    assert sibling.contract_number in blocked[1]
    assert with_pending_upgrade[0] == RiskClass.NORMAL


def test_close_of_day_applies_restructuring_floors(make_scheduled_loan):
    kept = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    again = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    for loan in (kept, again):
        for number in range(1, 11):
            _pay(loan, number, loan.instalments.get(number=number).due_date)
    Restructuring.objects.create(
        loan=kept,
        restructured_on=date(2023, 6, 1),
        class_before=RiskClass.DOUBTFUL,
        first_repayment_on=date(2023, 7, 1),
        observation_ends_on=date(2024, 7, 1),
    )
    for restructured_on in (date(2023, 3, 1), date(2023, 8, 1)):
        Restructuring.objects.create(
            loan=again,
            restructured_on=restructured_on,
            class_before=RiskClass.NORMAL,
            first_repayment_on=restructured_on,
            observation_ends_on=restructured_on.replace(year=2024),
        )

    dispatch_close_of_day(AS_OF)

    kept.refresh_from_db()
    again.refresh_from_db()
    kept_change = ClassificationChange.objects.get(loan=kept)
    again_change = ClassificationChange.objects.get(loan=again)
    assert kept.risk_class == RiskClass.SUBSTANDARD
    assert kept_change.reason_code == "restructured_observation"
    assert again.risk_class == RiskClass.SUBSTANDARD
    assert again_change.reason_code == "restructured_again"
    assert not kept_change.ratified


# ---- Proposals of the close-of-day run ------------------------------------------------


def _run_proposals(as_of: date) -> dict[str, int]:
    """Run close-of-day for `as_of` and return the proposal counts of its chunks."""
    run = dispatch_close_of_day(as_of)
    run.refresh_from_db()
    steps = run.counts["steps"]
    keys = ("proposals_upgrade", "proposals_downgrade", "proposals_withdrawn")
    return {key: steps.get(key, 0) for key in keys}


def _red_warning(loan: Loan) -> EarlyWarning:
    return EarlyWarning.objects.create(
        loan=loan,
        rule_code="EXT_LITIGATION",
        family=WarningFamily.EXTERNAL,
        severity=Severity.RED,
        status=WarningStatus.OPEN,
        first_seen_on=AS_OF,
        last_seen_on=AS_OF,
    )


def test_run_proposes_upgrade_and_downgrade(cured_loan, make_scheduled_loan):
    normal = make_scheduled_loan(disbursement_date=date(2023, 11, 1))
    dispatch_close_of_day(AS_OF)
    _red_warning(normal)
    bounds = Loan.objects.aggregate(low=Min("pk"), high=Max("pk"))
    run = JobRun.objects.latest("pk")

    counts = propose_chunk(AS_OF, bounds["low"], bounds["high"], run.pk)

    upgrade = ClassificationProposal.objects.get(loan=cured_loan)
    downgrade = ClassificationProposal.objects.get(loan=normal)
    # The run itself proposed the upgrade; the red warning came after it.
    assert run.counts["steps"]["proposals_upgrade"] == 1
    assert counts == {"proposals_upgrade": 0, "proposals_downgrade": 1, "proposals_withdrawn": 0}
    assert (upgrade.current_class, upgrade.proposed_class) == (3, RiskClass.SPECIAL_MENTION)
    assert upgrade.source == ProposalSource.RUN
    assert upgrade.created_by_run_id == run.pk
    assert upgrade.evidence["days_past_due"] == 0
    assert upgrade.evidence["on_time_instalments"] == 6
    assert upgrade.evidence["floor"] == RiskClass.NORMAL
    assert (downgrade.current_class, downgrade.proposed_class) == (1, RiskClass.SPECIAL_MENTION)
    assert downgrade.evidence["warnings"] == [{"code": "EXT_LITIGATION", "severity": "red"}]
    assert upgrade.history.get().history_type == "+"


def test_run_proposals_created_once(cured_loan, members):
    first = _run_proposals(AS_OF)
    proposal = ClassificationProposal.objects.get()
    _vote(proposal, members[0], "reject")
    _vote(proposal, members[1], "reject")

    rerun = _run_proposals(AS_OF)
    next_day = _run_proposals(date(2023, 11, 16))

    assert first["proposals_upgrade"] == 1
    assert rerun["proposals_upgrade"] == 0
    assert next_day["proposals_upgrade"] == 0
    assert ClassificationProposal.objects.count() == 1


def test_run_skips_loan_not_yet_cured(cured_loan):
    counts = _run_proposals(date(2023, 8, 15))

    assert counts["proposals_upgrade"] == 0


def test_run_withdraws_stale_proposal(cured_loan):
    _run_proposals(AS_OF)
    _set_class(cured_loan, RiskClass.DOUBTFUL, 3)

    counts = _run_proposals(date(2023, 11, 16))

    statuses = sorted(ClassificationProposal.objects.values_list("current_class", "status"))
    assert counts["proposals_withdrawn"] == 1
    assert statuses == [(3, ProposalStatus.WITHDRAWN), (4, ProposalStatus.PENDING)]


# ---- Ratification ------------------------------------------------------------


def _floor_change(loan: Loan) -> ClassificationChange:
    return ClassificationChange.objects.create(
        loan=loan,
        as_of=AS_OF,
        previous_class=1,
        new_class=2,
        previous_stage=1,
        new_stage=2,
        reason_code="overdue",
        reason="Days past due 45",
        source=ChangeSource.FLOOR,
    )


def test_ratification_records_who_and_when(overdue_loan, members):
    change = _floor_change(overdue_loan)
    before = timezone.now()

    count = services.ratify([change], members[0], "Checked against the arrears report.")
    again = services.ratify([change], members[1])

    change.refresh_from_db()
    assert (count, again) == (1, 0)
    assert change.ratified
    assert change.ratified_by == members[0]
    assert change.ratified_at >= before
    assert change.ratification_comment == "Checked against the arrears report."


def test_ratification_needs_committee_role(overdue_loan, risk_manager):
    change = _floor_change(overdue_loan)

    with pytest.raises(PermissionDenied):
        services.ratify([change], risk_manager)

    change.refresh_from_db()
    assert not change.ratified


# ---- History -----------------------------------------------------------------


def test_every_step_has_history(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    _vote(proposal, members[0])
    _vote(proposal, members[1])

    proposal_rows = list(proposal.history.order_by("history_date", "history_id"))
    vote_rows = list(ProposalVote.history.order_by("history_date", "history_id"))
    loan_row = cured_loan.history.order_by("-history_date", "-history_id").first()
    previous = loan_row.prev_record
    assert [(r.history_type, r.status, r.history_user) for r in proposal_rows] == [
        ("+", ProposalStatus.PENDING, officer),
        ("~", ProposalStatus.APPROVED, members[1]),
    ]
    assert all(r.history_date is not None for r in proposal_rows)
    assert [(r.history_type, r.history_user, r.decision) for r in vote_rows] == [
        ("+", members[0], "approve"),
        ("+", members[1], "approve"),
    ]
    assert loan_row.history_user == members[1]
    assert f"Committee proposal {proposal.pk} approved: committee, committee2" == (
        loan_row.history_change_reason
    )
    assert (previous.risk_class, loan_row.risk_class) == (3, 2)
    assert loan_row.history_date >= proposal_rows[0].history_date


def test_timeline_lists_changes_and_proposals(cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    _vote(proposal, members[0])
    _vote(proposal, members[1])

    timeline = loan_classification_timeline(cured_loan)

    assert [entry.kind for entry in timeline] == ["change", "proposal"]
    assert timeline[1].proposal == proposal


# ---- Days past due at month ends ---------------------------------------------------


def test_days_past_due_at_month_ends(cured_loan, django_assert_num_queries):
    ends = month_ends(AS_OF, 4)

    with django_assert_num_queries(2):
        history = days_past_due_history(cured_loan, ends)

    assert ends == [date(2023, 7, 31), date(2023, 8, 31), date(2023, 9, 30), date(2023, 10, 31)]
    assert [days for _day, days in history] == [0, 0, 0, 0]


def test_days_past_due_before_repayment(cured_loan):
    history = days_past_due_history(cured_loan, month_ends(date(2023, 5, 31), 4))

    assert history == [
        (date(2023, 2, 28), 27),
        (date(2023, 3, 31), 58),
        (date(2023, 4, 30), 88),
        (date(2023, 5, 31), 0),
    ]


# ---- Pages -------------------------------------------------------------------


def _vote_url(proposal) -> str:
    return reverse("monitoring:proposal_vote", args=[proposal.pk])


def test_vote_url_forbidden_without_committee_role(client, cured_loan, officer, risk_manager):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    client.force_login(risk_manager)

    response = client.post(_vote_url(proposal), {"decision": "approve", "comment": "Fine."})

    assert response.status_code == 403
    assert not ProposalVote.objects.exists()


def test_vote_page_records_vote(client, business_date, cured_loan, officer, members):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    client.force_login(members[0])

    response = client.post(_vote_url(proposal), {"decision": "approve", "comment": "Fine."})

    assert response.status_code == 302
    assert proposal.votes.get().member == members[0]


def test_vote_page_shows_refusal(client, business_date, overdue_loan, officer, members):
    proposal = _proposal(overdue_loan, officer, RiskClass.NORMAL)
    client.force_login(members[0])

    response = client.post(_vote_url(proposal), {"decision": "approve", "comment": "Fine."})

    assert response.status_code == 409
    assert "The floor is Special mention" in response.content.decode()


def test_proposal_outside_branch_is_404(client, cured_loan, risk_manager, branch_south):
    proposal = _proposal(cured_loan, risk_manager, RiskClass.SPECIAL_MENTION)
    stranger = UserFactory(
        username="south-officer", roles=[access.CREDIT_OFFICER], branches=[branch_south]
    )
    client.force_login(stranger)

    detail = client.get(reverse("monitoring:proposal_detail", args=[proposal.pk]))
    create = client.get(reverse("monitoring:proposal_create", args=[cured_loan.pk]))

    assert detail.status_code == 404
    assert create.status_code == 404


def test_officer_sees_own_branch_proposal(client, business_date, cured_loan, officer):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    client.force_login(officer)

    response = client.get(reverse("monitoring:proposal_detail", args=[proposal.pk]))

    assert response.status_code == 200
    assert "Only committee members vote on proposals." in response.content.decode()


def test_auditor_may_not_propose_page(client, cured_loan, auditor):
    client.force_login(auditor)

    response = client.get(reverse("monitoring:proposal_create", args=[cured_loan.pk]))

    assert response.status_code == 403


def test_proposal_page_creates_proposal(client, business_date, cured_loan, officer):
    client.force_login(officer)

    response = client.post(
        reverse("monitoring:proposal_create", args=[cured_loan.pk]),
        {"proposed_class": "2", "reasons": "Paid on time since June.", "position_improved": "on"},
    )

    proposal = ClassificationProposal.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("monitoring:proposal_detail", args=[proposal.pk])
    assert proposal.position_improved
    assert proposal.proposed_by == officer


def test_ratify_page_needs_committee_role(client, overdue_loan, risk_manager, members):
    change = _floor_change(overdue_loan)
    client.force_login(risk_manager)

    forbidden = client.post(reverse("monitoring:committee_ratify"), {"changes": [change.pk]})
    client.force_login(members[0])
    allowed = client.post(reverse("monitoring:committee_ratify"), {"changes": [change.pk]})

    change.refresh_from_db()
    assert forbidden.status_code == 403
    assert allowed.status_code == 302
    assert change.ratified_by == members[0]


def _many_proposals(count: int, proposer) -> None:
    for index in range(count):
        borrower = BorrowerFactory()
        loan = Loan.objects.create(
            contract_number=f"BULK{index:04d}",
            borrower=borrower,
            branch=borrower.branch,
            product="working_capital",
            principal=Decimal("1000.00"),
            disbursement_date=date(2023, 1, 1),
            maturity_date=date(2024, 1, 1),
            annual_rate=Decimal("0.05"),
            day_count="30_360",
            repayment_method="annuity",
            frequency="monthly",
            risk_class=RiskClass.SUBSTANDARD,
        )
        proposal = ClassificationProposal.objects.create(
            loan=loan,
            current_class=RiskClass.SUBSTANDARD,
            proposed_class=RiskClass.SPECIAL_MENTION,
            source=ProposalSource.MANUAL,
            proposed_by=proposer,
            reasons="Cured.",
        )
        ProposalVote.objects.create(
            proposal=proposal, member=proposer, decision="approve", comment="Yes."
        )
        _floor_change(loan)


@pytest.mark.parametrize("count", [2, 30])
def test_inbox_queries_do_not_grow(
    client, business_date, members, officer, count, django_assert_max_num_queries
):
    _many_proposals(count, officer)
    client.force_login(members[0])

    with django_assert_max_num_queries(16):
        response = client.get(reverse("monitoring:committee_inbox"))

    assert response.status_code == 200
    assert len(response.context["page_obj"].object_list) == min(count, 25)
    assert len(response.context["ratification_page"].object_list) == min(count, 25)


def test_inbox_filters_awaiting_my_vote(client, business_date, members, officer):
    _many_proposals(3, officer)
    first = ClassificationProposal.objects.order_by("pk").first()
    ProposalVote.objects.create(proposal=first, member=members[0], decision="approve", comment="Y")
    client.force_login(members[0])

    response = client.get(reverse("monitoring:committee_inbox"), {"awaiting_me": "on"})

    listed = [p.pk for p in response.context["page_obj"].object_list]
    assert first.pk not in listed
    assert len(listed) == 2


def test_inbox_scoped_for_officer(client, business_date, cured_loan, officer, risk_manager):
    _proposal(cured_loan, risk_manager, RiskClass.SPECIAL_MENTION)
    _many_proposals(2, risk_manager)
    Loan.objects.filter(contract_number__startswith="BULK").update(branch=BorrowerFactory().branch)
    client.force_login(officer)

    response = client.get(reverse("monitoring:committee_inbox"))

    listed = [p.loan_id for p in response.context["page_obj"].object_list]
    assert listed == [cured_loan.pk]
    assert not response.context["show_ratifications"]


@pytest.mark.parametrize("role", [access.AUDITOR, access.RISK_MANAGER, access.ADMINISTRATOR])
def test_inbox_open_to_bank_wide_roles(client, business_date, role):
    client.force_login(UserFactory(username=f"u-{role}", roles=[role]))

    response = client.get(reverse("monitoring:committee_inbox"))

    assert response.status_code == 200
    assert not response.context["may_ratify"]


def test_proposal_page_queries(
    client, business_date, cured_loan, officer, members, django_assert_max_num_queries
):
    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    _vote(proposal, members[1])
    client.force_login(members[0])

    with django_assert_max_num_queries(40):
        response = client.get(reverse("monitoring:proposal_detail", args=[proposal.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert 'id="dpd-history"' in content
    assert "The conditions for leaving non-performing hold" in content


# ---- Audit trail -------------------------------------------------------------


def test_decision_in_audit_trail(cured_loan, officer, members):
    from reports.audit import AuditFilters, audit_page, audited_models

    proposal = _proposal(cured_loan, officer, RiskClass.SPECIAL_MENTION)
    _vote(proposal, members[0])
    _vote(proposal, members[1])
    models = audited_models()

    proposal_page = audit_page(
        AuditFilters(model=models["monitoring.classificationproposal"], record_id=proposal.pk)
    )
    loan_page = audit_page(AuditFilters(model=models["loans.loan"], record_id=cured_loan.pk))

    decided, created = proposal_page.entries
    assert (created.change_type, created.username) == ("+", officer.username)
    assert (decided.change_type, decided.username) == ("~", members[1].username)
    assert decided.history_date >= created.history_date
    status = {change.name: (change.old, change.new) for change in decided.changes}["status"]
    assert status == ("Pending", "Approved")
    class_change = loan_page.entries[0]
    assert class_change.username == members[1].username
    changes = {change.name: (change.old, change.new) for change in class_change.changes}
    assert changes["risk_class"] == ("Substandard", "Special mention")
