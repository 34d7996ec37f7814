"""Write validated plans to the book in one transaction, set-wise.

Borrowers, loans, guarantees and write-offs go through bulk_create with
their history rows. Instalments, repayments and allocations, a million rows
for the SBA sample, go through `insert_rows`. The number of queries grows
with the number of chunks of loans, not with the number of rows.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from simple_history.utils import bulk_create_with_history

from loans.models import (
    Borrower,
    Branch,
    Collateral,
    CollateralPledge,
    CollateralValuation,
    Guarantee,
    Guarantor,
    Instalment,
    Loan,
    Repayment,
    RepaymentAllocation,
    WriteOff,
)

from .base import Progress
from .plans import CollateralPlan, LoanPlan

logger = logging.getLogger(__name__)

# Rows per INSERT statement on PostgreSQL: large enough that statement
# overhead is small. On SQLite, Django lowers it to fit its limit of 999
# bound parameters per statement.
BATCH_SIZE = 1000
# Loans per write step, with their instalments and repayments (about 100k
# objects for 300-month loans), so memory stays bounded on large files.
LOANS_PER_CHUNK = 500
# Values per `__in` lookup, under the 999 bound parameters Django assumes for SQLite.
LOOKUP_CHUNK = 900

ItemT = TypeVar("ItemT")


def chunked(items: Sequence[ItemT], size: int) -> Iterator[Sequence[ItemT]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def existing_values(
    model: type[models.Model], field: str, values: Iterable[str], *columns: str
) -> list[dict]:
    """Return `columns` of the rows whose `field` is one of `values`, in chunks."""
    found = []
    for chunk in chunked(sorted(set(values)), LOOKUP_CHUNK):
        found += model.objects.filter(**{f"{field}__in": chunk}).values(field, *columns)
    return found


@transaction.atomic
def write_plans(
    plans: list[LoanPlan],
    collateral: list[CollateralPlan],
    change_reason: str,
    progress: Progress,
) -> None:
    """Create the planned loans and everything attached to them, or nothing."""
    branch_ids = _branch_ids(plans, change_reason)
    borrower_ids = _borrower_ids(plans, branch_ids, change_reason)
    guarantor_ids = _guarantor_ids(plans, change_reason)
    officer_ids = _officer_ids(plans)
    loan_ids: dict[str, int] = {}

    written = 0
    for chunk in chunked(plans, LOANS_PER_CHUNK):
        loans = _write_loans(chunk, branch_ids, borrower_ids, officer_ids, change_reason)
        _write_schedules_and_repayments(chunk, loans)
        _write_guarantees(chunk, loans, guarantor_ids, change_reason)
        _write_write_offs(chunk, loans, change_reason)
        loan_ids.update((loan.contract_number, loan.pk) for loan in loans)
        written += len(chunk)
        progress("written", written, len(plans))
    _write_collateral(collateral, loan_ids, change_reason)


def _branch_ids(plans: list[LoanPlan], change_reason: str) -> dict[str, int]:
    by_code = {plan.branch.code: plan.branch for plan in plans}
    ids = {row["code"]: row["id"] for row in existing_values(Branch, "code", by_code, "id")}
    new = [
        Branch(code=branch.code, name=branch.name, region=branch.region)
        for code, branch in by_code.items()
        if code not in ids
    ]
    if new:
        bulk_create_with_history(new, Branch, BATCH_SIZE, default_change_reason=change_reason)
        ids.update((branch.code, branch.pk) for branch in new)
    return ids


def _borrower_ids(
    plans: list[LoanPlan], branch_ids: dict[str, int], change_reason: str
) -> dict[str, int]:
    first_loan = {}
    for plan in plans:
        first_loan.setdefault(plan.borrower.registration_number, plan)
    rows = existing_values(Borrower, "registration_number", first_loan, "id")
    ids = {row["registration_number"]: row["id"] for row in rows}
    new = []
    for number, plan in first_loan.items():
        if number in ids:
            continue
        borrower = plan.borrower
        new.append(
            Borrower(
                registration_number=number,
                legal_name=borrower.legal_name,
                industry_code=borrower.industry_code,
                size_class=borrower.size_class,
                region=borrower.region,
                city=borrower.city,
                postal_code=borrower.postal_code,
                employees=borrower.employees,
                is_new_business=borrower.is_new_business,
                branch_id=branch_ids[plan.branch.code],
            )
        )
    if new:
        bulk_create_with_history(new, Borrower, BATCH_SIZE, default_change_reason=change_reason)
        ids.update((borrower.registration_number, borrower.pk) for borrower in new)
    return ids


def _guarantor_ids(plans: list[LoanPlan], change_reason: str) -> dict[str, int]:
    by_number = {
        guarantee.guarantor_registration_number: guarantee
        for plan in plans
        for guarantee in plan.guarantees
    }
    rows = existing_values(Guarantor, "registration_number", by_number, "id")
    ids = {row["registration_number"]: row["id"] for row in rows}
    new = [
        Guarantor(
            registration_number=number,
            name=guarantee.guarantor_name,
            kind=guarantee.guarantor_kind,
        )
        for number, guarantee in by_number.items()
        if number not in ids
    ]
    if new:
        bulk_create_with_history(new, Guarantor, BATCH_SIZE, default_change_reason=change_reason)
        ids.update((guarantor.registration_number, guarantor.pk) for guarantor in new)
    return ids


def _officer_ids(plans: list[LoanPlan]) -> dict[str, int]:
    usernames = {plan.officer_username for plan in plans if plan.officer_username}
    if not usernames:
        return {}
    rows = existing_values(get_user_model(), "username", usernames, "id")
    return {row["username"]: row["id"] for row in rows}


def _write_loans(
    chunk: Sequence[LoanPlan],
    branch_ids: dict[str, int],
    borrower_ids: dict[str, int],
    officer_ids: dict[str, int],
    change_reason: str,
) -> list[Loan]:
    loans = [
        Loan(
            contract_number=plan.contract_number,
            borrower_id=borrower_ids[plan.borrower.registration_number],
            branch_id=branch_ids[plan.branch.code],
            officer_id=officer_ids.get(plan.officer_username),
            product=plan.product,
            purpose=plan.purpose,
            currency=plan.currency,
            principal=plan.principal,
            disbursement_date=plan.disbursement_date,
            maturity_date=plan.maturity_date,
            annual_rate=plan.annual_rate,
            day_count=plan.day_count,
            repayment_method=plan.repayment_method,
            frequency=plan.frequency,
            status=plan.status,
            closed_on=plan.closed_on,
            source=plan.source,
        )
        for plan in chunk
    ]
    return bulk_create_with_history(loans, Loan, BATCH_SIZE, default_change_reason=change_reason)


def _write_schedules_and_repayments(chunk: Sequence[LoanPlan], loans: list[Loan]) -> None:
    # NOTE: no history rows are written for instalments, repayments and
    # allocations, about a million rows for the SBA sample. The loan's history
    # row, with the import as its change reason, records where they came from.
    pairs = list(zip(chunk, loans, strict=True))
    insert_rows(
        Instalment,
        (
            "loan",
            "number",
            "due_date",
            "principal_due",
            "interest_due",
            "principal_paid",
            "interest_paid",
            "settled_on",
        ),
        [
            (
                loan.pk,
                row.number,
                row.due_date,
                row.principal,
                row.interest,
                state.principal_paid,
                state.interest_paid,
                state.settled_on,
            )
            for plan, loan in pairs
            for row, state in zip(plan.schedule, plan.states, strict=True)
        ],
    )
    insert_rows(
        Repayment,
        ("loan", "value_date", "amount", "kind", "reference", "unallocated"),
        [
            (
                loan.pk,
                repayment.value_date,
                repayment.amount,
                repayment.kind,
                repayment.reference,
                repayment.unallocated,
            )
            for plan, loan in pairs
            for repayment in plan.repayments
        ],
    )

    loan_ids = [loan.pk for loan in loans]
    instalment_ids = {
        (loan_id, number): pk
        for pk, loan_id, number in Instalment.objects.filter(loan_id__in=loan_ids).values_list(
            "pk", "loan_id", "number"
        )
    }
    repayment_ids = {
        (loan_id, reference): pk
        for pk, loan_id, reference in Repayment.objects.filter(loan_id__in=loan_ids).values_list(
            "pk", "loan_id", "reference"
        )
    }
    insert_rows(
        RepaymentAllocation,
        ("repayment", "instalment", "loan", "value_date", "penalty", "interest", "principal"),
        [
            (
                repayment_ids[(loan.pk, repayment.reference)],
                # Allocation keys are indexes into the loan's schedule.
                instalment_ids[(loan.pk, plan.schedule[part.key].number)],
                loan.pk,
                repayment.value_date,
                part.penalty,
                part.interest,
                part.principal,
            )
            for plan, loan in pairs
            for repayment in plan.repayments
            for part in repayment.allocations
        ],
    )


def insert_rows(model: type[models.Model], fields: tuple[str, ...], rows: list[tuple]) -> None:
    """Insert plain value tuples, in the order of `fields`, without model instances.

    Used for the three tables that get hundreds of thousands of rows per
    import, where bulk_create spent most of the import's time preparing each
    field of each object. Values must already be of the column's type
    (Decimal, date, int, str or None).
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in fields)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY loads rows about 3 times faster than multi-row INSERT
            # statements, measured on 40,000 instalments.
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", _copy_text(rows))
            return
        one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        # On SQLite, one prepared statement that the driver runs for every row.
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES {one_row}", rows)


