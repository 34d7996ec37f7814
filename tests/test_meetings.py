"""Review meetings: agenda building, decisions tied to proposals, closed minutes, roles, PDF."""

from __future__ import annotations

import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loans.models import LoanPosition, LoanStatus, RiskClass
from monitoring.committee.services import cast_vote
from monitoring.meetings import selectors, services
from monitoring.meetings.pdf import LocalOnlyFetcher, minutes_filename
from monitoring.models import (
    AgendaItem,
    AgendaItemKind,
    ClassificationProposal,
    ItemDecision,
    MeetingStatus,
    ProposalSource,
    ProposalStatus,
    ProposalVote,
    ReviewMeeting,
    Severity,
    VoteDecision,
    WarningStatus,
)

from .factories import BranchFactory, EarlyWarningFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

ARTIFACT_DIR = Path(__file__).resolve().parents[1] / "test-artifacts" / "minutes"
HTMX = {"HTTP_HX_REQUEST": "true"}


# ---- Helpers -----------------------------------------------------------------


def make_proposal(loan=None, status=ProposalStatus.PENDING, days_ago=0, **fields):
    proposal = ClassificationProposal.objects.create(
        loan=loan or LoanFactory(),
        current_class=RiskClass.NORMAL,
        proposed_class=RiskClass.SPECIAL_MENTION,
        source=ProposalSource.MANUAL,
        reasons="Two instalments paid late.",
        status=status,
        **fields,
    )
    created_at = timezone.now() - timedelta(days=days_ago)
    ClassificationProposal.objects.filter(pk=proposal.pk).update(created_at=created_at)
    proposal.refresh_from_db()
    return proposal


def make_npl_loan(**fields):
    fields.setdefault("risk_class", RiskClass.SUBSTANDARD)
    return LoanFactory(**fields)


def make_meeting(user, **fields):
    fields.setdefault("title", "March portfolio review")
    fields.setdefault("held_on", date(2024, 3, 5))
    fields.setdefault("location", "Head office, room 4")
    return services.create_meeting(user, **fields)


def vote(proposal, member, decision=VoteDecision.APPROVE, comment="Agreed: arrears confirmed."):
    return ProposalVote.objects.create(
        proposal=proposal, member=member, decision=decision, comment=comment
    )


def kinds(meeting):
    return list(meeting.items.order_by("position").values_list("kind", flat=True))


def positions(meeting):
    return list(meeting.items.order_by("position").values_list("position", flat=True))


@pytest.fixture
def book():
    """Candidates of all three sources, and records of each that must be left out."""
    proposals = [make_proposal(days_ago=5), make_proposal(days_ago=9)]
    make_proposal(status=ProposalStatus.APPROVED, days_ago=20)
    warnings = [
        EarlyWarningFactory(first_seen_on=date(2023, 7, 3)),
        EarlyWarningFactory(first_seen_on=date(2023, 6, 1)),
        EarlyWarningFactory(first_seen_on=date(2023, 7, 1), status=WarningStatus.IN_PROGRESS),
    ]
    EarlyWarningFactory(severity=Severity.ORANGE)
    EarlyWarningFactory(status=WarningStatus.RESOLVED)
    loans = [make_npl_loan(risk_class=RiskClass.DOUBTFUL), make_npl_loan()]
    make_npl_loan(status=LoanStatus.WRITTEN_OFF, closed_on=date(2023, 9, 1))
    LoanFactory(risk_class=RiskClass.SPECIAL_MENTION)
    return {"proposals": proposals, "warnings": warnings, "loans": loans}


# ---- Agenda ------------------------------------------------------------------


def test_agenda_built_from_three_sources(committee_member, book):
    meeting = make_meeting(committee_member)

    added = services.build_agenda(meeting, committee_member)

    assert len(added.items) == 7
    assert kinds(meeting) == ["proposal"] * 2 + ["warning"] * 3 + ["non_performing"] * 2
    assert positions(meeting) == [1, 2, 3, 4, 5, 6, 7]
    proposal_ids = meeting.items.filter(kind="proposal").values_list("proposal_id", flat=True)
    assert set(proposal_ids) == {p.pk for p in book["proposals"]}
    warning_ids = meeting.items.filter(kind="warning").values_list("warning_id", flat=True)
    assert set(warning_ids) == {w.pk for w in book["warnings"]}
    loan_ids = meeting.items.filter(kind="non_performing").values_list("loan_id", flat=True)
    assert set(loan_ids) == {loan.pk for loan in book["loans"]}


