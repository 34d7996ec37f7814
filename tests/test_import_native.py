"""The import_loans command with --format native: loans file and its sibling files."""

from __future__ import annotations

import csv
import io
import logging
import shutil
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from openpyxl import Workbook

from loans.models import (
    Borrower,
    Branch,
    Collateral,
    CollateralPledge,
    Guarantee,
    Instalment,
    Loan,
    LoanStatus,
    Repayment,
    RepaymentAllocation,
    WriteOff,
)

from .factories import LoanFactory

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).parent / "data" / "import"
AS_OF = "2024-12-31"
# Queries for a whole import of up to 500 loans (one write chunk) without
# sibling files: lookups, then inserts and history rows per table. Measured:
# 15 on PostgreSQL for 1 and for 60 loans. On SQLite 15 and 18, because Django
# splits inserts of wide rows into statements of at most 999 parameters.
NATIVE_QUERY_LIMIT = 20


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """Copy the native sample files to a scratch folder and return the loans file."""
    for source in SAMPLE.iterdir():
        shutil.copy(source, tmp_path / source.name)
    return tmp_path / "book.csv"


def run_import(path: Path, *options: str, file_format: str = "native") -> tuple[str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(
        "import_loans",
        str(path),
        "--format",
        file_format,
        "--as-of",
        AS_OF,
        *options,
        stdout=stdout,
        stderr=stderr,
    )
    return stdout.getvalue(), stderr.getvalue()


def failed_import(path: Path, *options: str, file_format: str = "native") -> str:
    """Run an import that must fail; return the error message and the error list."""
    stderr = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command(
            "import_loans",
            str(path),
            "--format",
            file_format,
            "--as-of",
            AS_OF,
            *options,
            stdout=io.StringIO(),
            stderr=stderr,
        )
    return f"{raised.value}\n{stderr.getvalue()}"


def book_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count() for model in (Loan, Borrower, Instalment, Repayment)
    }


def all_table_counts() -> dict[str, int]:
    """Count the rows of every model's table, history tables included."""
    tables = set(connection.introspection.table_names())
    return {
        model._meta.label: model.objects.count()
        for model in apps.get_models()
        if model._meta.db_table in tables
    }


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, header)
        writer.writeheader()
        writer.writerows(rows)


def edit_cell(path: Path, index: int, column: str, value: str) -> None:
    header, rows = read_rows(path)
    rows[index][column] = value
    write_rows(path, header, rows)


def test_native_sample_creates_loans(book):
    stdout, _stderr = run_import(book)

    loan = Loan.objects.get(contract_number="LN-1001")
    assert "loans created: 3" in stdout
    assert loan.borrower.registration_number == "REG-0001"
    assert loan.borrower.employees == 24
    assert loan.branch.code == "IMP-N"
    assert loan.branch.name == "Import North"
    assert loan.annual_rate == Decimal("0.060000")
    assert loan.maturity_date == date(2024, 1, 15)
    assert loan.source == "native"
    assert loan.instalments.count() == 12
    assert Borrower.objects.count() == 2


def test_native_repayments_are_allocated(book):
    run_import(book)

    loan = Loan.objects.get(contract_number="LN-1001")
    first, second = loan.instalments.order_by("number")[:2]
    assert loan.repayments.count() == 2
    assert first.settled_on == date(2023, 2, 15)
    assert first.interest_paid == Decimal("60.00")
    assert first.principal_paid == Decimal("972.80")
    assert second.settled_on == date(2023, 3, 20)
    assert RepaymentAllocation.objects.filter(loan=loan).count() == 2
    assert loan.status == LoanStatus.ACTIVE


def test_native_loan_paid_off_by_repayment(book):
    run_import(book)

    loan = Loan.objects.get(contract_number="LN-1003")
    repayment = loan.repayments.get()
    assert loan.status == LoanStatus.PAID_OFF
    assert loan.closed_on == date(2023, 9, 1)
    assert not loan.instalments.filter(settled_on__isnull=True).exists()
    assert repayment.unallocated == Decimal("763.60")


def test_native_reimport_changes_nothing(book):
    run_import(book)
    counts = all_table_counts()

    stdout, _stderr = run_import(book)

    assert all_table_counts() == counts
    assert "unchanged (already present): 3" in stdout
    assert "loans created: 0" in stdout


