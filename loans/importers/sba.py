"""Adapter for the SBA 7(a) loan-level file: outcomes, not payments.

The file records each loan's terms and outcome (paid in full or charged
off) but no interest rate and no repayment history. docs/import.md lists the
assumptions that fill those gaps and how many sample rows each one touches.
The import also reports each of them as a note.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

from django.utils.translation import gettext as _

from loans.models import (
    DayCount,
    Frequency,
    GuaranteeType,
    GuarantorKind,
    Product,
    RepaymentKind,
    RepaymentMethod,
    SizeClass,
)
from loans.schedules import build_schedule

from .base import (
    PROGRESS_EVERY,
    Messages,
    Progress,
    RowReader,
    SourceRow,
    Table,
    cell_text,
    check_header,
)
from .plans import (
    BorrowerPlan,
    BranchPlan,
    GuaranteePlan,
    LoanPlan,
    ParsedImport,
    allocate_to_principal,
)
from .reader import read_table

TABLE = "loans"
REQUIRED_COLUMNS = (
    "LoanNr_ChkDgt",
    "Name",
    "City",
    "State",
    "Zip",
    "Bank",
    "BankState",
    "NAICS",
    "ApprovalDate",
    "Term",
    "NoEmp",
    "NewExist",
    "RevLineCr",
    "LowDoc",
    "ChgOffDate",
    "DisbursementDate",
    "DisbursementGross",
    "MIS_Status",
    "ChgOffPrinGr",
    "SBA_Appv",
)
# Read for the header check only: nothing in the book stores them.
OTHER_COLUMNS = (
    "ApprovalFY",
    "CreateJob",
    "RetainedJob",
    "FranchiseCode",
    "UrbanRural",
    "GrAppv",
)

# Assumed terms: the file has no interest rate. Demo values, not facts about these loans.
ANNUAL_RATE = Decimal("0.080000")
DAY_COUNT = DayCount.THIRTY_360
FREQUENCY = Frequency.MONTHLY
TERM_WHEN_ZERO = 12
FIXED_ASSET_MIN_TERM = 120
# Regular payments stop this many days before the charge-off date.
DAYS_UNPAID_BEFORE_CHARGE_OFF = 180
# Two-digit years below this are 20xx, the others 19xx (the sample spans 1988-2014).
CENTURY_PIVOT = 30

PAID_IN_FULL = "P I F"
CHARGED_OFF = "CHGOFF"
AMOUNT_NOISE = "$, "

SBA_GUARANTOR = {
    "registration_number": "US-SBA",
    "name": "U.S. Small Business Administration",
    "kind": GuarantorKind.PUBLIC_SCHEME,
}

_MONTHS = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}


def parse_us_date(text: str) -> date:
    """Parse m/d/yyyy, as in ApprovalDate and DisbursementDate."""
    match = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", text)
    if not match:
        raise ValueError(text)
    month, day, year = (int(part) for part in match.groups())
    return date(year, month, day)


def parse_charge_off_date(text: str) -> date:
    """Parse d-Mon-yy, as in ChgOffDate, with two-digit years pivoted at 30."""
    match = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{2})", text)
    if not match or match.group(2).lower() not in _MONTHS:
        raise ValueError(text)
    short_year = int(match.group(3))
    year = 2000 + short_year if short_year < CENTURY_PIVOT else 1900 + short_year
    return date(year, _MONTHS[match.group(2).lower()], int(match.group(1)))


def size_class_for(employees: int) -> str:
    if employees < 10:
        return SizeClass.MICRO
    if employees < 50:
        return SizeClass.SMALL
    return SizeClass.MEDIUM


def parse_sba(path: Path, as_of: date, messages: Messages, progress: Progress) -> ParsedImport:
    table = read_table(path, TABLE)
    check_header(table, REQUIRED_COLUMNS, OTHER_COLUMNS)
    parsed = ParsedImport(tables=[table])
    seen: dict[str, int] = {}
    total = len(table.rows)

    for done, row in enumerate(table.rows, start=1):
        plan = _loan_plan(table, row, as_of, messages, seen)
        if plan is not None:
            parsed.plans.append(plan)
        contract_number = cell_text(row.values.get("LoanNr_ChkDgt"))
        if contract_number:
            parsed.contract_rows[(TABLE, row.number)] = [contract_number]
        if done % PROGRESS_EVERY == 0 or done == total:
            progress("read", done, total)
    return parsed


def _loan_plan(
    table: Table, row: SourceRow, as_of: date, messages: Messages, seen: dict[str, int]
) -> LoanPlan | None:
    reader = RowReader(table, row, messages)
    contract_number = _contract_number(reader, seen)
    borrower = _borrower(reader, contract_number)
    branch = _branch(reader)
    terms = _terms(reader)
    outcome = _outcome(reader, terms)
    if not reader.ok or terms is None or outcome is None:
        return None

    principal, disbursement_date, term = terms
    status, _date, charged_off = outcome
    if status == CHARGED_OFF and charged_off > principal:
        # The charged-off principal cannot exceed what was lent, so the file
        # must be missing a later disbursement.
        reader.note("ChgOffPrinGr", _("larger than DisbursementGross: used as the principal"))
        principal = charged_off
    product, method = _product(reader, term)
    guaranteed = _guaranteed_amount(reader)
    plan = LoanPlan(
        row=row.number,
        contract_number=contract_number,
        borrower=borrower,
        branch=branch,
        product=product,
        currency="USD",
        principal=principal,
        disbursement_date=disbursement_date,
        annual_rate=ANNUAL_RATE,
        day_count=DAY_COUNT,
        repayment_method=method,
        frequency=FREQUENCY,
        source="sba",
    )
    plan.prepare = partial(
        _prepare, reader=reader, term=term, outcome=outcome, guaranteed=guaranteed, as_of=as_of
    )
    return plan if reader.ok else None


def _prepare(
    plan: LoanPlan,
    reader: RowReader,
    term: int,
    outcome: tuple[str, date | None, Decimal],
    guaranteed: Decimal | None,
    as_of: date,
) -> bool:
    plan.schedule = build_schedule(
        plan.principal,
        ANNUAL_RATE,
        plan.disbursement_date,
        term,
        plan.repayment_method,
        FREQUENCY,
        DAY_COUNT,
    )
    _replay(plan, outcome, as_of)
    if guaranteed:
        plan.guarantees.append(_sba_guarantee(plan, guaranteed))
    return reader.ok


def _contract_number(reader: RowReader, seen: dict[str, int]) -> str:
    # 46 characters leave room for the "SBA-" prefix of the borrower number.
    contract_number = reader.text("LoanNr_ChkDgt", required=True, max_length=46)
    if contract_number in seen:
        reader.fail(
            "LoanNr_ChkDgt",
            _("duplicate contract number: also on row %(row)d") % {"row": seen[contract_number]},
        )
    elif contract_number:
        seen[contract_number] = reader.row.number
    return contract_number


def _borrower(reader: RowReader, contract_number: str) -> BorrowerPlan:
    postal_code = reader.text("Zip", max_length=20)
    industry_code = reader.text("NAICS")
    if industry_code == "0":
        industry_code = ""
    elif industry_code and not (industry_code.isdigit() and len(industry_code) <= 10):
        reader.note("NAICS", _("not a NAICS code: industry code left blank"))
        industry_code = ""
    employees = reader.integer("NoEmp", minimum=0)
    return BorrowerPlan(
        registration_number=f"SBA-{contract_number}",
        legal_name=reader.text("Name", required=True, max_length=255),
        size_class=size_class_for(employees or 0),
        industry_code=industry_code,
        region=reader.text("State", max_length=100),
        city=reader.text("City", max_length=100),
        postal_code="" if postal_code == "0" else postal_code,
        employees=employees,
        is_new_business=_is_new_business(reader),
    )


def _is_new_business(reader: RowReader) -> bool | None:
    code = reader.text("NewExist")
    if code not in {"0", "1", "2", ""}:
        reader.note("NewExist", _("unknown code: new business left unknown"))
    return {"1": False, "2": True}.get(code)


def _branch(reader: RowReader) -> BranchPlan:
    state = reader.text("BankState", max_length=16) or "XX"
    return BranchPlan(code=f"SBA-{state}", name=f"{state} lending banks", region=state)


def _terms(reader: RowReader) -> tuple[Decimal, date, int] | None:
    """Return (principal, disbursement date, term in months)."""
    gross = reader.decimal("DisbursementGross", positive=True, strip=AMOUNT_NOISE)
    approval_date = reader.date("ApprovalDate", parse_us_date, "m/d/yyyy")
    disbursement_date = reader.date("DisbursementDate", parse_us_date, "m/d/yyyy", required=False)
    if disbursement_date is None and approval_date is not None:
        reader.note("DisbursementDate", _("blank: ApprovalDate used as the disbursement date"))
        disbursement_date = approval_date
    term = reader.integer("Term", minimum=0)
    if term == 0:
        reader.note("Term", _("0 months: read as %(months)d months") % {"months": TERM_WHEN_ZERO})
        term = TERM_WHEN_ZERO
    if gross is None or disbursement_date is None or term is None:
        return None
    return gross, disbursement_date, term


def _outcome(
    reader: RowReader, terms: tuple[Decimal, date, int] | None
) -> tuple[str, date | None, Decimal] | None:
    """Return (status, charge-off date, charged-off principal); may raise the principal."""
    status = " ".join(reader.text("MIS_Status").upper().split())
    if status not in {PAID_IN_FULL, CHARGED_OFF, ""}:
        reader.note("MIS_Status", _("unknown outcome: no repayments, loan left active"))
        status = ""
    charge_off_date = reader.date(
        "ChgOffDate", parse_charge_off_date, "d-Mon-yy", required=status == CHARGED_OFF
    )
    charged_off = reader.decimal(
        "ChgOffPrinGr", required=False, minimum=Decimal(0), strip=AMOUNT_NOISE
    )
    if status == PAID_IN_FULL and charge_off_date is not None:
        reader.note("ChgOffDate", _("set on a P I F loan: ignored because MIS_Status wins"))
    if terms is None or (
        status == CHARGED_OFF and (charge_off_date is None or charged_off is None)
    ):
        return None

    principal, disbursement_date, _term = terms
    if status == CHARGED_OFF and charge_off_date < disbursement_date:
        reader.fail(
            "ChgOffDate",
            _("before the disbursement date %(date)s") % {"date": disbursement_date},
        )
        return None
    return status, charge_off_date, charged_off or Decimal("0")


def _product(reader: RowReader, term: int) -> tuple[str, str]:
    revolving = reader.text("RevLineCr").upper()
    if revolving not in {"Y", "N"}:
        reader.note("RevLineCr", _("unknown code: read as not a revolving line"))
    low_doc = reader.text("LowDoc").upper()
    if low_doc not in {"Y", "N"}:
        reader.note("LowDoc", _("unknown code: read as unknown"))
    if revolving == "Y":
        return Product.REVOLVING_LINE, RepaymentMethod.INTEREST_ONLY
    if term >= FIXED_ASSET_MIN_TERM:
        return Product.FIXED_ASSET, RepaymentMethod.ANNUITY
    return Product.WORKING_CAPITAL, RepaymentMethod.ANNUITY


def _replay(plan: LoanPlan, outcome: tuple[str, date | None, Decimal], as_of: date) -> None:
    status, charge_off_date, charged_off = outcome
    plan.start_replay()
    if status == PAID_IN_FULL:
        _pay_instalments_until(plan, as_of, floor=None)
    elif status == CHARGED_OFF:
        _replay_charge_off(plan, charge_off_date, charged_off, as_of)


def _replay_charge_off(
    plan: LoanPlan, charge_off_date: date, charged_off: Decimal, as_of: date
) -> None:
    last_paid = charge_off_date - timedelta(days=DAYS_UNPAID_BEFORE_CHARGE_OFF)
    _pay_instalments_until(plan, min(last_paid, as_of), floor=charged_off)
    if charge_off_date > as_of:
        return
    outstanding = plan.outstanding_principal()
    if outstanding > charged_off:
        allocate_to_principal(
            plan, charge_off_date, outstanding - charged_off, "RECOVERY", RepaymentKind.RECOVERY
        )
    plan.write_off_on(charge_off_date, charged_off, _("Charged off (SBA MIS_Status CHGOFF)"))


def _pay_instalments_until(plan: LoanPlan, last_date: date, floor: Decimal | None) -> None:
    """Pay each instalment in full on its due date, in order, up to `last_date`.

    With a `floor`, stop before the instalment whose payment would take the
    outstanding principal below it.
    """
    outstanding = plan.principal
    for index, state in enumerate(plan.states):
        if state.due_date > last_date:
            return
        if floor is not None and outstanding - state.principal_due < floor:
            return
        outstanding -= state.principal_due
        amount = state.principal_due + state.interest_due
        if amount == 0:
            state.settled_on = state.due_date
            continue
        # Every earlier instalment is settled and the amount is exactly this
        # one's total, so the waterfall over this instalment alone gives the
        # same split as over the whole schedule, without rescanning it.
        plan.apply_repayment(
            state.due_date,
            amount,
            f"INSTALMENT-{index + 1}",
            open_states=plan.states[index : index + 1],
        )


def _guaranteed_amount(reader: RowReader) -> Decimal | None:
    amount = reader.decimal("SBA_Appv", required=False, minimum=Decimal(0), strip=AMOUNT_NOISE)
    if not amount and reader.ok:
        reader.note("SBA_Appv", _("blank or 0: no SBA guarantee recorded"))
    return amount


def _sba_guarantee(plan: LoanPlan, amount: Decimal) -> GuaranteePlan:
    return GuaranteePlan(
        guarantor_registration_number=SBA_GUARANTOR["registration_number"],
        guarantor_name=SBA_GUARANTOR["name"],
        guarantor_kind=SBA_GUARANTOR["kind"],
        guarantee_type=GuaranteeType.GENERAL,
        amount=amount,
        percentage=None,
        valid_from=plan.disbursement_date,
        valid_to=plan.maturity_date,
    )
