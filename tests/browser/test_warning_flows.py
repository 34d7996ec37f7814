"""Early-warning queue and warning page in a real browser: triage, disposal, closing, scope."""

from __future__ import annotations

import re
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Dialog, Locator, Page, expect

from loans import access
from loans.models import RiskClass
from monitoring import services
from monitoring.models import ActionKind, JobRun, JobStatus, WarningAction, WarningStatus
from tests.factories import BorrowerFactory, EarlyWarningFactory, LoanFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AS_OF = date(2023, 7, 31)
# Text of a timeline timestamp, rendered with the "Y-m-d H:i" format.
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")
CONTACT_NOTE = "Called the owner. Payment of the arrears promised by 2023-08-10."
RESOLVE_REASON = "Arrears paid in full on 2023-08-02."
OFFICER_NOTE = "Visited the workshop. The owner expects a large order in August."


@pytest.fixture
def staff(officer, risk_manager):
    """Give the fixture users full names, and add a second risk manager, Rita Moreau."""
    for user, first_name, last_name in (
        (risk_manager, "Rosa", "Lindqvist"),
        (officer, "Omar", "Haddad"),
    ):
        user.first_name = first_name
        user.last_name = last_name
        user.save(update_fields=["first_name", "last_name"])
    colleague = UserFactory(
        username="rita", first_name="Rita", last_name="Moreau", roles=[access.RISK_MANAGER]
    )
    return SimpleNamespace(officer=officer, risk_manager=risk_manager, colleague=colleague)


@pytest.fixture
def warning_book(branch_north, branch_south, staff):
    """Six active warnings on three loans, as of a completed close-of-day run on AS_OF.

    North, the officer's branch:
      NORTH-1 Aster Tools   red REP_DPD_90 first seen 2023-07-01, deadline 2023-07-04 (overdue),
                            orange REP_DPD_30 first seen 2023-07-21.
      NORTH-2 Birch Bakery  red REP_DPD_90 first seen 2023-07-11,
                            yellow REP_OVERDUE first seen 2023-07-31.
    South:
      SOUTH-1 Cedar Freight red REP_DPD_90 first seen 2023-07-21,
                            orange REP_DPD_60 first seen 2023-07-26.
    """
    JobRun.objects.create(as_of=AS_OF, status=JobStatus.COMPLETED, finished_at=timezone.now())

    def loan(contract: str, branch, legal_name: str, officer=None):
        borrower = BorrowerFactory(branch=branch, legal_name=legal_name)
        return LoanFactory(
            contract_number=contract,
            borrower=borrower,
            officer=officer,
            risk_class=RiskClass.SUBSTANDARD,
        )

    aster = loan("NORTH-1", branch_north, "Aster Tools Ltd", staff.officer)
    birch = loan("NORTH-2", branch_north, "Birch Bakery Ltd", staff.officer)
    cedar = loan("SOUTH-1", branch_south, "Cedar Freight Ltd")

    def seen(days_before: int) -> date:
        return AS_OF - timedelta(days=days_before)

    return SimpleNamespace(
        aster=aster,
        birch=birch,
        cedar=cedar,
        aster_red=EarlyWarningFactory(loan=aster, first_seen_on=seen(30), deadline=seen(27)),
        aster_orange=EarlyWarningFactory(
            loan=aster, rule_code="REP_DPD_30", severity="orange", first_seen_on=seen(10)
        ),
        birch_red=EarlyWarningFactory(loan=birch, first_seen_on=seen(20)),
        birch_yellow=EarlyWarningFactory(
            loan=birch, rule_code="REP_OVERDUE", severity="yellow", first_seen_on=seen(0)
        ),
        cedar_red=EarlyWarningFactory(loan=cedar, first_seen_on=seen(10)),
        cedar_orange=EarlyWarningFactory(
            loan=cedar, rule_code="REP_DPD_60", severity="orange", first_seen_on=seen(5)
        ),
    )


@pytest.fixture
def handled_warning(warning_book, staff):
    """Return Aster's red warning after an assignment, a borrower visit and an escalation.

    Rosa Lindqvist assigns it to Omar Haddad, Omar records the visit, and the
    escalation of AS_OF finds its deadline passed and notifies Rosa, Rita and Omar.
    """
    warning = warning_book.aster_red
    services.assign([warning], staff.officer, staff.risk_manager)
    services.record_action(warning, staff.officer, ActionKind.CONTACT_BORROWER, OFFICER_NOTE)
    escalated = services.escalate_overdue(AS_OF)
    assert escalated == 1
    warning.refresh_from_db()
    return warning


