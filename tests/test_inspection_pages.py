"""My tasks and branch compliance: buckets around the business date, compliance counts, queries."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loans import access
from monitoring.inspections import selectors
from monitoring.models import InspectionStatus, JobRun, JobStatus

from .factories import BorrowerFactory, BranchFactory, InspectionFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 7, 31)


def _business_date(as_of: date) -> JobRun:
    return JobRun.objects.create(
        as_of=as_of, status=JobStatus.COMPLETED, finished_at=timezone.now()
    )


def _inspection(branch, officer, due: date, status: str = InspectionStatus.SCHEDULED, **fields):
    """Return an inspection of a new loan of the branch, assigned to `officer` or to nobody."""
    loan = LoanFactory(borrower=BorrowerFactory(branch=branch), officer=officer)
    return InspectionFactory(loan=loan, officer=officer, due_date=due, status=status, **fields)


# ---- My tasks ----------------------------------------------------------------


@pytest.fixture
def tasks(branch_north, branch_south, officer, branch_manager):
    """Inspections around the business date AS_OF (Monday 2023-07-31).

    North, assigned to the officer:
      overdue      due 07-30 scheduled (a day before AS_OF)
      due_today    due 07-31 scheduled (on AS_OF)
      draft        due 08-07 draft (the last day of "due this week")
      later        due 08-08 scheduled (a day too late for this week)
      returned     due 07-01 returned (overdue as well)
      submitted    due 07-15 submitted by the officer
      approved     due 07-10 approved
    North, unassigned: unassigned due 08-01 scheduled.
    North, assigned to a colleague: colleague due 07-29 scheduled.
    South: south due 07-20 scheduled.
    """
    _business_date(AS_OF)
    colleague = UserFactory(roles=[access.CREDIT_OFFICER], branches=[branch_north])
    north = branch_north

    def submitted(due: date, status: str):
        return _inspection(
            north,
            officer,
            due,
            status,
            inspected_on=due,
            submitted_by=officer,
            submitted_at=timezone.now(),
        )

    return SimpleNamespace(
        colleague=colleague,
        overdue=_inspection(north, officer, date(2023, 7, 30)),
        due_today=_inspection(north, officer, date(2023, 7, 31)),
        draft=_inspection(north, officer, date(2023, 8, 7), InspectionStatus.DRAFT),
        later=_inspection(north, officer, date(2023, 8, 8)),
        returned=_inspection(north, officer, date(2023, 7, 1), InspectionStatus.RETURNED),
        submitted=submitted(date(2023, 7, 15), InspectionStatus.SUBMITTED),
        approved=submitted(date(2023, 7, 10), InspectionStatus.APPROVED),
        unassigned=_inspection(north, None, date(2023, 8, 1)),
        colleague_overdue=_inspection(north, colleague, date(2023, 7, 29)),
        south=_inspection(branch_south, None, date(2023, 7, 20)),
    )


def _bucket_pks(user, bucket: str) -> set[int]:
    return set(selectors.task_bucket(user, bucket, AS_OF).values_list("pk", flat=True))


def test_officer_task_counts(officer, tasks):
    counts = selectors.task_counts(officer, AS_OF)

    assert counts == {"overdue": 2, "due_soon": 3, "returned": 1, "drafts": 1}


def test_officer_task_buckets(officer, tasks):
    assert _bucket_pks(officer, "overdue") == {tasks.overdue.pk, tasks.returned.pk}
    assert _bucket_pks(officer, "due_soon") == {
        tasks.due_today.pk,
        tasks.draft.pk,
        tasks.unassigned.pk,
    }
    assert _bucket_pks(officer, "drafts") == {tasks.draft.pk}
    assert _bucket_pks(officer, "returned") == {tasks.returned.pk}
    assert _bucket_pks(officer, "review") == set()


def test_branch_manager_task_counts(branch_manager, tasks):
    counts = selectors.task_counts(branch_manager, AS_OF)

    assert counts == {"overdue": 3, "due_soon": 3, "returned": 1, "drafts": 1, "review": 1}
    assert _bucket_pks(branch_manager, "review") == {tasks.submitted.pk}
    assert tasks.colleague_overdue.pk in _bucket_pks(branch_manager, "overdue")


def test_risk_manager_task_counts(risk_manager, tasks):
    counts = selectors.task_counts(risk_manager, AS_OF)

    assert counts == {"overdue": 4, "due_soon": 3, "returned": 1, "drafts": 1, "review": 1}


def test_own_submission_not_awaiting_review(branch_north, tasks):
    both = UserFactory(
        roles=[access.CREDIT_OFFICER, access.BRANCH_MANAGER], branches=[branch_north]
    )
    _inspection(
        branch_north,
        both,
        date(2023, 7, 20),
        InspectionStatus.SUBMITTED,
        inspected_on=date(2023, 7, 20),
        submitted_by=both,
    )

    assert _bucket_pks(both, "review") == {tasks.submitted.pk}


def test_my_tasks_page_opens_first_full_bucket(client, officer, tasks):
    client.force_login(officer)

    response = client.get(reverse("monitoring:my_tasks"))

    assert response.status_code == 200
    assert response.context["bucket"] == "overdue"
    assert [(code, count) for code, _label, count in response.context["tabs"]] == [
        ("overdue", 2),
        ("due_soon", 3),
        ("returned", 1),
        ("drafts", 1),
    ]
    rows = list(response.context["page_obj"])
    assert [row.pk for row in rows] == [tasks.returned.pk, tasks.overdue.pk]
    assert [row.days_overdue for row in rows] == [30, 1]
    page = response.content.decode()
    assert 'data-count="overdue">2<' in page
    assert 'data-count="due_soon">3<' in page


def test_my_tasks_page_sorts_bucket(client, officer, tasks):
    client.force_login(officer)

    response = client.get(reverse("monitoring:my_tasks"), {"bucket": "due_soon", "sort": "-due"})

    rows = list(response.context["page_obj"])
    assert [row.pk for row in rows] == [tasks.draft.pk, tasks.unassigned.pk, tasks.due_today.pk]
    assert [row.days_overdue for row in rows] == [0, 0, 0]
    assert response.context["current_sort"] == "-due"


def test_my_tasks_page_shows_review_bucket(client, branch_manager, tasks):
    client.force_login(branch_manager)

    response = client.get(reverse("monitoring:my_tasks"), {"bucket": "review"})

    assert [row.pk for row in response.context["page_obj"]] == [tasks.submitted.pk]
    assert "Awaiting my review" in response.content.decode()


def test_my_tasks_refused_to_auditor(client, auditor, tasks):
    client.force_login(auditor)

    response = client.get(reverse("monitoring:my_tasks"))

    assert response.status_code == 403


def test_business_date_moves_buckets(officer, tasks):
    _business_date(date(2023, 8, 2))

    counts = selectors.task_counts(officer, selectors.business_date())

    assert counts == {"overdue": 4, "due_soon": 2, "returned": 1, "drafts": 1}


def _add_officer_inspections(branch, officer, count: int) -> None:
    for day in range(count):
        _inspection(branch, officer, AS_OF - timedelta(days=day + 1))


@pytest.mark.parametrize("role", ["officer", "branch_manager"])
def test_my_tasks_query_count_is_constant(client, request, role, branch_north, officer):
    _business_date(AS_OF)
    client.force_login(request.getfixturevalue(role))
    _add_officer_inspections(branch_north, officer, 3)
    with CaptureQueriesContext(connection) as few:
        response = client.get(reverse("monitoring:my_tasks"))
    assert len(response.context["page_obj"]) == 3
    _add_officer_inspections_later(branch_north, officer, 30)

    with CaptureQueriesContext(connection) as many:
        response = client.get(reverse("monitoring:my_tasks"), {"sort": "borrower"})

    assert len(response.context["page_obj"]) == 33
    assert len(many) == len(few)
    assert len(many) <= 12


def _add_officer_inspections_later(branch, officer, count: int) -> None:
    for day in range(count):
        _inspection(branch, officer, AS_OF - timedelta(days=day + 100))


# ---- Branch compliance -------------------------------------------------------


COMPLIANCE_AS_OF = date(2023, 8, 15)


@pytest.fixture
def east(branch_north):
    """Branch East, third quarter of 2023, as of 2023-08-15, with officers Ann and Ben.

    Ann:  07-10 approved, done 07-10 (on time, on the due date)
          07-20 submitted, done 07-21 (late, by one day)
          08-14 scheduled (missed, due the day before the business date)
          08-15 draft (still due, due on the business date)
          09-30 scheduled (still due, the last day of the quarter)
          06-30 approved and 10-01 scheduled (outside the quarter)
    Ben:  07-01 returned (missed, the first day of the quarter)
          08-01 approved, done 07-25 (on time, early)
    Unassigned: 08-10 scheduled (missed)
    North has one inspection due in the quarter, which East's figures leave out.
    """
    _business_date(COMPLIANCE_AS_OF)
    branch = BranchFactory(code="EAST", name="East")
    ann = UserFactory(
        username="ann",
        first_name="Ann",
        last_name="Adler",
        roles=[access.CREDIT_OFFICER],
        branches=[branch],
    )
    ben = UserFactory(
        username="ben",
        first_name="Ben",
        last_name="Brandt",
        roles=[access.CREDIT_OFFICER],
        branches=[branch],
    )
    manager = UserFactory(roles=[access.BRANCH_MANAGER], branches=[branch])

    def done(officer, due: date, inspected_on: date, status=InspectionStatus.APPROVED):
        return _inspection(branch, officer, due, status, inspected_on=inspected_on)

    done(ann, date(2023, 7, 10), date(2023, 7, 10))
    done(ann, date(2023, 7, 20), date(2023, 7, 21), InspectionStatus.SUBMITTED)
    _inspection(branch, ann, date(2023, 8, 14))
    _inspection(branch, ann, date(2023, 8, 15), InspectionStatus.DRAFT)
    _inspection(branch, ann, date(2023, 9, 30))
    done(ann, date(2023, 6, 30), date(2023, 6, 30))
    _inspection(branch, ann, date(2023, 10, 1))
    _inspection(branch, ben, date(2023, 7, 1), InspectionStatus.RETURNED)
    done(ben, date(2023, 8, 1), date(2023, 7, 25))
    _inspection(branch, None, date(2023, 8, 10))
    _inspection(branch_north, None, date(2023, 8, 10))
    # Cancelled with its closed loan: in no count.
    _inspection(branch, ann, date(2023, 7, 5), InspectionStatus.CANCELLED)
    return SimpleNamespace(branch=branch, ann=ann, ben=ben, manager=manager)


def _compliance(client, user, **params):
    client.force_login(user)
    return client.get(reverse("monitoring:inspection_compliance"), params)


def _counts(row: dict) -> dict:
    return {key: row[key] for key in ("due", "on_time", "late", "missed", "still_due", "rate")}


def test_compliance_counts_per_officer(client, east):
    response = _compliance(client, east.manager, branch=east.branch.pk)

    rows = {row["officer_name"]: _counts(row) for row in response.context["page_obj"]}
    assert rows == {
        "Ann Adler": {
            "due": 5,
            "on_time": 1,
            "late": 1,
            "missed": 1,
            "still_due": 2,
            "rate": Decimal("33.3"),
        },
        "Ben Brandt": {
            "due": 2,
            "on_time": 1,
            "late": 0,
            "missed": 1,
            "still_due": 0,
            "rate": Decimal("50.0"),
        },
        "Unassigned": {
            "due": 1,
            "on_time": 0,
            "late": 0,
            "missed": 1,
            "still_due": 0,
            "rate": Decimal("0.0"),
        },
    }


def test_compliance_totals(client, east):
    response = _compliance(client, east.manager, branch=east.branch.pk)

    assert _counts(response.context["totals"]) == {
        "due": 8,
        "on_time": 2,
        "late": 1,
        "missed": 3,
        "still_due": 2,
        "rate": Decimal("33.3"),
    }
    page = response.content.decode()
    assert "33.3&nbsp;%" in page
    assert 'id="compliance-chart"' in page


def test_compliance_defaults_to_quarter(client, east):
    response = _compliance(client, east.manager)

    period = response.context["period"]
    assert (period.date_from, period.date_to) == (date(2023, 7, 1), date(2023, 9, 30))
    assert period.branches == [east.branch.pk]
    assert response.context["totals"]["due"] == 8


def test_compliance_period_from_form(client, east):
    response = _compliance(
        client, east.manager, branch=east.branch.pk, date_from="2023-08-01", date_to="2023-10-01"
    )

    assert _counts(response.context["totals"]) == {
        "due": 6,
        "on_time": 1,
        "late": 0,
        "missed": 2,
        "still_due": 3,
        "rate": Decimal("33.3"),
    }


def test_compliance_rejects_reversed_period(client, east):
    response = _compliance(client, east.manager, date_from="2023-09-01", date_to="2023-08-01")

    assert response.context["page_obj"] is None
    assert response.context["form"].errors["date_to"] == [
        "The end 2023-08-01 is before the start 2023-09-01."
    ]


def test_compliance_hides_other_branches(client, officer, east):
    response = _compliance(client, officer, branch=east.branch.pk)

    assert response.status_code == 200
    assert response.context["page_obj"] is None
    assert "Ann Adler" not in response.content.decode()


def test_compliance_whole_book_for_risk_manager(client, risk_manager, east):
    response = _compliance(client, risk_manager)

    assert response.context["period"].branches is None
    assert response.context["totals"]["due"] == 9


@pytest.mark.parametrize(
    ("as_of", "start", "end"),
    [
        (date(2023, 1, 1), date(2023, 1, 1), date(2023, 3, 31)),
        (date(2023, 3, 31), date(2023, 1, 1), date(2023, 3, 31)),
        (date(2023, 8, 15), date(2023, 7, 1), date(2023, 9, 30)),
        (date(2023, 12, 31), date(2023, 10, 1), date(2023, 12, 31)),
    ],
)
def test_quarter_of(as_of, start, end):
    assert selectors.quarter_of(as_of) == (start, end)


def _add_officers(branch, count: int) -> None:
    for number in range(count):
        officer = UserFactory(roles=[access.CREDIT_OFFICER], branches=[branch])
        _inspection(branch, officer, date(2023, 7, 5) + timedelta(days=number))
        _inspection(
            branch,
            officer,
            date(2023, 7, 6) + timedelta(days=number),
            InspectionStatus.APPROVED,
            inspected_on=date(2023, 7, 6),
        )


def test_compliance_query_count_is_constant(client, east):
    client.force_login(east.manager)
    url = reverse("monitoring:inspection_compliance")
    with CaptureQueriesContext(connection) as few:
        response = client.get(url)
    assert len(response.context["page_obj"]) == 3
    _add_officers(east.branch, 12)

    with CaptureQueriesContext(connection) as many:
        response = client.get(url)

    assert len(response.context["page_obj"]) == 15
    assert len(many) == len(few)
    assert len(many) <= 12
