"""Server-rendered pages: the figures they show, sorting, filters, CSV, query counts, admin."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loans import services
from loans.models import (
    Collateral,
    CollateralKind,
    CollateralPledge,
    CollateralValuation,
    Guarantee,
    GuaranteeType,
    Guarantor,
    GuarantorKind,
    LoanPosition,
    RiskClass,
)
from monitoring.models import ClassificationChange, JobRun, JobStatus
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, LoanFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 7, 1)
ROLES = ("officer", "risk_manager", "committee_member", "auditor", "administrator")


@pytest.fixture
def book(branch_north, branch_south, officer, make_scheduled_loan):
    """Three loans after one close-of-day run on AS_OF.

    North: a current loan and a loan unpaid since 2023-02-01 (150 days past due,
    substandard). South: a current loan of 24,000.00. Each has its own borrower.
    """
    north_current = make_scheduled_loan(
        borrower=BorrowerFactory(branch=branch_north, legal_name="Aster Tools Ltd"),
        disbursement_date=date(2023, 6, 15),
        officer=officer,
    )
    north_overdue = make_scheduled_loan(
        borrower=BorrowerFactory(branch=branch_north, legal_name="Birch Bakery Ltd"),
        disbursement_date=date(2023, 1, 1),
        officer=officer,
    )
    south_current = make_scheduled_loan(
        borrower=BorrowerFactory(branch=branch_south, legal_name="Cedar Freight Ltd"),
        disbursement_date=date(2023, 6, 15),
        principal=Decimal("24000.00"),
    )
    run = dispatch_close_of_day(AS_OF)
    return SimpleNamespace(
        north_current=north_current,
        north_overdue=north_overdue,
        south_current=south_current,
        run=run,
    )


def _login(client, request, role: str):
    user = request.getfixturevalue(role)
    client.force_login(user)
    return user


def _contracts(response) -> list[str]:
    return [loan.contract_number for loan in response.context["page_obj"]]


# ---- Portfolio -------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES[1:])
def test_portfolio_shows_whole_book_figures(client, request, book, role):
    _login(client, request, role)

    response = client.get(reverse("reports:portfolio"))

    summary = response.context["summary"]
    assert response.status_code == 200
    assert summary.as_of == AS_OF
    assert summary.loans == 3
    assert summary.balance == Decimal("48000.00")
    assert summary.npl_balance == Decimal("12000.00")
    assert summary.npl_ratio == Decimal("25.00")
    assert summary.specific_provision == Decimal("3000.00")
    assert summary.general_provision == Decimal("480.00")
    assert summary.required_provision == Decimal("3480.00")
    assert b"25.00&nbsp;%" in response.content
    assert b"48,000.00" in response.content


def test_portfolio_scopes_officer_to_branch(client, officer, book):
    client.force_login(officer)

    response = client.get(reverse("reports:portfolio"))

    summary = response.context["summary"]
    assert summary.loans == 2
    assert summary.balance == Decimal("24000.00")
    assert summary.npl_ratio == Decimal("50.00")
    assert summary.general_provision == Decimal("240.00")
    assert summary.required_provision == Decimal("3240.00")


def test_portfolio_breakdowns_by_class_stage_bucket(client, risk_manager, book):
    client.force_login(risk_manager)

    summary = client.get(reverse("reports:portfolio")).context["summary"]

    by_class = {row.code: (row.loans, row.balance, row.share) for row in summary.by_class}
    assert by_class["1"] == (2, Decimal("36000.00"), Decimal("75.00"))
    assert by_class["3"] == (1, Decimal("12000.00"), Decimal("25.00"))
    assert by_class["5"] == (0, Decimal("0.00"), Decimal("0.00"))
    assert [row.code for row in summary.by_bucket][:3] == ["current", "1-30", "31-60"]
    by_bucket = {row.code: row.loans for row in summary.by_bucket}
    assert by_bucket["current"] == 2
    assert by_bucket["91-180"] == 1
    by_stage = {row.code: row.loans for row in summary.by_stage}
    assert by_stage == {"1": 2, "2": 0, "3": 1}


def test_portfolio_renders_chart_configs(client, risk_manager, book):
    client.force_login(risk_manager)

    response = client.get(reverse("reports:portfolio"))

    assert b'data-chart-source="class-chart"' in response.content
    assert b'<script id="class-chart" type="application/json">' in response.content
    assert b'<script id="bucket-chart" type="application/json">' in response.content
    assert response.context["class_chart"]["data"]["datasets"][0]["data"][2] == Decimal("12000.00")


def test_portfolio_without_run_shows_empty_state(client, risk_manager):
    client.force_login(risk_manager)

    response = client.get(reverse("reports:portfolio"))

    assert response.status_code == 200
    assert response.context["summary"] is None
    assert b"No close-of-day run has completed" in response.content


def test_portfolio_query_count_is_constant(client, risk_manager, django_assert_max_num_queries):
    client.force_login(risk_manager)
    LoanFactory.create_batch(5)
    dispatch_close_of_day(AS_OF)
    with CaptureQueriesContext(connection) as small_book:
        client.get(reverse("reports:portfolio"))
    LoanFactory.create_batch(45)
    dispatch_close_of_day(AS_OF)

    with django_assert_max_num_queries(8):
        response = client.get(reverse("reports:portfolio"))
    with CaptureQueriesContext(connection) as large_book:
        client.get(reverse("reports:portfolio"))

    assert response.context["summary"].loans == 50
    assert len(large_book) == len(small_book)


# ---- Loan list and CSV -----------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_loan_list_renders_for_role(client, request, book, role):
    _login(client, request, role)

    response = client.get(reverse("loans:loan_list"))

    assert response.status_code == 200
    assert book.north_overdue.contract_number in _contracts(response)
    assert b"Birch Bakery Ltd" in response.content
    assert b'<caption class="visually-hidden">' in response.content


def test_loan_list_shows_position_figures(client, risk_manager, book):
    client.force_login(risk_manager)

    response = client.get(reverse("loans:loan_list"))

    rows = {loan.contract_number: loan for loan in response.context["page_obj"]}
    overdue = rows[book.north_overdue.contract_number].current_position
    assert overdue.days_past_due == 150
    assert overdue.dpd_bucket == "91-180"
    assert b"91\xe2\x80\x93180 days" in response.content
    assert b"12,000.00" in response.content


def test_loan_list_sorts_by_whitelisted_key(client, risk_manager, book):
    client.force_login(risk_manager)

    by_dpd = client.get(reverse("loans:loan_list"), {"sort": "-dpd"})
    by_principal = client.get(reverse("loans:loan_list"), {"sort": "-principal"})
    unknown = client.get(reverse("loans:loan_list"), {"sort": "borrower__password"})

    assert _contracts(by_dpd)[0] == book.north_overdue.contract_number
    assert _contracts(by_principal)[0] == book.south_current.contract_number
    assert unknown.context["current_sort"] == "contract"
    assert _contracts(unknown) == sorted(_contracts(unknown))


def test_loan_list_filters_class_and_bucket(client, risk_manager, book):
    client.force_login(risk_manager)

    by_class = client.get(reverse("loans:loan_list"), {"risk_class": RiskClass.SUBSTANDARD})
    by_bucket = client.get(reverse("loans:loan_list"), {"dpd_bucket": "current"})
    by_stage = client.get(reverse("loans:loan_list"), {"ifrs9_stage": 3})

    assert _contracts(by_class) == [book.north_overdue.contract_number]
    assert set(_contracts(by_bucket)) == {
        book.north_current.contract_number,
        book.south_current.contract_number,
    }
    assert _contracts(by_stage) == [book.north_overdue.contract_number]


def test_loan_list_filters_branch_and_officer(client, risk_manager, officer, book, branch_south):
    client.force_login(risk_manager)

    by_branch = client.get(reverse("loans:loan_list"), {"branch": branch_south.pk})
    by_officer = client.get(reverse("loans:loan_list"), {"officer": officer.pk})

    assert _contracts(by_branch) == [book.south_current.contract_number]
    assert set(_contracts(by_officer)) == {
        book.north_current.contract_number,
        book.north_overdue.contract_number,
    }


def test_loan_list_searches_name_and_contract(client, risk_manager, book):
    client.force_login(risk_manager)
    contract = book.south_current.contract_number

    by_name = client.get(reverse("loans:loan_list"), {"q": "bakery"})
    by_contract = client.get(reverse("loans:loan_list"), {"q": contract[:-1].lower()})
    by_contract_middle = client.get(reverse("loans:loan_list"), {"q": contract[2:]})

    assert _contracts(by_name) == [book.north_overdue.contract_number]
    assert contract in _contracts(by_contract)
    assert _contracts(by_contract_middle) == []


def test_loan_list_form_keeps_input(client, risk_manager, book):
    client.force_login(risk_manager)

    response = client.get(
        reverse("loans:loan_list"), {"q": "bakery", "risk_class": 3, "sort": "-dpd"}
    )

    content = response.content.decode()
    assert 'name="q" value="bakery"' in content
    assert '<option value="3" selected>' in content
    assert '<label class="form-label" for="id_q">' in content
    assert "sort=-dpd" in content


def test_loan_list_paginates_fifty_per_page(client, risk_manager):
    client.force_login(risk_manager)
    LoanFactory.create_batch(51)

    first = client.get(reverse("loans:loan_list"))
    second = client.get(reverse("loans:loan_list"), {"page": 2})

    assert len(first.context["page_obj"]) == 50
    assert len(second.context["page_obj"]) == 1
    assert first.context["page_obj"].paginator.count == 51


def test_loan_list_query_count_is_constant(client, officer, branch_north):
    client.force_login(officer)
    borrower = BorrowerFactory(branch=branch_north)
    LoanFactory.create_batch(5, borrower=borrower, officer=officer)
    dispatch_close_of_day(AS_OF)
    with CaptureQueriesContext(connection) as five_loans:
        client.get(reverse("loans:loan_list"))
    LoanFactory.create_batch(45, branch=branch_north, officer=officer)
    dispatch_close_of_day(AS_OF)

    with CaptureQueriesContext(connection) as fifty_loans:
        response = client.get(reverse("loans:loan_list"))

    assert len(response.context["page_obj"]) == 50
    assert len(fifty_loans) == len(five_loans)
    assert len(fifty_loans) <= 10


def test_loan_export_streams_filtered_csv(client, risk_manager, book):
    client.force_login(risk_manager)

    response = client.get(reverse("loans:loan_export"), {"risk_class": 3})

    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="loans-2023-07-01.csv"' in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][0] == "Contract"
    assert len(rows) == 2
    assert rows[1][0] == book.north_overdue.contract_number
    assert rows[1][10] == "12000.00"
    assert rows[1][13] == "150"


def test_loan_export_neutralises_formula_cells(client, risk_manager):
    client.force_login(risk_manager)
    LoanFactory(borrower=BorrowerFactory(legal_name="=HYPERLINK(1)"))

    response = client.get(reverse("loans:loan_export"))

    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][1] == "'=HYPERLINK(1)"


# ---- Loan detail -----------------------------------------------------------


def _add_security(loan, count: int) -> None:
    for number in range(count):
        guarantor = Guarantor.objects.create(
            kind=GuarantorKind.PERSON,
            name=f"Guarantor {loan.pk}-{number}",
            registration_number=f"G{loan.pk}-{number}",
        )
        Guarantee.objects.create(
            loan=loan,
            guarantor=guarantor,
            guarantee_type=GuaranteeType.GENERAL,
            amount=Decimal("1000.00"),
            valid_from=loan.disbursement_date,
        )
        collateral = Collateral.objects.create(
            kind=CollateralKind.EQUIPMENT,
            description="Lathe",
            reference=f"C{loan.pk}-{number}",
            owner_name="Owner",
            ltv_limit=Decimal("0.5000"),
        )
        for month in (1, 3):
            CollateralValuation.objects.create(
                collateral=collateral,
                valued_on=date(2023, month, 1),
                value=Decimal("10000.00") * month,
                method="Desktop",
                valuer="Valuer",
            )
        CollateralPledge.objects.create(collateral=collateral, loan=loan, share=Decimal("0.5"))


@pytest.mark.parametrize("role", ROLES)
def test_loan_detail_renders_for_role(client, request, book, role):
    _login(client, request, role)

    response = client.get(reverse("loans:loan_detail", args=[book.north_overdue.pk]))

    detail = response.context["detail"]
    assert response.status_code == 200
    assert detail.position.days_past_due == 150
    assert detail.position.specific_provision == Decimal("3000.00")
    assert b"3,120.00" in response.content


def test_loan_detail_marks_overdue_instalments(client, risk_manager, book):
    client.force_login(risk_manager)

    response = client.get(reverse("loans:loan_detail", args=[book.north_overdue.pk]))

    overdue = [i.due_date for i in response.context["detail"].instalments if i.is_overdue]
    assert overdue == [date(2023, m, 1) for m in range(2, 7)]
    assert response.content.count(b'class="table-danger"') == 5


def test_loan_detail_shows_repayments_and_security(client, risk_manager, book):
    services.record_repayment(book.north_overdue, date(2023, 7, 1), Decimal("1500.00"), "R-1")
    _add_security(book.north_overdue, 1)
    client.force_login(risk_manager)

    response = client.get(reverse("loans:loan_detail", args=[book.north_overdue.pk]))

    detail = response.context["detail"]
    assert [r.reference for r in detail.repayments] == ["R-1"]
    assert len(detail.repayments[0].allocations.all()) >= 1
    pledge = detail.pledges[0]
    assert pledge.latest_valuation.valued_on == date(2023, 3, 1)
    assert pledge.pledged_value == Decimal("15000.00")
    assert detail.loan_to_value == Decimal("80.00")
    assert b"Guarantor" in response.content


def test_loan_detail_shows_warnings_and_history(client, risk_manager, book):
    client.force_login(risk_manager)

    response = client.get(reverse("loans:loan_detail", args=[book.north_overdue.pk]))

    detail = response.context["detail"]
    rules = {w.rule_code for w in detail.active_warnings}
    assert {"REP_OVERDUE", "REP_DPD_30", "REP_DPD_90"} <= rules
    assert detail.classification_changes[0].new_class == RiskClass.SUBSTANDARD
    latest = detail.class_history[0]
    assert (latest.previous_class, latest.new_class) == (1, 3)
    assert latest.reason == "Close-of-day floor: dpd_over_substandard"
    assert b"Days past due" in response.content


def test_loan_detail_query_count_is_constant(client, risk_manager, book):
    client.force_login(risk_manager)
    services.record_repayment(book.north_current, date(2023, 6, 20), Decimal("100.00"), "A")
    _add_security(book.north_current, 1)
    for number in range(4):
        services.record_repayment(
            book.north_overdue, date(2023, 6, 1 + number), Decimal("900.00"), f"B{number}"
        )
    _add_security(book.north_overdue, 3)
    dispatch_close_of_day(AS_OF)

    with CaptureQueriesContext(connection) as small:
        client.get(reverse("loans:loan_detail", args=[book.north_current.pk]))
    with CaptureQueriesContext(connection) as large:
        client.get(reverse("loans:loan_detail", args=[book.north_overdue.pk]))

    assert len(large) == len(small)


# ---- Borrowers -------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_borrower_detail_shows_exposure(client, request, book, role):
    _login(client, request, role)
    borrower = book.north_overdue.borrower

    response = client.get(reverse("loans:borrower_detail", args=[borrower.pk]))

    detail = response.context["detail"]
    assert response.status_code == 200
    assert [loan.pk for loan in detail.loans] == [book.north_overdue.pk]
    assert detail.outstanding == Decimal("12000.00")
    assert detail.overdue > Decimal("0")


def test_borrower_detail_lists_guarantees_given(client, risk_manager, book):
    guarantor_borrower = book.south_current.borrower
    guarantor = Guarantor.objects.create(
        kind=GuarantorKind.COMPANY,
        name=guarantor_borrower.legal_name,
        registration_number="GB-1",
        borrower=guarantor_borrower,
    )
    Guarantee.objects.create(
        loan=book.north_overdue,
        guarantor=guarantor,
        guarantee_type=GuaranteeType.GENERAL,
        percentage=Decimal("50"),
        valid_from=date(2023, 1, 1),
    )
    client.force_login(risk_manager)

    response = client.get(reverse("loans:borrower_detail", args=[guarantor_borrower.pk]))

    given = response.context["detail"].guarantees_given
    assert [g.loan_id for g in given] == [book.north_overdue.pk]
    assert b"Guarantees given for other loans" in response.content


@pytest.mark.parametrize("role", ROLES)
def test_borrower_list_searches_and_counts(client, request, book, role):
    _login(client, request, role)

    response = client.get(reverse("loans:borrower_list"), {"q": "birch"})

    borrowers = list(response.context["page_obj"])
    assert response.status_code == 200
    assert [b.legal_name for b in borrowers] == ["Birch Bakery Ltd"]
    assert borrowers[0].loan_count == 1
    assert borrowers[0].outstanding == Decimal("12000.00")


def test_borrower_list_query_count_is_constant(client, risk_manager):
    client.force_login(risk_manager)
    LoanFactory.create_batch(5)
    with CaptureQueriesContext(connection) as few:
        client.get(reverse("loans:borrower_list"))
    LoanFactory.create_batch(45)

    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("loans:borrower_list"))

    assert len(response.context["page_obj"]) == 50
    assert len(many) == len(few)


# ---- Job runs --------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_jobrun_pages_render_for_role(client, request, book, role):
    _login(client, request, role)

    listing = client.get(reverse("monitoring:jobrun_list"))
    detail = client.get(reverse("monitoring:jobrun_detail", args=[book.run.pk]))

    assert listing.status_code == 200
    assert listing.context["page_obj"][0].totals["positions"] == 3
    assert detail.status_code == 200
    summary = detail.context["summary"]
    assert summary["open_loans"] == 3
    warnings_by_rule = {code: count for code, _description, count in summary["by_rule"]}
    assert warnings_by_rule["REP_DPD_90"] == 1
    assert b'hx-trigger="every 2s"' not in detail.content


def test_running_jobrun_polls_progress(client, risk_manager):
    run = JobRun.objects.create(as_of=AS_OF, chunk_count=4, chunks_done=1)
    client.force_login(risk_manager)

    detail = client.get(reverse("monitoring:jobrun_detail", args=[run.pk]))
    JobRun.objects.filter(pk=run.pk).update(chunks_done=4, status=JobStatus.COMPLETED)
    fragment = client.get(reverse("monitoring:jobrun_progress", args=[run.pk]))

    progress_url = reverse("monitoring:jobrun_progress", args=[run.pk])
    assert b'hx-trigger="every 2s"' in detail.content
    assert f'hx-get="{progress_url}"'.encode() in detail.content
    assert b"<html" not in fragment.content
    assert b"4/4" in fragment.content
    assert b"hx-trigger" not in fragment.content


def test_failed_jobrun_shows_errors(client, auditor):
    run = JobRun.objects.create(
        as_of=AS_OF, status=JobStatus.FAILED, errors="OperationalError: lock timeout"
    )
    client.force_login(auditor)

    response = client.get(reverse("monitoring:jobrun_detail", args=[run.pk]))

    assert b"OperationalError: lock timeout" in response.content


# ---- Admin -----------------------------------------------------------------


def test_admin_lists_every_model(admin_client, book):
    models = [
        model
        for label in ("loans", "monitoring")
        for model in apps.get_app_config(label).get_models()
        if not model.__name__.startswith("Historical")
    ]

    statuses = {
        model.__name__: admin_client.get(
            reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        ).status_code
        for model in models
        if model in admin.site._registry
    }

    assert [model.__name__ for model in models if model not in admin.site._registry] == []
    assert set(statuses.values()) == {200}


def test_admin_positions_are_read_only(admin_client, book):
    position = LoanPosition.objects.get(loan=book.north_overdue)
    change = ClassificationChange.objects.get(loan=book.north_overdue)

    add_position = admin_client.get(reverse("admin:loans_loanposition_add"))
    view_position = admin_client.get(reverse("admin:loans_loanposition_change", args=[position.pk]))
    delete_change = admin_client.post(
        reverse("admin:monitoring_classificationchange_delete", args=[change.pk]),
        {"post": "yes"},
    )

    assert add_position.status_code == 403
    assert view_position.status_code == 200
    assert b'name="_save"' not in view_position.content
    assert delete_change.status_code == 403
    assert ClassificationChange.objects.filter(pk=change.pk).exists()