# ---- Helpers ----------------------------------------------------------------


def _rows(page: Page) -> Locator:
    return page.locator("main table tbody tr")


def _column(page: Page, header: str) -> Locator:
    """Return the queue's cells under the column headed `header`."""
    headers = [text.strip() for text in page.locator("main table thead th").all_inner_texts()]
    return page.locator(f"main table tbody tr td:nth-child({headers.index(header) + 1})")


def _count(page: Page, severity: str) -> Locator:
    return page.locator(f'[data-count="{severity}"]')


def _open_warning(page: Page, contract: str, rule: str) -> None:
    """Follow the rule link of the queue row for `rule` on the loan `contract`."""
    row = _rows(page).filter(has=page.get_by_role("link", name=contract, exact=True))
    row.get_by_role("link", name=rule, exact=True).click()


def _actions(page: Page) -> Locator:
    return page.locator("#warning-actions")


def _status(page: Page) -> Locator:
    return _actions(page).locator("[data-status]")


def _timeline(page: Page) -> list[dict[str, str]]:
    """Return each timeline entry's kind, assignee, time, performer and note as shown."""
    entries = []
    for item in page.locator("#warning-timeline li").all():
        meta = item.locator(".small.text-body-secondary").inner_text()
        note = item.locator("p")
        assignee = item.locator("div > span:not(.small)")
        entries.append(
            {
                "kind": item.locator("strong").inner_text(),
                "assignee": assignee.inner_text() if assignee.count() else "",
                "when": item.locator("time").inner_text(),
                "who": meta.split("·", 1)[1].strip(),
                "note": note.inner_text() if note.count() else "",
            }
        )
    return entries


def _record_dialogs(page: Page) -> list[str]:
    """Accept every confirm() dialog on the page and return the list of their messages."""
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return messages


def _focused(page: Page) -> str:
    """Return the focused element's id, or its tag and text when it has no id."""
    return page.evaluate(
        "() => { const el = document.activeElement;"
        " return el.id || `${el.tagName.toLowerCase()}:${el.textContent.trim()}`; }"
    )


# ---- Risk manager -----------------------------------------------------------