def test_agenda_sources_oldest_first(committee_member, book):
    meeting = make_meeting(committee_member)

    services.build_agenda(meeting, committee_member)

    items = list(meeting.items.order_by("position"))
    assert items[0].proposal == book["proposals"][1]
    assert items[1].proposal == book["proposals"][0]
    first_seen = [item.warning.first_seen_on for item in items[2:5]]
    assert first_seen == [date(2023, 6, 1), date(2023, 7, 1), date(2023, 7, 3)]


def test_agenda_items_link_their_loan(committee_member, book):
    meeting = make_meeting(committee_member)

    services.build_agenda(meeting, committee_member)

    for item in meeting.items.select_related("proposal", "warning"):
        source = item.proposal or item.warning
        expected_loan_id = source.loan_id if source else item.loan_id
        assert item.loan_id == expected_loan_id
        assert item.loan_id is not None


def test_agenda_built_twice_adds_nothing(committee_member, book):
    meeting = make_meeting(committee_member)
    services.build_agenda(meeting, committee_member)

    again = services.build_agenda(meeting, committee_member)

    assert again.items == []
    assert meeting.items.count() == 7


def test_agenda_caps_take_oldest(committee_member, book):
    meeting = make_meeting(committee_member)

    caps = services.AgendaCaps(proposals=1, warnings=2, loans=0)
    services.build_agenda(meeting, committee_member, caps=caps)

    assert kinds(meeting) == ["proposal", "warning", "warning"]
    items = list(meeting.items.order_by("position"))
    assert items[0].proposal == book["proposals"][1]
    assert [item.warning.first_seen_on for item in items[1:]] == [
        date(2023, 6, 1),
        date(2023, 7, 1),
    ]


def test_agenda_next_build_adds_next_oldest(committee_member, book):
    meeting = make_meeting(committee_member)
    caps = services.AgendaCaps(proposals=1, warnings=1, loans=1)
    services.build_agenda(meeting, committee_member, caps=caps)

    services.build_agenda(meeting, committee_member, caps=caps)

    assert kinds(meeting) == ["proposal", "warning", "non_performing"] * 2
    proposals = meeting.items.filter(kind="proposal").values_list("proposal_id", flat=True)
    assert len(set(proposals)) == 2


def test_picked_candidates_never_duplicate(committee_member, book):
    meeting = make_meeting(committee_member)
    warning = book["warnings"][0]
    services.add_agenda_items(meeting, committee_member, warning_ids=[warning.pk])

    added = services.add_agenda_items(
        meeting,
        committee_member,
        proposal_ids=[book["proposals"][0].pk],
        warning_ids=[warning.pk],
        loan_ids=[book["loans"][0].pk, book["loans"][0].pk],
    )

    assert len(added.items) == 2
    assert added.skipped == 1
    assert kinds(meeting) == ["warning", "proposal", "non_performing"]
    assert meeting.items.filter(warning=warning).count() == 1


def test_picked_non_candidates_skipped(committee_member, book):
    meeting = make_meeting(committee_member)
    approved = ClassificationProposal.objects.get(status=ProposalStatus.APPROVED)
    orange = EarlyWarningFactory(severity=Severity.ORANGE)
    normal_loan = LoanFactory()

    added = services.add_agenda_items(
        meeting,
        committee_member,
        proposal_ids=[approved.pk],
        warning_ids=[orange.pk],
        loan_ids=[normal_loan.pk],
    )

    assert added.items == []
    assert added.skipped == 3
    assert meeting.items.count() == 0


def test_candidates_filtered_by_branch(committee_member, book):
    branch = BranchFactory(code="EAST")
    east_loan = make_npl_loan(borrower__branch=branch)
    east_warning = EarlyWarningFactory(loan=east_loan)
    east_proposal = make_proposal(loan=east_loan)
    meeting = make_meeting(committee_member)

    services.build_agenda(meeting, committee_member, branch=branch)

    assert kinds(meeting) == ["proposal", "warning", "non_performing"]
    items = list(meeting.items.order_by("position"))
    assert items[0].proposal == east_proposal
    assert items[1].warning == east_warning
    assert items[2].loan == east_loan