def _copy_text(rows: list[tuple]) -> io.StringIO:
    """Return rows in PostgreSQL's COPY text format: tab-separated, \\N for NULL."""
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(map(_copy_value, row)))
        buffer.write("\n")
    buffer.seek(0)
    return buffer


def _copy_value(value: object) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _write_guarantees(
    chunk: Sequence[LoanPlan],
    loans: list[Loan],
    guarantor_ids: dict[str, int],
    change_reason: str,
) -> None:
    guarantees = [
        Guarantee(
            loan_id=loan.pk,
            guarantor_id=guarantor_ids[guarantee.guarantor_registration_number],
            guarantee_type=guarantee.guarantee_type,
            amount=guarantee.amount,
            percentage=guarantee.percentage,
            valid_from=guarantee.valid_from,
            valid_to=guarantee.valid_to,
        )
        for plan, loan in zip(chunk, loans, strict=True)
        for guarantee in plan.guarantees
    ]
    if guarantees:
        bulk_create_with_history(
            guarantees, Guarantee, BATCH_SIZE, default_change_reason=change_reason
        )


def _write_write_offs(chunk: Sequence[LoanPlan], loans: list[Loan], change_reason: str) -> None:
    write_offs = [
        WriteOff(
            loan_id=loan.pk,
            written_off_on=plan.write_off.written_off_on,
            principal=plan.write_off.principal,
            interest=plan.write_off.interest,
            reason=plan.write_off.reason,
        )
        for plan, loan in zip(chunk, loans, strict=True)
        if plan.write_off is not None
    ]
    if write_offs:
        bulk_create_with_history(
            write_offs, WriteOff, BATCH_SIZE, default_change_reason=change_reason
        )


