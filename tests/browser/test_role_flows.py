"""Main flows of each role in a real browser: the figures and actions each role gets."""

from __future__ import annotations

import csv
import re
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import Locator, Page, expect

from loans import services
from loans.models import Loan, RiskClass
from monitoring.tasks import dispatch_close_of_day
from tests.factories import BorrowerFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FIRST_RUN = date(2023, 4, 15)
AS_OF = date(2023, 7, 1)
COMMITTEE_REASON = "Committee decision: freight volumes down"
# Text of a "Loan record history" timestamp, rendered with the "Y-m-d H:i" format.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")


@pytest.fixture
def book(branch_north, branch_south, officer, committee_member, make_scheduled_loan):
    """Five loans in two branches after close-of-day runs on FIRST_RUN and AS_OF.

    North, the officer's branch:
      Aster Tools   12,000.00 disbursed 2023-06-15, current, normal.
      Birch Bakery  12,000.00 disbursed 2023-01-01, never paid: 150 days past due, substandard.
      Clover Print  12,000.00 disbursed 2023-01-01, first three instalments paid on their
                    due dates: 61 days past due, special mention, 9,066.99 outstanding.
    South:
      Cedar Freight 24,000.00 disbursed 2023-06-15, current, special mention by the committee.
      Dune Farms    12,000.00 disbursed 2022-09-01, never paid: 273 days past due, doubtful.
    """

    def scheduled(branch, legal_name: str, disbursed: date, principal: str = "12000.00", **fields):
        borrower = BorrowerFactory(branch=branch, legal_name=legal_name)
        return make_scheduled_loan(
            borrower=borrower, disbursement_date=disbursed, principal=Decimal(principal), **fields
        )

    aster = scheduled(branch_north, "Aster Tools Ltd", date(2023, 6, 15), officer=officer)
    birch = scheduled(branch_north, "Birch Bakery Ltd", date(2023, 1, 1), officer=officer)
    clover = scheduled(branch_north, "Clover Print Ltd", date(2023, 1, 1), officer=officer)
    for instalment in clover.instalments.order_by("due_date")[:3]:
        amount = instalment.principal_due + instalment.interest_due
        reference = f"CLOVER-{instalment.number:02d}"
        services.record_repayment(clover, instalment.due_date, amount, reference)
    cedar = scheduled(branch_south, "Cedar Freight Ltd", date(2023, 6, 15), "24000.00")
    dune = scheduled(branch_south, "Dune Farms Ltd", date(2022, 9, 1))
    _downgrade_by_committee(cedar, committee_member, COMMITTEE_REASON)

    dispatch_close_of_day(FIRST_RUN)
    dispatch_close_of_day(AS_OF)
    return SimpleNamespace(
        aster=aster,
        birch=birch,
        clover=clover,
        cedar=cedar,
        dune=dune,
        north=[aster, birch, clover],
    )


def _downgrade_by_committee(loan: Loan, member, reason: str) -> None:
    """Move the loan to special mention, recording the member and reason in its history.

    NOTE: no service records committee decisions yet, so this saves the loan with
    django-simple-history's _history_user, which SimpleHistoryAdmin.save_model also sets.
    """
    loan.risk_class = RiskClass.SPECIAL_MENTION
    loan._history_user = member
    loan._change_reason = reason
    loan.save(update_fields=["risk_class"])


def _contract_cells(page: Page) -> Locator:
    return page.locator("main table tbody tr td:first-child")


def _column(page: Page, index: int) -> Locator:
    return page.locator(f"main table tbody tr td:nth-child({index})")


def _figure(page: Page, name: str) -> Locator:
    return page.locator(f'[data-figure="{name}"]')


def _text(locator: Locator) -> str:
    """Return the element's visible text with no-break spaces as plain spaces."""
    return locator.inner_text().replace("\xa0", " ").strip()


def _apply_filters(page: Page) -> None:
    """Submit the filter form. The caller's next assertion on the rows waits for the new page."""
    page.get_by_role("button", name="Apply filters").click()


