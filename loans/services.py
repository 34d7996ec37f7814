"""Writes to the loan book: schedules and repayments."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import transaction
from django.utils.translation import gettext as _

from . import schedules
from .allocation import InstalmentState, allocate
from .models import Instalment, Loan, Repayment, RepaymentAllocation, RepaymentKind


class RepaymentError(ValueError):
    """A repayment that cannot be recorded, with a message for the user."""


def schedule_for(loan: Loan, periods: int) -> list[schedules.ScheduledInstalment]:
    return schedules.build_schedule(
        principal=loan.principal,
        annual_rate=loan.annual_rate,
        start=loan.disbursement_date,
        periods=periods,
        method=loan.repayment_method,
        frequency=loan.frequency,
        day_count=loan.day_count,
    )


def instalments_for(loan: Loan, periods: int) -> list[Instalment]:
    """Return unsaved instalments of the loan's generated schedule."""
    return [
        Instalment(
            loan=loan,
            number=row.number,
            due_date=row.due_date,
            principal_due=row.principal,
            interest_due=row.interest,
        )
        for row in schedule_for(loan, periods)
    ]


@transaction.atomic
def create_schedule(loan: Loan, periods: int) -> list[Instalment]:
    if loan.instalments.exists():
        raise ValueError(f"Loan {loan.contract_number} already has a schedule.")
    return Instalment.objects.bulk_create(instalments_for(loan, periods))


def validate_repayment(loan: Loan, value_date: date, amount: Decimal) -> None:
    if amount <= 0:
        raise RepaymentError(
            _("Invalid amount %(amount)s: a repayment must be positive.") % {"amount": amount}
        )
    if value_date < loan.disbursement_date:
        raise RepaymentError(
            _(
                "Invalid value date %(value_date)s: it is before the disbursement date "
                "%(disbursed)s of loan %(loan)s."
            )
            % {
                "value_date": value_date,
                "disbursed": loan.disbursement_date,
                "loan": loan.contract_number,
            }
        )


@transaction.atomic
def record_repayment(
    loan: Loan,
    value_date: date,
    amount: Decimal,
    reference: str,
    kind: str = RepaymentKind.REGULAR,
) -> Repayment:
    """Record a repayment and allocate it through the waterfall."""
    validate_repayment(loan, value_date, amount)
    rows = list(loan.instalments.select_for_update().order_by("due_date", "number"))
    states = [
        InstalmentState(
            key=row.pk,
            due_date=row.due_date,
            principal_due=row.principal_due,
            interest_due=row.interest_due,
            principal_paid=row.principal_paid,
            interest_paid=row.interest_paid,
            settled_on=row.settled_on,
        )
        for row in rows
    ]
    result = allocate(states, value_date, amount)
    repayment = Repayment.objects.create(
        loan=loan,
        value_date=value_date,
        amount=amount,
        kind=kind,
        reference=reference,
        unallocated=result.unallocated,
    )
    RepaymentAllocation.objects.bulk_create(
        RepaymentAllocation(
            repayment=repayment,
            instalment_id=part.key,
            loan=loan,
            value_date=value_date,
            principal=part.principal,
            interest=part.interest,
            penalty=part.penalty,
        )
        for part in result.allocations
    )
    by_key = {state.key: state for state in states}
    for row in rows:
        state = by_key[row.pk]
        row.principal_paid = state.principal_paid
        row.interest_paid = state.interest_paid
        row.settled_on = state.settled_on
    Instalment.objects.bulk_update(rows, ["principal_paid", "interest_paid", "settled_on"])
    return repayment
