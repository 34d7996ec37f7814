"""Versioned documents: who may see and upload them, upload checks, storage and reads.

A document belongs to exactly one borrower, loan, collateral item or
inspection. Each upload adds a numbered version. Its file is written once
through the storage of `DocumentVersion.file` (the default storage, so a
deployment can switch to object storage) and is never overwritten or deleted
through the product.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import filetype
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from monitoring.models import Inspection, InspectionStatus

from .access import (
    ADMINISTRATOR,
    AUDITOR,
    BRANCH_MANAGER,
    BRANCH_ROLES,
    COMMITTEE_MEMBER,
    CREDIT_OFFICER,
    RISK_MANAGER,
    User,
    has_role,
    sees_whole_book,
    visible_borrowers,
    visible_loans,
)
from .models import (
    Borrower,
    Collateral,
    CollateralPledge,
    Document,
    DocumentCategory,
    DocumentVersion,
    Loan,
)

logger = logging.getLogger(__name__)

Owner = Borrower | Loan | Collateral | Inspection

# Owner models by the name of the Document field that points to them. The
# names are also the owner kinds in document URLs.
OWNER_MODELS: dict[str, type[Owner]] = {
    "borrower": Borrower,
    "loan": Loan,
    "collateral": Collateral,
    "inspection": Inspection,
}
UPLOADER_ROLES = (CREDIT_OFFICER, BRANCH_MANAGER, RISK_MANAGER, ADMINISTRATOR)
# Auditors are read-only everywhere, and committee members decide on what
# others submit, so holding either role rules out uploading.
READ_ONLY_ROLES = (AUDITOR, COMMITTEE_MEMBER)

MEGABYTE = 1024 * 1024
# Bytes that filetype reads to recognise a type (filetype 1.2 reads 8192).
SIGNATURE_BYTES = 8192


# ---- Owners and access -------------------------------------------------------


def owner_kind(owner: Owner) -> str:
    """Return the owner's kind ("borrower", "loan", "collateral" or "inspection")."""
    for kind, model in OWNER_MODELS.items():
        if isinstance(owner, model):
            return kind
    raise TypeError(
        f"Documents belong to a borrower, loan, collateral item or inspection, "
        f"not to a {type(owner).__name__}."
    )


def document_owner(document: Document) -> Owner:
    """Return the borrower, loan, collateral item or inspection that owns the document."""
    for kind in OWNER_MODELS:
        if getattr(document, f"{kind}_id") is not None:
            return getattr(document, kind)
    raise ValueError(f"Document {document.pk} has no owner.")


def visible_collateral(user: User) -> QuerySet[Collateral]:
    """Return the collateral pledged to a loan the user may see, or owned by a visible borrower."""
    collateral = Collateral.objects.all()
    if sees_whole_book(user):
        return collateral
    if not has_role(user, *BRANCH_ROLES):
        return collateral.none()
    pledged_in_branch = CollateralPledge.objects.filter(
        collateral=OuterRef("pk"), loan__branch__staff=user
    )
    return collateral.filter(
        Exists(pledged_in_branch) | Q(owner_borrower__in=visible_borrowers(user))
    )


def visible_documents(user: User) -> QuerySet[Document]:
    """Return the documents whose owner the user may see."""
    documents = Document.objects.all()
    if sees_whole_book(user):
        return documents
    if not has_role(user, *BRANCH_ROLES):
        return documents.none()
    loans = visible_loans(user)
    return documents.filter(
        Q(borrower__in=visible_borrowers(user))
        | Q(loan__in=loans)
        | Q(inspection__loan__in=loans)
        | Q(collateral__in=visible_collateral(user))
    )


def may_see_owner(user: User, owner: Owner) -> bool:
    if sees_whole_book(user):
        return True
    if isinstance(owner, Inspection):
        return visible_loans(user).filter(pk=owner.loan_id).exists()
    visible = {
        "borrower": visible_borrowers,
        "loan": visible_loans,
        "collateral": visible_collateral,
    }[owner_kind(owner)]
    return visible(user).filter(pk=owner.pk).exists()