def _reset_filters(page: Page, live_server) -> None:
    page.get_by_role("link", name="Reset").click()
    expect(page).to_have_url(f"{live_server.url}/loans/")


def _assert_read_only(page: Page) -> None:
    """Check that the page offers no way to change data: no POST form, button or admin link."""
    expect(page.locator("main form[method=post]")).to_have_count(0)
    edit_buttons = page.locator("main").get_by_role(
        "button", name=re.compile("edit|save|delete", re.I)
    )
    expect(edit_buttons).to_have_count(0)
    expect(page.locator("a[href^='/admin/']")).to_have_count(0)


# ---- Credit officer ---------------------------------------------------------


def test_credit_officer_works_own_branch(page, live_server, log_in, screenshot, book):
    log_in("officer")

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.locator(".pl-business-date")).to_have_text("Business date 2023-07-01")
    expect(page.locator("main")).to_contain_text("Your branches: North.")
    expect(_figure(page, "loans")).to_have_text("3")
    expect(_figure(page, "balance")).to_have_text("33,066.99")
    assert _text(_figure(page, "npl-ratio")) == "36.29 %"
    screenshot("officer-portfolio")

    page.get_by_role("navigation").get_by_role("link", name="Loans", exact=True).click()
    page.get_by_label("Risk class").select_option(label="Special mention")
    _apply_filters(page)
    expect(_contract_cells(page)).to_have_text([book.clover.contract_number])
    screenshot("officer-loans-special-mention")

    _reset_filters(page, live_server)
    page.get_by_label("Contract or borrower").fill("bakery")
    _apply_filters(page)
    expect(_contract_cells(page)).to_have_text([book.birch.contract_number])
    expect(_column(page, 2)).to_have_text(["Birch Bakery Ltd"])

    _reset_filters(page, live_server)
    page.get_by_role("link", name="DPD", exact=True).click()
    expect(page).to_have_url(re.compile(r"sort=dpd"))
    expect(_column(page, 8)).to_have_text(["0", "61", "150"])
    page.get_by_role("link", name="DPD", exact=True).click()
    expect(page).to_have_url(re.compile(r"sort=-dpd"))
    expect(_contract_cells(page)).to_have_text(
        [book.birch.contract_number, book.clover.contract_number, book.aster.contract_number]
    )
    expect(_column(page, 8)).to_have_text(["150", "61", "0"])
    screenshot("officer-loans-by-dpd")

    page.get_by_role("link", name=book.clover.contract_number).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Loan {book.clover.contract_number} Special mention"
    )
    expect(_figure(page, "dpd")).to_have_text("61")
    expect(_figure(page, "outstanding")).to_have_text("9,066.99")

    schedule = page.get_by_role("table", name="Repayment schedule")
    expect(schedule.locator("tbody tr")).to_have_count(12)
    expect(schedule.locator("tbody tr.table-danger td:nth-child(2)")).to_have_text(
        ["2023-05-01 overdue", "2023-06-01 overdue"]
    )
    expect(schedule.locator("tbody tr td:nth-child(7)")).to_have_text(
        ["2023-02-01", "2023-03-01", "2023-04-01"] + ["—"] * 9
    )

    repayments = page.get_by_role("region", name="Repayments and their allocation")
    expect(repayments.locator("tbody tr.table-light td:nth-child(2)")).to_have_text(
        ["CLOVER-01", "CLOVER-02", "CLOVER-03"]
    )
    expect(repayments.locator("tbody tr.table-light td:nth-child(8)")).to_have_text(
        ["1,032.80", "1,032.80", "1,032.80"]
    )

    active_warnings = page.get_by_role("table", name="Active warnings")
    expect(active_warnings.locator("tbody code")).to_have_count(3)
    assert sorted(active_warnings.locator("tbody code").all_inner_texts()) == [
        "REP_DPD_30",
        "REP_DPD_60",
        "REP_OVERDUE",
    ]
    expect(page.get_by_role("table", name="Resolved and dismissed warnings")).to_contain_text(
        "No past warnings."
    )

    changes = page.get_by_role(
        "table", name="Classification changes recorded by close-of-day runs and committee decisions"
    )
    expect(changes.locator("tbody tr")).to_have_count(1)
    expect(changes.locator("tbody tr td")).to_have_text(
        [
            "2023-07-01",
            "Normal → Special mention",
            "1 → 2",
            "Overdue beyond the technical delay (Days past due 61)",
            "Objective floor (close-of-day run)",
            "No",
        ]
    )
    screenshot("officer-loan-detail")

    response = page.goto(f"/loans/{book.dune.pk}/")
    assert response.status == 404
    expect(page.locator("body")).to_contain_text("belongs to a branch you do not work for")
    assert "Dune Farms" not in page.content()
    screenshot("officer-other-branch-404")

    page.goto("/loans/")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    rows = list(csv.reader(Path(download.path()).read_text(encoding="utf-8").splitlines()))
    assert download.suggested_filename == "loans-2023-07-01.csv"
    assert rows[0][:4] == ["Contract", "Borrower", "Registration number", "Branch"]
    assert [row[0] for row in rows[1:]] == sorted(loan.contract_number for loan in book.north)
    assert {row[3] for row in rows[1:]} == {"North"}


