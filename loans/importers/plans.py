"""Validated, not yet saved records of an import, and the in-memory repayment replay.

A format adapter turns source rows into LoanPlan objects. Everything a loan
needs (schedule, repayments with their allocation, status, write-off) is
worked out here, before the writer touches the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from loans.allocation import Allocation, InstalmentState, allocate
from loans.models import LoanStatus, RepaymentKind
from loans.schedules import ScheduledInstalment

from .base import Table

ZERO = Decimal("0.00")


@dataclass
class BranchPlan:
    code: str
    name: str
    region: str = ""


@dataclass
class BorrowerPlan:
    registration_number: str
    legal_name: str
    size_class: str
    industry_code: str = ""
    region: str = ""
    city: str = ""
    postal_code: str = ""
    employees: int | None = None
    is_new_business: bool | None = None


@dataclass
class RepaymentPlan:
    value_date: date
    amount: Decimal
    reference: str
    kind: str = RepaymentKind.REGULAR
    allocations: list[Allocation] = field(default_factory=list)
    unallocated: Decimal = ZERO


@dataclass
class WriteOffPlan:
    written_off_on: date
    principal: Decimal
    interest: Decimal
    reason: str


@dataclass
class GuaranteePlan:
    guarantor_registration_number: str
    guarantor_name: str
    guarantor_kind: str
    guarantee_type: str
    amount: Decimal | None
    percentage: Decimal | None
    valid_from: date
    valid_to: date | None


@dataclass
class ValuationPlan:
    valued_on: date
    value: Decimal
    method: str
    valuer: str


@dataclass
class CollateralPlan:
    """A collateral item with its pledges as (contract number, share pledged)."""

    reference: str
    kind: str
    description: str
    owner_name: str
    lien_rank: int
    ltv_limit: Decimal
    insurance_expires_on: date | None
    pledges: list[tuple[str, Decimal]] = field(default_factory=list)
    valuations: list[ValuationPlan] = field(default_factory=list)


@dataclass
class LoanPlan:
    """One loan to create; `row` is its row in the loans file."""

    row: int
    contract_number: str
    borrower: BorrowerPlan
    branch: BranchPlan
    product: str
    currency: str
    principal: Decimal
    disbursement_date: date
    annual_rate: Decimal
    day_count: str
    repayment_method: str
    frequency: str
    source: str
    purpose: str = ""
    officer_username: str = ""
    schedule: list[ScheduledInstalment] = field(default_factory=list)
    states: list[InstalmentState] = field(default_factory=list)
    repayments: list[RepaymentPlan] = field(default_factory=list)
    guarantees: list[GuaranteePlan] = field(default_factory=list)
    write_off: WriteOffPlan | None = None
    status: str = LoanStatus.ACTIVE
    closed_on: date | None = None
    # Builds the schedule and replays the repayments; returns False when that
    # finds errors. The import runs it only for loans not already in the book.
    prepare: Callable[[LoanPlan], bool] | None = field(default=None, repr=False)

    @property
    def maturity_date(self) -> date:
        return self.schedule[-1].due_date

    def start_replay(self) -> None:
        """Reset the paid amounts: one InstalmentState per instalment, keyed by index."""
        self.states = [
            InstalmentState(
                key=index,
                due_date=row.due_date,
                principal_due=row.principal,
                interest_due=row.interest,
            )
            for index, row in enumerate(self.schedule)
        ]
        self.repayments = []

    def apply_repayment(
        self,
        value_date: date,
        amount: Decimal,
        reference: str,
        kind: str = RepaymentKind.REGULAR,
        open_states: list[InstalmentState] | None = None,
    ) -> RepaymentPlan:
        """Allocate a repayment through the waterfall and keep it.

        `open_states` may narrow the instalments passed to the waterfall when
        the caller knows the others cannot receive anything.
        """
        states = self.states if open_states is None else open_states
        result = allocate(states, value_date, amount)
        repayment = RepaymentPlan(
            value_date=value_date,
            amount=amount,
            reference=reference,
            kind=kind,
            allocations=result.allocations,
            unallocated=result.unallocated,
        )
        self.repayments.append(repayment)
        if self.status == LoanStatus.ACTIVE and self.states[-1].settled_on and self.is_settled:
            self.status = LoanStatus.PAID_OFF
            self.closed_on = value_date
        return repayment

    @property
    def is_settled(self) -> bool:
        return all(state.settled_on is not None for state in self.states)

    def outstanding_principal(self) -> Decimal:
        return sum((state.principal_left for state in self.states), ZERO)

    def unpaid_interest_due(self, on: date) -> Decimal:
        """Interest of instalments due on or before `on` that is still unpaid."""
        return sum((state.interest_left for state in self.states if state.due_date <= on), ZERO)

    def write_off_on(self, on: date, principal: Decimal, reason: str) -> None:
        self.write_off = WriteOffPlan(
            written_off_on=on,
            principal=principal,
            interest=self.unpaid_interest_due(on),
            reason=reason,
        )
        self.status = LoanStatus.WRITTEN_OFF
        self.closed_on = on


def allocate_to_principal(
    plan: LoanPlan, value_date: date, amount: Decimal, reference: str, kind: str
) -> RepaymentPlan:
    """Apply a recovery to unpaid principal only, oldest instalment first.

    The waterfall would pay overdue interest first, which would leave more
    principal on the book than the amount to be written off next.
    """
    parts = []
    remaining = amount
    for state in plan.states:
        paid = min(state.principal_left, remaining)
        if paid <= 0:
            continue
        state.principal_paid += paid
        if state.interest_left == 0:
            state.settled_on = value_date
        parts.append(Allocation(key=state.key, principal=paid))
        remaining -= paid
        if remaining == 0:
            break
    repayment = RepaymentPlan(
        value_date=value_date,
        amount=amount,
        reference=reference,
        kind=kind,
        allocations=parts,
        unallocated=remaining,
    )
    plan.repayments.append(repayment)
    return repayment


@dataclass
class ParsedImport:
    """The output of a format adapter: the tables, and plans for the loans it could build.

    `contract_rows` maps (table label, row number) to the contract numbers the
    row belongs to, so an error on any row can reject its loans. That is one
    loan for most rows, and every loan an item is pledged to for collateral rows.
    `collateral_rows` lists the rows each collateral item was read from.
    """

    tables: list[Table]
    plans: list[LoanPlan] = field(default_factory=list)
    contract_rows: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    collateral: list[CollateralPlan] = field(default_factory=list)
    collateral_rows: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