def get_visible_owner(user: User, kind: str, pk: int) -> Owner:
    """Return the owner of that kind and id if the user may see it, else raise Http404."""
    model = OWNER_MODELS.get(kind)
    owner = model.objects.filter(pk=pk).first() if model else None
    if owner is None or not may_see_owner(user, owner):
        raise Http404(_("No such record."))
    return owner


def upload_denied_reason(user: User, owner: Owner) -> str:
    """Return why the user may not upload documents to the owner, or "" when they may."""
    if not user.is_authenticated:
        return _("Log in to upload documents.")
    if has_role(user, *READ_ONLY_ROLES) or not (
        user.is_superuser or has_role(user, *UPLOADER_ROLES)
    ):
        return _("Your role may read documents but not upload them.")
    if not may_see_owner(user, owner):
        return _("This record is outside your branches.")
    if isinstance(owner, Inspection) and not owner.is_editable:
        return _("This inspection is %(status)s, so its documents are read-only.") % {
            "status": owner.get_status_display().lower()
        }
    return ""


def can_upload(user: User, owner: Owner) -> bool:
    return not upload_denied_reason(user, owner)


# ---- Reads -------------------------------------------------------------------


def documents_for(owner: Owner) -> list[Document]:
    """Return the owner's documents, newest first, each with its versions, in two queries.

    Each document gets `version_list` (newest first) and `latest_version`.
    """
    versions = DocumentVersion.objects.select_related("uploaded_by").order_by("-number")
    documents = list(
        Document.objects.filter(**{owner_kind(owner): owner})
        .prefetch_related(Prefetch("versions", queryset=versions, to_attr="version_list"))
        .order_by("-created_at", "-pk")
    )
    for document in documents:
        document.latest_version = document.version_list[0] if document.version_list else None
    return documents


def get_visible_document(user: User, pk: int) -> Document:
    """Return the document with its owner if the user may see the owner, else raise Http404."""
    document = (
        visible_documents(user)
        .select_related("borrower", "loan", "collateral", "inspection__loan", "created_by")
        .filter(pk=pk)
        .first()
    )
    if document is None:
        raise Http404(_("No such document."))
    return document


def get_visible_version(user: User, pk: int) -> DocumentVersion:
    """Return the version if the user may see its document's owner, else raise Http404."""
    version = (
        DocumentVersion.objects.filter(document__in=visible_documents(user), pk=pk)
        .select_related("document", "uploaded_by")
        .first()
    )
    if version is None:
        raise Http404(_("No such document version."))
    return version


# ---- Accepted file types -----------------------------------------------------


@dataclass(frozen=True)
class FileType:
    label: str
    content_type: str
    extensions: tuple[str, ...]


PDF = FileType("PDF", "application/pdf", ("pdf",))
JPEG = FileType("JPEG", "image/jpeg", ("jpg", "jpeg"))
PNG = FileType("PNG", "image/png", ("png",))
GIF = FileType("GIF", "image/gif", ("gif",))
WEBP = FileType("WEBP", "image/webp", ("webp",))
TIFF = FileType("TIFF", "image/tiff", ("tif", "tiff"))
HEIC = FileType("HEIC", "image/heic", ("heic", "heif"))
DOCX = FileType(
    "DOCX",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ("docx",),
)
XLSX = FileType(
    "XLSX", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ("xlsx",)
)
CSV = FileType("CSV", "text/csv", ("csv",))
TEXT = FileType("plain text", "text/plain", ("txt",))