# ---- Risk manager -----------------------------------------------------------


def test_risk_manager_sees_whole_book(page, risk_manager, log_in, screenshot, book):
    log_in("risk")

    expect(page.locator("main")).to_contain_text("Whole book.")
    expect(_figure(page, "loans")).to_have_text("5")
    expect(_figure(page, "balance")).to_have_text("69,066.99")
    assert _text(_figure(page, "npl-ratio")) == "34.75 %"
    expect(page.locator("main")).to_contain_text(
        "NPL balance 24,000.00 (substandard, doubtful and loss)"
    )
    expect(_figure(page, "provisions")).to_have_text("10,352.01")
    screenshot("risk-manager-portfolio")

    page.get_by_role("navigation").get_by_role("link", name="Loans", exact=True).click()
    page.get_by_label("DPD bucket").select_option(label="91–180 days")
    _apply_filters(page)
    expect(_contract_cells(page)).to_have_text([book.birch.contract_number])

    page.get_by_label("DPD bucket").select_option(label="Current")
    _apply_filters(page)
    expect(_contract_cells(page)).to_have_text(
        [book.aster.contract_number, book.cedar.contract_number]
    )
    page.get_by_label("Branch").select_option(label="SOUTH South")
    _apply_filters(page)
    expect(_contract_cells(page)).to_have_text([book.cedar.contract_number])
    expect(_column(page, 3)).to_have_text(["South"])
    screenshot("risk-manager-loans-current-south")

    page.get_by_role("navigation").get_by_role("link", name="Job runs").click()
    expect(_column(page, 1)).to_have_text(["2023-07-01", "2023-04-15"])
    expect(_column(page, 2)).to_have_text(["Completed", "Completed"])
    expect(_column(page, 7)).to_have_text(["5", "3"])
    expect(_column(page, 9)).to_have_text(["3", "2"])

    page.get_by_role("link", name="2023-07-01").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Close-of-day run as of 2023-07-01")
    steps = page.get_by_role("table", name="Rows written by each step, summed over the chunks")
    counts = dict(
        zip(
            steps.locator("tbody td:nth-child(1)").all_inner_texts(),
            steps.locator("tbody td:nth-child(2)").all_inner_texts(),
            strict=True,
        )
    )
    assert counts["positions_written"] == "5"
    assert counts["class_changes"] == "3"
    assert counts["REP_OVERDUE_opened"] == "1"
    assert counts["REP_OVERDUE_refreshed"] == "2"
    expect(page.locator("main")).to_contain_text(
        "5 open loans, outstanding 69,066.99, across the whole book."
    )
    screenshot("risk-manager-job-run")


# ---- Committee member and auditor ------------------------------------------


