"""The audit trail page and its CSV export, for auditors, risk managers and administrators.

Both only read history. Other roles get 403: they see a loan's own history
on the loan page.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator

from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from loans.access import role_required
from loans.views import FORMULA_PREFIXES, query_without

from .audit import (
    DEFAULT_MODEL_KEY,
    AuditEntry,
    AuditFilters,
    AuditPage,
    audit_page,
    iter_entries,
    may_browse_audit_trail,
)
from .forms import AuditFilterForm

# History rows per export query: each chunk also loads the previous row of
# each of its rows, so a chunk costs two queries and about twice this many rows in memory.
EXPORT_CHUNK_SIZE = 1000
# History rows one export writes at most, so that one download cannot hold a
# worker for long. An export cut there ends with a line that gives the limit.
EXPORT_MAX_ROWS = 1_000_000
# Pages of the records that have one, by audited model key; other records show their id only.
RECORD_URL_NAMES = {
    "loans.loan": "loans:loan_detail",
    "loans.borrower": "loans:borrower_detail",
    "loans.document": "loans:document_detail",
    "monitoring.earlywarning": "monitoring:warning_detail",
    "monitoring.inspection": "monitoring:inspection_detail",
}
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _check_access(request: HttpRequest) -> None:
    if not may_browse_audit_trail(request.user):
        raise PermissionDenied(
            _("Only auditors, risk managers and administrators may browse the audit trail.")
        )


def _filter_form(request: HttpRequest) -> AuditFilterForm:
    """Bind the form to the query string, with the default record type when none is given."""
    data: QueryDict = request.GET.copy()
    if not data.get("model"):
        data["model"] = DEFAULT_MODEL_KEY
    return AuditFilterForm(data)


def _cursor(request: HttpRequest, name: str) -> int | None:
    """Return the history id in ?before= or ?after=; raise ValueError when it is not one."""
    value = request.GET.get(name, "")
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(value)
    return int(value)


def _record_url(model_key: str, record_id: int) -> str:
    url_name = RECORD_URL_NAMES.get(model_key)
    if url_name is None:
        return ""
    try:
        return reverse(url_name, args=[record_id])
    except NoReverseMatch:
        return ""


@role_required
@require_GET
def audit_trail(request: HttpRequest) -> HttpResponse:
    _check_access(request)
    form = _filter_form(request)
    try:
        before, after = _cursor(request, "before"), _cursor(request, "after")
    except ValueError as error:
        return HttpResponseBadRequest(
            _("Invalid page cursor %(value)r: expected a history id.") % {"value": str(error)}
        )

    filters = form.filters()
    page = AuditPage(entries=[], newer_cursor=None, older_cursor=None)
    if filters is not None:
        page = audit_page(filters, before=before, after=after)
    rows = [
        (entry, _record_url(filters.model.key, entry.record_id) if filters else "")
        for entry in page.entries
    ]
    return render(
        request,
        "reports/audit_trail.html",
        {
            "filter_form": form,
            "filters": filters,
            "page": page,
            "rows": rows,
            "is_first_page": before is None and after is None,
            "query_without_cursor": query_without(request, "before", "after"),
        },
    )


class _Echo:
    """A file-like object whose write() returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def _cell(value: str) -> str:
    """Prefix text that a spreadsheet would run as a formula; leave plain numbers as they are."""
    if value.startswith(FORMULA_PREFIXES) and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def _entry_lines(entry: AuditEntry, model_label: str) -> Iterator[list[str]]:
    """Yield one CSV row per changed field of the entry, or one row when no field changed."""
    when = timezone.localtime(entry.history_date).isoformat(timespec="seconds")
    common = [when, entry.user_label, model_label, str(entry.record_id), entry.change_type_label]
    changes = [(change.label, change.old, change.new) for change in entry.changes]
    for field, old, new in changes or [("", "", "")]:
        yield [*common, field, old, new, entry.reason]


def _csv_lines(filters: AuditFilters) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            _("When"),
            _("User"),
            _("Record type"),
            _("Record id"),
            _("Change"),
            _("Field"),
            _("Old value"),
            _("New value"),
            _("Reason"),
        ]
    )
    model_label = str(filters.model.label)
    for count, entry in enumerate(iter_entries(filters, EXPORT_CHUNK_SIZE), start=1):
        if count > EXPORT_MAX_ROWS:
            message = _(
                "Export stopped after %(count)s history records. "
                "Narrow the filters, for example the dates, to export the rest."
            ) % {"count": EXPORT_MAX_ROWS}
            yield writer.writerow(["", "", "", "", "", "", "", "", message])
            return
        for line in _entry_lines(entry, model_label):
            yield writer.writerow([_cell(value) for value in line])


@role_required
@require_GET
def audit_export(request: HttpRequest) -> HttpResponse:
    """Stream the filtered history as CSV, one line per changed field, newest first."""
    _check_access(request)
    form = _filter_form(request)
    filters = form.filters()
    if filters is None:
        errors = "; ".join(
            f"{name}: {' '.join(messages)}" for name, messages in form.errors.items()
        )
        return HttpResponseBadRequest(_("Invalid filters: %(errors)s") % {"errors": errors})
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    filename = f"audit-{filters.model.key.replace('.', '-')}-{stamp}.csv"
    response = StreamingHttpResponse(_csv_lines(filters), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
