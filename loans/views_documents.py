"""Document pages: upload, a document's versions, and the download of one version.

Every view reads through `loans.documents`, so an owner, document or version
that the user may not see is a 404 and ids do not leak. A role that may not
upload, or an upload to a submitted inspection, gets 403.
"""

from __future__ import annotations

import logging
from decimal import ROUND_FLOOR

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from .access import User, role_required
from .documents import (
    ACCEPTED_TYPES,
    Owner,
    accepted_types_text,
    add_version,
    document_owner,
    documents_for,
    format_megabytes,
    get_visible_document,
    get_visible_owner,
    get_visible_version,
    max_upload_bytes,
    may_see_owner,
    owner_kind,
    upload_denied_reason,
)
from .models import Document, DocumentCategory, DocumentVersion

logger = logging.getLogger(__name__)

# Characters left out of a download's file name: path separators, quotes and
# the characters Windows does not allow in file names.
UNSAFE_NAME_CHARACTERS = set('\\/"<>:|?*;')


class DocumentUploadForm(forms.Form):
    document = forms.TypedChoiceField(
        label=gettext_lazy("New version of"), required=False, coerce=int, empty_value=None
    )
    title = forms.CharField(
        label=gettext_lazy("Title"),
        max_length=255,
        required=False,
        help_text=gettext_lazy("For a new document. The file name is used when left empty."),
    )
    category = forms.ChoiceField(
        label=gettext_lazy("Category"),
        choices=DocumentCategory.choices,
        initial=DocumentCategory.OTHER,
    )
    # Empty files reach the service, whose message names the file.
    file = forms.FileField(label=gettext_lazy("File"), allow_empty_file=True)

    def __init__(self, *args, documents: list[Document], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.documents_by_id = {document.pk: document for document in documents}
        self.fields["document"].choices = [("", _("None, a new document"))] + [
            (document.pk, document.title) for document in documents
        ]
        extensions = sorted({f".{ext}" for kind in ACCEPTED_TYPES for ext in kind.extensions})
        self.fields["file"].widget = forms.FileInput(attrs={"accept": ",".join(extensions)})
        self.fields["file"].help_text = _("%(types)s, up to %(limit)s MB.") % {
            "types": accepted_types_text(),
            "limit": format_megabytes(max_upload_bytes(), ROUND_FLOOR),
        }

    def clean_document(self) -> Document | None:
        pk = self.cleaned_data["document"]
        return self.documents_by_id.get(pk) if pk else None


# ---- Panel -------------------------------------------------------------------


def panel_id(owner: Owner) -> str:
    return f"documents-{owner_kind(owner)}-{owner.pk}"


def panel_context(
    request: HttpRequest,
    owner: Owner,
    *,
    form: DocumentUploadForm | None = None,
    feedback: str = "",
    failure: str = "",
    next_url: str = "",
) -> dict:
    """Build the context of templates/loans/_documents.html for the owner."""
    user = request.user
    if not may_see_owner(user, owner):
        return {"visible": False}
    documents = documents_for(owner)
    denied_reason = upload_denied_reason(user, owner)
    if form is None and not denied_reason:
        form = DocumentUploadForm(documents=documents, prefix=panel_id(owner))
    return {
        "visible": True,
        "request": request,
        "owner": owner,
        "documents": documents,
        "panel_id": panel_id(owner),
        "may_upload": not denied_reason,
        "denied_reason": denied_reason,
        "form": form,
        "upload_url": reverse("loans:document_upload", args=[owner_kind(owner), owner.pk]),
        "next_url": next_url or request.get_full_path(),
        "feedback": feedback,
        "failure": failure,
    }


# ---- Upload ------------------------------------------------------------------


def _owner_url(owner: Owner) -> str | None:
    """Return the page of the document's owner, None for collateral, which has no page."""
    kind = owner_kind(owner)
    if kind == "borrower":
        return reverse("loans:borrower_detail", args=[owner.pk])
    if kind == "loan":
        return reverse("loans:loan_detail", args=[owner.pk])
    if kind == "inspection":
        try:
            return reverse("monitoring:inspection_detail", args=[owner.pk])
        except NoReverseMatch:
            return reverse("loans:loan_detail", args=[owner.loan_id])
    return None


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return ""


def _store_upload(form: DocumentUploadForm, owner: Owner, user: User) -> DocumentVersion | None:
    """Add the form's file as a version, or add the rejection to the form and return None."""
    if not form.is_valid():
        return None
    data = form.cleaned_data
    try:
        return add_version(
            owner=owner,
            uploaded_file=data["file"],
            user=user,
            title=data["title"].strip(),
            category=data["category"],
            document=data["document"],
        )
    except ValidationError as error:
        form.add_error("file", error)
        return None


@role_required
@require_POST
def document_upload(request: HttpRequest, kind: str, pk: int) -> HttpResponse:
    """Upload a new document or version to a borrower, loan, collateral item or inspection.

    With htmx the response is the owner's documents panel, showing the
    result and keeping the form's input after a rejected file. Without htmx
    it is a redirect to a safe `next` URL, or the owner's page, with a message.
    """
    owner = get_visible_owner(request.user, kind, pk)
    denied_reason = upload_denied_reason(request.user, owner)
    if denied_reason:
        raise PermissionDenied(denied_reason)

    prefix = panel_id(owner)
    form = DocumentUploadForm(
        request.POST, request.FILES, documents=documents_for(owner), prefix=prefix
    )
    version = _store_upload(form, owner, request.user)
    feedback = failure = ""
    if version is not None:
        feedback = _('Version %(number)s of "%(title)s" stored.') % {
            "number": version.number,
            "title": version.document.title,
        }
    else:
        errors = " ".join(
            message for field_errors in form.errors.values() for message in field_errors
        )
        failure = _("Nothing was stored. %(errors)s") % {"errors": errors}

    next_url = _safe_next(request)
    if request.htmx:
        context = panel_context(
            request,
            owner,
            form=None if version else form,
            feedback=feedback,
            failure=failure,
            next_url=next_url,
        )
        return render(request, "loans/_documents.html", context)

    if version is not None:
        messages.success(request, feedback)
    else:
        messages.error(request, failure)
    fallback = _owner_url(owner)
    if fallback is None and version is not None:
        fallback = reverse("loans:document_detail", args=[version.document_id])
    return redirect(next_url or fallback or reverse("loans:loan_list"))


# ---- Versions and download ---------------------------------------------------


def _owner_label(owner: Owner) -> str:
    kind = owner_kind(owner)
    if kind == "borrower":
        return owner.legal_name
    if kind == "loan":
        return _("Loan %(number)s") % {"number": owner.contract_number}
    if kind == "inspection":
        return _("%(kind)s of loan %(number)s, due %(due)s") % {
            "kind": owner.get_kind_display(),
            "number": owner.loan.contract_number,
            "due": owner.due_date.isoformat(),
        }
    return _("Collateral %(reference)s") % {"reference": owner.reference}


@role_required
def document_detail(request: HttpRequest, pk: int) -> HttpResponse:
    document = get_visible_document(request.user, pk)
    owner = document_owner(document)
    versions = document.versions.select_related("uploaded_by").order_by("-number")
    return render(
        request,
        "loans/document_detail.html",
        {
            "document": document,
            "versions": versions,
            "owner_label": _owner_label(owner),
            "owner_url": _owner_url(owner),
        },
    )


def download_name(version: DocumentVersion) -> str:
    """Return the version's original file name, safe to send in Content-Disposition."""
    name = "".join(
        ch for ch in version.original_name if ch.isprintable() and ch not in UNSAFE_NAME_CHARACTERS
    )
    name = name.strip(" .")
    return name or f"document-{version.document_id}-v{version.number}"


@role_required
def document_download(request: HttpRequest, pk: int) -> FileResponse:
    """Send one version as an attachment, with its stored content type and no sniffing."""
    version = get_visible_version(request.user, pk)
    try:
        handle = version.file.open("rb")
    except OSError as error:
        logger.error("Failed to open %s of document version %s: %s", version.file.name, pk, error)
        raise Http404(_("The stored file of this version is missing.")) from error

    content_type = version.content_type
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    response = FileResponse(
        handle, as_attachment=True, filename=download_name(version), content_type=content_type
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private"
    return response
