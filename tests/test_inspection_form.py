"""The inspection form and its review: drafts, submission, maker-checker, proposals, access."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from loans import access
from loans.models import RiskClass
from monitoring.inspections import services
from monitoring.models import (
    ChecklistAnswer,
    ChecklistItem,
    ClassificationProposal,
    Inspection,
    InspectionCheck,
    InspectionKind,
    InspectionPolicy,
    InspectionStatus,
    JobRun,
    JobStatus,
    ProposalSource,
    ProposalStatus,
)

from .factories import BorrowerFactory, InspectionFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 7, 31)
PLACE = "Workshop, 12 Mill Road"
FINDINGS = "The workshop runs two shifts; the stock matches the last statement."
OPINION = "Orders fell by half since May and the main customer left."


@pytest.fixture
def book(branch_north, branch_south, officer):
    """A completed close-of-day run on AS_OF, and one routine inspection in North and South.

    North's loan LN-N is the officer's, normal, disbursed 2023-01-01; its
    inspection is due 2023-08-03. South's loan LN-S has an inspection due the same day.
    """
    JobRun.objects.create(as_of=AS_OF, status=JobStatus.COMPLETED)
    north = LoanFactory(
        contract_number="LN-N",
        borrower=BorrowerFactory(branch=branch_north, legal_name="Aster Tools Ltd"),
        officer=officer,
    )
    south = LoanFactory(
        contract_number="LN-S",
        borrower=BorrowerFactory(branch=branch_south, legal_name="Cedar Freight Ltd"),
    )
    return SimpleNamespace(
        north=north,
        south=south,
        inspection=InspectionFactory(loan=north, due_date=date(2023, 8, 3)),
        south_inspection=InspectionFactory(loan=south, due_date=date(2023, 8, 3)),
    )


def _form_data(action: str = "submit", answers: dict | None = None, **fields) -> dict:
    """Return the POST data of the form: every item "yes" unless `answers` sets another.

    `answers` maps an item to an answer, or to (answer, comment); "" leaves it unanswered.
    """
    data = {
        "action": action,
        "checks-TOTAL_FORMS": "7",
        "checks-INITIAL_FORMS": "0",
        "checks-MIN_NUM_FORMS": "0",
        "checks-MAX_NUM_FORMS": "7",
        "inspected_on": "2023-07-28",
        "place": PLACE,
        "people_met": "Anna Berg (director)",
        "findings": FINDINGS,
        "risk_opinion": "",
        "suggested_class": "",
        **fields,
    }
    answers = answers or {}
    for index, item in enumerate(ChecklistItem):
        value = answers.get(item, ChecklistAnswer.YES)
        answer, comment = value if isinstance(value, tuple) else (value, "")
        data[f"checks-{index}-answer"] = answer
        data[f"checks-{index}-comment"] = comment
    return data


def _detail_url(inspection: Inspection) -> str:
    return reverse("monitoring:inspection_detail", args=[inspection.pk])


def _review_url(inspection: Inspection) -> str:
    return reverse("monitoring:inspection_review", args=[inspection.pk])


def _post(client, user, inspection: Inspection, data: dict):
    client.force_login(user)
    return client.post(_detail_url(inspection), data)


def _submitted(book, officer, **fields) -> Inspection:
    data = {
        "inspected_on": date(2023, 7, 28),
        "place": PLACE,
        "people_met": "",
        "findings": FINDINGS,
        "risk_opinion": "",
        "suggested_class": None,
        **fields,
    }
    checks = {item.value: {"answer": "yes", "comment": ""} for item in ChecklistItem}
    return services.submit(book.inspection, officer, data, checks)


def _errors(response) -> list[str]:
    """Return every error message of the page's form and checklist."""
    form = response.context["form"]
    formset = response.context["formset"]
    messages = [message for errors in form.errors.values() for message in errors]
    for check_form in formset.forms:
        messages += [message for errors in check_form.errors.values() for message in errors]
    return messages


# ---- Draft -------------------------------------------------------------------


