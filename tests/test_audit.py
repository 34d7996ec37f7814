from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib import admin
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin
from simple_history.models import HistoricalChanges
from simple_history.utils import get_history_model_for_model

from loans.admin import AuditedHistoryAdmin
from loans.models import Borrower, Loan, LoanPosition, RiskClass
from monitoring.models import EarlyWarning
from monitoring.tasks import dispatch_close_of_day
from reports import views_audit
from reports.audit import (
    NO_USER_ID,
    PAGE_SIZE,
    AuditFilters,
    audit_page,
    audited_models,
    iter_entries,
)

from .factories import (
    BorrowerFactory,
    BranchFactory,
    InspectionFactory,
    LoanFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

AUDIT_URL = reverse("reports:audit_trail")
EXPORT_URL = reverse("reports:audit_export")


def _save(instance, user=None, **fields):
    """Save `instance` with `fields` changed, as `user`; return its new history row."""
    for name, value in fields.items():
        setattr(instance, name, value)
    instance._history_user = user
    instance.save()
    return instance.history.order_by("-history_id").first()


def _date(history_row, when: datetime) -> None:
    """Set the history date of one history row, as if it was written at `when`."""
    type(history_row).objects.filter(history_id=history_row.history_id).update(history_date=when)


def _filters(model: str = "loans.loan", **kwargs) -> AuditFilters:
    return AuditFilters(model=audited_models()[model], **kwargs)


def _ids(page) -> list[int]:
    return [entry.history_id for entry in page.entries]


def _changes(entry) -> dict[str, tuple[str, str]]:
    return {change.name: (change.old, change.new) for change in entry.changes}


# ---- Audited models ----------------------------------------------------------


def test_audited_models_are_the_history_models():
    keys = set(audited_models())

    assert {"loans.loan", "loans.borrower", "loans.branch", "monitoring.earlywarning"} <= keys
    assert "loans.loanposition" not in keys
    for key, audited in audited_models().items():
        assert audited.history_model is get_history_model_for_model(audited.model), key
        assert key.split(".")[0] in ("loans", "monitoring")


# History tables whose rows come mostly from the close-of-day run, with no user.
WRITTEN_BY_RUN = {"monitoring.inspection", "monitoring.postloanplan"}


def test_history_models_have_audit_indexes():
    for key, audited in audited_models().items():
        indexes = audited.history_model._meta.indexes
        assert ("id", "history_date") in {tuple(index.fields) for index in indexes}, key
        deleted = [index for index in indexes if index.name.startswith("history_deleted_")]
        assert [(tuple(index.fields), index.condition) for index in deleted] == [
            (("history_date",), Q(history_type="-"))
        ], key
        (by_user,) = [i for i in indexes if tuple(i.fields) == ("history_user", "history_date")]
        if key in WRITTEN_BY_RUN:
            assert by_user.condition == Q(history_user__isnull=False), key
        else:
            assert by_user.condition is None, key


def test_user_filters_on_run_history(officer):
    inspection = InspectionFactory()
    created = inspection.history.get()
    by_officer = _save(inspection, officer, place="Warehouse")

    assert _ids(audit_page(_filters("monitoring.inspection", user_id=officer.pk))) == [
        by_officer.history_id
    ]
    assert _ids(audit_page(_filters("monitoring.inspection", user_id=NO_USER_ID))) == [
        created.history_id
    ]


# ---- Filters -----------------------------------------------------------------


def test_filter_by_record(officer):
    loan, other = LoanFactory(), LoanFactory()
    changed = _save(loan, officer, purpose="Stock")
    _save(other, officer, purpose="Machines")

    page = audit_page(_filters(record_id=loan.pk))

    created = loan.history.get(history_type="+")
    assert _ids(page) == [changed.history_id, created.history_id]
    assert {entry.record_id for entry in page.entries} == {loan.pk}


def test_filter_by_model():
    borrower = BorrowerFactory()
    loan = LoanFactory(borrower=borrower)

    borrowers = audit_page(_filters("loans.borrower"))
    loans = audit_page(_filters("loans.loan"))

    assert [entry.record_id for entry in borrowers.entries] == [borrower.pk]
    assert [entry.record_id for entry in loans.entries] == [loan.pk]


def test_filter_by_user(officer, risk_manager):
    loan = LoanFactory()
    by_officer = _save(loan, officer, purpose="Stock")
    _save(loan, risk_manager, purpose="Machines")
    by_officer_again = _save(loan, officer, purpose="Vehicles")

    page = audit_page(_filters(user_id=officer.pk))

    assert _ids(page) == [by_officer_again.history_id, by_officer.history_id]
    assert {entry.username for entry in page.entries} == {"officer"}


def test_filter_by_no_user(officer):
    loan = LoanFactory()
    _save(loan, officer, purpose="Stock")

    page = audit_page(_filters(user_id=NO_USER_ID))

    assert _ids(page) == [loan.history.get(history_type="+").history_id]


def test_filter_by_change_type(officer):
    loan = LoanFactory()
    changed = _save(loan, officer, purpose="Stock")

    page = audit_page(_filters(change_type="~"))

    assert _ids(page) == [changed.history_id]


def test_filter_by_date_range_includes_end_day(officer):
    loan = LoanFactory()
    tokyo = ZoneInfo("Asia/Tokyo")
    before = _save(loan, officer, purpose="a")
    first = _save(loan, officer, purpose="b")
    last = _save(loan, officer, purpose="c")
    after = _save(loan, officer, purpose="d")
    _date(loan.history.get(history_type="+"), datetime(2024, 1, 1, tzinfo=UTC))
    _date(before, datetime(2024, 2, 29, 23, 59, 59, tzinfo=tokyo))
    _date(first, datetime(2024, 3, 1, 0, 0, 0, tzinfo=tokyo))
    _date(last, datetime(2024, 3, 31, 23, 59, 59, tzinfo=tokyo))
    _date(after, datetime(2024, 4, 1, 0, 0, 0, tzinfo=tokyo))

    with timezone.override(tokyo):
        page = audit_page(_filters(date_from=date(2024, 3, 1), date_to=date(2024, 3, 31)))

    assert _ids(page) == [last.history_id, first.history_id]


def test_filters_combine(officer, risk_manager):
    loan, other = LoanFactory(), LoanFactory()
    match = _save(loan, officer, purpose="a")
    _date(match, datetime(2024, 5, 10, 12, tzinfo=UTC))
    _date(_save(loan, officer, purpose="b"), datetime(2024, 6, 10, 12, tzinfo=UTC))
    _date(_save(loan, risk_manager, purpose="c"), datetime(2024, 5, 11, 12, tzinfo=UTC))
    _date(_save(other, officer, purpose="d"), datetime(2024, 5, 12, 12, tzinfo=UTC))

    page = audit_page(
        _filters(
            record_id=loan.pk,
            user_id=officer.pk,
            change_type="~",
            date_from=date(2024, 5, 1),
            date_to=date(2024, 5, 31),
        )
    )

    assert _ids(page) == [match.history_id]


# ---- Order and paging --------------------------------------------------------


def test_pages_run_newest_first(officer):
    loan = LoanFactory()
    rows = [_save(loan, officer, purpose=f"p{number}") for number in range(PAGE_SIZE + 9)]
    # Equal dates are ordered by history id, so paging splits no tie.
    for row in rows:
        _date(row, datetime(2024, 1, 1, tzinfo=UTC))
    newest_first = [row.history_id for row in reversed(rows)]
    filters = _filters(record_id=loan.pk, change_type="~")

    first = audit_page(filters)
    second = audit_page(filters, before=first.older_cursor)
    back = audit_page(filters, after=second.newer_cursor)

    assert _ids(first) == newest_first[:PAGE_SIZE]
    assert first.newer_cursor is None
    assert _ids(second) == newest_first[PAGE_SIZE:]
    assert second.older_cursor is None
    assert _ids(back) == _ids(first)


def test_export_chunks_cover_every_row(officer):
    loan = LoanFactory()
    rows = [_save(loan, officer, purpose=f"p{number}") for number in range(7)]
    for row in rows[:4]:
        _date(row, datetime(2024, 1, 1, tzinfo=UTC))
    filters = _filters(record_id=loan.pk, change_type="~")

    entries = list(iter_entries(filters, chunk_size=2))

    assert [entry.history_id for entry in entries] == _ids(audit_page(filters))
    assert len(entries) == 7


# ---- Differences -------------------------------------------------------------


def test_diff_shows_old_and_new_values(officer):
    loan = LoanFactory(purpose="Stock")
    branch = BranchFactory(code="EAST")
    old_branch = loan.branch_id
    changed = _save(
        loan, officer, purpose="Machines", risk_class=RiskClass.SUBSTANDARD, branch=branch
    )

    page = audit_page(_filters(record_id=loan.pk))

    entry = page.entries[0]
    assert entry.history_id == changed.history_id
    assert entry.has_previous
    assert _changes(entry) == {
        "purpose": ("Stock", "Machines"),
        "risk_class": ("Normal", "Substandard"),
        "branch": (str(old_branch), str(branch.pk)),
    }


def test_created_row_lists_initial_values():
    loan = LoanFactory(purpose="Stock")

    entry = audit_page(_filters(record_id=loan.pk)).entries[0]

    changes = _changes(entry)
    assert entry.change_type == "+"
    assert not entry.has_previous
    assert changes["purpose"] == ("", "Stock")
    assert changes["principal"] == ("", "12000.00")
    assert changes["borrower"] == ("", str(loan.borrower_id))
    assert changes["product"] == ("", "Working capital")
    assert "closed_on" not in changes


def test_diff_uses_previous_row_outside_filter(officer, risk_manager):
    loan = LoanFactory(purpose="Stock")
    _save(loan, officer, purpose="Machines")
    _save(loan, risk_manager, purpose="Vehicles")

    entry = audit_page(_filters(user_id=risk_manager.pk)).entries[0]

    assert _changes(entry) == {"purpose": ("Machines", "Vehicles")}


def test_diff_of_branch_staff(officer, risk_manager):
    branch = BranchFactory(code="WEST")
    branch.staff.add(officer)
    branch.staff.add(risk_manager)

    entry = audit_page(_filters("loans.branch", record_id=branch.pk)).entries[0]

    low, high = sorted([officer.pk, risk_manager.pk])
    expected = str(officer.pk) if officer.pk == low else str(risk_manager.pk)
    assert _changes(entry) == {"staff": (expected, f"{low}, {high}")}


def test_deleted_record_keeps_its_history(officer):
    borrower = BorrowerFactory()
    borrower_id = borrower.pk
    borrower._history_user = officer
    borrower.delete()

    page = audit_page(_filters("loans.borrower", record_id=borrower_id))

    assert [entry.change_type for entry in page.entries] == ["-", "+"]
    assert page.entries[0].changes == []
    assert page.entries[0].username == "officer"
    assert Borrower.objects.filter(pk=borrower_id).count() == 0


def test_close_of_day_change_shows_the_run(make_scheduled_loan, auditor, client):
    loan = make_scheduled_loan(disbursement_date=date(2014, 3, 1))

    dispatch_close_of_day(date(2014, 6, 30))

    loan.refresh_from_db()
    entry = audit_page(_filters(record_id=loan.pk, change_type="~")).entries[0]
    assert loan.risk_class == RiskClass.SPECIAL_MENTION
    assert entry.user_id is None
    assert entry.user_label == "Close-of-day run"
    assert entry.reason.startswith("Close-of-day floor")
    assert _changes(entry)["risk_class"] == ("Normal", "Special mention")
    client.force_login(auditor)
    response = client.get(AUDIT_URL, {"record": loan.pk, "change_type": "~"})
    assert "Close-of-day run" in response.content.decode()


def test_history_without_user_or_run_reason_is_system():
    LoanFactory()

    entry = audit_page(_filters()).entries[0]

    assert entry.user_label == "System"


# ---- Page --------------------------------------------------------------------


def test_page_shows_changes(client, auditor, officer):
    loan = LoanFactory(purpose="Stock")
    _save(loan, officer, purpose="Machines <b>")
    client.force_login(auditor)

    response = client.get(AUDIT_URL, {"model": "loans.loan", "record": loan.pk})

    content = response.content.decode()
    assert response.status_code == 200
    assert len(response.context["rows"]) == 2
    assert "Machines &lt;b&gt;" in content
    assert 'data-field="purpose"' in content
    assert reverse("loans:loan_detail", args=[loan.pk]) in content


def test_page_defaults_to_loans(client, auditor):
    loan = LoanFactory()
    client.force_login(auditor)

    response = client.get(AUDIT_URL)

    assert response.status_code == 200
    assert response.context["filters"].model.key == "loans.loan"
    assert [entry.record_id for entry, _url in response.context["rows"]] == [loan.pk]


def test_page_rejects_reversed_dates(client, auditor):
    LoanFactory()
    client.force_login(auditor)

    response = client.get(AUDIT_URL, {"date_from": "2024-05-02", "date_to": "2024-05-01"})

    assert response.status_code == 200
    assert response.context["rows"] == []
    assert "date_to" in response.context["filter_form"].errors


def test_page_rejects_invalid_cursor(client, auditor):
    client.force_login(auditor)

    response = client.get(AUDIT_URL, {"before": "abc"})

    assert response.status_code == 400


@pytest.mark.parametrize("name", ["record", "before", "after", "user"])
def test_page_lists_nothing_for_huge_ids(client, auditor, name):
    LoanFactory()
    client.force_login(auditor)

    response = client.get(AUDIT_URL, {name: "99999999999999999999"})

    assert response.status_code == 200
    assert response.context["rows"] == []


def _page_queries(client, loan) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(AUDIT_URL, {"record": loan.pk})
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_page_query_count_is_flat(client, auditor, officer):
    few, many = LoanFactory(), LoanFactory()
    for number in range(4):
        _save(few, officer, purpose=f"p{number}")
    for number in range(49):
        _save(many, officer if number % 2 else auditor, purpose=f"p{number}")
    client.force_login(auditor)
    client.get(AUDIT_URL)

    few_queries = _page_queries(client, few)
    many_queries = _page_queries(client, many)

    assert few_queries == many_queries
    assert few_queries <= 8


def test_branch_page_query_count_is_flat(client, auditor, officer):
    few, many = BranchFactory(code="FEW"), BranchFactory(code="MANY")
    users = [UserFactory() for _ in range(6)]
    few.staff.add(users[0])
    for user in users:
        many.staff.add(user)
    for user in users:
        many.staff.remove(user)
    client.force_login(auditor)
    client.get(AUDIT_URL)

    def count(branch) -> int:
        with CaptureQueriesContext(connection) as queries:
            client.get(AUDIT_URL, {"model": "loans.branch", "record": branch.pk})
        return len(queries.captured_queries)

    assert count(few) == count(many)


# ---- Access ------------------------------------------------------------------


@pytest.mark.parametrize("role", ["auditor", "risk_manager", "administrator"])
@pytest.mark.parametrize("url", [AUDIT_URL, EXPORT_URL])
def test_audit_roles_may_browse(client, request, role, url):
    client.force_login(request.getfixturevalue(role))

    response = client.get(url)

    assert response.status_code == 200


@pytest.mark.parametrize("role", ["officer", "branch_manager", "committee_member"])
@pytest.mark.parametrize("url", [AUDIT_URL, EXPORT_URL])
def test_other_roles_are_refused(client, request, role, url):
    client.force_login(request.getfixturevalue(role))

    response = client.get(url)

    assert response.status_code == 403


@pytest.mark.parametrize("url", [AUDIT_URL, EXPORT_URL])
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_audit_trail_refuses_post(client, auditor):
    client.force_login(auditor)

    response = client.post(AUDIT_URL)

    assert response.status_code == 405


# ---- CSV export --------------------------------------------------------------


def _export_rows(client, params: dict) -> list[list[str]]:
    response = client.get(EXPORT_URL, params)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text, newline="")))