def test_risk_manager_triages_red_warnings(page, live_server, log_in, screenshot, warning_book):
    book = warning_book
    log_in("risk")
    page.get_by_role("navigation").get_by_role("link", name="Warnings").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Early warnings")
    expect(_rows(page)).to_have_count(6)
    page.get_by_label("Severity", exact=True).select_option(label="Red")
    page.get_by_role("button", name="Apply filters").click()

    expect(page).to_have_url(re.compile(r"[?&]severity=red(&|$)"))
    expect(_column(page, "Contract")).to_have_text(["NORTH-1", "NORTH-2", "SOUTH-1"])
    expect(_column(page, "Severity")).to_have_text(["Red", "Red", "Red"])
    expect(_column(page, "Branch")).to_have_text(["North", "North", "South"])
    expect(_column(page, "Age (days)")).to_have_text(["30", "20", "10"])
    expect(_column(page, "Deadline")).to_have_text(
        [re.compile(r"^\s*2023-07-04 \(overdue\)\s*$"), "—", "—"]
    )
    expect(_count(page, "red")).to_have_text("3")
    expect(_count(page, "orange")).to_have_text("2")
    expect(_count(page, "yellow")).to_have_text("1")
    severity_nav = page.get_by_role("navigation", name="Warnings by severity")
    expect(severity_nav.get_by_role("link", name="All")).to_contain_text("6")
    expect(severity_nav.locator("[aria-current=true]")).to_contain_text("Red")

    page.get_by_label("Tick REP_DPD_90 on NORTH-1").check()
    page.get_by_label("Tick REP_DPD_90 on SOUTH-1").check()
    page.get_by_label("Assign the ticked warnings to").select_option(label="Rita Moreau")
    page.get_by_role("button", name="Assign", exact=True).click()

    expect(page.locator("main .alert-success")).to_have_text("2 warnings assigned to Rita Moreau.")
    expect(page).to_have_url(re.compile(r"[?&]severity=red(&|$)"))
    expect(_column(page, "Contract")).to_have_text(["NORTH-1", "NORTH-2", "SOUTH-1"])
    expect(_column(page, "Assignee")).to_have_text(["Rita Moreau", "Unassigned", "Rita Moreau"])
    expect(_column(page, "Status")).to_have_text(["Acknowledged", "Open", "Acknowledged"])
    screenshot("risk-manager-warnings-red")

    _open_warning(page, "NORTH-1", "REP_DPD_90")
    expect(page).to_have_url(f"{live_server.url}/monitoring/warnings/{book.aster_red.pk}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Red Warning REP_DPD_90 on loan NORTH-1"
    )
    expect(_status(page)).to_have_text("Acknowledged")
    assert _timeline(page)[0]["kind"] == "Assigned"
    assert _timeline(page)[0]["assignee"] == "→ Rita Moreau"
    assert _timeline(page)[0]["who"] == "Rosa Lindqvist"

    # Keyboard only: the action list starts on "Contacted the borrower", Tab moves to the
    # note and then to the Record button, and Enter submits the htmx form.
    action = _actions(page).get_by_label("Action", exact=True)
    expect(action).to_have_value(ActionKind.CONTACT_BORROWER)
    action.focus()
    page.keyboard.press("Tab")
    assert _focused(page) == "id_note"
    page.keyboard.type(CONTACT_NOTE)
    page.keyboard.press("Tab")
    assert _focused(page) == "button:Record"
    page.keyboard.press("Enter")

    # The status message exists only in the htmx response. A full page load would show
    # the message above the page header instead.
    expect(_actions(page).get_by_role("status")).to_have_text("Action recorded.")
    expect(page).to_have_url(f"{live_server.url}/monitoring/warnings/{book.aster_red.pk}/")
    expect(_status(page)).to_have_text("In progress")
    # The replaced panel takes the focus back once htmx has settled it, so the
    # keyboard user stays in it.
    expect(page.locator("#warning-actions")).to_be_focused()
    expect(page.locator("#warning-timeline li")).to_have_count(2)
    contact = _timeline(page)[1]
    assert contact["kind"] == "Contacted the borrower"
    assert contact["who"] == "Rosa Lindqvist"
    assert contact["note"] == CONTACT_NOTE
    assert TIMESTAMP.match(contact["when"]), contact["when"]

    _actions(page).get_by_label("Reason", exact=True).fill(RESOLVE_REASON)
    _actions(page).get_by_role("button", name="Resolve").click()

    expect(_actions(page).get_by_role("status")).to_have_text("Warning resolved.")
    expect(_status(page)).to_have_text("Resolved")
    expect(_actions(page).locator("[data-closing-reason]")).to_have_text(RESOLVE_REASON)
    expect(_actions(page)).to_contain_text("This warning is closed and takes no further actions.")
    expect(_actions(page).locator("form")).to_have_count(0)
    expect(page.locator("#warning-timeline li")).to_have_count(3)
    resolved = _timeline(page)[2]
    assert resolved["kind"] == "Resolved"
    assert resolved["who"] == "Rosa Lindqvist"
    assert resolved["note"] == RESOLVE_REASON
    screenshot("risk-manager-warning-resolved")

    page.get_by_role("link", name="Warning queue").click()
    expect(_count(page, "red")).to_have_text("2")
    expect(_column(page, "Contract")).to_have_text(
        ["NORTH-2", "SOUTH-1", "NORTH-1", "SOUTH-1", "NORTH-2"]
    )
    _open_warning(page, "NORTH-2", "REP_DPD_90")
    dialogs = _record_dialogs(page)
    reason = _actions(page).get_by_label("Reason", exact=True)

    # An empty reason fails the browser's required check, so nothing is posted.
    _actions(page).get_by_role("button", name="Dismiss").click()
    assert reason.evaluate("field => field.validity.valueMissing") is True
    assert reason.evaluate("field => field.validationMessage") == "Please fill out this field."
    assert dialogs == []
    expect(_status(page)).to_have_text("Open")

    # Blanks pass the browser's check, but the server strips them and rejects the reason.
    reason.fill("   ")
    _actions(page).get_by_role("button", name="Dismiss").click()

    expect(_actions(page).locator("#id_reason_error")).to_have_text(
        "Enter the reason for dismissing the warning."
    )
    expect(reason).to_have_attribute("aria-invalid", "true")
    assert dialogs == ["Dismiss this warning as needing no action?"]
    expect(_status(page)).to_have_text("Open")
    expect(page.locator("#warning-timeline li")).to_have_count(0)
    screenshot("risk-manager-dismiss-without-reason")
    book.birch_red.refresh_from_db()
    assert book.birch_red.status == WarningStatus.OPEN
    assert book.birch_red.closing_reason == ""


# ---- Credit officer ---------------------------------------------------------