def test_native_import_reports_progress(book, caplog):
    caplog.set_level(logging.INFO, logger="loans.importers.run")

    stdout, _stderr = run_import(book)

    assert "validated 3/3" in stdout
    assert "written 3/3" in stdout
    assert "import_loans start file=book.csv" in caplog.text
    assert "import_loans end file=book.csv rows=3 created=3" in caplog.text


def test_native_import_writes_history(book):
    run_import(book)

    loan_history = Loan.history.filter(contract_number="LN-1001").get()
    assert loan_history.history_type == "+"
    assert loan_history.history_change_reason == "Imported from book.csv (native format)"
    assert Borrower.history.count() == 2


def test_native_guarantees_file_imports(book):
    run_import(book)

    person = Guarantee.objects.get(loan__contract_number="LN-1001")
    company = Guarantee.objects.get(loan__contract_number="LN-1002")
    assert person.guarantor.name == "Jane Harbour"
    assert person.guarantor.kind == "person"
    assert person.guarantee_type == "joint_several"
    assert person.amount == Decimal("6000.00")
    assert person.valid_to == date(2024, 1, 15)
    assert company.percentage == Decimal("50")
    assert company.amount is None


def test_native_collateral_file_imports(book):
    run_import(book)

    workshop = Collateral.objects.get(reference="COL-01")
    shares = dict(workshop.pledges.values_list("loan__contract_number", "share"))
    assert workshop.kind == "commercial_real_estate"
    assert workshop.ltv_limit == Decimal("0.7")
    assert shares == {"LN-1001": Decimal("0.6"), "LN-1002": Decimal("0.4")}
    assert list(workshop.valuations.values_list("value", flat=True)) == [
        Decimal("140000.00"),
        Decimal("150000.00"),
    ]
    assert CollateralPledge.objects.count() == 3


def test_native_custom_schedule_imports(book):
    edit_cell(book, 2, "repayment_method", "custom")
    edit_cell(book, 2, "periods", "")
    schedule = book.with_name("book.schedule.csv")
    write_rows(
        schedule,
        ["contract_number", "number", "due_date", "principal", "interest"],
        [
            {
                "contract_number": "LN-1003",
                "number": "1",
                "due_date": "2023-06-01",
                "principal": "2000.00",
                "interest": "115.63",
            },
            {
                "contract_number": "LN-1003",
                "number": "2",
                "due_date": "2023-09-01",
                "principal": "3000.00",
                "interest": "71.05",
            },
        ],
    )

    run_import(book)

    loan = Loan.objects.get(contract_number="LN-1003")
    due = list(loan.instalments.values_list("due_date", "principal_due", "interest_due"))
    assert loan.repayment_method == "custom"
    assert due == [
        (date(2023, 6, 1), Decimal("2000.00"), Decimal("115.63")),
        (date(2023, 9, 1), Decimal("3000.00"), Decimal("71.05")),
    ]
    assert loan.status == LoanStatus.PAID_OFF


def test_native_write_off_file_imports(book):
    write_rows(
        book.with_name("book.write_offs.csv"),
        ["contract_number", "written_off_on", "reason"],
        [{"contract_number": "LN-1001", "written_off_on": "2023-12-31", "reason": "Insolvent"}],
    )

    stdout, _stderr = run_import(book)

    loan = Loan.objects.get(contract_number="LN-1001")
    assert loan.status == LoanStatus.WRITTEN_OFF
    assert loan.closed_on == date(2023, 12, 31)
    assert loan.write_off.principal == Decimal("12000.00") - Decimal("972.80") - Decimal("977.66")
    assert loan.write_off.interest > 0
    assert "written off: 1" in stdout


def test_native_xlsx_matches_csv(tmp_path):
    header, rows = read_rows(SAMPLE / "book.csv")
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        cells = [row[name] for name in header]
        cells[header.index("disbursement_date")] = date.fromisoformat(row["disbursement_date"])
        cells[header.index("principal")] = float(row["principal"])
        cells[header.index("periods")] = int(row["periods"])
        sheet.append(cells)
    path = tmp_path / "book.xlsx"
    workbook.save(path)

    run_import(path)

    loan = Loan.objects.get(contract_number="LN-1002")
    assert loan.disbursement_date == date(2022, 6, 30)
    assert loan.principal == Decimal("80000.00")
    assert loan.instalments.count() == 8
    assert Loan.objects.count() == 3