ACCEPTED_TYPES = (PDF, JPEG, PNG, GIF, WEBP, TIFF, HEIC, DOCX, XLSX, CSV, TEXT)
# The accepted types by the MIME type filetype reports. An animated PNG is a PNG.
ACCEPTED_BY_DETECTED_TYPE = {
    **{accepted.content_type: accepted for accepted in (PDF, JPEG, PNG, GIF, WEBP, TIFF, HEIC)},
    "image/apng": PNG,
    DOCX.content_type: DOCX,
    XLSX.content_type: XLSX,
}
# CSV and plain text have no magic number, so the extension names them.
TEXT_BY_EXTENSION = {"csv": CSV, "txt": TEXT}
TYPE_BY_EXTENSION = {ext: accepted for accepted in ACCEPTED_TYPES for ext in accepted.extensions}
# The part that an Office Open XML package of each type contains.
OFFICE_PART_PREFIXES = {DOCX: "word/", XLSX: "xl/"}

EXECUTABLE_TYPES = {
    "application/x-msdownload",
    "application/x-executable",
    "application/x-mach-binary",
    "application/wasm",
    "application/x-shockwave-flash",
    "text/x-shellscript",
}
ARCHIVE_TYPES = {
    "application/zip",
    "application/x-tar",
    "application/x-rar-compressed",
    "application/gzip",
    "application/x-bzip2",
    "application/x-7z-compressed",
    "application/x-xz",
    "application/zstd",
    "application/x-lzip",
    "application/x-lz4",
    "application/x-lzop",
    "application/x-compress",
    "application/x-brotli",
    "application/vnd.ms-cab-compressed",
    "application/x-unix-archive",
    "application/x-deb",
    "application/x-rpm",
    "application/x-google-chrome-extension",
    "application/epub+zip",
}
# Executable signatures that filetype 1.2 does not know: Mach-O (32 and 64 bit,
# both byte orders, and universal binaries) and scripts with an interpreter line.
EXTRA_EXECUTABLE_SIGNATURES = (
    (b"\xfe\xed\xfa\xce", "application/x-mach-binary"),
    (b"\xfe\xed\xfa\xcf", "application/x-mach-binary"),
    (b"\xce\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xcf\xfa\xed\xfe", "application/x-mach-binary"),
    (b"\xca\xfe\xba\xbe", "application/x-mach-binary"),
    (b"#!", "text/x-shellscript"),
)


def accepted_types_text() -> str:
    return ", ".join(accepted.label for accepted in ACCEPTED_TYPES)


def max_upload_bytes() -> int:
    return settings.POSTLOAN_MAX_UPLOAD_BYTES


def format_megabytes(size: int, rounding: str) -> str:
    """Format bytes as MB (1,048,576 bytes) with at most one decimal, rounded as asked."""
    value = (Decimal(size) / MEGABYTE).quantize(Decimal("0.1"), rounding=rounding)
    return f"{value:f}".removesuffix(".0")


# ---- Reading and checking an upload ------------------------------------------


@dataclass(frozen=True)
class UploadFacts:
    """Facts gathered in one pass over the uploaded bytes."""

    size: int
    sha256: str
    head: bytes
    is_utf8_text: bool


def clean_file_name(name: str) -> str:
    """Return the base name of an uploaded file without control characters."""
    base = os.path.basename((name or "").replace("\\", "/"))
    return "".join(ch for ch in base if ch.isprintable()).strip()


def _extension(name: str) -> str:
    return os.path.splitext(name)[1].lower().lstrip(".")


