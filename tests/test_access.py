"""Who may open which page: login, roles and branch scoping of every page and download."""

from __future__ import annotations

import csv
import io
from datetime import date
from types import SimpleNamespace

import pytest
from django.urls import reverse

from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 7, 1)
BANK_WIDE_ROLES = ("risk_manager", "committee_member", "auditor", "administrator")


@pytest.fixture
def two_branches(branch_north, branch_south):
    """One loan in each branch, with a close-of-day run, so every page has data."""
    north = LoanFactory(
        contract_number="NORTH-0001",
        borrower=BorrowerFactory(branch=branch_north, legal_name="Northern Mill Ltd"),
    )
    south = LoanFactory(
        contract_number="SOUTH-0001",
        borrower=BorrowerFactory(branch=branch_south, legal_name="Southern Mill Ltd"),
    )
    run = dispatch_close_of_day(AS_OF)
    return SimpleNamespace(north=north, south=south, run=run)


def _page_urls(book) -> list[str]:
    return [
        reverse("reports:portfolio"),
        reverse("loans:loan_list"),
        reverse("loans:loan_export"),
        reverse("loans:loan_detail", args=[book.north.pk]),
        reverse("loans:borrower_list"),
        reverse("loans:borrower_detail", args=[book.north.borrower_id]),
        reverse("monitoring:jobrun_list"),
        reverse("monitoring:jobrun_detail", args=[book.run.pk]),
        reverse("monitoring:jobrun_progress", args=[book.run.pk]),
    ]


def _csv_contracts(response) -> list[str]:
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    return [row[0] for row in rows[1:]]


def test_anonymous_user_is_sent_to_login(client, two_branches):
    for url in _page_urls(two_branches):
        response = client.get(url)

        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


def test_user_without_role_gets_403(client, two_branches):
    client.force_login(UserFactory(username="nobody"))

    for url in _page_urls(two_branches):
        assert client.get(url).status_code == 403, url


def test_officer_opens_own_branch_pages(client, officer, two_branches):
    client.force_login(officer)

    for url in _page_urls(two_branches):
        assert client.get(url).status_code == 200, url


def test_officer_gets_404_for_other_branch(client, officer, two_branches):
    client.force_login(officer)

    loan = client.get(reverse("loans:loan_detail", args=[two_branches.south.pk]))
    borrower = client.get(reverse("loans:borrower_detail", args=[two_branches.south.borrower_id]))
    missing = client.get(reverse("loans:loan_detail", args=[two_branches.south.pk + 1000]))

    assert loan.status_code == 404
    assert borrower.status_code == 404
    assert missing.status_code == 404


def test_officer_list_hides_other_branch(client, officer, two_branches):
    client.force_login(officer)

    listing = client.get(reverse("loans:loan_list"))
    search = client.get(reverse("loans:loan_list"), {"q": "SOUTH"})
    borrowers = client.get(reverse("loans:borrower_list"), {"q": "Mill"})

    assert [loan.contract_number for loan in listing.context["page_obj"]] == ["NORTH-0001"]
    assert b"SOUTH-0001" not in listing.content
    assert list(search.context["page_obj"]) == []
    assert [b.legal_name for b in borrowers.context["page_obj"]] == ["Northern Mill Ltd"]


def test_officer_csv_hides_other_branch(client, officer, two_branches):
    client.force_login(officer)

    everything = client.get(reverse("loans:loan_export"))
    searched = client.get(reverse("loans:loan_export"), {"q": "SOUTH"})

    assert _csv_contracts(everything) == ["NORTH-0001"]
    assert _csv_contracts(searched) == []


def test_officer_cannot_filter_other_branch(
    client, officer, two_branches, branch_north, branch_south
):
    client.force_login(officer)

    listing = client.get(reverse("loans:loan_list"), {"branch": branch_south.pk})
    export = client.get(reverse("loans:loan_export"), {"branch": branch_south.pk})

    assert listing.status_code == 200
    assert list(listing.context["page_obj"]) == []
    assert "branch" in listing.context["filter"].form.errors
    assert list(listing.context["filter"].form.fields["branch"].queryset) == [branch_north]
    assert _csv_contracts(export) == []


def test_officer_portfolio_excludes_other_branch(client, officer, two_branches):
    client.force_login(officer)

    summary = client.get(reverse("reports:portfolio")).context["summary"]

    assert summary.loans == 1


@pytest.mark.parametrize("role", BANK_WIDE_ROLES)
def test_bank_wide_role_sees_every_branch(client, request, two_branches, role):
    client.force_login(request.getfixturevalue(role))

    loan = client.get(reverse("loans:loan_detail", args=[two_branches.south.pk]))
    borrower = client.get(reverse("loans:borrower_detail", args=[two_branches.south.borrower_id]))
    listing = client.get(reverse("loans:loan_list"))

    assert loan.status_code == 200
    assert borrower.status_code == 200
    assert len(listing.context["page_obj"]) == 2


def test_missing_job_run_gives_404(client, auditor):
    client.force_login(auditor)

    response = client.get(reverse("monitoring:jobrun_detail", args=[999_999]))

    assert response.status_code == 404