def test_non_performing_oldest_arrears_first(committee_member):
    recent = make_npl_loan()
    older = make_npl_loan()
    no_position = make_npl_loan()
    for loan, due in ((recent, date(2023, 9, 1)), (older, date(2023, 3, 1))):
        LoanPosition.objects.create(
            loan=loan,
            as_of=date(2023, 12, 31),
            is_open=True,
            outstanding_principal="9000.00",
            overdue_principal="1000.00",
            overdue_interest="50.00",
            oldest_unpaid_due_date=due,
            days_past_due=(date(2023, 12, 31) - due).days,
            dpd_bucket="91-180",
        )
    meeting = make_meeting(committee_member)

    candidates = list(selectors.non_performing_candidates(meeting))

    assert candidates == [older, recent, no_position]


def test_other_item_appended(committee_member, book):
    meeting = make_meeting(committee_member)
    services.build_agenda(meeting, committee_member)

    item = services.add_other_item(
        meeting, committee_member, title="Inspection compliance of the South branch"
    )

    assert item.position == 8
    assert item.kind == AgendaItemKind.OTHER
    assert item.loan is None


def test_other_item_needs_title(committee_member):
    meeting = make_meeting(committee_member)

    with pytest.raises(ValidationError):
        services.add_other_item(meeting, committee_member, title="   ")

    assert meeting.items.count() == 0


def test_agenda_size_is_capped(committee_member, monkeypatch):
    monkeypatch.setattr(services, "MAX_AGENDA_ITEMS", 2)
    meeting = make_meeting(committee_member)
    services.add_other_item(meeting, committee_member, title="One")
    services.add_other_item(meeting, committee_member, title="Two")

    with pytest.raises(ValidationError, match="more than the 2"):
        services.add_other_item(meeting, committee_member, title="Three")

    assert meeting.items.count() == 2


def test_items_reordered(committee_member):
    meeting = make_meeting(committee_member)
    first, second, third = (
        services.add_other_item(meeting, committee_member, title=title)
        for title in ("First", "Second", "Third")
    )

    services.reorder_agenda(meeting, committee_member, [third.pk, first.pk, second.pk])

    titles = list(meeting.items.order_by("position").values_list("title", flat=True))
    assert titles == ["Third", "First", "Second"]
    assert positions(meeting) == [1, 2, 3]


def test_reorder_must_name_every_item(committee_member):
    meeting = make_meeting(committee_member)
    first = services.add_other_item(meeting, committee_member, title="First")
    services.add_other_item(meeting, committee_member, title="Second")

    with pytest.raises(ValidationError):
        services.reorder_agenda(meeting, committee_member, [first.pk])


def test_item_moved_up_and_down(committee_member):
    meeting = make_meeting(committee_member)
    first, second, third = (
        services.add_other_item(meeting, committee_member, title=title)
        for title in ("First", "Second", "Third")
    )

    services.move_item(third, committee_member, -1)
    services.move_item(first, committee_member, -1)

    titles = list(meeting.items.order_by("position").values_list("title", flat=True))
    assert titles == ["First", "Third", "Second"]
    assert second.history.count() == 2


def test_removed_item_closes_gap(committee_member):
    meeting = make_meeting(committee_member)
    first, second, third = (
        services.add_other_item(meeting, committee_member, title=title)
        for title in ("First", "Second", "Third")
    )

    services.remove_item(second, committee_member)

    assert list(meeting.items.order_by("position").values_list("pk", "position")) == [
        (first.pk, 1),
        (third.pk, 2),
    ]
    deleted = AgendaItem.history.filter(id=second.pk, history_type="-").get()
    assert deleted.history_user == committee_member


# ---- Decisions ---------------------------------------------------------------


@pytest.fixture
def proposal_item(committee_member):
    proposal = make_proposal()
    meeting = make_meeting(committee_member)
    services.add_agenda_items(meeting, committee_member, proposal_ids=[proposal.pk])
    return meeting.items.get()


def test_decision_follows_approved_proposal(committee_member, proposal_item):
    other_member = UserFactory(username="committee2", roles=["Committee member"])
    proposal = proposal_item.proposal
    vote(proposal, committee_member)
    vote(proposal, other_member)
    ClassificationProposal.objects.filter(pk=proposal.pk).update(status=ProposalStatus.APPROVED)

    services.record_decision(
        proposal_item, committee_member, decision="approved", notes="Ratified by two votes."
    )

    proposal_item.refresh_from_db()
    assert proposal_item.decision == ItemDecision.APPROVED
    assert proposal_item.notes == "Ratified by two votes."
    assert proposal_item.proposal_id == proposal.pk
    latest = proposal_item.history.first()
    assert latest.decision == "approved"
    assert latest.history_user == committee_member