def read_upload(uploaded_file: UploadedFile) -> UploadFacts:
    """Read the upload once in chunks: size, SHA-256, first bytes, and whether it is UTF-8 text."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    size = 0
    head = b""
    is_text = True
    for chunk in uploaded_file.chunks():
        size += len(chunk)
        digest.update(chunk)
        if len(head) < SIGNATURE_BYTES:
            head += chunk[: SIGNATURE_BYTES - len(head)]
        if is_text:
            is_text = _still_text(decoder, chunk)
    if is_text:
        is_text = _still_text(decoder, b"", final=True)
    uploaded_file.seek(0)
    return UploadFacts(size=size, sha256=digest.hexdigest(), head=head, is_utf8_text=is_text)


def _still_text(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> bool:
    if b"\x00" in chunk:
        return False
    try:
        decoder.decode(chunk, final=final)
    except UnicodeDecodeError:
        return False
    return True


def check_size(name: str, size: int) -> None:
    if size == 0:
        raise ValidationError(_('"%(name)s" is empty.') % {"name": name}, code="empty")
    limit = max_upload_bytes()
    if size > limit:
        raise ValidationError(
            _('"%(name)s" is %(size)s MB, larger than the %(limit)s MB limit for uploads.')
            % {
                "name": name,
                "size": format_megabytes(size, ROUND_CEILING),
                "limit": format_megabytes(limit, ROUND_FLOOR),
            },
            code="too_large",
        )


def _detected_type(head: bytes) -> tuple[str, str] | None:
    """Return the MIME type and a short name of the content's type, or None if unknown.

    NOTE: text whose first bytes match a signature, such as a CSV starting with
    "MZ" (a DOS executable), is taken for that type and rejected.
    """
    for signature, mime in EXTRA_EXECUTABLE_SIGNATURES:
        if head.startswith(signature):
            return mime, mime.rsplit("/", 1)[-1]
    kind = filetype.guess(head)
    if kind is None:
        return None
    return kind.mime, kind.extension.upper()


def detect_file_type(name: str, facts: UploadFacts, uploaded_file: UploadedFile) -> FileType:
    """Return the accepted type of the upload, or raise ValidationError naming what was found.

    The type comes from the content. The extension must belong to that type,
    and CSV and plain text, which have no magic number, are accepted only
    under their own extension as UTF-8 without NUL bytes.
    """
    extension = _extension(name)
    expected = TYPE_BY_EXTENSION.get(extension)
    detected = _detected_type(facts.head)
    if detected is None:
        return _text_type(name, extension, expected, facts)

    mime, short_name = detected
    if mime in EXECUTABLE_TYPES or mime in ARCHIVE_TYPES:
        if mime == "application/zip" and expected in OFFICE_PART_PREFIXES:
            _check_office_package(name, expected, uploaded_file)
            return expected
        _reject_executable_or_archive(name, expected, mime)

    accepted = ACCEPTED_BY_DETECTED_TYPE.get(mime)
    if accepted is None:
        raise ValidationError(
            _(
                '"%(name)s" is a %(found)s file (%(mime)s), which is not accepted. Accepted types: '
                "%(accepted)s."
            )
            % {"name": name, "found": short_name, "mime": mime, "accepted": accepted_types_text()},
            code="type_not_accepted",
        )
    if accepted is not expected:
        _reject_mismatch(name, extension, expected, f"{accepted.label} ({mime})")
    if accepted in OFFICE_PART_PREFIXES:
        _check_office_package(name, accepted, uploaded_file)
    return accepted


def _text_type(
    name: str, extension: str, expected: FileType | None, facts: UploadFacts
) -> FileType:
    text_type = TEXT_BY_EXTENSION.get(extension)
    if text_type is None:
        if expected is not None:
            _reject_mismatch(name, extension, expected, _("of no recognised type"))
        raise ValidationError(
            _(
                'The type of "%(name)s" is not recognised from its content. Accepted types: '
                "%(accepted)s."
            )
            % {"name": name, "accepted": accepted_types_text()},
            code="type_not_accepted",
        )
    if not facts.is_utf8_text:
        raise ValidationError(
            _(
                '"%(name)s" is named as %(type)s but is not UTF-8 text without NUL bytes. Save it '
                "as UTF-8 and upload it again."
            )
            % {"name": name, "type": text_type.label},
            code="not_text",
        )
    return text_type


def _reject_executable_or_archive(name: str, expected: FileType | None, mime: str) -> None:
    found_kind = _("an executable") if mime in EXECUTABLE_TYPES else _("an archive")
    if expected is None:
        message = _('"%(name)s" is %(what)s (%(mime)s). Executables and archives are not accepted.')
    else:
        message = _(
            '"%(name)s" is named as %(type)s but its content is %(what)s (%(mime)s). '
            "Executables and archives are not accepted."
        )
    label = expected.label if expected else ""
    raise ValidationError(
        message % {"name": name, "type": label, "what": found_kind, "mime": mime},
        code="forbidden_type",
    )


def _reject_mismatch(name: str, extension: str, expected: FileType | None, found: str) -> None:
    if expected is not None:
        message = _(
            '"%(name)s" is named as %(type)s but its content is %(found)s. Rename the file to '
            "match its content, or choose the right file."
        )
    elif extension:
        message = _(
            '"%(name)s" has the extension ".%(extension)s", but its content is %(found)s. '
            "Rename the file to match its content."
        )
    else:
        message = _(
            '"%(name)s" has no extension, but its content is %(found)s. Add the extension of '
            "its type to the name."
        )
    label = expected.label if expected else ""
    raise ValidationError(
        message % {"name": name, "extension": extension, "type": label, "found": found},
        code="type_mismatch",
    )


def _check_office_package(name: str, accepted: FileType, uploaded_file: UploadedFile) -> None:
    """Raise ValidationError unless the ZIP is an Office Open XML package of that type.

    A package with a VBA project (macros) is rejected too.
    """
    try:
        uploaded_file.seek(0)
        with zipfile.ZipFile(uploaded_file) as package:
            parts = package.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValidationError(
            _(
                '"%(name)s" is not a valid %(type)s file because its ZIP structure cannot be '
                "read (%(error)s)."
            )
            % {"name": name, "type": accepted.label, "error": error},
            code="invalid_office_file",
        ) from error
    finally:
        uploaded_file.seek(0)

    prefix = OFFICE_PART_PREFIXES[accepted]
    if "[Content_Types].xml" not in parts or not any(part.startswith(prefix) for part in parts):
        raise ValidationError(
            _('"%(name)s" is a ZIP archive, not a %(type)s document. Archives are not accepted.')
            % {"name": name, "type": accepted.label},
            code="forbidden_type",
        )
    if any(part.lower().endswith("vbaproject.bin") for part in parts):
        raise ValidationError(
            _('"%(name)s" contains macros, which are not accepted. Save it without macros.')
            % {"name": name},
            code="macros",
        )


# ---- Uploading a version -----------------------------------------------------


def add_version(
    *,
    owner: Owner,
    uploaded_file: UploadedFile,
    user: User,
    title: str = "",
    category: str = DocumentCategory.OTHER,
    document: Document | None = None,
) -> DocumentVersion:
    """Store the upload as a new version of `document`, or as version 1 of a new document.

    Raise PermissionDenied when the user may not upload to the owner, and
    ValidationError, naming the file, when the upload is empty, too large,
    of a type that is not accepted, not the type its extension names, or identical to
    the document's latest version. Nothing is stored then.
    """
    denied_reason = upload_denied_reason(user, owner)
    if denied_reason:
        raise PermissionDenied(denied_reason)
    kind = owner_kind(owner)
    if document is not None and getattr(document, f"{kind}_id") != owner.pk:
        raise ValidationError(
            _('The document "%(title)s" belongs to another record.') % {"title": document.title},
            code="wrong_owner",
        )
    if category not in DocumentCategory.values:
        raise ValidationError(
            _("Invalid category %(value)r. Expected one of: %(choices)s.")
            % {"value": category, "choices": ", ".join(DocumentCategory.values)},
            code="invalid_category",
        )

    name = clean_file_name(uploaded_file.name)
    if not name:
        raise ValidationError(_("The uploaded file has no name."), code="no_name")
    if uploaded_file.size is not None:
        check_size(name, uploaded_file.size)
    facts = read_upload(uploaded_file)
    check_size(name, facts.size)
    file_type = detect_file_type(name, facts, uploaded_file)

    version = DocumentVersion(
        original_name=name,
        content_type=file_type.content_type,
        size=facts.size,
        sha256=facts.sha256,
        uploaded_by=user,
    )
    version._history_user = user
    stored_name = ""
    try:
        with transaction.atomic():
            _lock_editable_inspection(owner)
            if document is None:
                document = _create_document(owner, kind, title or name, category, user)
                version.number = 1
            else:
                version.number = _next_number(document, name, facts.sha256)
            version.document = document
            stored_name = _store(version, uploaded_file)
            version.file = stored_name
            version.save()
    except BaseException:
        if stored_name:
            _remove_orphan(stored_name)
        raise
    # NOTE: a caller's enclosing transaction that rolls back after this
    # returns leaves the stored file behind, because Django has no rollback hook.
    logger.info(
        "Stored version %s of document %s (%s bytes) uploaded by user %s",
        version.number,
        version.document_id,
        version.size,
        user.pk,
    )
    return version


def _lock_editable_inspection(owner: Owner) -> None:
    """Lock an inspection owner and check that it is still editable, against a concurrent submit."""
    if not isinstance(owner, Inspection):
        return
    status = (
        Inspection.objects.select_for_update().values_list("status", flat=True).get(pk=owner.pk)
    )
    if status not in InspectionStatus.pending():
        raise PermissionDenied(
            _("This inspection is %(status)s, so its documents are read-only.")
            % {"status": InspectionStatus(status).label.lower()}
        )


def _create_document(owner: Owner, kind: str, title: str, category: str, user: User) -> Document:
    document = Document(title=title[:255], category=category, created_by=user, **{kind: owner})
    document._history_user = user
    document.save()
    return document


def _next_number(document: Document, name: str, sha256: str) -> int:
    """Return the next version number, holding the document's row lock until the commit."""
    Document.objects.select_for_update().filter(pk=document.pk).values_list("pk").get()
    latest = (
        DocumentVersion.objects.filter(document=document)
        .order_by("-number")
        .values("number", "sha256")
        .first()
    )
    if latest is None:
        return 1
    if latest["sha256"] == sha256:
        raise ValidationError(
            _('"%(name)s" is identical to version %(number)s; no new version was stored.')
            % {"name": name, "number": latest["number"]},
            code="identical",
        )
    return latest["number"] + 1