def test_export_writes_one_line_per_field(client, auditor, officer):
    loan = LoanFactory(purpose="Stock")
    _date(loan.history.get(history_type="+"), datetime(2024, 5, 1, tzinfo=UTC))
    changed = _save(loan, officer, purpose="Machines", risk_class=RiskClass.DOUBTFUL)
    _date(changed, datetime(2024, 5, 10, 12, 30, tzinfo=UTC))
    client.force_login(auditor)

    rows = _export_rows(client, {"record": loan.pk, "change_type": "~"})

    assert rows[0] == [
        "When",
        "User",
        "Record type",
        "Record id",
        "Change",
        "Field",
        "Old value",
        "New value",
        "Reason",
    ]
    common = ["2024-05-10T12:30:00+00:00", "officer", "Loan", str(loan.pk), "Changed"]
    assert sorted(rows[1:]) == sorted(
        [
            [*common, "Purpose", "Stock", "Machines", ""],
            [*common, "Risk class", "Normal", "Doubtful", ""],
        ]
    )


def test_export_escapes_text(client, auditor, officer):
    loan = LoanFactory(purpose="Stock")
    purpose = '=HYPERLINK("http://127.0.0.1"), a "quote"\nand a line'
    _save(loan, officer, purpose=purpose)
    client.force_login(auditor)

    rows = _export_rows(client, {"record": loan.pk, "change_type": "~"})

    assert rows[1][5:8] == ["Purpose", "Stock", "'" + purpose]