def test_decision_follows_committee_votes(committee_member, proposal_item):
    other_member = UserFactory(username="committee2", roles=["Committee member"])
    proposal = proposal_item.proposal
    as_of = date(2024, 3, 5)
    cast_vote(proposal, committee_member, "approve", "Arrears confirmed.", as_of=as_of)

    with pytest.raises(ValidationError):
        services.record_decision(proposal_item, committee_member, decision="approved", notes="")
    cast_vote(proposal, other_member, "approve", "Agreed.", as_of=as_of)
    services.record_decision(proposal_item, committee_member, decision="approved", notes="")

    proposal.refresh_from_db()
    proposal_item.refresh_from_db()
    assert proposal.status == ProposalStatus.APPROVED
    assert proposal_item.decision == ItemDecision.APPROVED


def test_decision_approved_refused_while_pending(committee_member, proposal_item):
    with pytest.raises(ValidationError) as error:
        services.record_decision(proposal_item, committee_member, decision="approved", notes="")

    assert "pending" in error.value.message_dict["decision"][0]
    proposal_item.refresh_from_db()
    assert proposal_item.decision == ""


def test_decision_rejected_refused_when_approved(committee_member, proposal_item):
    ClassificationProposal.objects.filter(pk=proposal_item.proposal_id).update(
        status=ProposalStatus.APPROVED
    )

    with pytest.raises(ValidationError):
        services.record_decision(proposal_item, committee_member, decision="rejected", notes="")


def test_decision_deferred_while_pending(committee_member, proposal_item):
    services.record_decision(
        proposal_item, committee_member, decision="deferred", notes="Waiting for the votes."
    )

    proposal_item.refresh_from_db()
    assert proposal_item.decision == ItemDecision.DEFERRED


def test_allowed_decisions_by_proposal_status(proposal_item):
    assert selectors.allowed_decisions(proposal_item) == ["", "noted", "deferred"]
    proposal_item.proposal.status = ProposalStatus.REJECTED
    assert selectors.allowed_decisions(proposal_item) == ["", "rejected", "noted", "deferred"]


def test_warning_item_cannot_be_approved(committee_member):
    meeting = make_meeting(committee_member)
    warning = EarlyWarningFactory()
    services.add_agenda_items(meeting, committee_member, warning_ids=[warning.pk])
    item = meeting.items.get()

    with pytest.raises(ValidationError):
        services.record_decision(item, committee_member, decision="approved", notes="")

    services.record_decision(item, committee_member, decision="action", notes="Visit the site.")
    item.refresh_from_db()
    assert item.decision == ItemDecision.ACTION


def test_pending_approval_view_shows_message(client, committee_member, proposal_item):
    client.force_login(committee_member)
    url = reverse(
        "monitoring:meeting_item_decision", args=[proposal_item.meeting_id, proposal_item.pk]
    )

    response = client.post(url, {"decision": "approved", "notes": "x"}, **HTMX)

    assert response.status_code == 200
    assert "The proposal is pending, so this item cannot be recorded as approved" in (
        response.content.decode()
    )
    proposal_item.refresh_from_db()
    assert proposal_item.decision == ""


def test_decision_saved_in_place(client, committee_member, proposal_item):
    client.force_login(committee_member)
    url = reverse(
        "monitoring:meeting_item_decision", args=[proposal_item.meeting_id, proposal_item.pk]
    )

    form = client.get(url, **HTMX)
    response = client.post(url, {"decision": "noted", "notes": "Discussed."}, **HTMX)

    assert form.status_code == 200
    assert b'<option value="approved"' not in form.content
    assert b'<option value="deferred"' in form.content
    assert response.status_code == 200
    assert b'data-decision="noted"' in response.content
    assert b"<html" not in response.content
    proposal_item.refresh_from_db()
    assert proposal_item.decision == ItemDecision.NOTED


def test_decision_page_without_htmx(client, committee_member, proposal_item):
    client.force_login(committee_member)
    meeting_id = proposal_item.meeting_id
    url = reverse("monitoring:meeting_item_decision", args=[meeting_id, proposal_item.pk])

    response = client.post(url, {"decision": "deferred", "notes": ""})

    assert response.status_code == 302
    assert response["Location"].endswith(f"#item-{proposal_item.pk}")


# ---- Meeting lifecycle and closed minutes ------------------------------------


