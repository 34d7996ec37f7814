"""An inspection in a real browser: filled in, returned with a comment, fixed and approved."""

from __future__ import annotations

import re
import struct
import zlib
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.utils import timezone
from playwright.sync_api import Dialog, Locator, Page, expect

from loans.models import Document
from monitoring.models import (
    ChecklistItem,
    Inspection,
    InspectionKind,
    InspectionStatus,
    JobRun,
    JobStatus,
)
from tests.factories import (
    BorrowerFactory,
    InspectionFactory,
    LoanFactory,
    PostLoanPlanFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AS_OF = date(2023, 7, 31)
PLACE = "Aster Tools workshop, 12 Mill Road"
FINDINGS = "Two shifts running. The second press was sold in June."
COLLATERAL_NOTE = "The pledged press (serial 4471) was sold to a dealer in June."
RETURN_COMMENT = "Name the dealer and attach the sale contract."
FIXED_FINDINGS = FINDINGS + " Sold to Nordic Machines AB; contract attached."


def _png(width: int = 48, height: int = 32) -> bytes:
    """Return a real PNG: a blue-to-green gradient, 8-bit RGB, one IDAT chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((20, 4 * y + 60, 5 * x + 10)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _pdf(text: str) -> bytes:
    """Return a one-page PDF 1.4 showing `text`, with a correct cross-reference table."""
    stream = f"BT /F1 14 Tf 72 720 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    output = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(output))
        output += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(output)
    output += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    output += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    output += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(output)


@pytest.fixture
def staff(officer, branch_manager):
    for user, first_name, last_name in (
        (officer, "Omar", "Haddad"),
        (branch_manager, "Maria", "Keller"),
    ):
        user.first_name = first_name
        user.last_name = last_name
        user.save(update_fields=["first_name", "last_name"])
    return SimpleNamespace(officer=officer, manager=branch_manager)


@pytest.fixture
def tasks(branch_north, staff):
    """A business date of AS_OF and two North inspections of Omar Haddad.

    NORTH-1 Aster Tools: routine inspection due 2023-08-03 (due this week).
    NORTH-2 Birch Bakery: first inspection due 2023-07-20 (11 days overdue).
    """
    JobRun.objects.create(as_of=AS_OF, status=JobStatus.COMPLETED, finished_at=timezone.now())

    def inspection(contract: str, name: str, kind: str, due: date) -> Inspection:
        loan = LoanFactory(
            contract_number=contract,
            borrower=BorrowerFactory(branch=branch_north, legal_name=name),
            officer=staff.officer,
        )
        return InspectionFactory(loan=loan, kind=kind, due_date=due)

    return SimpleNamespace(
        aster=inspection("NORTH-1", "Aster Tools Ltd", InspectionKind.ROUTINE, date(2023, 8, 3)),
        birch=inspection("NORTH-2", "Birch Bakery Ltd", InspectionKind.FIRST, date(2023, 7, 20)),
    )


# ---- Helpers ----------------------------------------------------------------


def _accept_dialogs(page: Page) -> list[str]:
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return messages


def _log_out(page: Page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state()


def _tab(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Task buckets").get_by_role(
        "link", name=re.compile(rf"^{name} \d+$")
    )


def _column(page: Page, header: str) -> Locator:
    headers = [text.strip() for text in page.locator("main table thead th").all_inner_texts()]
    return page.locator(f"main table tbody tr td:nth-child({headers.index(header) + 1})")


def _item(page: Page, item: ChecklistItem) -> Locator:
    return page.get_by_role("group", name=str(item.label), exact=True)


def _documents(page: Page) -> Locator:
    return page.locator("section[id^=documents-inspection-]")


def _upload(page: Page, title: str, category: str, path: Path) -> None:
    panel = _documents(page)
    panel.get_by_label("Title").fill(title)
    panel.get_by_label("Category").select_option(label=category)
    panel.get_by_label("File").set_input_files(str(path))
    panel.get_by_role("button", name="Upload").click()
    expect(panel.get_by_role("status")).to_contain_text(f'Version 1 of "{title}" stored.')


def _review(page: Page) -> Locator:
    return page.locator("#inspection-review")


# ---- The flow ---------------------------------------------------------------


def test_inspection_submit_return_approve(
    page, live_server, log_in, screenshot, tasks, tmp_path, settings
):
    # A file store of this test alone, because ids start again in every test database.
    settings.MEDIA_ROOT = tmp_path / "media"
    dialogs = _accept_dialogs(page)
    photo = tmp_path / "press-bay.png"
    photo.write_bytes(_png())
    contract = tmp_path / "stock-list.pdf"
    contract.write_bytes(_pdf("Stock list 2023-07-28"))

    # The officer opens the due inspection from My tasks.
    log_in("officer")
    page.get_by_role("navigation", name="Main navigation").get_by_role(
        "link", name="My tasks"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My tasks")
    expect(_tab(page, "Overdue")).to_have_attribute("aria-current", "page")
    expect(page.locator('[data-count="overdue"]')).to_have_text("1")
    expect(page.locator('[data-count="due_soon"]')).to_have_text("1")
    expect(_column(page, "Days overdue")).to_have_text(["11"])
    _tab(page, "Due this week").click()
    expect(_column(page, "Contract")).to_have_text(["NORTH-1"])
    expect(_column(page, "Borrower")).to_have_text(["Aster Tools Ltd"])
    expect(_column(page, "Due date")).to_have_text(["2023-08-03"])
    screenshot("officer-my-tasks")
    page.get_by_role("link", name="Routine inspection").click()

    expect(page.get_by_role("heading", level=1)).to_contain_text(
        "Routine inspection of loan NORTH-1"
    )
    expect(page.locator("#inspection-status")).to_have_text("Scheduled")

    # Photo and PDF go to the inspection's documents panel.
    _upload(page, "Press bay", "Photo", photo)
    _upload(page, "Stock list", "Other", contract)

    # The report, with one answer of no whose comment is still missing.
    page.get_by_label("Inspection date").fill("2023-07-28")
    page.get_by_label("Place").fill(PLACE)
    page.get_by_label("People met").fill("Anna Berg (director), Piotr Nowak (foreman)")
    for item in ChecklistItem:
        answer = "No" if item == ChecklistItem.COLLATERAL else "Yes"
        _item(page, item).get_by_label(answer, exact=True).check()
    page.get_by_label("Findings").fill(FINDINGS)
    page.get_by_label("Suggested class").select_option(label="Special mention")
    page.get_by_label("Risk opinion").fill("Collateral cover fell; watch the next two payments.")
    page.get_by_role("button", name="Submit").click()

    errors = page.locator("#inspection-errors")
    expect(errors).to_be_focused()
    expect(errors.locator("li")).to_have_text(
        ["Collateral present and in condition: the answer is no, so explain it in the comment."]
    )
    collateral = _item(page, ChecklistItem.COLLATERAL)
    expect(collateral.get_by_label("Comment")).to_have_attribute("aria-invalid", "true")
    expect(collateral.get_by_label("No", exact=True)).to_be_checked()
    expect(page.get_by_label("Place")).to_have_value(PLACE)
    screenshot("officer-inspection-form-error")

    collateral.get_by_label("Comment").fill(COLLATERAL_NOTE)
    screenshot("officer-inspection-form")
    page.get_by_role("button", name="Submit").click()

    expect(page.locator("main .alert-success")).to_have_text("Inspection submitted for review.")
    expect(page.locator("#inspection-status")).to_have_text("Submitted")
    expect(page.locator("[data-adverse]")).to_be_visible()
    expect(page.get_by_role("button", name="Save draft")).to_have_count(0)
    expect(page.locator("#checklist-table tbody tr")).to_have_count(7)
    expect(_documents(page).locator("tbody tr")).to_have_count(2)
    expect(_documents(page)).to_contain_text(
        "This inspection is submitted, so its documents are read-only."
    )
    _log_out(page)

    # The branch manager returns it: first without a comment, then with one.
    log_in("manager")
    page.get_by_role("link", name="My tasks").click()
    _tab(page, "Awaiting my review").click()
    expect(_column(page, "Contract")).to_have_text(["NORTH-1"])
    page.get_by_role("link", name="Routine inspection").click()
    review = _review(page)
    review.get_by_role("button", name="Return with comment").click()
    expect(review.locator("#id_comment_error")).to_have_text(
        "Enter what the officer should change before resubmitting."
    )
    expect(page.locator("#inspection-status")).to_have_text("Submitted")
    review.get_by_label("What should the officer change?").fill(RETURN_COMMENT)
    review.get_by_role("button", name="Return with comment").click()
    expect(review.get_by_role("status")).to_have_text("Inspection returned to the officer.")
    expect(page.locator("#inspection-status")).to_have_text("Returned")
    expect(review.locator("[data-review-comment]")).to_have_text(RETURN_COMMENT)
    expect(page.locator("#inspection-history li").last).to_contain_text(RETURN_COMMENT)
    expect(review).to_be_focused()
    # The panel follows the status, so files may be added again to a returned inspection.
    expect(_documents(page)).not_to_contain_text("read-only")
    expect(_documents(page).get_by_role("button", name="Upload")).to_be_visible()
    screenshot("manager-inspection-returned")
    _log_out(page)

    # The officer fixes the findings and submits again.
    log_in("officer")
    page.get_by_role("link", name="My tasks").click()
    expect(page.locator('[data-count="returned"]')).to_have_text("1")
    _tab(page, "Returned").click()
    page.get_by_role("link", name="Routine inspection").click()
    expect(page.locator("[data-returned]")).to_contain_text(RETURN_COMMENT)
    expect(page.get_by_label("Findings")).to_have_value(FINDINGS)
    expect(_item(page, ChecklistItem.COLLATERAL).get_by_label("Comment")).to_have_value(
        COLLATERAL_NOTE
    )
    page.get_by_label("Findings").fill(FIXED_FINDINGS)
    page.get_by_role("button", name="Submit").click()
    expect(page.locator("#inspection-status")).to_have_text("Submitted")
    _log_out(page)

    # The branch manager approves it in place.
    log_in("manager")
    page.goto(f"/monitoring/inspections/{tasks.aster.pk}/")
    _review(page).get_by_role("button", name="Approve").click()
    expect(_review(page).get_by_role("status")).to_have_text("Inspection approved.")
    expect(page.locator("#inspection-status")).to_have_text("Approved")
    expect(_review(page).get_by_role("button")).to_have_count(0)
    expect(_documents(page)).to_contain_text(
        "This inspection is approved, so its documents are read-only."
    )
    expect(page.locator("[data-proposal]")).to_have_text(
        "Proposed to the committee as Special mention: Pending"
    )
    screenshot("manager-inspection-approved")

    page.get_by_role("link", name="Loan page").click()
    history = page.locator("#loan-inspections tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("Approved")
    expect(history.first).to_contain_text("Maria Keller")
    expect(page.locator("#post-loan-plan")).to_have_count(0)
    page.locator("#plan-heading").scroll_into_view_if_needed()
    screenshot("manager-loan-inspections")

    inspection = Inspection.objects.get(pk=tasks.aster.pk)
    assert inspection.status == InspectionStatus.APPROVED
    assert inspection.findings == FIXED_FINDINGS
    assert inspection.adverse is True
    assert inspection.reviewed_by.username == "manager"
    assert inspection.submitted_by.username == "officer"
    assert inspection.checks.get(item=ChecklistItem.COLLATERAL).comment == COLLATERAL_NOTE
    assert inspection.proposals.count() == 1
    documents = Document.objects.filter(inspection=inspection).order_by("title")
    assert [document.title for document in documents] == ["Press bay", "Stock list"]
    assert [document.versions.get().content_type for document in documents] == [
        "image/png",
        "application/pdf",
    ]
    assert (
        dialogs
        == [
            "Submit this inspection for review? It cannot be changed afterwards"
            " unless a manager returns it."
        ]
        * 3
    )


def test_manager_reads_branch_compliance(page, log_in, screenshot, branch_north, staff, tasks):
    """The compliance of North in the third quarter of 2023, as of 2023-07-31.

    Omar Haddad: NORTH-1 still due, NORTH-2 missed, NORTH-3 done on time, NORTH-4 done late.
    """
    for contract, due, inspected_on in (
        ("NORTH-3", date(2023, 7, 10), date(2023, 7, 7)),
        ("NORTH-4", date(2023, 7, 12), date(2023, 7, 14)),
    ):
        loan = LoanFactory(
            contract_number=contract,
            borrower=BorrowerFactory(branch=branch_north),
            officer=staff.officer,
        )
        InspectionFactory(
            loan=loan, due_date=due, status=InspectionStatus.APPROVED, inspected_on=inspected_on
        )
    PostLoanPlanFactory(loan=tasks.aster.loan)

    log_in("manager")
    page.get_by_role("link", name="Compliance").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Inspection compliance")
    expect(page.get_by_label("Due from")).to_have_value("2023-07-01")
    expect(page.get_by_label("Due to")).to_have_value("2023-09-30")
    rows = page.locator("#compliance-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("th, td")).to_have_text(
        ["Omar Haddad", "4", "1", "1", "1", "1", "33.3 %"]
    )
    expect(page.locator("canvas[data-chart-source=compliance-chart]")).to_be_visible()
    screenshot("manager-compliance")

    page.goto(f"/loans/{tasks.aster.loan_id}/")
    expect(page.locator("#post-loan-plan")).to_contain_text("2023-01-16")
    expect(page.get_by_role("button", name="Log a special inspection")).to_have_count(0)
