"""Two committee members casting the deciding votes at the same moment, on PostgreSQL."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections

from loans import access
from loans import services as loan_services
from loans.models import RiskClass
from monitoring.committee import services
from monitoring.models import (
    ChangeSource,
    ClassificationChange,
    ClassificationProposal,
    ProposalStatus,
    ProposalVote,
)

from .factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

AS_OF = date(2023, 11, 15)
# Seconds a thread waits at the barrier before the test fails instead of hanging.
BARRIER_TIMEOUT = 30


@pytest.fixture
def proposal(role_groups, make_scheduled_loan):
    """A pending upgrade of a cured substandard loan, with one approval of a quorum of two."""
    if connection.vendor != "postgresql":
        pytest.skip("Row locks need PostgreSQL.")
    proposer = UserFactory(username="proposer", roles=[access.RISK_MANAGER])
    first = UserFactory(username="first", roles=[access.COMMITTEE_MEMBER])
    loan = make_scheduled_loan(disbursement_date=date(2023, 1, 1))
    for instalment in loan.instalments.filter(number__lte=10):
        loan_services.record_repayment(
            loan, instalment.due_date, instalment.total_due, f"P{instalment.number}"
        )
    loan.risk_class = RiskClass.SUBSTANDARD
    loan.ifrs9_stage = 3
    loan.save(update_fields=["risk_class", "ifrs9_stage"])
    proposal = services.propose(
        loan, proposer, RiskClass.SPECIAL_MENTION, "Cured since June.", True, as_of=AS_OF
    )
    services.cast_vote(proposal, first, "approve", "Agreed.", as_of=AS_OF)
    return proposal


def _vote_in_thread(proposal, member, barrier, outcomes: dict) -> None:
    try:
        barrier.wait(BARRIER_TIMEOUT)
        services.cast_vote(proposal, member, "approve", f"Agreed by {member}.", as_of=AS_OF)
        outcomes[member.username] = "recorded"
    except ValidationError as error:
        outcomes[member.username] = " ".join(error.messages)
    finally:
        connections.close_all()


def test_simultaneous_deciding_votes_decide_once(proposal):
    members = [
        UserFactory(username=name, roles=[access.COMMITTEE_MEMBER]) for name in ("second", "third")
    ]
    history_before = proposal.loan.history.count()
    barrier = threading.Barrier(len(members))
    outcomes: dict[str, str] = {}
    threads = [
        threading.Thread(target=_vote_in_thread, args=(proposal, member, barrier, outcomes))
        for member in members
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BARRIER_TIMEOUT * 2)

    proposal.refresh_from_db()
    results = sorted(outcomes.values())
    assert proposal.status == ProposalStatus.APPROVED
    assert results[1] == "recorded"
    assert results[0].startswith("Voting is closed: the proposal was approved")
    assert ProposalVote.objects.filter(proposal=proposal).count() == 2
    assert ClassificationChange.objects.filter(source=ChangeSource.COMMITTEE).count() == 1
    assert proposal.loan.history.count() == history_before + 1
    assert ClassificationProposal.history.filter(id=proposal.pk, status="approved").count() == 1