def test_close_needs_held_meeting(committee_member):
    meeting = make_meeting(committee_member)

    with pytest.raises(ValidationError):
        services.close_minutes(meeting, committee_member)


def test_close_needs_every_decision(committee_member):
    meeting = make_meeting(committee_member)
    item = services.add_other_item(meeting, committee_member, title="Budget")
    services.mark_held(meeting, committee_member)

    with pytest.raises(ValidationError, match="1 agenda items have no decision"):
        services.close_minutes(meeting, committee_member)

    services.record_decision(item, committee_member, decision="noted", notes="")
    services.close_minutes(meeting, committee_member)
    meeting.refresh_from_db()
    assert meeting.status == MeetingStatus.CLOSED


@pytest.fixture
def closed_meeting(committee_member, book):
    meeting = make_meeting(committee_member)
    services.build_agenda(meeting, committee_member, caps=services.AgendaCaps(1, 1, 0))
    for item in meeting.items.all():
        services.record_decision(item, committee_member, decision="noted", notes="Discussed.")
    services.mark_held(meeting, committee_member)
    services.close_minutes(meeting, committee_member)
    meeting.refresh_from_db()
    return meeting


def test_closed_minutes_refuse_every_change(committee_member, closed_meeting, book):
    item = closed_meeting.items.order_by("position").first()
    changes = [
        lambda: services.record_decision(item, committee_member, decision="deferred", notes=""),
        lambda: services.add_other_item(closed_meeting, committee_member, title="Late"),
        lambda: services.build_agenda(closed_meeting, committee_member),
        lambda: services.add_agenda_items(
            closed_meeting, committee_member, loan_ids=[book["loans"][0].pk]
        ),
        lambda: services.move_item(item, committee_member, 1),
        lambda: services.remove_item(item, committee_member),
        lambda: services.reorder_agenda(closed_meeting, committee_member, [item.pk]),
        lambda: services.mark_held(closed_meeting, committee_member),
        lambda: services.close_minutes(closed_meeting, committee_member),
        lambda: services.update_meeting(
            closed_meeting,
            committee_member,
            title="Renamed",
            held_on=date(2024, 3, 6),
            location="",
            attendees=[],
            notes="",
        ),
    ]

    for change in changes:
        with pytest.raises(PermissionDenied, match="are closed"):
            change()

    closed_meeting.refresh_from_db()
    assert closed_meeting.title == "March portfolio review"
    assert closed_meeting.items.count() == 2
    assert set(closed_meeting.items.values_list("decision", flat=True)) == {"noted"}


def test_closed_minutes_views_answer_403(client, committee_member, closed_meeting):
    client.force_login(committee_member)
    item = closed_meeting.items.first()
    pk = closed_meeting.pk
    posts = [
        (reverse("monitoring:meeting_item_decision", args=[pk, item.pk]), {"decision": "noted"}),
        (reverse("monitoring:meeting_item_other", args=[pk]), {"title": "Late item"}),
        (reverse("monitoring:meeting_item_remove", args=[pk, item.pk]), {}),
        (reverse("monitoring:meeting_edit", args=[pk]), {"title": "Renamed"}),
        (reverse("monitoring:meeting_agenda", args=[pk]), {"loan": ["1"]}),
    ]

    for url, data in posts:
        response = client.post(url, data)
        assert response.status_code == 403, url
        assert "are closed" in response.content.decode(), url
    page = client.get(reverse("monitoring:meeting_detail", args=[pk]))

    assert page.status_code == 200
    assert b"Record decision" not in page.content
    assert closed_meeting.items.count() == 2


def test_meeting_history_records_attendees(committee_member, risk_manager):
    meeting = make_meeting(committee_member, attendees=[committee_member])

    services.update_meeting(
        meeting,
        risk_manager,
        title=meeting.title,
        held_on=meeting.held_on,
        location=meeting.location,
        attendees=[committee_member, risk_manager],
        notes="Quorum present.",
    )

    latest = meeting.history.first()
    assert latest.history_user == risk_manager
    assert {row.user_id for row in latest.attendees.all()} == {
        committee_member.pk,
        risk_manager.pk,
    }
    assert meeting.history.filter(notes="Quorum present.").exists()


# ---- Roles -------------------------------------------------------------------