def test_unknown_officer_becomes_note(book):
    edit_cell(book, 0, "officer_username", "nobody")

    stdout, _stderr = run_import(book)

    assert Loan.objects.get(contract_number="LN-1001").officer is None
    assert "column officer_username on 1 row(s)" in stdout
    assert "no such user: loan left without an officer" in stdout


def test_known_officer_is_linked(book, officer):
    edit_cell(book, 0, "officer_username", "officer")

    run_import(book)

    assert Loan.objects.get(contract_number="LN-1001").officer == officer


def test_existing_branch_keeps_its_name(book, branch_north):
    header, rows = read_rows(book)
    for row in rows:
        row["branch_code"] = "NORTH"
        row["branch_name"] = ""
    write_rows(book, header, rows)

    run_import(book)

    assert Loan.objects.filter(branch=branch_north).count() == 3
    assert Branch.objects.get(code="NORTH").name == "North"


def test_skip_invalid_writes_rejects(book):
    edit_cell(book, 2, "principal", "12a0")

    stdout, stderr = run_import(book, "--skip-invalid")

    rejects_header, rejects = read_rows(book.with_name("book.rejects.csv"))
    assert set(Loan.objects.values_list("contract_number", flat=True)) == {"LN-1001", "LN-1002"}
    assert "rejected: 1" in stdout
    assert 'loans row 4, column principal, value "12a0": not a number' in stderr
    assert rejects_header[-4:] == ["row", "column", "value", "reason"]
    assert [row["contract_number"] for row in rejects] == ["LN-1003"]
    assert rejects[0]["row"] == "4"
    assert rejects[0]["column"] == "principal"
    assert rejects[0]["reason"] == "not a number"


def test_skip_invalid_rejects_sibling_rows(book):
    edit_cell(book, 0, "currency", "XYZ")

    run_import(book, "--skip-invalid")

    _header, repayments = read_rows(book.with_name("book.rejects.repayments.csv"))
    _header, guarantees = read_rows(book.with_name("book.rejects.guarantees.csv"))
    assert [row["reference"] for row in repayments] == ["PAY-0001", "PAY-0002"]
    assert "rejected with loan LN-1001" in repayments[0]["reason"]
    # COL-01 is pledged to LN-1001 too, so LN-1002 goes with it.
    assert len(guarantees) == 2
    assert set(Loan.objects.values_list("contract_number", flat=True)) == {"LN-1003"}


def test_rejects_option_sets_path(book, tmp_path):
    edit_cell(book, 2, "disbursement_date", "2023-02-30")
    target = tmp_path / "out" / "bad.csv"
    target.parent.mkdir()

    run_import(book, "--skip-invalid", "--rejects", str(target))

    _header, rejects = read_rows(target)
    assert rejects[0]["contract_number"] == "LN-1003"
    assert rejects[0]["reason"] == "not a valid date: expected YYYY-MM-DD"


def test_native_query_count_is_flat(tmp_path, django_assert_max_num_queries):
    header, rows = read_rows(SAMPLE / "book.csv")
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    write_rows(small, header, rows[:1])
    many = []
    for number in range(60):
        row = dict(rows[number % 3], contract_number=f"LN-9{number:03d}")
        row["borrower_registration_number"] = f"REG-9{number:03d}"
        many.append(row)
    write_rows(large, header, many)

    with django_assert_max_num_queries(NATIVE_QUERY_LIMIT):
        run_import(small)
    with django_assert_max_num_queries(NATIVE_QUERY_LIMIT):
        run_import(large)

    assert Loan.objects.count() == 61


# Each case: a function that damages the sample files and returns the file to
# import, and the text the error must contain.
def _wrong_header(book: Path) -> Path:
    shutil.copy(Path(__file__).parent.parent / "data" / "sba-7a-loans-sample.csv", book)
    return book


def _missing_column(book: Path) -> Path:
    header, rows = read_rows(book)
    header.remove("principal")
    write_rows(book, header, [{k: v for k, v in row.items() if k != "principal"} for row in rows])
    return book