def test_draft_keeps_partial_checklist(client, officer, book):
    answers = {item: "" for item in ChecklistItem}
    answers[ChecklistItem.BUSINESS_OPERATING] = ChecklistAnswer.YES
    answers[ChecklistItem.COLLATERAL] = (ChecklistAnswer.NO, "The press is gone.")
    data = _form_data("save", answers, inspected_on="", findings="")

    response = _post(client, officer, book.inspection, data)

    assert response.status_code == 302
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.DRAFT
    assert book.inspection.place == PLACE
    assert book.inspection.inspected_on is None
    stored = dict(book.inspection.checks.values_list("item", "answer"))
    assert stored == {"business_operating": "yes", "collateral": "no"}
    assert book.inspection.history.first().history_change_reason == "Draft saved"
    assert book.inspection.history.first().history_user == officer


def test_draft_removes_cleared_answer(client, officer, book):
    _post(client, officer, book.inspection, _form_data("save"))
    answers = {ChecklistItem.GUARANTOR: ""}

    _post(client, officer, book.inspection, _form_data("save", answers))

    items = set(book.inspection.checks.values_list("item", flat=True))
    assert len(items) == 6
    assert "guarantor" not in items


def test_draft_rejects_no_without_comment(client, officer, book):
    answers = {ChecklistItem.FUND_USE: ChecklistAnswer.NO}

    response = _post(client, officer, book.inspection, _form_data("save", answers))

    assert response.status_code == 200
    assert _errors(response) == [
        "Funds used as agreed: the answer is no, so explain it in the comment."
    ]
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SCHEDULED
    assert not book.inspection.checks.exists()


# ---- Submit ------------------------------------------------------------------


def test_submit_stores_report(client, officer, book):
    response = _post(client, officer, book.inspection, _form_data())

    assert response.status_code == 302
    inspection = Inspection.objects.get(pk=book.inspection.pk)
    assert inspection.status == InspectionStatus.SUBMITTED
    assert inspection.submitted_by == officer
    assert inspection.submitted_at is not None
    assert inspection.inspected_on == date(2023, 7, 28)
    assert inspection.findings == FINDINGS
    assert inspection.adverse is False
    assert inspection.checks.count() == 7
    assert set(inspection.checks.values_list("answer", flat=True)) == {"yes"}
    assert not ClassificationProposal.objects.exists()


def test_submit_names_unanswered_items(client, officer, book):
    answers = {ChecklistItem.FUND_USE: "", ChecklistItem.REPAYMENT_SOURCE: ""}

    response = _post(client, officer, book.inspection, _form_data("submit", answers))

    assert response.status_code == 200
    assert _errors(response) == [
        "Funds used as agreed: choose yes, no or not applicable.",
        "Repayment source intact: choose yes, no or not applicable.",
    ]
    page = response.content.decode()
    assert "The inspection was not submitted." in page
    assert 'href="#id_checks-1-answer_0"' in page
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SCHEDULED


def test_submit_requires_comment_on_no(client, officer, book):
    answers = {ChecklistItem.COLLATERAL: (ChecklistAnswer.NO, "   ")}

    response = _post(client, officer, book.inspection, _form_data("submit", answers))

    assert _errors(response) == [
        "Collateral present and in condition: the answer is no, so explain it in the comment."
    ]
    formset = response.context["formset"]
    assert formset.forms[2].errors == {
        "comment": [
            "Collateral present and in condition: the answer is no, so explain it in the comment."
        ]
    }
    assert 'id="id_checks-2-comment_error"' in response.content.decode()


def test_submit_requires_date_place_findings(client, officer, book):
    data = _form_data("submit", inspected_on="", place="  ", findings="")

    response = _post(client, officer, book.inspection, data)

    form = response.context["form"]
    assert form.errors["inspected_on"] == ["Enter the date of the inspection."]
    assert form.errors["place"] == ["Enter where the inspection took place."]
    assert form.errors["findings"] == ["Enter the findings."]


