"""Shared fixtures: named users for each role and a small loan book."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from loans import access, services
from loans.models import Loan

from .factories import BranchFactory, LoanFactory, UserFactory


@pytest.fixture
def branch_north():
    return BranchFactory(code="NORTH", name="North")


@pytest.fixture
def branch_south():
    return BranchFactory(code="SOUTH", name="South")


@pytest.fixture
def officer(branch_north):
    return UserFactory(username="officer", roles=[access.CREDIT_OFFICER], branches=[branch_north])


@pytest.fixture
def branch_manager(branch_north):
    return UserFactory(
        username="manager", roles=[access.BRANCH_MANAGER], branches=[branch_north]
    )


@pytest.fixture
def risk_manager():
    return UserFactory(username="risk", roles=[access.RISK_MANAGER])


@pytest.fixture
def committee_member():
    return UserFactory(username="committee", roles=[access.COMMITTEE_MEMBER])


@pytest.fixture
def auditor():
    return UserFactory(username="auditor", roles=[access.AUDITOR])


@pytest.fixture
def administrator():
    return UserFactory(username="admin", roles=[access.ADMINISTRATOR], is_staff=True)


@pytest.fixture
def make_scheduled_loan():
    """Return a function creating a loan with its generated schedule."""

    def make(periods: int = 12, **fields) -> Loan:
        fields.setdefault("disbursement_date", date(2023, 1, 1))
        fields.setdefault("principal", Decimal("12000.00"))
        loan = LoanFactory(**fields)
        services.create_schedule(loan, periods)
        last_due = loan.instalments.order_by("-due_date").values_list("due_date", flat=True)[0]
        if loan.maturity_date != last_due:
            Loan.objects.filter(pk=loan.pk).update(maturity_date=last_due)
            loan.refresh_from_db()
        return loan

    return make


@pytest.fixture
def role_groups(django_db_blocker):
    """Recreate the role groups, which a flushed database (transactional tests) loses."""
    from django.apps import apps

    from loans.roles import create_role_groups

    with django_db_blocker.unblock():
        create_role_groups(apps)
