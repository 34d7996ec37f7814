"""Versioned documents: upload checks, storage, access by role and branch, pages and panel."""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection
from django.http import Http404
from django.template import Context, Template
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loans import access, documents
from loans.documents import add_version, documents_for, get_visible_version
from loans.models import (
    Collateral,
    CollateralKind,
    CollateralPledge,
    Document,
    DocumentCategory,
    DocumentVersion,
)
from monitoring.models import Inspection, InspectionKind, InspectionStatus

from .factories import BorrowerFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

PDF_BYTES = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x00IEND\xaeB`\x82"
)
ELF_BYTES = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56
PE_BYTES = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 52 + b"PE\x00\x00" + b"\x00" * 64
# SHA-256 of KNOWN_BYTES, computed outside the project with
# `printf 'Postloan test document, version 1.\n' | sha256sum`.
KNOWN_BYTES = b"Postloan test document, version 1.\n"
KNOWN_SHA256 = "3fe3ff8f659b4a8c4889f667d17ae9c65bd994d06a18431c4ef1c12371f922a8"


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def office_package(main_part: str, *extra_parts: str) -> bytes:
    """Return a minimal Office Open XML package whose main part is `main_part`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("_rels/.rels", "<Relationships/>")
        package.writestr(main_part, "<document/>")
        for part in extra_parts:
            package.writestr(part, "x")
    return buffer.getvalue()


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def loan(branch_north):
    return LoanFactory(borrower=BorrowerFactory(branch=branch_north), branch=branch_north)


@pytest.fixture
def south_officer(branch_south):
    return UserFactory(
        username="south-officer", roles=[access.CREDIT_OFFICER], branches=[branch_south]
    )


def make_inspection(loan, status: str = InspectionStatus.DRAFT) -> Inspection:
    return Inspection.objects.create(
        loan=loan, kind=InspectionKind.ROUTINE, status=status, due_date=date(2023, 7, 1)
    )


def panel_prefix(kind: str, owner) -> str:
    return f"documents-{kind}-{owner.pk}"


def upload_url(kind: str, owner) -> str:
    return reverse("loans:document_upload", args=[kind, owner.pk])


# ---- Validation --------------------------------------------------------------


def test_pdf_upload_stores_version_one(media_root, officer, loan):
    version = add_version(
        owner=loan,
        uploaded_file=upload("statement.pdf", PDF_BYTES),
        user=officer,
        title="Q1 statement",
        category=DocumentCategory.FINANCIAL_STATEMENT,
    )

    version.refresh_from_db()
    assert version.number == 1
    assert version.document.loan_id == loan.pk
    assert version.document.title == "Q1 statement"
    assert version.document.category == DocumentCategory.FINANCIAL_STATEMENT
    assert version.document.created_by == officer
    assert version.original_name == "statement.pdf"
    assert version.content_type == "application/pdf"
    assert version.size == len(PDF_BYTES)
    assert version.uploaded_by == officer
    assert version.file.name == (
        f"documents/{version.document_id}/1/{hashlib.sha256(PDF_BYTES).hexdigest()[:16]}"
    )
    assert (media_root / version.file.name).read_bytes() == PDF_BYTES
    assert version.history.get().history_user == officer
    assert version.document.history.get().history_user == officer


def test_sha256_matches_known_digest(media_root, officer, loan):
    version = add_version(owner=loan, uploaded_file=upload("note.txt", KNOWN_BYTES), user=officer)

    assert version.sha256 == KNOWN_SHA256
    assert hashlib.sha256(KNOWN_BYTES).hexdigest() == KNOWN_SHA256
    assert version.size == 35
    assert version.content_type == "text/plain"


def test_hash_read_in_chunks(media_root, officer, loan):
    # Larger than Django's 64 KiB chunk, so the digest spans several chunks.
    content = b"%PDF-1.4\n" + bytes(range(256)) * 1024

    version = add_version(owner=loan, uploaded_file=upload("scan.pdf", content), user=officer)

    assert version.sha256 == hashlib.sha256(content).hexdigest()
    assert version.size == len(content)


def test_empty_file_rejected(media_root, officer, loan):
    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("empty.pdf", b""), user=officer)

    assert caught.value.messages == ['"empty.pdf" is empty.']


def test_oversized_file_rejected(media_root, settings, officer, loan):
    settings.POSTLOAN_MAX_UPLOAD_BYTES = 1024 * 1024
    content = b"%PDF-1.4\n" + b"0" * 1_500_000

    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("big.pdf", content), user=officer)

    assert caught.value.messages == ['"big.pdf" is 1.5 MB, larger than the 1 MB limit for uploads.']


def test_upload_at_limit_accepted(media_root, settings, officer, loan):
    settings.POSTLOAN_MAX_UPLOAD_BYTES = len(PDF_BYTES)

    version = add_version(owner=loan, uploaded_file=upload("exact.pdf", PDF_BYTES), user=officer)

    assert version.size == len(PDF_BYTES)


def test_png_named_pdf_rejected(media_root, officer, loan):
    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("invoice.pdf", PNG_BYTES), user=officer)

    message = caught.value.messages[0]
    assert message.startswith('"invoice.pdf" is named as PDF but its content is PNG (image/png).')


@pytest.mark.parametrize(
    ("content", "mime"),
    [(ELF_BYTES, "application/x-executable"), (PE_BYTES, "application/x-msdownload")],
    ids=["elf", "pe"],
)
def test_executable_named_pdf_rejected(media_root, officer, loan, content, mime):
    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("contract.pdf", content), user=officer)

    assert caught.value.messages == [
        f'"contract.pdf" is named as PDF but its content is an executable ({mime}). '
        "Executables and archives are not accepted."
    ]


def test_zip_archive_rejected(media_root, officer, loan):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "a")

    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("bundle.zip", buffer.getvalue()), user=officer)

    assert caught.value.messages == [
        '"bundle.zip" is an archive (application/zip). Executables and archives are not accepted.'
    ]


def test_docx_and_xlsx_accepted(media_root, officer, loan):
    docx = add_version(
        owner=loan,
        uploaded_file=upload("memo.docx", office_package("word/document.xml")),
        user=officer,
    )
    xlsx = add_version(
        owner=loan,
        uploaded_file=upload("cash.xlsx", office_package("xl/workbook.xml")),
        user=officer,
    )

    assert docx.content_type == (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    )
    assert xlsx.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_docx_with_macros_rejected(media_root, officer, loan):
    content = office_package("word/document.xml", "word/vbaProject.bin")

    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("memo.docx", content), user=officer)

    assert caught.value.messages == [
        '"memo.docx" contains macros, which are not accepted. Save it without macros.'
    ]


def test_csv_accepted_as_utf8_text(media_root, officer, loan):
    content = "date,amount\n2024-01-31,1500.00\nZürich,0\n".encode()

    version = add_version(owner=loan, uploaded_file=upload("flows.csv", content), user=officer)

    assert version.content_type == "text/csv"


@pytest.mark.parametrize(
    "content", [b"date,amount\n\x00\x01", "date;Zürich\n".encode("latin-1")], ids=["nul", "latin1"]
)
def test_csv_not_utf8_text_rejected(media_root, officer, loan, content):
    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("flows.csv", content), user=officer)

    assert caught.value.messages == [
        '"flows.csv" is named as CSV but is not UTF-8 text without NUL bytes. '
        "Save it as UTF-8 and upload it again."
    ]


def test_text_with_unknown_extension_rejected(media_root, officer, loan):
    with pytest.raises(ValidationError) as caught:
        add_version(owner=loan, uploaded_file=upload("notes.md", b"# Notes\n"), user=officer)

    assert caught.value.messages == [
        'The type of "notes.md" is not recognised from its content. Accepted types: PDF, JPEG, '
        "PNG, GIF, WEBP, TIFF, HEIC, DOCX, XLSX, CSV, plain text."
    ]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.pdf", b""),
        ("invoice.pdf", PNG_BYTES),
        ("tool.pdf", ELF_BYTES),
        ("setup.pdf", PE_BYTES),
        ("flows.csv", b"a\x00b"),
    ],
)
def test_rejected_upload_writes_nothing(media_root, officer, loan, name, content):
    with pytest.raises(ValidationError):
        add_version(owner=loan, uploaded_file=upload(name, content), user=officer)

    assert Document.objects.count() == 0
    assert DocumentVersion.objects.count() == 0
    assert stored_files(media_root) == []


# ---- Versions ----------------------------------------------------------------


def test_second_version_keeps_first(media_root, officer, loan):
    first = add_version(
        owner=loan,
        uploaded_file=upload("valuation.pdf", PDF_BYTES),
        user=officer,
        title="Valuation",
    )
    second_bytes = PDF_BYTES + b"% revised\n"

    second = add_version(
        owner=loan,
        uploaded_file=upload("valuation-revised.pdf", second_bytes),
        user=officer,
        document=first.document,
    )

    first.refresh_from_db()
    second.refresh_from_db()
    assert [first.number, second.number] == [1, 2]
    assert second.document_id == first.document_id
    assert first.sha256 == hashlib.sha256(PDF_BYTES).hexdigest()
    assert second.sha256 == hashlib.sha256(second_bytes).hexdigest()
    assert first.file.name != second.file.name
    assert (media_root / first.file.name).read_bytes() == PDF_BYTES
    assert (media_root / second.file.name).read_bytes() == second_bytes
    assert Document.objects.count() == 1
    assert list(first.document.versions.values_list("number", flat=True)) == [2, 1]


def test_identical_version_rejected(media_root, officer, loan):
    first = add_version(owner=loan, uploaded_file=upload("deed.pdf", PDF_BYTES), user=officer)

    with pytest.raises(ValidationError) as caught:
        add_version(
            owner=loan,
            uploaded_file=upload("deed-copy.pdf", PDF_BYTES),
            user=officer,
            document=first.document,
        )

    assert caught.value.messages == [
        '"deed-copy.pdf" is identical to version 1; no new version was stored.'
    ]
    assert DocumentVersion.objects.count() == 1
    assert stored_files(media_root) == [media_root / first.file.name]


def test_identical_to_older_version_accepted(media_root, officer, loan):
    first = add_version(owner=loan, uploaded_file=upload("deed.pdf", PDF_BYTES), user=officer)
    add_version(
        owner=loan,
        uploaded_file=upload("deed.pdf", PDF_BYTES + b"%2\n"),
        user=officer,
        document=first.document,
    )

    third = add_version(
        owner=loan,
        uploaded_file=upload("deed.pdf", PDF_BYTES),
        user=officer,
        document=first.document,
    )

    assert third.number == 3
    assert third.sha256 == first.sha256


def test_version_of_other_owners_document_rejected(media_root, officer, loan):
    other_loan = LoanFactory(borrower=loan.borrower, branch=loan.branch)
    first = add_version(owner=other_loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=officer)

    with pytest.raises(ValidationError) as caught:
        add_version(
            owner=loan,
            uploaded_file=upload("b.pdf", PDF_BYTES + b"%\n"),
            user=officer,
            document=first.document,
        )

    assert caught.value.messages == ['The document "a.pdf" belongs to another record.']


def test_existing_stored_file_not_overwritten(media_root, officer, loan):
    first = add_version(owner=loan, uploaded_file=upload("deed.pdf", PDF_BYTES), user=officer)
    second_bytes = PDF_BYTES + b"%2\n"
    occupied_path = (
        f"documents/{first.document_id}/2/{hashlib.sha256(second_bytes).hexdigest()[:16]}"
    )
    default_storage.save(occupied_path, ContentFile(b"left over"))

    with pytest.raises(ValidationError) as caught:
        add_version(
            owner=loan,
            uploaded_file=upload("deed.pdf", second_bytes),
            user=officer,
            document=first.document,
        )

    assert caught.value.messages == [
        f"The file store already holds a file at {occupied_path}, so nothing was stored. Ask an "
        "administrator to check the file store."
    ]
    assert (media_root / occupied_path).read_bytes() == b"left over"
    assert DocumentVersion.objects.count() == 1
    assert len(stored_files(media_root)) == 2


def test_failed_database_write_removes_file(media_root, officer, loan, monkeypatch):
    def fail_to_save(self, *args, **kwargs):
        raise IntegrityError("simulated failure")

    monkeypatch.setattr(DocumentVersion, "save", fail_to_save)

    with pytest.raises(IntegrityError):
        add_version(owner=loan, uploaded_file=upload("deed.pdf", PDF_BYTES), user=officer)

    assert stored_files(media_root) == []
    assert Document.objects.count() == 0


# ---- Permissions in the service ----------------------------------------------


@pytest.mark.parametrize("role_fixture", ["auditor", "committee_member"])
def test_read_only_roles_cannot_upload(media_root, request, loan, role_fixture):
    user = request.getfixturevalue(role_fixture)

    with pytest.raises(PermissionDenied):
        add_version(owner=loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=user)

    assert stored_files(media_root) == []


def test_officer_cannot_upload_outside_branch(media_root, south_officer, loan):
    with pytest.raises(PermissionDenied):
        add_version(owner=loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=south_officer)


@pytest.mark.parametrize(
    "role_fixture", ["officer", "branch_manager", "risk_manager", "administrator"]
)
def test_uploading_roles_can_upload(media_root, request, loan, role_fixture):
    user = request.getfixturevalue(role_fixture)

    version = add_version(owner=loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=user)

    assert version.uploaded_by == user


@pytest.mark.parametrize("status", [InspectionStatus.SUBMITTED, InspectionStatus.APPROVED])
def test_closed_inspection_documents_read_only(media_root, officer, loan, status):
    inspection = make_inspection(loan, InspectionStatus.DRAFT)
    first = add_version(owner=inspection, uploaded_file=upload("a.pdf", PDF_BYTES), user=officer)
    Inspection.objects.filter(pk=inspection.pk).update(status=status)
    inspection.refresh_from_db()

    with pytest.raises(PermissionDenied) as new_document:
        add_version(
            owner=inspection, uploaded_file=upload("b.pdf", PDF_BYTES + b"%\n"), user=officer
        )
    with pytest.raises(PermissionDenied):
        add_version(
            owner=inspection,
            uploaded_file=upload("b.pdf", PDF_BYTES + b"%\n"),
            user=officer,
            document=first.document,
        )

    assert str(new_document.value) == (
        f"This inspection is {status.label.lower()}, so its documents are read-only."
    )
    assert DocumentVersion.objects.count() == 1


def test_inspection_submitted_meanwhile_rejected(media_root, officer, loan):
    inspection = make_inspection(loan, InspectionStatus.DRAFT)
    Inspection.objects.filter(pk=inspection.pk).update(status=InspectionStatus.SUBMITTED)

    # The caller's object still has the status from before the submit.
    with pytest.raises(PermissionDenied):
        add_version(owner=inspection, uploaded_file=upload("a.pdf", PDF_BYTES), user=officer)

    assert Document.objects.count() == 0
    assert stored_files(media_root) == []


# ---- Reads and visibility ----------------------------------------------------


def make_document(owner_field: str, owner, user, versions: int = 2) -> Document:
    """Create a document with versions as rows only, for tests that never read the files."""
    document = Document.objects.create(
        title=f"Document of {owner_field} {owner.pk}", created_by=user, **{owner_field: owner}
    )
    for number in range(1, versions + 1):
        DocumentVersion.objects.create(
            document=document,
            number=number,
            file=f"documents/{document.pk}/{number}/{number:016x}",
            original_name=f"file-{number}.pdf",
            content_type="application/pdf",
            size=1000 * number,
            sha256=f"{number:064x}",
            uploaded_by=user,
        )
    return document


def test_documents_for_lists_versions_newest_first(officer, loan, django_assert_num_queries):
    older = make_document("loan", loan, officer, versions=1)
    newer = make_document("loan", loan, officer, versions=3)
    make_document("borrower", loan.borrower, officer)

    with django_assert_num_queries(2):
        listed = documents_for(loan)
        numbers = [[v.number for v in document.version_list] for document in listed]

    assert [document.pk for document in listed] == [newer.pk, older.pk]
    assert numbers == [[3, 2, 1], [1]]
    assert listed[0].latest_version.number == 3


def pledged_collateral(loan) -> Collateral:
    collateral = Collateral.objects.create(
        kind=CollateralKind.EQUIPMENT,
        description="Press",
        reference=f"COL-{loan.pk}",
        owner_name="Owner",
        ltv_limit=Decimal("0.5"),
    )
    CollateralPledge.objects.create(collateral=collateral, loan=loan)
    return collateral


def test_collateral_documents_follow_pledged_loans(officer, south_officer, loan):
    collateral = pledged_collateral(loan)
    document = make_document("collateral", collateral, officer)
    version = document.versions.get(number=1)

    assert get_visible_version(officer, version.pk) == version
    with pytest.raises(Http404):
        get_visible_version(south_officer, version.pk)


def test_collateral_documents_follow_owner_borrower(officer, south_officer, loan):
    collateral = Collateral.objects.create(
        kind=CollateralKind.VEHICLES,
        description="Van",
        reference="COL-VAN",
        owner_name=loan.borrower.legal_name,
        owner_borrower=loan.borrower,
        ltv_limit=Decimal("0.5"),
    )
    document = make_document("collateral", collateral, officer)

    visible = documents.visible_documents(officer).filter(pk=document.pk).exists()
    hidden = documents.visible_documents(south_officer).filter(pk=document.pk).exists()

    assert visible is True
    assert hidden is False


# ---- Pages: access by branch and role ----------------------------------------


@pytest.fixture
def owners(loan):
    """One owner of each kind in the north branch: a loan, its borrower and an inspection."""
    return {"loan": loan, "borrower": loan.borrower, "inspection": make_inspection(loan)}


@pytest.mark.parametrize("kind", ["loan", "borrower", "inspection"])
def test_other_branch_gets_404(client, officer, south_officer, owners, kind):
    document = make_document(kind, owners[kind], officer)
    version = document.versions.get(number=1)
    client.force_login(south_officer)

    detail = client.get(reverse("loans:document_detail", args=[document.pk]))
    download = client.get(reverse("loans:document_download", args=[version.pk]))
    posted = client.post(upload_url(kind, owners[kind]), {})

    assert detail.status_code == 404
    assert download.status_code == 404
    assert posted.status_code == 404


@pytest.mark.parametrize("kind", ["loan", "borrower", "inspection"])
def test_same_branch_sees_versions(client, officer, owners, kind):
    document = make_document(kind, owners[kind], officer, versions=2)
    client.force_login(officer)

    response = client.get(reverse("loans:document_detail", args=[document.pk]))

    assert response.status_code == 200
    assert [v.number for v in response.context["versions"]] == [2, 1]
    assert f"{2:064x}" in response.content.decode()


def test_unknown_owner_kind_is_404(client, officer, loan):
    client.force_login(officer)

    response = client.post(f"/loans/documents/upload/branch/{loan.pk}/", {})

    assert response.status_code == 404


@pytest.mark.parametrize("role_fixture", ["auditor", "committee_member"])
def test_read_only_roles_download_but_not_upload(
    client, media_root, request, officer, loan, role_fixture
):
    version = add_version(owner=loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=officer)
    client.force_login(request.getfixturevalue(role_fixture))
    prefix = panel_prefix("loan", loan)

    download = client.get(reverse("loans:document_download", args=[version.pk]))
    posted = client.post(
        upload_url("loan", loan),
        {f"{prefix}-category": "other", f"{prefix}-file": upload("b.pdf", PDF_BYTES + b"%\n")},
    )

    assert download.status_code == 200
    assert b"".join(download.streaming_content) == PDF_BYTES
    assert posted.status_code == 403
    assert DocumentVersion.objects.count() == 1


def test_upload_to_submitted_inspection_forbidden(client, media_root, officer, loan):
    inspection = make_inspection(loan, InspectionStatus.SUBMITTED)
    client.force_login(officer)
    prefix = panel_prefix("inspection", inspection)

    response = client.post(
        upload_url("inspection", inspection),
        {f"{prefix}-category": "photo", f"{prefix}-file": upload("site.pdf", PDF_BYTES)},
    )

    assert response.status_code == 403
    assert Document.objects.count() == 0
    assert stored_files(media_root) == []


def test_download_headers(client, media_root, officer, loan):
    version = add_version(
        owner=loan, uploaded_file=upload('Q1 "final"; v2.pdf', PDF_BYTES), user=officer
    )
    client.force_login(officer)

    response = client.get(reverse("loans:document_download", args=[version.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="Q1 final v2.pdf"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Length"] == str(len(PDF_BYTES))
    assert b"".join(response.streaming_content) == PDF_BYTES


def test_text_download_declares_utf8(client, media_root, officer, loan):
    version = add_version(
        owner=loan, uploaded_file=upload("flows.csv", b"a,b\n1,2\n"), user=officer
    )
    client.force_login(officer)

    response = client.get(reverse("loans:document_download", args=[version.pk]))

    assert response["Content-Type"] == "text/csv; charset=utf-8"


def test_media_url_serves_nothing(client, media_root, officer, loan, settings):
    version = add_version(owner=loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=officer)
    client.force_login(officer)

    response = client.get(f"/{settings.MEDIA_URL}{version.file.name}")

    assert response.status_code == 404


# ---- Upload view -------------------------------------------------------------


def test_htmx_upload_returns_panel(client, media_root, officer, loan):
    client.force_login(officer)
    prefix = panel_prefix("loan", loan)

    response = client.post(
        upload_url("loan", loan),
        {
            f"{prefix}-title": "Site photo",
            f"{prefix}-category": "photo",
            f"{prefix}-file": upload("site.png", PNG_BYTES),
        },
        HTTP_HX_REQUEST="true",
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert 'Version 1 of "Site photo" stored.' in html.replace("&quot;", '"')
    assert f'id="{prefix}-body"' in html
    assert Document.objects.get().title == "Site photo"
    assert DocumentVersion.objects.get().content_type == "image/png"


def test_upload_spooled_to_disk_stored(client, media_root, settings, officer, loan):
    # Django writes uploads above this size to a temporary file, which the
    # file system storage moves into place instead of copying.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0
    client.force_login(officer)
    prefix = panel_prefix("loan", loan)
    content = b"%PDF-1.4\n" + bytes(range(256)) * 400

    response = client.post(
        upload_url("loan", loan),
        {f"{prefix}-category": "contract", f"{prefix}-file": upload("deed.pdf", content)},
        HTTP_HX_REQUEST="true",
    )

    version = DocumentVersion.objects.get()
    assert response.status_code == 200
    assert version.sha256 == hashlib.sha256(content).hexdigest()
    assert (media_root / version.file.name).read_bytes() == content


def test_htmx_rejected_upload_keeps_input(client, media_root, officer, loan):
    client.force_login(officer)
    prefix = panel_prefix("loan", loan)

    response = client.post(
        upload_url("loan", loan),
        {
            f"{prefix}-title": "Signed contract",
            f"{prefix}-category": "contract",
            f"{prefix}-file": upload("contract.pdf", PNG_BYTES),
        },
        HTTP_HX_REQUEST="true",
    )

    html = response.content.decode().replace("&quot;", '"')
    form = response.context["form"]
    assert response.status_code == 200
    assert form.errors["file"] == [
        '"contract.pdf" is named as PDF but its content is PNG (image/png). Rename the file to '
        "match its content, or choose the right file."
    ]
    assert 'value="Signed contract"' in html
    assert '<option value="contract" selected>' in html
    assert 'aria-invalid="true"' in html or "is-invalid" in html
    assert "Nothing was stored." in html
    assert Document.objects.count() == 0


def test_htmx_new_version_of_document(client, media_root, officer, loan):
    first = add_version(owner=loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=officer)
    client.force_login(officer)
    prefix = panel_prefix("loan", loan)

    response = client.post(
        upload_url("loan", loan),
        {
            f"{prefix}-document": str(first.document_id),
            f"{prefix}-category": "other",
            f"{prefix}-file": upload("a-v2.pdf", PDF_BYTES + b"%2\n"),
        },
        HTTP_HX_REQUEST="true",
    )

    assert response.status_code == 200
    assert list(first.document.versions.values_list("number", flat=True)) == [2, 1]


def test_plain_upload_redirects_to_next(client, media_root, officer, loan):
    client.force_login(officer)
    prefix = panel_prefix("borrower", loan.borrower)
    page = reverse("loans:borrower_detail", args=[loan.borrower_id])

    response = client.post(
        upload_url("borrower", loan.borrower),
        {
            "next": page,
            f"{prefix}-category": "other",
            f"{prefix}-file": upload("a.pdf", PDF_BYTES),
        },
    )

    assert response.status_code == 302
    assert response["Location"] == page
    assert Document.objects.get().borrower_id == loan.borrower_id


def test_plain_upload_ignores_foreign_next(client, media_root, officer, loan):
    client.force_login(officer)
    prefix = panel_prefix("loan", loan)

    response = client.post(
        upload_url("loan", loan),
        {
            "next": "https://example.org/phish",
            f"{prefix}-category": "other",
            f"{prefix}-file": upload("a.pdf", b""),
        },
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("loans:loan_detail", args=[loan.pk])
    assert Document.objects.count() == 0


# ---- Panel -------------------------------------------------------------------


def render_panel(user, owner) -> str:
    request = RequestFactory().get("/loans/")
    request.user = user
    template = Template("{% load documents %}{% documents_panel owner %}")
    return template.render(Context({"request": request, "owner": owner}))


def test_borrower_page_shows_panel(client, officer, loan):
    make_document("borrower", loan.borrower, officer)
    client.force_login(officer)

    response = client.get(reverse("loans:borrower_detail", args=[loan.borrower_id]))

    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="documents-borrower-{loan.borrower_id}"' in html
    assert 'aria-live="polite"' in html
    assert f'for="id_documents-borrower-{loan.borrower_id}-file"' in html


def test_panel_hides_form_from_auditor(auditor, officer, loan):
    make_document("loan", loan, officer)

    html = render_panel(auditor, loan)

    assert "Download" in html
    assert "<form" not in html
    assert "Your role may read documents but not upload them." in html


def test_panel_empty_outside_branch(south_officer, officer, loan):
    make_document("loan", loan, officer)

    html = render_panel(south_officer, loan)

    assert html.strip() == ""


def test_panel_of_submitted_inspection_has_no_form(officer, loan):
    inspection = make_inspection(loan, InspectionStatus.SUBMITTED)

    html = render_panel(officer, inspection)

    assert "<form" not in html
    assert "This inspection is submitted, so its documents are read-only." in html


def count_panel_queries(user_pk: int, owner) -> int:
    # A fresh user object, so that the role lookup is counted each time.
    user = get_user_model().objects.get(pk=user_pk)
    with CaptureQueriesContext(connection) as queries:
        render_panel(user, owner)
    return len(queries)


@pytest.mark.parametrize("role_fixture", ["officer", "auditor"])
def test_panel_queries_constant(request, officer, loan, role_fixture):
    user = request.getfixturevalue(role_fixture)
    make_document("loan", loan, officer)
    few = count_panel_queries(user.pk, loan)
    for _ in range(9):
        make_document("loan", loan, officer, versions=3)

    many = count_panel_queries(user.pk, loan)

    assert Document.objects.filter(loan=loan).count() == 10
    assert many == few
    assert few <= 5


# ---- Concurrency -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_versions_numbered_apart(role_groups, settings, tmp_path, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("Row locks need PostgreSQL; SQLite serialises writers instead.")
    settings.MEDIA_ROOT = tmp_path / "media"
    branch = LoanFactory().branch
    officer = UserFactory(username="racer", roles=[access.CREDIT_OFFICER], branches=[branch])
    loan = LoanFactory(branch=branch)
    first = add_version(owner=loan, uploaded_file=upload("a.pdf", PDF_BYTES), user=officer)
    store = documents._store
    first_holds_lock = threading.Event()

    def slow_store(version, uploaded_file):
        if not first_holds_lock.is_set():
            first_holds_lock.set()
            # The other upload starts now and must wait for the document's lock.
            time.sleep(0.5)
        return store(version, uploaded_file)

    monkeypatch.setattr(documents, "_store", slow_store)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def upload_version(suffix: bytes) -> None:
        try:
            version = add_version(
                owner=loan,
                uploaded_file=upload("a.pdf", PDF_BYTES + suffix),
                user=officer,
                document=first.document,
            )
            numbers.append(version.number)
        except BaseException as error:  # noqa: BLE001 - reported by the asserts below
            errors.append(error)
        finally:
            connection.close()

    first_thread = threading.Thread(target=upload_version, args=(b"%1\n",))
    first_thread.start()
    assert first_holds_lock.wait(timeout=10)
    second_thread = threading.Thread(target=upload_version, args=(b"%2\n",))
    second_thread.start()
    first_thread.join(timeout=30)
    second_thread.join(timeout=30)

    assert errors == []
    assert sorted(numbers) == [2, 3]
    assert sorted(first.document.versions.values_list("number", flat=True)) == [1, 2, 3]