def test_failed_submit_keeps_input(client, officer, book):
    answers = {ChecklistItem.GUARANTOR: (ChecklistAnswer.NO, "The guarantor sold his shares.")}
    data = _form_data("submit", answers, findings="", people_met="Anna Berg")

    response = _post(client, officer, book.inspection, data)

    page = response.content.decode()
    assert f'value="{PLACE}"' in page
    assert 'value="Anna Berg"' in page
    assert "The guarantor sold his shares." in page
    assert 'value="no" id="id_checks-3-answer_1" checked' in page


@pytest.mark.parametrize(
    ("inspected_on", "message"),
    [
        ("2023-08-01", "The inspection date 2023-08-01 is after the business date 2023-07-31."),
        (
            "2022-12-31",
            "The inspection date 2022-12-31 is before the loan was disbursed on 2023-01-01.",
        ),
    ],
    ids=["after-business-date", "before-disbursement"],
)
def test_submit_rejects_impossible_date(client, officer, book, inspected_on, message):
    response = _post(client, officer, book.inspection, _form_data(inspected_on=inspected_on))

    assert response.context["form"].errors["inspected_on"] == [message]
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SCHEDULED


@pytest.mark.parametrize("inspected_on", ["2023-01-01", "2023-07-31"])
def test_submit_accepts_boundary_dates(client, officer, book, inspected_on):
    response = _post(client, officer, book.inspection, _form_data(inspected_on=inspected_on))

    assert response.status_code == 302
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SUBMITTED
    assert str(book.inspection.inspected_on) == inspected_on


def test_any_branch_officer_may_submit(client, branch_north, book):
    colleague = UserFactory(roles=[access.CREDIT_OFFICER], branches=[branch_north])

    response = _post(client, colleague, book.inspection, _form_data())

    assert response.status_code == 302
    book.inspection.refresh_from_db()
    assert book.inspection.submitted_by == colleague


def test_answer_no_makes_adverse(client, officer, book):
    answers = {ChecklistItem.FUND_USE: (ChecklistAnswer.NO, "Paid a supplier of the owner.")}

    _post(client, officer, book.inspection, _form_data("submit", answers))

    book.inspection.refresh_from_db()
    assert book.inspection.adverse is True
    assert InspectionCheck.objects.get(inspection=book.inspection, item="fund_use").comment == (
        "Paid a supplier of the owner."
    )


def test_worse_class_makes_adverse(client, officer, book):
    data = _form_data(suggested_class=str(RiskClass.SPECIAL_MENTION), risk_opinion=OPINION)

    _post(client, officer, book.inspection, data)

    book.inspection.refresh_from_db()
    assert book.inspection.adverse is True
    assert book.inspection.suggested_class == RiskClass.SPECIAL_MENTION


def test_better_class_is_not_adverse(client, officer, book):
    book.north.risk_class = RiskClass.SUBSTANDARD
    book.north.save()
    data = _form_data(suggested_class=str(RiskClass.SPECIAL_MENTION), risk_opinion=OPINION)

    _post(client, officer, book.inspection, data)

    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SUBMITTED
    assert book.inspection.adverse is False


# ---- Read-only after submission ---------------------------------------------


def test_submitted_page_is_read_only(client, officer, book):
    _submitted(book, officer)
    client.force_login(officer)

    response = client.get(_detail_url(book.inspection))

    page = response.content.decode()
    assert response.context["editing"] is False
    assert "Save draft" not in page
    assert 'name="action" value="submit"' not in page
    assert 'data-field="place">Workshop, 12 Mill Road<' in page


@pytest.mark.parametrize("action", ["save", "submit"])
def test_submitted_inspection_rejects_edits(client, officer, book, action):
    _submitted(book, officer)

    response = _post(client, officer, book.inspection, _form_data(action, place="Elsewhere"))

    assert response.status_code == 403
    book.inspection.refresh_from_db()
    assert book.inspection.place == PLACE
    assert book.inspection.status == InspectionStatus.SUBMITTED


