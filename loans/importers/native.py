"""Adapter for the native format: a loans file and optional sibling files beside it.

The columns of each file are described in docs/import.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import partial
from pathlib import Path

from django.contrib.auth import get_user_model
from django.utils.translation import gettext as _

from loans.models import (
    CURRENCIES,
    Branch,
    DayCount,
    Frequency,
    Product,
    RepaymentMethod,
    SizeClass,
)
from loans.schedules import ScheduledInstalment, build_schedule

from .base import Messages, Progress, RowReader, Table, cell_text, check_header, iso_date
from .native_files import (
    COLUMNS,
    ISO,
    CollateralRows,
    GuaranteeRow,
    RepaymentRow,
    ScheduleRow,
    SiblingParser,
    WriteOffRow,
    codes,
    find_sibling,
)
from .plans import BorrowerPlan, BranchPlan, CollateralPlan, LoanPlan, ParsedImport
from .reader import read_table
from .writer import existing_values

LOANS = "loans"
LOANS_REQUIRED = (
    "contract_number",
    "borrower_registration_number",
    "borrower_name",
    "size_class",
    "branch_code",
    "product",
    "currency",
    "principal",
    "disbursement_date",
    "maturity_date",
    "annual_rate_percent",
    "day_count",
    "repayment_method",
    "frequency",
    "periods",
)
LOANS_OPTIONAL = (
    "industry_code",
    "region",
    "city",
    "postal_code",
    "employees",
    "branch_name",
    "purpose",
    "officer_username",
)
DAY_COUNTS = {
    **codes(DayCount.values),
    "actual/360": DayCount.ACT_360,
    "act/360": DayCount.ACT_360,
    "actual/365": DayCount.ACT_365,
    "act/365": DayCount.ACT_365,
    "30/360": DayCount.THIRTY_360,
}


@dataclass
class LoanRow:
    """A valid row of the loans file, before its schedule and repayments are added."""

    plan: LoanPlan
    maturity_date: date
    periods: int | None


@dataclass
class Siblings:
    repayments: dict[str, list[RepaymentRow]]
    schedule: dict[str, list[ScheduleRow]]
    write_offs: dict[str, WriteOffRow]
    guarantees: dict[str, list[GuaranteeRow]]
    collateral: dict[str, CollateralRows]
    tables: dict[str, Table]


def parse_native(path: Path, as_of: date, messages: Messages, progress: Progress) -> ParsedImport:
    table = read_table(path, LOANS)
    check_header(table, LOANS_REQUIRED, LOANS_OPTIONAL)
    _note_unknown_columns(table, LOANS_REQUIRED + LOANS_OPTIONAL, messages)
    parsed = ParsedImport(tables=[table])
    loan_parser = LoanRowParser(table, messages, parsed)
    loan_rows = loan_parser.parse()
    siblings = _read_siblings(path, messages, set(loan_parser.contract_rows), parsed)

    for loan_row in loan_rows:
        loan_row.plan.prepare = partial(
            _prepare, loan_row=loan_row, siblings=siblings, as_of=as_of, messages=messages
        )
        parsed.plans.append(loan_row.plan)
    progress("read", len(table.rows), len(table.rows))
    parsed.collateral = _collateral(siblings.collateral, parsed)
    return parsed


def _note_unknown_columns(table: Table, known: tuple[str, ...], messages: Messages) -> None:
    for name in table.header:
        if name and name not in known:
            messages.note(table.label, None, name, "", _("unknown column: ignored"))


def _read_siblings(
    path: Path, messages: Messages, contracts: set[str], parsed: ParsedImport
) -> Siblings:
    tables = {}
    for kind, (required, optional) in COLUMNS.items():
        sibling = find_sibling(path, kind)
        if sibling is None:
            continue
        table = read_table(sibling, kind)
        check_header(table, required, optional)
        _note_unknown_columns(table, required + optional, messages)
        tables[kind] = table
        parsed.tables.append(table)

    def parser(kind: str) -> SiblingParser | None:
        return SiblingParser(tables[kind], messages, contracts, parsed) if kind in tables else None

    collateral = parser("collateral").collateral() if "collateral" in tables else {}
    if "valuations" in tables:
        parser("valuations").valuations(collateral)
    return Siblings(
        repayments=parser("repayments").repayments() if "repayments" in tables else {},
        schedule=parser("schedule").schedule() if "schedule" in tables else {},
        write_offs=parser("write_offs").write_offs() if "write_offs" in tables else {},
        guarantees=parser("guarantees").guarantees() if "guarantees" in tables else {},
        collateral=collateral,
        tables=tables,
    )


class LoanRowParser:
    """Parse the rows of the loans file; borrowers and branches may repeat across rows."""

    def __init__(self, table: Table, messages: Messages, parsed: ParsedImport) -> None:
        self.table = table
        self.messages = messages
        self.parsed = parsed
        self.contract_rows: dict[str, int] = {}
        self.borrowers: dict[str, tuple[int, BorrowerPlan]] = {}
        self.branches: dict[str, BranchPlan] = {}
        column_values = {
            column: {cell_text(row.values.get(column)) for row in table.rows}
            for column in ("branch_code", "officer_username")
        }
        self.known_branches = {
            row["code"]: row["name"]
            for row in existing_values(Branch, "code", column_values["branch_code"], "name")
        }
        self.known_usernames = {
            row["username"]
            for row in existing_values(
                get_user_model(), "username", column_values["officer_username"] - {""}
            )
        }

    def parse(self) -> list[LoanRow]:
        return [row for row in map(self._row, self.table.rows) if row is not None]

    def _row(self, row) -> LoanRow | None:
        reader = RowReader(self.table, row, self.messages)
        contract_number = self._contract_number(reader)
        borrower = self._borrower(reader)
        branch = self._branch(reader)
        plan = LoanPlan(
            row=row.number,
            contract_number=contract_number,
            borrower=borrower,
            branch=branch,
            product=reader.choice("product", codes(Product.values)),
            purpose=reader.text("purpose", max_length=255),
            currency=self._currency(reader),
            principal=reader.decimal("principal", positive=True),
            disbursement_date=reader.date("disbursement_date", iso_date, ISO),
            annual_rate=self._annual_rate(reader),
            day_count=reader.choice("day_count", DAY_COUNTS),
            repayment_method=reader.choice("repayment_method", codes(RepaymentMethod.values)),
            frequency=reader.choice("frequency", codes(Frequency.values)),
            source="native",
            officer_username=self._officer(reader),
        )
        maturity_date = reader.date("maturity_date", iso_date, ISO)
        if maturity_date and plan.disbursement_date and maturity_date <= plan.disbursement_date:
            reader.fail(
                "maturity_date",
                _("maturity date is on or before the disbursement date %(date)s")
                % {"date": plan.disbursement_date},
            )
        custom = plan.repayment_method == RepaymentMethod.CUSTOM
        periods = reader.integer("periods", required=not custom, minimum=1)
        return LoanRow(plan, maturity_date, periods) if reader.ok else None

    def _contract_number(self, reader: RowReader) -> str:
        contract_number = reader.text("contract_number", required=True, max_length=50)
        if not contract_number:
            return ""
        self.parsed.contract_rows[(self.table.label, reader.row.number)] = [contract_number]
        if contract_number in self.contract_rows:
            reader.fail(
                "contract_number",
                _("duplicate contract number: also on row %(row)d")
                % {"row": self.contract_rows[contract_number]},
            )
        else:
            self.contract_rows[contract_number] = reader.row.number
        return contract_number

    def _borrower(self, reader: RowReader) -> BorrowerPlan:
        number = reader.text("borrower_registration_number", required=True, max_length=50)
        borrower = BorrowerPlan(
            registration_number=number,
            legal_name=reader.text("borrower_name", required=True, max_length=255),
            size_class=reader.choice("size_class", codes(SizeClass.values)),
            industry_code=self._industry_code(reader),
            region=reader.text("region", max_length=100),
            city=reader.text("city", max_length=100),
            postal_code=reader.text("postal_code", max_length=20),
            employees=self._employees(reader),
        )
        first = self.borrowers.get(number)
        if first is None:
            self.borrowers[number] = (reader.row.number, borrower)
            return borrower
        first_row, first_borrower = first
        if first_borrower.legal_name != borrower.legal_name:
            reader.fail(
                "borrower_name",
                _('the same borrower is named "%(name)s" on row %(row)d')
                % {"name": first_borrower.legal_name, "row": first_row},
            )
        return first_borrower

    def _industry_code(self, reader: RowReader) -> str:
        code = reader.text("industry_code")
        if len(code) > 10:
            reader.note("industry_code", _("longer than 10 characters: left blank"))
            return ""
        return code

    def _employees(self, reader: RowReader) -> int | None:
        text = reader.text("employees")
        if text and not text.isdigit():
            reader.note("employees", _("not a whole number: left blank"))
            return None
        return int(text) if text else None

    def _branch(self, reader: RowReader) -> BranchPlan:
        code = reader.text("branch_code", required=True, max_length=20)
        name = reader.text("branch_name", max_length=200)
        if code in self.branches:
            return self.branches[code]
        if code in self.known_branches:
            name = self.known_branches[code]
        elif code and not name:
            reader.fail(
                "branch_code",
                _("branch not in the book: give its name in branch_name to create it"),
            )
            return BranchPlan(code=code, name=code)
        branch = self.branches[code] = BranchPlan(code=code, name=name)
        return branch

    def _currency(self, reader: RowReader) -> str:
        currency = reader.text("currency", required=True).upper()
        if currency and currency not in CURRENCIES:
            reader.fail(
                "currency",
                _("unknown currency: expected one of %(codes)s") % {"codes": ", ".join(CURRENCIES)},
            )
        return currency

    def _annual_rate(self, reader: RowReader) -> Decimal | None:
        percent = reader.decimal("annual_rate_percent", places=4, minimum=Decimal(0))
        return None if percent is None else percent / 100

    def _officer(self, reader: RowReader) -> str:
        username = reader.text("officer_username")
        if username and username not in self.known_usernames:
            reader.note("officer_username", _("no such user: loan left without an officer"))
            return ""
        return username


def _prepare(
    plan: LoanPlan, loan_row: LoanRow, siblings: Siblings, as_of: date, messages: Messages
) -> bool:
    """Build the schedule, replay the repayments and apply the write-off."""
    errors_before = len(messages.errors)
    number = plan.contract_number
    schedule = _schedule(loan_row, siblings.schedule.get(number, []), messages)
    if schedule is None:
        return False
    plan.schedule = schedule
    if plan.maturity_date != loan_row.maturity_date:
        messages.error(
            LOANS,
            plan.row,
            "maturity_date",
            loan_row.maturity_date,
            _("does not match the last due date %(date)s of the schedule")
            % {"date": plan.maturity_date},
        )
        return False

    plan.start_replay()
    write_off = siblings.write_offs.get(number)
    for repayment in sorted(
        siblings.repayments.get(number, []), key=lambda r: (r.value_date, r.row)
    ):
        _apply_repayment(plan, repayment, write_off, as_of, messages)
    if write_off is not None:
        _write_off(plan, write_off, as_of, messages)
    plan.guarantees = [row.guarantee for row in siblings.guarantees.get(number, [])]
    return len(messages.errors) == errors_before


def _schedule(
    loan_row: LoanRow, rows: list[ScheduleRow], messages: Messages
) -> list[ScheduledInstalment] | None:
    plan = loan_row.plan
    if plan.repayment_method != RepaymentMethod.CUSTOM:
        for row in rows:
            messages.error(
                "schedule",
                row.row,
                "contract_number",
                plan.contract_number,
                _("the loan's repayment_method is %(method)s: only custom loans take a schedule")
                % {"method": plan.repayment_method},
            )
        try:
            return build_schedule(
                plan.principal,
                plan.annual_rate,
                plan.disbursement_date,
                loan_row.periods,
                plan.repayment_method,
                plan.frequency,
                plan.day_count,
            )
        except ValueError as error:
            messages.error(LOANS, plan.row, "periods", loan_row.periods, str(error))
            return None
    return _custom_schedule(loan_row, rows, messages)


def _custom_schedule(
    loan_row: LoanRow, rows: list[ScheduleRow], messages: Messages
) -> list[ScheduledInstalment] | None:
    plan = loan_row.plan
    if not rows:
        messages.error(
            LOANS,
            plan.row,
            "repayment_method",
            plan.repayment_method,
            _("custom schedule missing: no rows for this loan in the schedule file"),
        )
        return None

    rows = sorted(rows, key=lambda row: row.number)
    errors_before = len(messages.errors)
    _check_schedule_rows(plan, rows, messages)
    _check_schedule_totals(loan_row, rows, messages)
    if len(messages.errors) > errors_before:
        return None

    balance = plan.principal
    schedule = []
    for row in rows:
        balance -= row.principal
        schedule.append(
            ScheduledInstalment(row.number, row.due_date, row.principal, row.interest, balance)
        )
    return schedule


def _check_schedule_rows(plan: LoanPlan, rows: list[ScheduleRow], messages: Messages) -> None:
    previous_due = plan.disbursement_date
    for expected, row in enumerate(rows, start=1):
        if row.number != expected:
            messages.error(
                "schedule",
                row.row,
                "number",
                row.number,
                _("expected instalment number %(number)d: numbers run 1, 2, 3, ... per loan")
                % {"number": expected},
            )
        if row.due_date <= previous_due:
            messages.error(
                "schedule",
                row.row,
                "due_date",
                row.due_date,
                _("must be after %(date)s (the disbursement date or the previous due date)")
                % {"date": previous_due},
            )
        previous_due = row.due_date


def _check_schedule_totals(loan_row: LoanRow, rows: list[ScheduleRow], messages: Messages) -> None:
    plan = loan_row.plan
    total = sum((row.principal for row in rows), Decimal(0))
    if total != plan.principal:
        messages.error(
            LOANS,
            plan.row,
            "principal",
            plan.principal,
            _("the schedule's principal adds up to %(total)s, not the loan's principal")
            % {"total": total},
        )
    if loan_row.periods is not None and loan_row.periods != len(rows):
        messages.error(
            LOANS,
            plan.row,
            "periods",
            loan_row.periods,
            _("the schedule has %(count)d instalments") % {"count": len(rows)},
        )


def _apply_repayment(
    plan: LoanPlan,
    repayment: RepaymentRow,
    write_off: WriteOffRow | None,
    as_of: date,
    messages: Messages,
) -> None:
    reason = None
    if repayment.value_date < plan.disbursement_date:
        reason = _("value date is before the disbursement date %(date)s") % {
            "date": plan.disbursement_date
        }
    elif repayment.value_date > as_of:
        reason = _("value date is after the as-of date %(date)s") % {"date": as_of}
    elif write_off is not None and repayment.value_date > write_off.written_off_on:
        reason = _("value date is after the write-off date %(date)s") % {
            "date": write_off.written_off_on
        }
    if reason is not None:
        messages.error("repayments", repayment.row, "value_date", repayment.value_date, reason)
        return
    plan.apply_repayment(
        repayment.value_date, repayment.amount, repayment.reference, repayment.kind
    )


def _write_off(plan: LoanPlan, write_off: WriteOffRow, as_of: date, messages: Messages) -> None:
    reason = None
    if write_off.written_off_on < plan.disbursement_date:
        reason = _("before the disbursement date %(date)s") % {"date": plan.disbursement_date}
    elif write_off.written_off_on > as_of:
        reason = _("after the as-of date %(date)s") % {"date": as_of}
    elif plan.closed_on is not None:
        reason = _("the loan was paid off on %(date)s: nothing is left to write off") % {
            "date": plan.closed_on
        }
    if reason is not None:
        messages.error(
            "write_offs", write_off.row, "written_off_on", write_off.written_off_on, reason
        )
        return
    plan.write_off_on(write_off.written_off_on, plan.outstanding_principal(), write_off.reason)


def _collateral(items: dict[str, CollateralRows], parsed: ParsedImport) -> list[CollateralPlan]:
    """Link every row of a collateral item to all the loans it is pledged to."""
    for item in items.values():
        contracts = sorted({contract for contract, _share in item.plan.pledges})
        for key in item.rows:
            parsed.contract_rows[key] = contracts
    parsed.collateral_rows = {item.plan.reference: item.rows for item in items.values()}
    return [item.plan for item in items.values()]