def test_officer_cannot_create_meeting(client, officer):
    client.force_login(officer)
    url = reverse("monitoring:meeting_create")

    page = client.get(url)
    response = client.post(url, {"title": "Mine", "held_on": "2024-03-05"})

    assert page.status_code == 403
    assert response.status_code == 403
    assert ReviewMeeting.objects.count() == 0


def test_officer_refused_by_service(officer):
    with pytest.raises(PermissionDenied):
        make_meeting(officer)


def test_risk_manager_creates_meeting(client, risk_manager, committee_member):
    client.force_login(risk_manager)

    response = client.post(
        reverse("monitoring:meeting_create"),
        {
            "title": "April review",
            "held_on": "2024-04-02",
            "location": "Room 2",
            "attendees": [risk_manager.pk, committee_member.pk],
            "notes": "",
        },
    )

    meeting = ReviewMeeting.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("monitoring:meeting_agenda", args=[meeting.pk])
    assert meeting.created_by == risk_manager
    assert set(meeting.attendees.all()) == {risk_manager, committee_member}
    assert meeting.status == MeetingStatus.PLANNED


def test_auditor_reads_but_cannot_change(client, auditor, committee_member, book):
    meeting = make_meeting(committee_member)
    services.build_agenda(meeting, committee_member)
    item = meeting.items.first()
    client.force_login(auditor)

    reads = [
        reverse("monitoring:meeting_list"),
        reverse("monitoring:meeting_detail", args=[meeting.pk]),
        reverse("monitoring:meeting_minutes_pdf", args=[meeting.pk]),
    ]
    for url in reads:
        assert client.get(url).status_code == 200, url
    refusals = [
        ("get", reverse("monitoring:meeting_create")),
        ("get", reverse("monitoring:meeting_edit", args=[meeting.pk])),
        ("get", reverse("monitoring:meeting_agenda", args=[meeting.pk])),
        ("get", reverse("monitoring:meeting_item_decision", args=[meeting.pk, item.pk])),
        ("post", reverse("monitoring:meeting_item_decision", args=[meeting.pk, item.pk])),
        ("post", reverse("monitoring:meeting_agenda_build", args=[meeting.pk])),
        ("post", reverse("monitoring:meeting_mark_held", args=[meeting.pk])),
        ("post", reverse("monitoring:meeting_item_remove", args=[meeting.pk, item.pk])),
    ]
    for method, url in refusals:
        assert getattr(client, method)(url).status_code == 403, url

    detail = client.get(reverse("monitoring:meeting_detail", args=[meeting.pk]))
    assert detail.content.count(b"data-kind=") == 7
    assert b"Record decision" not in detail.content
    meeting.refresh_from_db()
    assert meeting.status == MeetingStatus.PLANNED
    assert meeting.items.count() == 7


def test_officer_sees_only_branch_items(client, officer, branch_north, committee_member):
    north_loan = make_npl_loan(borrower__branch=branch_north)
    south_loan = make_npl_loan(borrower__branch=BranchFactory(code="SOUTH"))
    meeting = make_meeting(committee_member)
    services.add_agenda_items(meeting, committee_member, loan_ids=[north_loan.pk, south_loan.pk])
    services.add_other_item(meeting, committee_member, title="Staffing of the risk team")
    south_item = meeting.items.get(loan=south_loan)
    client.force_login(officer)

    page = client.get(reverse("monitoring:meeting_detail", args=[meeting.pk]))
    listing = client.get(reverse("monitoring:meeting_list"))
    hidden = client.get(reverse("monitoring:meeting_item", args=[meeting.pk, south_item.pk]))

    content = page.content.decode()
    assert page.status_code == 200
    assert north_loan.contract_number in content
    assert south_loan.contract_number not in content
    assert "Staffing of the risk team" not in content
    assert "data-scoped-agenda" in content
    assert [m.item_count for m in listing.context["page_obj"]] == [1]
    assert hidden.status_code == 404


def test_branch_manager_cannot_record_decision(client, branch_manager, committee_member):
    meeting = make_meeting(committee_member)
    item = services.add_other_item(meeting, committee_member, title="Budget")
    client.force_login(branch_manager)
    url = reverse("monitoring:meeting_item_decision", args=[meeting.pk, item.pk])

    response = client.post(url, {"decision": "noted"})

    assert response.status_code == 403
    item.refresh_from_db()
    assert item.decision == ""


def test_missing_meeting_is_404(client, committee_member):
    client.force_login(committee_member)

    for name in ("meeting_detail", "meeting_edit", "meeting_agenda", "meeting_minutes_pdf"):
        assert client.get(reverse(f"monitoring:{name}", args=[999999])).status_code == 404, name