@pytest.mark.parametrize("action", ["save", "submit"])
def test_cancelled_inspection_rejects_edits(client, officer, book, action):
    Inspection.objects.filter(pk=book.inspection.pk).update(status=InspectionStatus.CANCELLED)

    response = _post(client, officer, book.inspection, _form_data(action, place="Elsewhere"))

    assert response.status_code == 403
    assert "This inspection is cancelled and can no longer be changed." in (
        response.content.decode()
    )
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.CANCELLED
    assert book.inspection.place != "Elsewhere"


def test_approved_inspection_rejects_edits(client, officer, branch_manager, book):
    services.approve(_submitted(book, officer), branch_manager)

    response = _post(client, officer, book.inspection, _form_data("save", place="Elsewhere"))

    assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        services.save_draft(book.inspection, officer, {"place": "Elsewhere"}, {})
    book.inspection.refresh_from_db()
    assert book.inspection.place == PLACE


# ---- Review ------------------------------------------------------------------


def test_manager_approves(client, officer, branch_manager, book):
    _submitted(book, officer)
    client.force_login(branch_manager)

    response = client.post(_review_url(book.inspection), {"action": "approve"})

    assert response.status_code == 302
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.APPROVED
    assert book.inspection.reviewed_by == branch_manager
    assert book.inspection.reviewed_at is not None
    assert book.inspection.history.first().history_change_reason == "Approved"