def _header_only(book: Path) -> Path:
    header, _rows = read_rows(book)
    write_rows(book, header, [])
    return book


def _zero_bytes(book: Path) -> Path:
    book.write_bytes(b"")
    return book


def _utf16(book: Path) -> Path:
    book.write_bytes(book.read_text(encoding="utf-8").encode("utf-16"))
    return book


def _latin1(book: Path) -> Path:
    edit_cell(book, 2, "borrower_name", "Boulangerie Émile")
    book.write_bytes(book.read_text(encoding="utf-8").encode("latin-1"))
    return book


def _merged_cells(book: Path) -> Path:
    header, rows = read_rows(book)
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        sheet.append([row[name] for name in header])
    sheet.merge_cells("B2:B3")
    path = book.with_name("merged.xlsx")
    workbook.save(path)
    return path


def _cell(index: int, column: str, value: str):
    def damage(book: Path) -> Path:
        edit_cell(book, index, column, value)
        return book

    return damage


def _repayment_cell(index: int, column: str, value: str):
    def damage(book: Path) -> Path:
        edit_cell(book.with_name("book.repayments.csv"), index, column, value)
        return book

    return damage


MALFORMED = {
    "wrong header": (_wrong_header, "wrong header: none of the expected columns was found"),
    "missing column": (_missing_column, "missing required column(s) principal"),
    "bad date": (
        _cell(0, "disbursement_date", "15/01/2023"),
        'loans row 2, column disbursement_date, value "15/01/2023": not a valid date: '
        "expected YYYY-MM-DD",
    ),
    "negative amount": (
        _cell(1, "principal", "-80000.00"),
        'loans row 3, column principal, value "-80000.00": must be greater than 0',
    ),
    "maturity before disbursement": (
        _cell(2, "maturity_date", "2023-02-01"),
        'loans row 4, column maturity_date, value "2023-02-01": maturity date is on or '
        "before the disbursement date 2023-03-01",
    ),
    "duplicate contract": (
        _cell(2, "contract_number", "LN-1001"),
        'loans row 4, column contract_number, value "LN-1001": duplicate contract number: '
        "also on row 2",
    ),
    "unknown currency": (
        _cell(0, "currency", "XYZ"),
        'loans row 2, column currency, value "XYZ": unknown currency: expected one of USD, EUR',
    ),
    "text in number": (
        _cell(0, "principal", "12a0"),
        'loans row 2, column principal, value "12a0": not a number',
    ),
    "header only": (_header_only, "loans: the file has a header row but no data rows."),
    "zero bytes": (_zero_bytes, "loans: the file is empty (0 bytes)"),
    "utf-16": (_utf16, "loans: file is not UTF-8 encoded (byte 0xff at position 0)"),
    "latin-1": (_latin1, "file is not UTF-8 encoded (byte 0xc9 at position"),
    "merged cells": (_merged_cells, 'worksheet "Sheet" has merged cells B2:B3'),
    "repayment before disbursement": (
        _repayment_cell(0, "value_date", "2023-01-01"),
        'repayments row 2, column value_date, value "2023-01-01": value date is before the '
        "disbursement date 2023-01-15",
    ),
    "repayment for unknown loan": (
        _repayment_cell(1, "contract_number", "LN-0404"),
        'repayments row 3, column contract_number, value "LN-0404": not in the loans file',
    ),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_file_changes_nothing(case, book):
    damage, expected = MALFORMED[case]
    path = damage(book)
    counts = book_counts()

    message = failed_import(path)

    assert expected in message
    assert book_counts() == counts


def test_existing_contract_with_other_data(book):
    LoanFactory(contract_number="LN-1001", principal=Decimal("9999.00"))
    counts = book_counts()

    message = failed_import(book)

    assert (
        'loans row 2, column contract_number, value "LN-1001": exists: the book already has '
        "this contract number with a different borrower_registration_number"
    ) in message
    assert "nothing was written" in message
    assert book_counts() == counts


def test_failed_import_writes_nothing(book):
    edit_cell(book, 2, "principal", "abc")

    failed_import(book)

    assert Loan.objects.count() == 0
    assert WriteOff.objects.count() == 0
    assert not book.with_name("book.rejects.csv").exists()
