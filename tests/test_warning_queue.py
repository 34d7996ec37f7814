"""The risk managers' warning queue: scope, filters, sorting, counts, paging and bulk assign."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loans.models import RiskClass
from monitoring import services
from monitoring.models import ActionKind, JobRun, JobStatus, WarningStatus
from monitoring.selectors import severity_counts, sort_warnings, warning_queue

from .factories import BorrowerFactory, EarlyWarningFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 7, 31)
ROLES = ("officer", "risk_manager", "committee_member", "auditor", "administrator")


@pytest.fixture
def business_date():
    """A completed close-of-day run on AS_OF, which the pages count ages and deadlines to."""
    return JobRun.objects.create(as_of=AS_OF, status=JobStatus.COMPLETED)


@pytest.fixture
def queue(branch_north, branch_south, officer, risk_manager, business_date):
    """Return five warnings: three on a North loan of the officer, two on a South loan.

    - north_red: red, first seen 40 days before AS_OF, deadline passed, assigned to risk.
    - north_orange: orange, first seen 10 days before AS_OF, open.
    - north_yellow: yellow, first seen on AS_OF, dismissed.
    - south_red: red, first seen 100 days before AS_OF, open.
    - south_yellow: yellow, first seen 5 days before AS_OF, in progress.
    """
    north = LoanFactory(
        contract_number="NORTH-1",
        borrower=BorrowerFactory(branch=branch_north, legal_name="Aster Tools Ltd"),
        officer=officer,
        risk_class=RiskClass.SUBSTANDARD,
    )
    south = LoanFactory(
        contract_number="SOUTH-1",
        borrower=BorrowerFactory(branch=branch_south, legal_name="Cedar Freight Ltd"),
    )
    return SimpleNamespace(
        north=north,
        south=south,
        north_red=EarlyWarningFactory(
            loan=north,
            first_seen_on=AS_OF - timedelta(days=40),
            deadline=AS_OF - timedelta(days=37),
            status=WarningStatus.ACKNOWLEDGED,
            assigned_to=risk_manager,
        ),
        north_orange=EarlyWarningFactory(
            loan=north,
            rule_code="REP_DPD_30",
            severity="orange",
            first_seen_on=AS_OF - timedelta(days=10),
            deadline=AS_OF,
        ),
        north_yellow=EarlyWarningFactory(
            loan=north,
            rule_code="REP_OVERDUE",
            severity="yellow",
            first_seen_on=AS_OF,
            status=WarningStatus.DISMISSED,
        ),
        south_red=EarlyWarningFactory(loan=south, first_seen_on=AS_OF - timedelta(days=100)),
        south_yellow=EarlyWarningFactory(
            loan=south,
            rule_code="REP_OVERDUE",
            severity="yellow",
            family="repayment",
            first_seen_on=AS_OF - timedelta(days=5),
            status=WarningStatus.IN_PROGRESS,
        ),
    )


def _pks(response) -> list[int]:
    return [warning.pk for warning in response.context["page_obj"]]


def _queue(client, **params):
    return client.get(reverse("monitoring:warning_queue"), params)


@pytest.mark.parametrize("role", ROLES)
def test_queue_renders_for_role(client, request, queue, role):
    client.force_login(request.getfixturevalue(role))

    response = _queue(client)

    assert response.status_code == 200


def test_queue_lists_active_warnings_by_default(client, risk_manager, queue):
    client.force_login(risk_manager)

    response = _queue(client)

    assert set(_pks(response)) == {
        queue.north_red.pk,
        queue.north_orange.pk,
        queue.south_red.pk,
        queue.south_yellow.pk,
    }


def test_queue_scopes_officer_to_branch(client, officer, queue):
    client.force_login(officer)

    response = _queue(client, status="any")

    assert set(_pks(response)) == {queue.north_red.pk, queue.north_orange.pk, queue.north_yellow.pk}
    assert response.context["counts"]["total"] == 3


def test_officer_cannot_filter_other_branch(client, officer, queue, branch_south):
    client.force_login(officer)

    response = _queue(client, branch=branch_south.pk)

    assert response.context["filter_form"].errors["branch"]
    assert _pks(response) == []


def test_queue_sorts_red_first_by_default(client, risk_manager, queue):
    client.force_login(risk_manager)

    response = _queue(client)

    severities = [warning.severity for warning in response.context["page_obj"]]
    assert response.context["current_sort"] == "-severity"
    assert severities == ["red", "red", "orange", "yellow"]
    # Among equal severities the oldest warning comes first.
    assert _pks(response)[0] == queue.south_red.pk


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("severity", ["south_yellow", "north_orange", "south_red", "north_red"]),
        ("age", ["south_yellow", "north_orange", "north_red", "south_red"]),
        ("-age", ["south_red", "north_red", "north_orange", "south_yellow"]),
        ("deadline", ["north_red", "north_orange", "south_red", "south_yellow"]),
        ("contract", ["north_red", "north_orange", "south_red", "south_yellow"]),
        ("status", ["south_red", "north_orange", "north_red", "south_yellow"]),
    ],
)
def test_queue_sorts_by_whitelisted_key(client, risk_manager, queue, sort, expected):
    client.force_login(risk_manager)

    response = _queue(client, sort=sort)

    assert _pks(response) == [getattr(queue, name).pk for name in expected]
    assert response.context["current_sort"] == sort


def test_queue_ignores_unknown_sort(client, risk_manager, queue):
    client.force_login(risk_manager)

    response = _queue(client, sort="loan__borrower__registration_number")

    assert response.status_code == 200
    assert response.context["current_sort"] == "-severity"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"severity": "red"}, {"north_red", "south_red"}),
        ({"family": "repayment"}, {"north_red", "north_orange", "south_red", "south_yellow"}),
        ({"family": "collateral"}, set()),
        ({"rule": "REP_OVERDUE"}, {"south_yellow"}),
        ({"age": "0-7"}, {"south_yellow"}),
        ({"age": "8-30"}, {"north_orange"}),
        ({"age": "31-90"}, {"north_red"}),
        ({"age": "91+"}, {"south_red"}),
        ({"assignee": "unassigned"}, {"north_orange", "south_red", "south_yellow"}),
        ({"assignee": "me"}, {"north_red"}),
        ({"status": "closed"}, {"north_yellow"}),
        ({"status": "in_progress"}, {"south_yellow"}),
        ({"status": "any", "severity": "yellow"}, {"north_yellow", "south_yellow"}),
    ],
)
def test_queue_filters_warnings(client, risk_manager, queue, params, expected):
    client.force_login(risk_manager)

    response = _queue(client, **params)

    assert set(_pks(response)) == {getattr(queue, name).pk for name in expected}


def test_queue_filters_branch_officer_assignee(client, risk_manager, officer, queue, branch_north):
    client.force_login(risk_manager)

    by_branch = _queue(client, branch=branch_north.pk)
    by_officer = _queue(client, officer=officer.pk)
    by_assignee = _queue(client, assignee=risk_manager.pk)

    assert set(_pks(by_branch)) == {queue.north_red.pk, queue.north_orange.pk}
    assert set(_pks(by_officer)) == {queue.north_red.pk, queue.north_orange.pk}
    assert _pks(by_assignee) == [queue.north_red.pk]


def test_counts_ignore_severity_filter(client, risk_manager, queue):
    client.force_login(risk_manager)

    response = _queue(client, severity="red")

    assert response.context["counts"] == {"total": 4, "red": 2, "orange": 1, "yellow": 1}
    assert len(_pks(response)) == 2


def test_severity_counts_take_one_query(risk_manager, queue, django_assert_num_queries):
    warnings = warning_queue(risk_manager, {"status": "any"}, AS_OF)

    with django_assert_num_queries(1):
        counts = severity_counts(warnings)

    assert counts == {"total": 5, "red": 2, "orange": 1, "yellow": 2}


def test_sort_warnings_keeps_valid_key(risk_manager, queue):
    _warnings, sort = sort_warnings(warning_queue(risk_manager), "-deadline")

    assert sort == "-deadline"


def test_queue_shows_row_columns(client, risk_manager, queue):
    client.force_login(risk_manager)

    response = _queue(client)

    html = response.content.decode()
    row = next(w for w in response.context["page_obj"] if w.pk == queue.north_red.pk)
    assert row.age_days == 40
    assert row.is_overdue
    assert row.rule_description == "More than 90 days past due."
    assert html.count('data-overdue="true"') == 1
    assert "Aster Tools Ltd" in html
    assert reverse("loans:loan_detail", args=[queue.north.pk]) in html
    assert reverse("monitoring:warning_detail", args=[queue.north_red.pk]) in html


def test_queue_paginates_fifty_per_page(client, risk_manager, business_date):
    client.force_login(risk_manager)
    loans = LoanFactory.create_batch(51)
    for loan in loans:
        EarlyWarningFactory(loan=loan)

    first = _queue(client)
    second = _queue(client, page=2)

    assert len(first.context["page_obj"]) == 50
    assert len(second.context["page_obj"]) == 1
    assert first.context["page_obj"].paginator.count == 51


def _add_warnings(count: int, branch, officer) -> None:
    for number in range(count):
        loan = LoanFactory(borrower=BorrowerFactory(branch=branch), officer=officer)
        warning = EarlyWarningFactory(loan=loan, deadline=AS_OF - timedelta(days=number % 3))
        if number % 2:
            services.assign(
                [warning], officer, UserFactory(username="lead", roles=["Risk manager"])
            )


@pytest.mark.parametrize("role", ["risk_manager", "officer"])
def test_queue_query_count_is_constant(client, request, role, branch_north, officer, business_date):
    client.force_login(request.getfixturevalue(role))
    _add_warnings(5, branch_north, officer)
    with CaptureQueriesContext(connection) as five:
        response = _queue(client)
    assert len(response.context["page_obj"]) == 5
    _add_warnings(45, branch_north, officer)

    with CaptureQueriesContext(connection) as fifty:
        response = _queue(client, sort="assignee")

    assert len(response.context["page_obj"]) == 50
    assert len(fifty) == len(five)
    assert len(fifty) <= 14


def test_read_only_roles_see_no_checkboxes(client, auditor, queue):
    client.force_login(auditor)

    response = _queue(client)

    assert "bulk-warnings" not in response.content.decode()
    assert response.context["may_assign"] is False


# ---- Bulk assign -------------------------------------------------------------


def _bulk_assign(client, warnings, assignee, next_url: str = ""):
    return client.post(
        reverse("monitoring:warning_bulk_assign"),
        {
            "bulk-warnings": [warning.pk for warning in warnings],
            "bulk-assignee": assignee.pk,
            "next": next_url,
        },
    )


def test_bulk_assign_assigns_ticked_warnings(client, risk_manager, officer, queue):
    client.force_login(risk_manager)
    back = reverse("monitoring:warning_queue") + "?severity=red&sort=deadline"

    response = _bulk_assign(client, [queue.north_red, queue.north_orange], officer, back)

    queue.north_orange.refresh_from_db()
    assert response.status_code == 302
    assert response["Location"] == back
    assert queue.north_orange.assigned_to == officer
    assert queue.north_orange.status == WarningStatus.ACKNOWLEDGED
    assert queue.north_orange.actions.get().kind == ActionKind.ASSIGN


def test_bulk_assign_shows_service_error(client, risk_manager, officer, queue):
    client.force_login(risk_manager)

    response = _bulk_assign(client, [queue.north_orange, queue.south_red], officer)
    page = client.get(response["Location"])

    queue.north_orange.refresh_from_db()
    assert queue.north_orange.assigned_to is None
    assert "cannot see the loans SOUTH-1" in page.content.decode()


def test_bulk_assign_without_ticks_is_refused(client, risk_manager, queue):
    client.force_login(risk_manager)

    response = client.post(
        reverse("monitoring:warning_bulk_assign"), {"bulk-assignee": risk_manager.pk}
    )
    page = client.get(response["Location"])

    assert "Tick at least one warning to assign." in page.content.decode()


def test_bulk_assign_ignores_outside_redirect(client, risk_manager, queue):
    client.force_login(risk_manager)

    response = _bulk_assign(client, [queue.south_red], risk_manager, "https://example.com/")

    assert response["Location"] == reverse("monitoring:warning_queue")


def test_bulk_assign_requires_csrf_token(risk_manager, queue):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(risk_manager)

    response = _bulk_assign(client, [queue.south_red], risk_manager)

    queue.south_red.refresh_from_db()
    assert response.status_code == 403
    assert queue.south_red.assigned_to is None


def test_nav_shows_warnings_link(client, officer, queue):
    client.force_login(officer)

    response = client.get(reverse("loans:loan_list"))

    assert reverse("monitoring:warning_queue") in response.content.decode()


def test_user_without_role_gets_403(client, queue):
    client.force_login(UserFactory(username="nobody"))
    urls = [
        reverse("monitoring:warning_queue"),
        reverse("monitoring:warning_detail", args=[queue.north_red.pk]),
        reverse("monitoring:notifications"),
    ]

    for url in urls:
        assert client.get(url).status_code == 403, url


def test_officer_assignee_filter_lists_own_branch_only(officer, risk_manager, branch_south):
    from loans import access
    from monitoring.forms import WarningQueueFilterForm

    from .factories import UserFactory

    colleague = UserFactory(
        username="colleague", roles=[access.CREDIT_OFFICER], branches=officer.branches.all()
    )
    stranger = UserFactory(
        username="stranger", roles=[access.CREDIT_OFFICER], branches=[branch_south]
    )

    officer_choices = {
        value for value, _ in WarningQueueFilterForm(user=officer).fields["assignee"].choices
    }
    manager_choices = {
        value for value, _ in WarningQueueFilterForm(user=risk_manager).fields["assignee"].choices
    }

    assert str(colleague.pk) in officer_choices
    assert str(risk_manager.pk) in officer_choices
    assert str(stranger.pk) not in officer_choices
    assert str(stranger.pk) in manager_choices