def test_approve_with_htmx_returns_panel(client, officer, branch_manager, book):
    _submitted(book, officer)
    client.force_login(branch_manager)

    response = client.post(
        _review_url(book.inspection), {"action": "approve"}, HTTP_HX_REQUEST="true"
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert 'id="inspection-review"' in page
    assert "Inspection approved." in page
    assert 'id="inspection-status" hx-swap-oob="true"' in page
    assert 'id="inspection-history" aria-labelledby="history-heading" hx-swap-oob="true"' in page


def test_return_requires_comment(client, officer, branch_manager, book):
    _submitted(book, officer)
    client.force_login(branch_manager)

    response = client.post(_review_url(book.inspection), {"action": "return", "comment": "  "})

    assert response.status_code == 200
    assert response.context["return_form"].errors == {
        "comment": ["Enter what the officer should change before resubmitting."]
    }
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SUBMITTED
    with pytest.raises(ValidationError):
        services.return_for_changes(book.inspection, branch_manager, "")


def test_returned_inspection_is_resubmitted(client, officer, branch_manager, book):
    _submitted(book, officer)
    client.force_login(branch_manager)
    client.post(
        _review_url(book.inspection), {"action": "return", "comment": "Add the stock count."}
    )
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.RETURNED
    assert book.inspection.review_comment == "Add the stock count."

    response = _post(
        client, officer, book.inspection, _form_data(findings=FINDINGS + " Stock count: 412 units.")
    )

    assert response.status_code == 302
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SUBMITTED
    assert book.inspection.findings.endswith("Stock count: 412 units.")
    assert book.inspection.reviewed_by is None
    assert book.inspection.review_comment == ""
    page = client.get(_detail_url(book.inspection)).content.decode()
    assert "Returned for changes" in page
    assert "Add the stock count." in page


def test_returned_page_shows_comment_above_form(client, officer, branch_manager, book):
    services.return_for_changes(_submitted(book, officer), branch_manager, "Add the stock count.")
    client.force_login(officer)

    response = client.get(_detail_url(book.inspection))

    assert response.context["editing"] is True
    assert "Returned by manager" in response.content.decode()


def test_submitter_may_not_review(client, branch_north, book):
    both = UserFactory(
        roles=[access.CREDIT_OFFICER, access.BRANCH_MANAGER], branches=[branch_north]
    )
    _submitted(book, both)
    client.force_login(both)

    page = client.get(_detail_url(book.inspection)).content.decode()
    response = client.post(_review_url(book.inspection), {"action": "approve"})

    assert "You submitted this inspection, so another manager must review it." in page
    assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        services.return_for_changes(book.inspection, both, "Fine by me.")
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SUBMITTED


def test_risk_manager_reviews_any_branch(client, risk_manager, branch_south, book):
    south_officer = UserFactory(roles=[access.CREDIT_OFFICER], branches=[branch_south])
    services.submit(
        book.south_inspection,
        south_officer,
        {"inspected_on": AS_OF, "place": PLACE, "findings": FINDINGS},
        {item.value: {"answer": "na"} for item in ChecklistItem},
    )
    client.force_login(risk_manager)

    response = client.post(_review_url(book.south_inspection), {"action": "approve"})

    assert response.status_code == 302
    book.south_inspection.refresh_from_db()
    assert book.south_inspection.status == InspectionStatus.APPROVED


def test_review_of_unsubmitted_inspection_fails(client, branch_manager, book):
    client.force_login(branch_manager)

    response = client.post(_review_url(book.inspection), {"action": "approve"}, follow=True)

    assert "This inspection is scheduled; only a submitted inspection can be reviewed." in (
        response.content.decode()
    )
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SCHEDULED


# ---- Classification proposals -----------------------------------------------


def test_different_class_creates_proposal(client, officer, book):
    data = _form_data(suggested_class=str(RiskClass.SUBSTANDARD), risk_opinion=OPINION)

    _post(client, officer, book.inspection, data)

    proposal = ClassificationProposal.objects.get()
    assert proposal.loan == book.north
    assert proposal.current_class == RiskClass.NORMAL
    assert proposal.proposed_class == RiskClass.SUBSTANDARD
    assert proposal.source == ProposalSource.INSPECTION
    assert proposal.proposed_by == officer
    assert proposal.inspection == book.inspection
    assert proposal.reasons == OPINION
    assert proposal.status == ProposalStatus.PENDING


def test_resubmission_does_not_propose_twice(client, officer, branch_manager, book):
    data = _form_data(suggested_class=str(RiskClass.SUBSTANDARD), risk_opinion=OPINION)
    _post(client, officer, book.inspection, data)
    services.return_for_changes(book.inspection, branch_manager, "Name the customer.")

    _post(client, officer, book.inspection, data)

    assert ClassificationProposal.objects.count() == 1


def test_pending_proposal_of_other_source_is_not_repeated(client, officer, book):
    ClassificationProposal.objects.create(
        loan=book.north,
        current_class=RiskClass.NORMAL,
        proposed_class=RiskClass.SUBSTANDARD,
        source=ProposalSource.MANUAL,
        reasons="Proposed by hand.",
    )
    data = _form_data(suggested_class=str(RiskClass.SUBSTANDARD), risk_opinion=OPINION)

    _post(client, officer, book.inspection, data)

    assert ClassificationProposal.objects.count() == 1


def test_changed_suggestion_withdraws_old_proposal(client, officer, branch_manager, book):
    _post(
        client,
        officer,
        book.inspection,
        _form_data(suggested_class=str(RiskClass.SUBSTANDARD), risk_opinion=OPINION),
    )
    services.return_for_changes(book.inspection, branch_manager, "Substandard is too harsh.")

    _post(
        client,
        officer,
        book.inspection,
        _form_data(suggested_class=str(RiskClass.SPECIAL_MENTION), risk_opinion=OPINION),
    )

    statuses = dict(ClassificationProposal.objects.values_list("proposed_class", "status"))
    assert statuses == {
        RiskClass.SUBSTANDARD: ProposalStatus.WITHDRAWN,
        RiskClass.SPECIAL_MENTION: ProposalStatus.PENDING,
    }


def test_same_class_creates_no_proposal(client, officer, book):
    _post(client, officer, book.inspection, _form_data(suggested_class=str(RiskClass.NORMAL)))

    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SUBMITTED
    assert not ClassificationProposal.objects.exists()


def test_different_class_needs_risk_opinion(client, officer, book):
    data = _form_data(suggested_class=str(RiskClass.DOUBTFUL))

    response = _post(client, officer, book.inspection, data)

    assert response.context["form"].errors["risk_opinion"] == [
        "Explain in the risk opinion why the loan should be doubtful."
    ]
    assert not ClassificationProposal.objects.exists()


# ---- Special inspections ----------------------------------------------------


def test_officer_starts_special_inspection(client, officer, book):
    client.force_login(officer)
    url = reverse("monitoring:inspection_start", args=[book.north.pk])

    first = client.post(url)
    second = client.post(url)

    special = Inspection.objects.get(loan=book.north, kind=InspectionKind.SPECIAL)
    days = InspectionPolicy.current().special_inspection_days
    assert first.url == _detail_url(special)
    assert second.url == _detail_url(special)
    assert special.status == InspectionStatus.SCHEDULED
    assert special.officer == officer
    assert special.branch == book.north.branch
    assert (special.due_date - AS_OF).days == days


def test_special_inspection_after_submitted_one(officer, book):
    first, _created = services.start_inspection(book.north, officer)
    services.submit(
        first,
        officer,
        {"inspected_on": AS_OF, "place": PLACE, "findings": FINDINGS},
        {item.value: {"answer": "yes"} for item in ChecklistItem},
    )

    second, created = services.start_inspection(book.north, officer)

    assert created is True
    assert second.pk != first.pk
    assert (second.due_date - first.due_date).days == 1


def test_loan_page_offers_special_inspection(client, officer, auditor, book):
    client.force_login(officer)
    officer_page = client.get(reverse("loans:loan_detail", args=[book.north.pk]))
    client.force_login(auditor)
    auditor_page = client.get(reverse("loans:loan_detail", args=[book.north.pk]))

    start_url = reverse("monitoring:inspection_start", args=[book.north.pk])
    assert start_url in officer_page.content.decode()
    assert start_url not in auditor_page.content.decode()
    assert "2023-08-03" in auditor_page.content.decode()


# ---- Access ------------------------------------------------------------------


@pytest.mark.parametrize("role", ["officer", "branch_manager"])
def test_other_branch_inspection_is_404(client, request, role, book):
    client.force_login(request.getfixturevalue(role))

    page = client.get(_detail_url(book.south_inspection))
    edit = client.post(_detail_url(book.south_inspection), _form_data())
    review = client.post(_review_url(book.south_inspection), {"action": "approve"})
    start = client.post(reverse("monitoring:inspection_start", args=[book.south.pk]))

    assert page.status_code == 404
    assert edit.status_code == 404
    assert review.status_code == 404
    assert start.status_code == 404
    book.south_inspection.refresh_from_db()
    assert book.south_inspection.status == InspectionStatus.SCHEDULED


@pytest.mark.parametrize("action", ["save", "submit"])
def test_auditor_may_not_edit(client, auditor, book, action):
    response = _post(client, auditor, book.inspection, _form_data(action))

    assert response.status_code == 403
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SCHEDULED
    assert book.inspection.place == ""


@pytest.mark.parametrize("role", ["auditor", "officer", "committee_member"])
def test_role_may_not_review(client, request, officer, book, role):
    _submitted(book, officer)
    client.force_login(request.getfixturevalue(role))

    approve = client.post(_review_url(book.inspection), {"action": "approve"})
    give_back = client.post(_review_url(book.inspection), {"action": "return", "comment": "No."})

    assert approve.status_code == 403
    assert give_back.status_code == 403
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SUBMITTED


def test_manager_may_not_submit(client, branch_manager, book):
    response = _post(client, branch_manager, book.inspection, _form_data())

    assert response.status_code == 403
    book.inspection.refresh_from_db()
    assert book.inspection.status == InspectionStatus.SCHEDULED


@pytest.mark.parametrize("role", ["auditor", "branch_manager", "risk_manager"])
def test_role_may_not_start_inspection(client, request, book, role):
    client.force_login(request.getfixturevalue(role))

    response = client.post(reverse("monitoring:inspection_start", args=[book.north.pk]))

    assert response.status_code == 403
    assert not Inspection.objects.filter(kind=InspectionKind.SPECIAL).exists()


def test_auditor_reads_inspection(client, auditor, officer, book):
    _submitted(book, officer)
    client.force_login(auditor)

    response = client.get(_detail_url(book.inspection))

    page = response.content.decode()
    assert response.status_code == 200
    assert "Approve" not in page
    assert "Waiting for a branch manager or a risk manager to review it." in page
