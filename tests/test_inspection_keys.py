"""The loan and warning of an inspection, checked by statement-level triggers on PostgreSQL.

Migration monitoring/0026 replaced the foreign keys of `Inspection.loan` and
`Inspection.trigger_warning` with triggers: an inspection must name an
existing loan and warning, and a loan or warning an inspection names cannot
be deleted. Django's CASCADE and SET_NULL still apply to ORM deletes.
"""

from __future__ import annotations

from datetime import date

import pytest
from django.db import IntegrityError, connection, transaction

from monitoring.models import EarlyWarning, Inspection, InspectionKind

from .factories import EarlyWarningFactory, InspectionFactory, LoanFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def postgresql_only():
    if connection.vendor != "postgresql":
        pytest.skip("The triggers exist on PostgreSQL only.")


def _delete(table: str, pk: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [pk])


def test_missing_loan_rejected():
    loan = LoanFactory()
    missing = loan.pk + 1000

    with pytest.raises(IntegrityError, match=f"names loan {missing}, which does not exist"):
        with transaction.atomic():
            Inspection.objects.create(
                loan_id=missing,
                branch=loan.branch,
                kind=InspectionKind.ROUTINE,
                due_date=date(2024, 1, 5),
            )

    assert not Inspection.objects.exists()


def test_missing_warning_rejected():
    warning = EarlyWarningFactory()
    missing = warning.pk + 1000

    with pytest.raises(IntegrityError, match=f"names warning {missing}, which does not exist"):
        with transaction.atomic():
            InspectionFactory(
                loan=warning.loan, kind=InspectionKind.SPECIAL, trigger_warning_id=missing
            )

    assert not Inspection.objects.exists()


def test_bulk_insert_missing_loan_rolled_back():
    loans = [LoanFactory(), LoanFactory()]
    rows = [
        Inspection(
            loan=loan, branch=loan.branch, kind=InspectionKind.ROUTINE, due_date=date(2024, 1, 5)
        )
        for loan in loans
    ]
    rows[1].loan_id = loans[1].pk + 1000

    with pytest.raises(IntegrityError, match="which does not exist"):
        with transaction.atomic():
            Inspection.objects.bulk_create(rows)

    assert not Inspection.objects.exists()


def test_sql_delete_of_inspected_loan_rejected():
    inspection = InspectionFactory()

    with pytest.raises(IntegrityError, match=f"Loan {inspection.loan_id} still has inspections"):
        with transaction.atomic():
            _delete("loans_loan", inspection.loan_id)

    assert Inspection.objects.filter(pk=inspection.pk).exists()


def test_sql_delete_of_named_warning_rejected():
    warning = EarlyWarningFactory()
    inspection = InspectionFactory(
        loan=warning.loan, kind=InspectionKind.SPECIAL, trigger_warning=warning
    )

    with pytest.raises(IntegrityError, match=f"Warning {warning.pk} is named by an inspection"):
        with transaction.atomic():
            _delete("monitoring_earlywarning", warning.pk)

    inspection.refresh_from_db()
    assert inspection.trigger_warning_id == warning.pk


def test_orm_warning_delete_clears_inspection():
    warning = EarlyWarningFactory()
    inspection = InspectionFactory(
        loan=warning.loan, kind=InspectionKind.SPECIAL, trigger_warning=warning
    )

    warning.delete()

    inspection.refresh_from_db()
    assert inspection.trigger_warning_id is None
    assert not EarlyWarning.objects.filter(pk=warning.pk).exists()