def test_export_keeps_negative_numbers(client, auditor, officer):
    loan = LoanFactory(purpose="Stock")
    _save(loan, officer, purpose="-1500.50")
    client.force_login(auditor)

    rows = _export_rows(client, {"record": loan.pk, "change_type": "~"})

    assert rows[1][5:8] == ["Purpose", "Stock", "-1500.50"]


def test_export_lists_rows_without_changes(client, auditor, officer):
    borrower = BorrowerFactory()
    borrower_id = borrower.pk
    borrower._history_user = officer
    borrower.delete()
    client.force_login(auditor)

    rows = _export_rows(client, {"model": "loans.borrower", "change_type": "-"})

    assert len(rows) == 2
    assert rows[1][1:8] == ["officer", "Borrower", str(borrower_id), "Deleted", "", "", ""]


def test_export_stops_at_the_cap(client, auditor, officer, monkeypatch):
    loan = LoanFactory()
    for number in range(3):
        _save(loan, officer, purpose=f"p{number}")
    monkeypatch.setattr(views_audit, "EXPORT_MAX_ROWS", 2)
    client.force_login(auditor)

    rows = _export_rows(client, {"record": loan.pk, "change_type": "~"})

    assert len(rows) == 4
    assert rows[3][8].startswith("Export stopped after 2 history records.")