def test_item_of_other_meeting_is_404(client, committee_member):
    meeting = make_meeting(committee_member)
    other = make_meeting(committee_member, title="Other")
    item = services.add_other_item(other, committee_member, title="Elsewhere")
    client.force_login(committee_member)

    response = client.get(
        reverse("monitoring:meeting_item_decision", args=[meeting.pk, item.pk]), **HTMX
    )

    assert response.status_code == 404


# ---- Pages -------------------------------------------------------------------


def test_meeting_list_splits_upcoming_and_past(client, committee_member):
    today = timezone.localdate()
    make_meeting(committee_member, title="Next week", held_on=today + timedelta(days=7))
    make_meeting(committee_member, title="Last month", held_on=today - timedelta(days=30))
    held = make_meeting(committee_member, title="Yesterday", held_on=today - timedelta(days=1))
    services.mark_held(held, committee_member)
    client.force_login(committee_member)

    response = client.get(reverse("monitoring:meeting_list"))
    filtered = client.get(reverse("monitoring:meeting_list"), {"status": "held"})

    assert [m.title for m in response.context["upcoming"]] == ["Next week"]
    assert [m.title for m in response.context["page_obj"]] == ["Yesterday", "Last month"]
    assert filtered.context["upcoming"] == []
    assert [m.title for m in filtered.context["page_obj"]] == ["Yesterday"]


def test_meeting_list_filters_dates(client, committee_member):
    make_meeting(committee_member, title="January", held_on=date(2024, 1, 10))
    make_meeting(committee_member, title="February", held_on=date(2024, 2, 10))
    client.force_login(committee_member)

    response = client.get(
        reverse("monitoring:meeting_list"), {"date_from": "2024-02-01", "date_to": "2024-02-29"}
    )
    reversed_dates = client.get(
        reverse("monitoring:meeting_list"), {"date_from": "2024-03-01", "date_to": "2024-02-01"}
    )

    assert [m.title for m in response.context["page_obj"]] == ["February"]
    assert list(reversed_dates.context["page_obj"]) == []


def test_agenda_builder_adds_ticked(client, committee_member, book):
    meeting = make_meeting(committee_member)
    client.force_login(committee_member)
    url = reverse("monitoring:meeting_agenda", args=[meeting.pk])

    page = client.get(url)
    response = client.post(
        url, {"warning": [book["warnings"][1].pk], "loan": [book["loans"][1].pk]}
    )

    assert page.status_code == 200
    assert page.context["proposals"].paginator.count == 2
    assert page.context["warnings"].paginator.count == 3
    assert page.context["loans"].paginator.count == 2
    assert response.status_code == 302
    assert kinds(meeting) == ["warning", "non_performing"]
    after = client.get(url)
    assert after.context["warnings"].paginator.count == 2
    assert after.context["loans"].paginator.count == 1


def test_agenda_builder_builds_with_caps(client, committee_member, book):
    meeting = make_meeting(committee_member)
    client.force_login(committee_member)

    response = client.post(
        reverse("monitoring:meeting_agenda_build", args=[meeting.pk]),
        {"proposals": "0", "warnings": "2", "loans": "1", "branch": ""},
    )

    assert response.status_code == 302
    assert kinds(meeting) == ["warning", "warning", "non_performing"]


def _count_queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def _fill_agenda(meeting, user, count):
    """Add `count` items of the three sources, every proposal with two votes."""
    members = [UserFactory(roles=["Committee member"]) for _ in range(2)]
    proposals, warnings, loans = [], [], []
    for index in range(count):
        if index % 3 == 0:
            proposal = make_proposal()
            for member in members:
                vote(proposal, member)
            proposals.append(proposal.pk)
        elif index % 3 == 1:
            warnings.append(EarlyWarningFactory().pk)
        else:
            loans.append(make_npl_loan().pk)
    services.add_agenda_items(
        meeting, user, proposal_ids=proposals, warning_ids=warnings, loan_ids=loans
    )


def test_meeting_page_queries_flat(client, committee_member):
    few = make_meeting(committee_member, attendees=[committee_member])
    many = make_meeting(committee_member, title="Many", attendees=[committee_member])
    _fill_agenda(few, committee_member, 3)
    _fill_agenda(many, committee_member, 30)
    client.force_login(committee_member)

    few_queries = _count_queries(client, reverse("monitoring:meeting_detail", args=[few.pk]))
    many_queries = _count_queries(client, reverse("monitoring:meeting_detail", args=[many.pk]))

    assert many.items.count() == 30
    assert few_queries == many_queries


