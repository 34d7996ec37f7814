"""Loan book pages: loan list and CSV export, loan detail, borrower list and detail."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from monitoring.committee.selectors import loan_classification_timeline, may_propose
from monitoring.inspections.selectors import loan_inspections
from monitoring.selectors import get_business_date

from .access import role_required
from .filters import LoanFilter
from .models import Loan
from .selectors import (
    attach_positions,
    borrower_rows,
    dpd_bucket_label,
    get_borrower_detail,
    get_loan_detail,
    loan_rows,
    position_as_of,
    sort_loans,
)

PAGE_SIZE = 50
# Rows fetched per round trip while streaming the CSV export.
EXPORT_CHUNK_SIZE = 2000
# Leading characters that make a spreadsheet read a cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def query_without(request: HttpRequest, *names: str) -> str:
    """Return the request's query string minus the given parameters, URL-encoded."""
    params = request.GET.copy()
    for name in names:
        params.pop(name, None)
    return params.urlencode()


def _filtered_loans(
    request: HttpRequest, business_date: date | None
) -> tuple[LoanFilter, QuerySet[Loan], str]:
    """Apply the filter form and ?sort= to the user's loans. An invalid form matches nothing."""
    filterset = LoanFilter(
        request.GET,
        queryset=loan_rows(request.user),
        request=request,
        business_date=business_date,
    )
    loans = filterset.qs if filterset.is_valid() else filterset.queryset.none()
    loans, sort = sort_loans(loans, request.GET.get("sort"))
    return filterset, loans, sort


@role_required
def loan_list(request: HttpRequest) -> HttpResponse:
    business_date = get_business_date()
    filterset, loans, sort = _filtered_loans(request, business_date)
    page = Paginator(loans, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = attach_positions(page.object_list, business_date)
    return render(
        request,
        "loans/loan_list.html",
        {
            "filter": filterset,
            "page_obj": page,
            "current_sort": sort,
            "query_without_page": query_without(request, "page"),
            "query_without_sort": query_without(request, "page", "sort"),
            "export_query": query_without(request, "page"),
        },
    )


class _Echo:
    """A file-like object whose write() returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_lines(loans: QuerySet[Loan], business_date: date | None) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            _("Contract"),
            _("Borrower"),
            _("Registration number"),
            _("Branch"),
            _("Product"),
            _("Currency"),
            _("Principal"),
            _("Disbursement date"),
            _("Maturity date"),
            _("Status"),
            _("Outstanding principal"),
            _("Overdue principal"),
            _("Overdue interest"),
            _("Days past due"),
            _("DPD bucket"),
            _("Risk class"),
            _("IFRS 9 stage"),
            _("Credit officer"),
            _("As of"),
        ]
    )
    for loan in loans.iterator(chunk_size=EXPORT_CHUNK_SIZE):
        position = position_as_of(loan, business_date)
        figures = ["", "", "", "", ""]
        if position is not None:
            figures = [
                position.outstanding_principal,
                position.overdue_principal,
                position.overdue_interest,
                position.days_past_due,
                dpd_bucket_label(position.dpd_bucket),
            ]
        row = [
            loan.contract_number,
            loan.borrower.legal_name,
            loan.borrower.registration_number,
            loan.branch.name,
            loan.get_product_display(),
            loan.currency,
            loan.principal,
            loan.disbursement_date,
            loan.maturity_date,
            loan.get_status_display(),
            *figures,
            loan.get_risk_class_display(),
            loan.get_ifrs9_stage_display(),
            loan.officer.get_username() if loan.officer else "",
            business_date or "",
        ]
        yield writer.writerow([_cell(value) for value in row])


@role_required
def loan_export(request: HttpRequest) -> StreamingHttpResponse:
    """Stream the filtered, sorted loan list as CSV, scoped like the page."""
    business_date = get_business_date()
    _filterset, loans, _sort = _filtered_loans(request, business_date)
    filename = f"loans-{business_date.isoformat() if business_date else 'no-business-date'}.csv"
    response = StreamingHttpResponse(
        _csv_lines(loans, business_date), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@role_required
def loan_detail(request: HttpRequest, pk: int) -> HttpResponse:
    detail = get_loan_detail(request.user, pk, get_business_date())
    if detail is None:
        raise Http404(_("Loan not found."))
    return render(
        request,
        "loans/loan_detail.html",
        {
            "detail": detail,
            "loan": detail.loan,
            "loan_inspections": loan_inspections(request.user, detail.loan),
            "committee_timeline": loan_classification_timeline(detail.loan),
            "may_propose": may_propose(request.user, detail.loan),
        },
    )


@role_required
def borrower_list(request: HttpRequest) -> HttpResponse:
    text = request.GET.get("q", "")
    borrowers = borrower_rows(request.user, get_business_date(), text)
    page = Paginator(borrowers, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "loans/borrower_list.html",
        {"page_obj": page, "q": text, "query_without_page": query_without(request, "page")},
    )


@role_required
def borrower_detail(request: HttpRequest, pk: int) -> HttpResponse:
    detail = get_borrower_detail(request.user, pk, get_business_date())
    if detail is None:
        raise Http404(_("Borrower not found."))
    return render(
        request, "loans/borrower_detail.html", {"detail": detail, "borrower": detail.borrower}
    )