def test_export_rejects_invalid_filters(client, auditor):
    client.force_login(auditor)

    response = client.get(EXPORT_URL, {"record": "x"})

    assert response.status_code == 400


# ---- History is read-only ----------------------------------------------------


@pytest.fixture
def superuser():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.mark.parametrize("role", ["administrator", "superuser"])
def test_admin_revert_is_refused(client, request, role, officer):
    loan = LoanFactory(purpose="Stock")
    old_version = loan.history.get(history_type="+")
    _save(loan, officer, purpose="Machines")
    client.force_login(request.getfixturevalue(role))
    url = reverse("admin:loans_loan_simple_history", args=[loan.pk, old_version.history_id])

    form = client.get(url)
    response = client.post(url, {**_admin_form_data(loan), "purpose": "Stock", "_save": "1"})

    loan.refresh_from_db()
    assert form.status_code == 200
    assert 'name="_save"' not in form.content.decode()
    assert response.status_code == 403
    assert loan.purpose == "Machines"
    assert loan.history.count() == 2


def _admin_form_data(loan: Loan) -> dict:
    data = {
        field.name: getattr(loan, field.attname)
        for field in Loan._meta.concrete_fields
        if not field.primary_key
    }
    data = {name: "" if value is None else value for name, value in data.items()}
    # The instalments inline of the loan admin.
    data.update(
        {
            "instalments-TOTAL_FORMS": "0",
            "instalments-INITIAL_FORMS": "0",
            "instalments-MIN_NUM_FORMS": "0",
            "instalments-MAX_NUM_FORMS": "1000",
        }
    )
    return data


def test_admin_history_page_offers_no_revert(client, administrator, officer):
    loan = LoanFactory()
    _save(loan, officer, purpose="Machines")
    client.force_login(administrator)

    response = client.get(reverse("admin:loans_loan_history", args=[loan.pk]))

    assert response.status_code == 200
    assert "revert" not in response.content.decode().lower()


def test_admin_registers_no_history_model():
    for model, model_admin in admin.site._registry.items():
        assert not issubclass(model, HistoricalChanges), model
        if isinstance(model_admin, SimpleHistoryAdmin):
            assert isinstance(model_admin, AuditedHistoryAdmin), model


def test_history_models_are_not_in_admin_lists():
    history_models = {audited.history_model for audited in audited_models().values()}

    assert history_models.isdisjoint(admin.site._registry)
    assert EarlyWarning in admin.site._registry
    assert LoanPosition in admin.site._registry