def test_agenda_builder_queries_flat(client, committee_member):
    meeting = make_meeting(committee_member)
    client.force_login(committee_member)
    url = reverse("monitoring:meeting_agenda", args=[meeting.pk])
    for _ in range(3):
        make_proposal()
        EarlyWarningFactory()
        make_npl_loan()
    few_queries = _count_queries(client, url)
    for _ in range(20):
        make_proposal()
        EarlyWarningFactory()
        make_npl_loan()

    many_queries = _count_queries(client, url)

    assert few_queries == many_queries


# ---- Minutes as PDF ----------------------------------------------------------


def test_minutes_filename():
    meeting = ReviewMeeting(pk=7, title="March review: NPLs & warnings", held_on=date(2024, 3, 5))

    assert minutes_filename(meeting) == "minutes-2024-03-05-march-review-npls-warnings.pdf"


def test_fetcher_refuses_network_and_outside_files():
    fetcher = LocalOnlyFetcher()

    for url in ("http://127.0.0.1:9/style.css", "https://example.org/a.png", "file:///etc/passwd"):
        with pytest.raises(ValueError, match="only static files"):
            fetcher.fetch(url)


def test_minutes_pdf_renders(client, committee_member, risk_manager, closed_meeting, tmp_path):
    proposal_item = closed_meeting.items.get(kind="proposal")
    vote(proposal_item.proposal, risk_manager, comment="Arrears confirmed by the branch.")
    closed_meeting.attendees.set([committee_member, risk_manager])
    client.force_login(committee_member)

    response = client.get(reverse("monitoring:meeting_minutes_pdf", args=[closed_meeting.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == (
        'attachment; filename="minutes-2024-03-05-march-portfolio-review.pdf"'
    )
    assert response.content.startswith(b"%PDF")
    if shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None:
        pytest.skip("poppler-utils (pdftotext, pdftoppm) is not installed")
    pdf_path = tmp_path / "minutes.pdf"
    pdf_path.write_bytes(response.content)
    text = _pdf_text(pdf_path)
    assert "March portfolio review" in text
    assert "Head office, room 4" in text
    assert "Minutes closed" in text
    assert "Arrears confirmed by the branch." in text
    assert "Postloan" in text
    assert "Page 1 / 1" in text
    assert _first_page_png(pdf_path).stat().st_size > 0


def _pdf_text(pdf_path: Path) -> str:
    command = ["pdftotext", "-layout", str(pdf_path), "-"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def _first_page_png(pdf_path: Path) -> Path:
    """Write the PDF's first page as test-artifacts/minutes/closed-meeting-page-1.png."""
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    target = ARTIFACT_DIR / "closed-meeting-page-1"
    command = ["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile"]
    subprocess.run([*command, str(pdf_path), str(target)], check=True)
    return target.with_suffix(".png")


def test_minutes_pdf_uses_bank_name(client, committee_member, settings):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    settings.POSTLOAN_BANK_NAME = "Example Savings Bank"
    meeting = make_meeting(committee_member)
    client.force_login(committee_member)

    response = client.get(reverse("monitoring:meeting_minutes_pdf", args=[meeting.pk]))

    command = ["pdftotext", "-", "-"]
    text = subprocess.run(command, input=response.content, check=True, capture_output=True)
    text = text.stdout.decode()
    assert "Example Savings Bank" in text
    assert "Draft" in text


def test_officer_minutes_list_branch_items(client, officer, branch_north, committee_member):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    north_loan = make_npl_loan(borrower__branch=branch_north)
    south_loan = make_npl_loan(borrower__branch=BranchFactory(code="SOUTH"))
    meeting = make_meeting(committee_member)
    services.add_agenda_items(meeting, committee_member, loan_ids=[north_loan.pk, south_loan.pk])
    client.force_login(officer)

    response = client.get(reverse("monitoring:meeting_minutes_pdf", args=[meeting.pk]))

    command = ["pdftotext", "-", "-"]
    text = subprocess.run(command, input=response.content, check=True, capture_output=True)
    text = text.stdout.decode()
    assert north_loan.contract_number in text
    assert south_loan.contract_number not in text
    assert "only the agenda items about loans of your branches" in text