def _write_collateral(
    collateral: list[CollateralPlan], loan_ids: dict[str, int], change_reason: str
) -> None:
    if not collateral:
        return
    items = [
        Collateral(
            kind=item.kind,
            description=item.description,
            reference=item.reference,
            owner_name=item.owner_name,
            lien_rank=item.lien_rank,
            ltv_limit=item.ltv_limit,
            insurance_expires_on=item.insurance_expires_on,
        )
        for item in collateral
    ]
    bulk_create_with_history(items, Collateral, BATCH_SIZE, default_change_reason=change_reason)

    valuations = [
        CollateralValuation(
            collateral_id=saved.pk,
            valued_on=valuation.valued_on,
            value=valuation.value,
            method=valuation.method,
            valuer=valuation.valuer,
        )
        for item, saved in zip(collateral, items, strict=True)
        for valuation in item.valuations
    ]
    pledges = [
        CollateralPledge(collateral_id=saved.pk, loan_id=loan_ids[contract_number], share=share)
        for item, saved in zip(collateral, items, strict=True)
        for contract_number, share in item.pledges
    ]
    if valuations:
        bulk_create_with_history(
            valuations, CollateralValuation, BATCH_SIZE, default_change_reason=change_reason
        )
    bulk_create_with_history(
        pledges, CollateralPledge, BATCH_SIZE, default_change_reason=change_reason
    )