def test_officer_sees_own_branch_warnings(page, log_in, screenshot, warning_book):
    log_in("officer")
    page.get_by_role("navigation").get_by_role("link", name="Warnings").click()

    expect(_column(page, "Contract")).to_have_text(["NORTH-1", "NORTH-2", "NORTH-1", "NORTH-2"])
    expect(_column(page, "Rule").locator("code")).to_have_text(
        ["REP_DPD_90", "REP_DPD_90", "REP_DPD_30", "REP_OVERDUE"]
    )
    expect(_column(page, "Branch")).to_have_text(["North"] * 4)
    expect(_count(page, "red")).to_have_text("2")
    expect(_count(page, "orange")).to_have_text("1")
    expect(_count(page, "yellow")).to_have_text("1")
    expect(page.locator("main")).not_to_contain_text("SOUTH-1")
    expect(page.locator("main")).not_to_contain_text("Cedar Freight")
    expect(page.locator("#bulk-assign")).to_have_count(0)
    expect(page.locator("main table input[type=checkbox]")).to_have_count(0)
    branch_options = page.get_by_label("Branch", exact=True).locator("option").all_inner_texts()
    assert [option.strip() for option in branch_options] == ["All branches", "NORTH North"]
    screenshot("officer-warnings-queue")

    response = page.goto(f"/monitoring/warnings/{warning_book.cedar_red.pk}/")

    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.locator("main")).to_contain_text(
        "There is no such page, or it belongs to a branch you do not work for."
    )
    assert "SOUTH-1" not in page.content()
    assert "Cedar Freight" not in page.content()


# ---- Auditor ----------------------------------------------------------------


def test_auditor_reads_timeline_only(
    page, live_server, auditor, log_in, screenshot, handled_warning
):
    log_in("auditor")
    page.get_by_role("navigation").get_by_role("link", name="Warnings").click()
    expect(page.locator("#bulk-assign")).to_have_count(0)
    _open_warning(page, "NORTH-1", "REP_DPD_90")

    expect(page).to_have_url(f"{live_server.url}/monitoring/warnings/{handled_warning.pk}/")
    expect(_status(page)).to_have_text("In progress")
    expect(_actions(page)).to_contain_text("2023-07-04 (overdue)")
    expect(_actions(page)).to_contain_text("Your role may read this warning but not act on it.")
    expect(page.locator("main form")).to_have_count(0)
    expect(page.locator("main").get_by_role("button")).to_have_count(0)
    expect(page.locator("main textarea, main select")).to_have_count(0)

    entries = _timeline(page)
    assert [entry["kind"] for entry in entries] == [
        "Assigned",
        "Contacted the borrower",
        "Escalated",
    ]
    assert [entry["who"] for entry in entries] == [
        "Rosa Lindqvist",
        "Omar Haddad",
        "close-of-day run",
    ]
    assert entries[0]["assignee"] == "→ Omar Haddad"
    assert entries[1]["note"] == OFFICER_NOTE
    # The two risk managers; the branch has no branch manager to notify.
    assert entries[2]["note"] == "Past the deadline of 2023-07-04. 2 users notified."
    for entry in entries:
        assert TIMESTAMP.match(entry["when"]), entry["when"]
    screenshot("auditor-warning-timeline")


@pytest.mark.parametrize(
    "step",
    [
        {"action": "record", "kind": ActionKind.CONTACT_BORROWER, "note": "Called."},
        {"action": "resolve", "reason": "Paid."},
        {"action": "dismiss", "reason": "False alarm."},
        {"action": "acknowledge"},
    ],
    ids=lambda step: step["action"],
)
def test_auditor_post_is_rejected(client, auditor, handled_warning, step):
    client.force_login(auditor)
    url = reverse("monitoring:warning_action", args=[handled_warning.pk])
    actions_before = WarningAction.objects.filter(warning=handled_warning).count()

    response = client.post(url, step)

    assert response.status_code == 403
    handled_warning.refresh_from_db()
    assert handled_warning.status == WarningStatus.IN_PROGRESS
    assert handled_warning.closing_reason == ""
    assert WarningAction.objects.filter(warning=handled_warning).count() == actions_before


def test_auditor_bulk_assign_is_rejected(client, auditor, staff, handled_warning):
    client.force_login(auditor)

    response = client.post(
        reverse("monitoring:warning_bulk_assign"),
        {"bulk-warnings": [handled_warning.pk], "bulk-assignee": staff.colleague.pk},
    )

    assert response.status_code == 403
    handled_warning.refresh_from_db()
    assert handled_warning.assigned_to == staff.officer
