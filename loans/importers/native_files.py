"""Row parsers for the sibling files of the native format (NAME.repayments.csv, ...).

Each parser checks the values of one file and returns them grouped by
contract number. Rules that need the loan, such as dates against the
disbursement date or sums against the principal, are checked in `native`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

from django.utils.translation import gettext as _

from loans.models import CollateralKind, GuaranteeType, GuarantorKind, RepaymentKind

from .base import Messages, RowReader, Table, iso_date
from .plans import CollateralPlan, GuaranteePlan, ParsedImport, ValuationPlan

ISO = "YYYY-MM-DD"
ONE = Decimal("1")

COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required columns, optional columns)
    "repayments": (("contract_number", "value_date", "amount", "reference"), ("kind",)),
    "schedule": (("contract_number", "number", "due_date", "principal", "interest"), ()),
    "guarantees": (
        (
            "contract_number",
            "guarantor_registration_number",
            "guarantor_name",
            "guarantor_kind",
            "guarantee_type",
            "valid_from",
        ),
        ("amount", "percentage", "valid_to"),
    ),
    "collateral": (
        ("contract_number", "reference", "kind", "description", "owner_name", "ltv_limit"),
        ("lien_rank", "insurance_expires_on", "share"),
    ),
    "valuations": (("reference", "valued_on", "value", "method", "valuer"), ()),
    "write_offs": (("contract_number", "written_off_on", "reason"), ()),
}


def codes(values: list[str]) -> dict[str, str]:
    return {value.lower(): value for value in values}


def find_sibling(path: Path, kind: str) -> Path | None:
    """Return NAME.KIND.csv or NAME.KIND.xlsx beside the loans file NAME.csv, if present."""
    for suffix in dict.fromkeys([path.suffix, ".csv", ".xlsx"]):
        candidate = path.with_name(f"{path.stem}.{kind}{suffix}")
        if candidate.is_file():
            return candidate
    return None


@dataclass
class RepaymentRow:
    row: int
    value_date: date
    amount: Decimal
    reference: str
    kind: str


@dataclass
class ScheduleRow:
    row: int
    number: int
    due_date: date
    principal: Decimal
    interest: Decimal


@dataclass
class WriteOffRow:
    row: int
    written_off_on: date
    reason: str


@dataclass
class GuaranteeRow:
    row: int
    guarantee: GuaranteePlan


@dataclass
class CollateralRows:
    """A collateral item and the (table, row) pairs it was read from."""

    plan: CollateralPlan
    rows: list[tuple[str, int]] = field(default_factory=list)
    first_row: int = 0


class SiblingParser:
    """Parse the rows of one sibling file against the contracts of the loans file."""

    def __init__(
        self, table: Table, messages: Messages, contracts: set[str], parsed: ParsedImport
    ) -> None:
        self.table = table
        self.messages = messages
        self.contracts = contracts
        self.parsed = parsed

    def contract(self, reader: RowReader) -> str:
        contract_number = reader.text("contract_number", required=True)
        if not contract_number:
            return ""
        self.parsed.contract_rows[(self.table.label, reader.row.number)] = [contract_number]
        if contract_number not in self.contracts:
            reader.fail("contract_number", _("not in the loans file"))
        return contract_number

    def repayments(self) -> dict[str, list[RepaymentRow]]:
        found: dict[str, list[RepaymentRow]] = {}
        references: dict[tuple[str, str], int] = {}
        for row in self.table.rows:
            reader = RowReader(self.table, row, self.messages)
            contract_number = self.contract(reader)
            value_date = reader.date("value_date", iso_date, ISO)
            amount = reader.decimal("amount", positive=True)
            reference = reader.text("reference", required=True, max_length=64)
            kind = reader.text("kind").lower() or RepaymentKind.REGULAR
            if kind not in RepaymentKind.values:
                reader.note("kind", _("unknown repayment kind: read as regular"))
                kind = RepaymentKind.REGULAR
            key = (contract_number, reference)
            if reference and key in references:
                reader.fail(
                    "reference",
                    _("duplicate reference for this loan: also on row %(row)d")
                    % {"row": references[key]},
                )
            references.setdefault(key, row.number)
            if reader.ok:
                found.setdefault(contract_number, []).append(
                    RepaymentRow(row.number, value_date, amount, reference, kind)
                )
        return found

    def schedule(self) -> dict[str, list[ScheduleRow]]:
        found: dict[str, list[ScheduleRow]] = {}
        for row in self.table.rows:
            reader = RowReader(self.table, row, self.messages)
            contract_number = self.contract(reader)
            number = reader.integer("number", minimum=1)
            due_date = reader.date("due_date", iso_date, ISO)
            principal = reader.decimal("principal", minimum=Decimal(0))
            interest = reader.decimal("interest", minimum=Decimal(0))
            if reader.ok:
                found.setdefault(contract_number, []).append(
                    ScheduleRow(row.number, number, due_date, principal, interest)
                )
        return found

    def write_offs(self) -> dict[str, WriteOffRow]:
        found: dict[str, WriteOffRow] = {}
        for row in self.table.rows:
            reader = RowReader(self.table, row, self.messages)
            contract_number = self.contract(reader)
            written_off_on = reader.date("written_off_on", iso_date, ISO)
            reason = reader.text("reason", required=True, max_length=255)
            if contract_number in found:
                reader.fail(
                    "contract_number",
                    _("duplicate write-off for this loan: also on row %(row)d")
                    % {"row": found[contract_number].row},
                )
            elif reader.ok:
                found[contract_number] = WriteOffRow(row.number, written_off_on, reason)
        return found

    def guarantees(self) -> dict[str, list[GuaranteeRow]]:
        found: dict[str, list[GuaranteeRow]] = {}
        seen: dict[tuple[str, str], int] = {}
        for row in self.table.rows:
            reader = RowReader(self.table, row, self.messages)
            contract_number = self.contract(reader)
            guarantee = self._guarantee(reader)
            key = (contract_number, guarantee.guarantor_registration_number)
            if key in seen:
                reader.fail(
                    "guarantor_registration_number",
                    _("this guarantor already guarantees this loan on row %(row)d")
                    % {"row": seen[key]},
                )
            seen.setdefault(key, row.number)
            if reader.ok:
                found.setdefault(contract_number, []).append(GuaranteeRow(row.number, guarantee))
        return found

    def _guarantee(self, reader: RowReader) -> GuaranteePlan:
        amount = reader.decimal("amount", required=False, positive=True)
        percentage = reader.decimal("percentage", required=False, places=4, positive=True)
        if percentage is not None and percentage > 100:
            reader.fail("percentage", _("must be 100 or less"))
        if amount is None and percentage is None and reader.ok:
            reader.fail("amount", _("missing value: give an amount or a percentage"))
        valid_from = reader.date("valid_from", iso_date, ISO)
        valid_to = reader.date("valid_to", iso_date, ISO, required=False)
        if valid_from and valid_to and valid_to < valid_from:
            reader.fail("valid_to", _("before valid_from %(date)s") % {"date": valid_from})
        return GuaranteePlan(
            guarantor_registration_number=reader.text(
                "guarantor_registration_number", required=True, max_length=50
            ),
            guarantor_name=reader.text("guarantor_name", required=True, max_length=255),
            guarantor_kind=reader.choice("guarantor_kind", codes(GuarantorKind.values)),
            guarantee_type=reader.choice("guarantee_type", codes(GuaranteeType.values)),
            amount=amount,
            percentage=percentage,
            valid_from=valid_from,
            valid_to=valid_to,
        )

    def collateral(self) -> dict[str, CollateralRows]:
        """Read one row per pledge; rows with the same reference are one item."""
        items: dict[str, CollateralRows] = {}
        for row in self.table.rows:
            reader = RowReader(self.table, row, self.messages)
            contract_number = self.contract(reader)
            item = self._collateral_item(reader)
            share = reader.decimal("share", required=False, places=4, positive=True) or ONE
            if share > ONE:
                reader.fail("share", _("must be 1 or less (1 pledges the whole item)"))
            if not reader.ok:
                continue
            known = items.get(item.reference)
            if known is None:
                known = items[item.reference] = CollateralRows(item, first_row=row.number)
            elif _item_fields(known.plan) != _item_fields(item):
                reader.fail(
                    "reference",
                    _("same reference as row %(row)d but different item details")
                    % {"row": known.first_row},
                )
                continue
            known.plan.pledges.append((contract_number, share))
            known.rows.append((self.table.label, row.number))
        return items

    def _collateral_item(self, reader: RowReader) -> CollateralPlan:
        ltv_limit = reader.decimal("ltv_limit", places=4, positive=True)
        if ltv_limit is not None and ltv_limit > ONE:
            reader.fail("ltv_limit", _("must be 1 or less (0.5 for 50%)"))
        return CollateralPlan(
            reference=reader.text("reference", required=True, max_length=50),
            kind=reader.choice("kind", codes(CollateralKind.values)),
            description=reader.text("description", required=True, max_length=255),
            owner_name=reader.text("owner_name", required=True, max_length=255),
            lien_rank=reader.integer("lien_rank", required=False, minimum=1) or 1,
            ltv_limit=ltv_limit,
            insurance_expires_on=reader.date("insurance_expires_on", iso_date, ISO, False),
        )

    def valuations(self, items: dict[str, CollateralRows]) -> None:
        """Attach valuations to the collateral items they name by reference."""
        seen: dict[tuple[str, date], int] = {}
        for row in self.table.rows:
            reader = RowReader(self.table, row, self.messages)
            reference = reader.text("reference", required=True)
            item = items.get(reference)
            if reference and item is None:
                reader.fail("reference", _("not in the collateral file"))
            valuation = ValuationPlan(
                valued_on=reader.date("valued_on", iso_date, ISO),
                value=reader.decimal("value", positive=True),
                method=reader.text("method", required=True, max_length=100),
                valuer=reader.text("valuer", required=True, max_length=200),
            )
            key = (reference, valuation.valued_on)
            if valuation.valued_on and key in seen:
                reader.fail(
                    "valued_on",
                    _("this item already has a valuation on this date on row %(row)d")
                    % {"row": seen[key]},
                )
            seen.setdefault(key, row.number)
            if item is None:
                continue
            item.rows.append((self.table.label, row.number))
            if reader.ok:
                item.plan.valuations.append(valuation)


def _item_fields(item: CollateralPlan) -> tuple:
    return (
        item.kind,
        item.description,
        item.owner_name,
        item.lien_rank,
        item.ltv_limit,
        item.insurance_expires_on,
    )
