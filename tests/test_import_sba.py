"""The import_loans command with --format sba on the SBA 7(a) sample file."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Max, Sum

from loans.importers.sba import parse_charge_off_date
from loans.models import (
    Guarantee,
    Loan,
    LoanStatus,
    Repayment,
    RepaymentKind,
    WriteOff,
)

from .test_import_native import all_table_counts, book_counts

pytestmark = pytest.mark.django_db

SAMPLE = Path(__file__).parent.parent / "data" / "sba-7a-loans-sample.csv"
AS_OF = "2024-12-31"
# Queries for a whole SBA import of up to 500 loans. Measured: 21 on PostgreSQL
# for 5 and for 60 loans. On SQLite 21 and 24, because Django splits inserts of
# wide rows into statements of at most 999 parameters.
SBA_QUERY_LIMIT = 25


def sample_rows() -> tuple[list[str], list[dict[str, str]]]:
    with SAMPLE.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames), list(reader)


def sba_file(tmp_path: Path, rows: list[dict[str, str]], name: str = "sba.csv") -> Path:
    header, _rows = sample_rows()
    path = tmp_path / name
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def rows_by_number(*numbers: str) -> list[dict[str, str]]:
    _header, rows = sample_rows()
    found = [row for row in rows if row["LoanNr_ChkDgt"] in numbers]
    assert len(found) == len(numbers)
    return found


def run_sba(path: Path, as_of: str = AS_OF) -> str:
    stdout = io.StringIO()
    call_command(
        "import_loans",
        str(path),
        "--format",
        "sba",
        "--as-of",
        as_of,
        stdout=stdout,
        stderr=io.StringIO(),
    )
    return stdout.getvalue()


def amount(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", "").strip() or "0")


def outstanding_principal(loan: Loan) -> Decimal:
    totals = loan.instalments.aggregate(due=Sum("principal_due"), paid=Sum("principal_paid"))
    return (totals["due"] - totals["paid"]).quantize(Decimal("0.01"))


def test_sba_sample_imports_every_row():
    _header, rows = sample_rows()
    charged_off = sum(amount(row["ChgOffPrinGr"]) for row in rows if row["MIS_Status"] == "CHGOFF")

    stdout = run_sba(SAMPLE)
    counts = all_table_counts()
    second = run_sba(SAMPLE)

    written_off = WriteOff.objects.aggregate(total=Sum("principal"))["total"]
    assert "rows read: 4000" in stdout
    assert "loans created: 4000" in stdout
    assert "rejected: 0" in stdout
    assert "written off: 845" in stdout
    assert Loan.objects.filter(status=LoanStatus.WRITTEN_OFF).count() == 845
    assert Decimal(written_off).quantize(Decimal("0.01")) == charged_off
    assert "unchanged (already present): 4000" in second
    assert "loans created: 0" in second
    assert all_table_counts() == counts


def test_charged_off_loans_stop_paying_early(tmp_path):
    _header, rows = sample_rows()
    charged = [row for row in rows if row["MIS_Status"] == "CHGOFF"][:40]

    run_sba(sba_file(tmp_path, charged))

    for row in charged:
        loan = Loan.objects.get(contract_number=row["LoanNr_ChkDgt"])
        charge_off_date = parse_charge_off_date(row["ChgOffDate"])
        last_paid = loan.repayments.filter(kind=RepaymentKind.REGULAR).aggregate(
            last=Max("value_date")
        )["last"]
        unpaid_interest = sum(
            instalment.interest_due - instalment.interest_paid
            for instalment in loan.instalments.filter(due_date__lte=charge_off_date)
        )
        assert loan.status == LoanStatus.WRITTEN_OFF
        assert loan.closed_on == charge_off_date
        assert last_paid is None or last_paid <= charge_off_date - timedelta(days=180)
        assert outstanding_principal(loan) == amount(row["ChgOffPrinGr"])
        assert loan.write_off.principal == amount(row["ChgOffPrinGr"])
        assert loan.write_off.interest == unpaid_interest
        assert loan.write_off.written_off_on == charge_off_date


def test_charge_off_recovers_the_excess(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1003845007")))

    loan = Loan.objects.get(contract_number="1003845007")
    recovery = loan.repayments.get(kind=RepaymentKind.RECOVERY)
    regular = loan.repayments.filter(kind=RepaymentKind.REGULAR)
    paid_principal = sum(
        allocation.principal for repayment in regular for allocation in repayment.allocations.all()
    )
    assert recovery.reference == "RECOVERY"
    assert recovery.value_date == date(2003, 8, 29)
    assert recovery.amount == Decimal("78800.00") - paid_principal - Decimal("73900.00")
    assert recovery.allocations.filter(interest__gt=0).count() == 0


def test_charge_off_after_as_of_stays_active(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1038146005")), as_of="2013-01-31")

    loan = Loan.objects.get(contract_number="1038146005")
    last_paid = loan.repayments.aggregate(last=Max("value_date"))["last"]
    assert loan.status == LoanStatus.ACTIVE
    assert loan.closed_on is None
    assert not WriteOff.objects.exists()
    assert last_paid <= date(2013, 1, 31)


def test_paid_in_full_loan_is_paid_off(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1000014003")))

    loan = Loan.objects.get(contract_number="1000014003")
    instalments = list(loan.instalments.order_by("number"))
    assert loan.status == LoanStatus.PAID_OFF
    assert loan.closed_on == instalments[-1].due_date
    assert loan.maturity_date == instalments[-1].due_date
    assert len(instalments) == 84
    assert all(instalment.settled_on == instalment.due_date for instalment in instalments)
    assert loan.repayments.count() == 84
    assert loan.product == "working_capital"
    assert loan.annual_rate == Decimal("0.080000")


def test_paid_in_full_before_maturity_is_active(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1000014003")), as_of="2000-06-30")

    loan = Loan.objects.get(contract_number="1000014003")
    assert loan.status == LoanStatus.ACTIVE
    assert loan.repayments.aggregate(last=Max("value_date"))["last"] == date(2000, 6, 28)
    assert loan.instalments.filter(settled_on__isnull=True).count() == 68


def test_term_zero_reads_as_twelve_months(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1007465008")))

    loan = Loan.objects.get(contract_number="1007465008")
    assert loan.instalments.count() == 12
    assert loan.maturity_date == date(2004, 8, 31)
    assert loan.product == "revolving_line"
    assert loan.repayment_method == "interest_only"


def test_blank_disbursement_uses_approval_date(tmp_path):
    stdout = run_sba(sba_file(tmp_path, rows_by_number("1008145008")))

    loan = Loan.objects.get(contract_number="1008145008")
    assert loan.disbursement_date == date(2003, 10, 9)
    assert "blank: ApprovalDate used as the disbursement date" in stdout


def test_charged_off_above_gross_is_principal(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1022123006")))

    loan = Loan.objects.get(contract_number="1022123006")
    assert loan.principal == Decimal("200180.00")
    assert loan.write_off.principal == Decimal("200180.00")
    assert not loan.repayments.exists()


def test_paid_in_full_ignores_charge_off(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1129875000")))

    loan = Loan.objects.get(contract_number="1129875000")
    assert loan.status == LoanStatus.PAID_OFF
    assert loan.principal == Decimal("49469.00")
    assert not WriteOff.objects.exists()


def test_unknown_revolving_code_is_note(tmp_path):
    stdout = run_sba(sba_file(tmp_path, rows_by_number("1002464002")))

    loan = Loan.objects.get(contract_number="1002464002")
    assert loan.product == "working_capital"
    assert "column RevLineCr on 1 row(s)" in stdout
    assert "unknown code: read as not a revolving line" in stdout


def test_sba_borrower_and_branch(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1000755009")))

    loan = Loan.objects.select_related("borrower", "branch").get(contract_number="1000755009")
    borrower = loan.borrower
    assert borrower.registration_number == "SBA-1000755009"
    assert borrower.postal_code == ""
    assert borrower.industry_code == ""
    assert borrower.region == "OR"
    assert borrower.size_class == "micro"
    assert borrower.is_new_business is False
    assert loan.branch.code == "SBA-SD"
    assert loan.branch.name == "SD lending banks"
    assert loan.source == "sba"


def test_sba_guarantee_covers_loan(tmp_path):
    run_sba(sba_file(tmp_path, rows_by_number("1000014003", "1003845007")))

    guarantee = Guarantee.objects.get(loan__contract_number="1000014003")
    loan = guarantee.loan
    assert guarantee.guarantor.registration_number == "US-SBA"
    assert guarantee.guarantor.kind == "public_scheme"
    assert guarantee.amount == Decimal("48000.00")
    assert guarantee.guarantee_type == "general"
    assert guarantee.valid_from == loan.disbursement_date
    assert guarantee.valid_to == loan.maturity_date
    assert Guarantee.objects.filter(guarantor=guarantee.guarantor).count() == 2


def test_sba_query_count_is_flat(tmp_path, django_assert_max_num_queries):
    _header, rows = sample_rows()
    small = sba_file(tmp_path, rows[:5], "small.csv")
    large = sba_file(tmp_path, rows[5:65], "large.csv")

    with django_assert_max_num_queries(SBA_QUERY_LIMIT):
        run_sba(small)
    with django_assert_max_num_queries(SBA_QUERY_LIMIT):
        run_sba(large)

    assert Loan.objects.count() == 65
    assert Repayment.objects.count() > 1000


def test_sba_text_in_amount_rejected(tmp_path):
    rows = rows_by_number("1000014003", "1003845007")
    rows[1]["DisbursementGross"] = "12a0"
    counts = book_counts()

    stderr = io.StringIO()
    with pytest.raises(CommandError, match="nothing was written"):
        call_command(
            "import_loans",
            str(sba_file(tmp_path, rows)),
            "--format",
            "sba",
            stdout=io.StringIO(),
            stderr=stderr,
        )

    assert 'loans row 3, column DisbursementGross, value "12a0": not a number' in stderr.getvalue()
    assert book_counts() == counts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1-Mar-02", date(2002, 3, 1)),
        ("6-Mar-14", date(2014, 3, 6)),
        ("29-Dec-29", date(2029, 12, 29)),
        ("1-Jan-30", date(1930, 1, 1)),
        ("22-Aug-89", date(1989, 8, 22)),
    ],
)
def test_charge_off_year_pivot(text, expected):
    assert parse_charge_off_date(text) == expected
