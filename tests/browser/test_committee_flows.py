"""Committee work in a real browser: a proposal, two approvals, voting closed, the audit view."""

from __future__ import annotations

import re
from datetime import date
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from loans import access
from loans import services as loan_services
from loans.models import RiskClass
from monitoring.models import ClassificationProposal, JobRun, JobStatus
from tests.factories import BorrowerFactory, UserFactory

from .conftest import PASSWORD, SCREENSHOT_DIR, TIMEOUT_MS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AS_OF = date(2023, 11, 15)
REASONS = "Arrears repaid on 2023-05-10; every instalment since June paid on its due date."


@pytest.fixture
def committee_book(branch_north, officer, auditor, make_scheduled_loan):
    """A substandard loan of Aster Tools, cured since June 2023, and three committee members."""
    JobRun.objects.create(as_of=AS_OF, status=JobStatus.COMPLETED, finished_at=timezone.now())
    officer.first_name, officer.last_name = "Omar", "Haddad"
    officer.save(update_fields=["first_name", "last_name"])
    members = [
        UserFactory(
            username=username,
            first_name=first,
            last_name=last,
            roles=[access.COMMITTEE_MEMBER],
        )
        for username, first, last in (
            ("alice", "Alice", "Moreau"),
            ("bruno", "Bruno", "Keller"),
            ("chen", "Chen", "Wei"),
        )
    ]
    borrower = BorrowerFactory(branch=branch_north, legal_name="Aster Tools Ltd")
    loan = make_scheduled_loan(
        borrower=borrower,
        officer=officer,
        contract_number="NORTH-7",
        disbursement_date=date(2023, 1, 1),
    )
    for instalment in loan.instalments.order_by("number"):
        if instalment.number <= 4:
            paid_on = date(2023, 5, 10)
        elif instalment.number <= 10:
            paid_on = instalment.due_date
        else:
            break
        loan_services.record_repayment(loan, paid_on, instalment.total_due, f"P{instalment.number}")
    loan.risk_class = RiskClass.SUBSTANDARD
    loan.ifrs9_stage = 3
    loan.save(update_fields=["risk_class", "ifrs9_stage"])
    return SimpleNamespace(loan=loan, officer=officer, members=members, auditor=auditor)


def _page_for(browser: Browser, live_server, username: str) -> Page:
    """Open a new browser context and sign `username` in through the login form."""
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 900}, locale="en-GB"
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page


def _shot(page: Page, name: str) -> None:
    """Save a full-page PNG of the page as test-artifacts/browser/NAME.png."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)


def _vote(page: Page, contract: str, comment: str) -> None:
    page.goto(reverse("monitoring:committee_inbox"))
    row = page.locator("main table tbody tr").filter(has=page.get_by_role("link", name=contract))
    row.get_by_role("link", name="Vote").click()
    page.get_by_label("Approve").check()
    page.get_by_label("Comment").fill(comment)
    page.get_by_role("button", name="Cast my vote").click()
    page.wait_for_load_state()


def test_committee_approves_upgrade(browser, live_server, committee_book):
    loan = committee_book.loan

    # The officer proposes the upgrade from the loan's proposal page.
    officer_page = _page_for(browser, live_server, "officer")
    officer_page.goto(reverse("monitoring:proposal_create", args=[loan.pk]))
    expect(officer_page.get_by_text("Floor", exact=True)).to_be_visible()
    officer_page.get_by_label("Proposed class").select_option(label="Special mention")
    officer_page.get_by_label("Reasons").fill(REASONS)
    officer_page.get_by_label("The debtor's position has improved").check()
    _shot(officer_page, "committee-1-proposal-form")
    officer_page.get_by_role("button", name="Send to the committee").click()
    expect(officer_page.locator("[data-status]")).to_have_text("Pending")
    proposal = ClassificationProposal.objects.get(loan=loan)
    expect(officer_page.locator("#vote-refusal")).to_have_text(
        "Only committee members vote on proposals."
    )

    # Two committee members approve from the inbox.
    alice = _page_for(browser, live_server, "alice")
    alice.goto(reverse("monitoring:committee_inbox"))
    expect(alice.get_by_role("link", name="NORTH-7")).to_be_visible()
    _shot(alice, "committee-2-inbox")
    _vote(alice, "NORTH-7", "Six instalments paid on time; agree with special mention.")
    expect(alice.get_by_role("alert").filter(has_text="Your vote is recorded.")).to_be_visible()
    expect(alice.locator("#vote-count")).to_contain_text("Approvals: 1 · rejections: 0 · quorum: 2")

    bruno = _page_for(browser, live_server, "bruno")
    _vote(bruno, "NORTH-7", "Agreed; keep the monthly inspections for now.")
    expect(bruno.get_by_role("alert")).to_contain_text("it decided the proposal: approved")
    expect(bruno.locator("[data-status]")).to_have_text("Approved")
    expect(bruno.locator("#vote-list li")).to_have_count(2)

    # A third member finds voting closed.
    chen = _page_for(browser, live_server, "chen")
    chen.goto(reverse("monitoring:proposal_detail", args=[proposal.pk]))
    expect(chen.locator("#voting-closed")).to_have_text(
        re.compile(r"Voting closed: the proposal is approved\.")
    )
    expect(chen.get_by_role("button", name="Cast my vote")).to_have_count(0)
    _shot(chen, "committee-3-voting-closed")

    # The auditor sees who changed the class and when in the loan's history.
    auditor = _page_for(browser, live_server, "auditor")
    auditor.goto(reverse("loans:loan_detail", args=[loan.pk]))
    history = auditor.locator("main table").filter(has_text="Who").locator("tbody tr").first
    expect(history).to_contain_text("bruno")
    expect(history).to_contain_text(f"Committee proposal {proposal.pk} approved: alice, bruno")
    expect(history).to_contain_text(re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}"))
    _shot(auditor, "committee-4-auditor-history")

    loan.refresh_from_db()
    assert loan.risk_class == RiskClass.SPECIAL_MENTION