def _browse_any_branch_read_only(page: Page, book, screenshot, username: str) -> None:
    """Open the portfolio, the loan list and one loan per branch, and check nothing is editable."""
    expect(_figure(page, "loans")).to_have_text("5")
    expect(_figure(page, "balance")).to_have_text("69,066.99")
    _assert_read_only(page)
    screenshot(f"{username}-portfolio")

    page.get_by_role("navigation").get_by_role("link", name="Loans", exact=True).click()
    expect(_column(page, 3)).to_have_text(["North", "North", "North", "South", "South"])
    _assert_read_only(page)

    page.get_by_role("link", name=book.dune.contract_number).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Loan {book.dune.contract_number} Doubtful"
    )
    expect(_figure(page, "dpd")).to_have_text("273")
    expect(page.locator("main button")).to_have_count(0)
    _assert_read_only(page)
    screenshot(f"{username}-loan-detail")

    response = page.goto(f"/loans/{book.birch.pk}/")
    assert response.status == 200
    expect(_figure(page, "dpd")).to_have_text("150")
    _assert_read_only(page)


def test_committee_member_browses_read_only(page, log_in, screenshot, book):
    log_in("committee")

    _browse_any_branch_read_only(page, book, screenshot, "committee")


def test_auditor_sees_who_changed_class(page, auditor, log_in, screenshot, book):
    log_in("auditor")

    _browse_any_branch_read_only(page, book, screenshot, "auditor")
    page.goto(f"/loans/{book.cedar.pk}/")

    history = page.get_by_role(
        "table", name="Changes of class and stage in the loan's change history"
    )
    rows = history.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.locator("td:nth-child(2)")).to_have_text(["system", "committee", "system"])
    expect(rows.locator("td:nth-child(3)")).to_have_text(
        ["Special mention", "Normal → Special mention", "Normal"]
    )
    expect(rows.locator("td:nth-child(4)")).to_have_text(["1 → 2", "1", "1"])
    expect(rows.nth(1).locator("td:nth-child(5)")).to_have_text(COMMITTEE_REASON)
    expect(rows.nth(2).locator("td:nth-child(5)")).to_have_text("Loan created")
    for when in rows.locator("td:nth-child(1)").all_inner_texts():
        assert TIMESTAMP.match(when), when
    screenshot("auditor-class-history")


# ---- Access and sessions ----------------------------------------------------


def test_user_without_role_gets_403(page, live_server, log_in, screenshot):
    UserFactory(username="visitor")

    log_in("visitor")

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.locator("body")).to_contain_text("Your account has no role yet")
    response = page.goto("/loans/")
    assert response.status == 403
    screenshot("no-role-403")


def test_pages_need_login_after_logout(page, live_server, officer, log_in):
    login_then_loans = f"{live_server.url}/accounts/login/?next=/loans/"

    page.goto("/loans/")
    expect(page).to_have_url(login_then_loans)
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Postloan")
    log_in("officer")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    expect(page).to_have_url(f"{live_server.url}/accounts/login/")
    page.goto("/loans/")
    expect(page).to_have_url(login_then_loans)


# ---- Keyboard ---------------------------------------------------------------


def _focused(page: Page) -> str:
    """Return the focused element's id, or its tag and text when it has no id."""
    return page.evaluate(
        "() => { const el = document.activeElement;"
        " return el.id || `${el.tagName.toLowerCase()}:${el.textContent.trim()}`; }"
    )


def test_login_page_keyboard_navigation(page, screenshot):
    page.goto("/accounts/login/")

    # Django's login form sets autofocus on the username, so focus starts there.
    focus_order = [_focused(page)]
    for _press in range(2):
        page.keyboard.press("Tab")
        focus_order.append(_focused(page))
    for _press in range(4):
        page.keyboard.press("Shift+Tab")
    skip_link = page.get_by_role("link", name="Skip to main content")
    expect(skip_link).to_be_focused()
    expect(skip_link).to_be_visible()
    screenshot("login-skip-link-focused")
    page.keyboard.press("Enter")

    assert focus_order == ["id_username", "id_password", "button:Sign in"]
    expect(page.locator("main#content")).to_be_focused()
    expect(page).to_have_url(re.compile(r"#content$"))