def _store(version: DocumentVersion, uploaded_file: UploadedFile) -> str:
    """Write the file under the version's path and return its name. Never replace a file."""
    field = version.file.field
    storage = field.storage
    name = field.generate_filename(version, version.original_name)
    if storage.exists(name):
        logger.error(
            "Rejected an upload because %s exists (document %s)", name, version.document_id
        )
        raise _stored_file_exists(name)
    uploaded_file.seek(0)
    stored_name = storage.save(name, uploaded_file, max_length=field.max_length)
    if stored_name != name:
        # The storage chose another name because a file appeared at `name`
        # meanwhile. The file under the other name is this upload's, so it goes.
        _remove_orphan(stored_name)
        logger.error("A file appeared at %s while storing document %s", name, version.document_id)
        raise _stored_file_exists(name)
    return stored_name


def _stored_file_exists(name: str) -> ValidationError:
    return ValidationError(
        _(
            "The file store already holds a file at %(path)s, so nothing was stored. Ask an "
            "administrator to check the file store."
        )
        % {"path": name},
        code="stored_file_exists",
    )


def _remove_orphan(name: str) -> None:
    """Delete a file this upload stored but whose version row was not written."""
    storage = DocumentVersion._meta.get_field("file").storage
    try:
        storage.delete(name)
    except OSError:
        logger.exception("Failed to remove the orphaned upload %s", name)
    else:
        logger.warning("Removed the upload %s because its version was not saved", name)
