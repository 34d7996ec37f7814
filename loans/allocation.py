"""The repayment waterfall, in pure Python so the importer and services share it.

Order: penalty, overdue interest, overdue principal, current interest,
current principal. Overdue instalments are those due before the value date,
oldest first; the current instalment is the first one due on or after it.
Anything left after the current instalment goes to later instalments in
date order (interest, then principal) and the rest stays unallocated.
Penalties are not charged by the book yet, so the penalty share is zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

ZERO = Decimal("0.00")


@dataclass
class InstalmentState:
    """Amounts due and paid on one instalment, updated in place as repayments are applied."""

    key: object
    due_date: date
    principal_due: Decimal
    interest_due: Decimal
    principal_paid: Decimal = ZERO
    interest_paid: Decimal = ZERO
    settled_on: date | None = None

    @property
    def principal_left(self) -> Decimal:
        return self.principal_due - self.principal_paid

    @property
    def interest_left(self) -> Decimal:
        return self.interest_due - self.interest_paid


@dataclass
class Allocation:
    key: object
    principal: Decimal = ZERO
    interest: Decimal = ZERO
    penalty: Decimal = ZERO


@dataclass
class AllocationResult:
    allocations: list[Allocation] = field(default_factory=list)
    unallocated: Decimal = ZERO


def allocate(
    instalments: list[InstalmentState], value_date: date, amount: Decimal
) -> AllocationResult:
    """Apply `amount` to the instalments (sorted by due date) and return the split."""
    if amount <= 0:
        raise ValueError(f"Invalid repayment amount {amount}: it must be positive.")
    open_items = [item for item in instalments if item.settled_on is None]
    overdue = [item for item in open_items if item.due_date < value_date]
    later = [item for item in open_items if item.due_date >= value_date]

    parts: dict[object, Allocation] = {}
    remaining = amount
    steps = [(item, "interest") for item in overdue] + [(item, "principal") for item in overdue]
    for item in later:
        steps += [(item, "interest"), (item, "principal")]
    for item, component in steps:
        if remaining <= 0:
            break
        remaining = _pay(item, component, remaining, parts)

    for item in open_items:
        if item.principal_left == 0 and item.interest_left == 0 and item.key in parts:
            item.settled_on = value_date
    return AllocationResult(allocations=list(parts.values()), unallocated=remaining)


def _pay(
    item: InstalmentState, component: str, remaining: Decimal, parts: dict[object, Allocation]
) -> Decimal:
    left = item.interest_left if component == "interest" else item.principal_left
    paid = min(left, remaining)
    if paid <= 0:
        return remaining
    part = parts.setdefault(item.key, Allocation(key=item.key))
    if component == "interest":
        item.interest_paid += paid
        part.interest += paid
    else:
        item.principal_paid += paid
        part.principal += paid
    return remaining - paid
