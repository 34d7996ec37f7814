"""The monthly post-loan report: snapshots, figures, versions, files, schedule and pages."""

from __future__ import annotations

import io
import shutil
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from openpyxl import load_workbook

from loans import services
from loans.models import (
    Branch,
    Collateral,
    CollateralKind,
    CollateralPledge,
    CollateralValuation,
    Guarantee,
    GuaranteeType,
    Guarantor,
    GuarantorKind,
    Loan,
    LoanStatus,
    RepaymentKind,
    WriteOff,
)
from monitoring.models import Inspection, InspectionKind, InspectionStatus, JobRun, WarningStatus
from monitoring.tasks import dispatch_close_of_day
from reports.models import LoanMonthSnapshot, MonthlyReport, ReportStatus
from reports.monthly import layout
from reports.monthly.figures import SECTIONS, MissingSnapshotError, compute_figures
from reports.monthly.migration import COLUMNS, NEW
from reports.monthly.schedule import request_scheduled_reports
from reports.monthly.services import request_report
from reports.snapshots import refresh_snapshot_statistics, write_month_end_snapshots

from .factories import BorrowerFactory, EarlyWarningFactory, InspectionFactory

pytestmark = pytest.mark.django_db

MAY_END = date(2023, 5, 31)
JUNE = date(2023, 6, 1)
JUNE_END = date(2023, 6, 30)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "monthly-report"


def close_month(as_of: date) -> JobRun:
    """Run close-of-day for a month end, then write its snapshots over every loan."""
    run = dispatch_close_of_day(as_of)
    ids = list(Loan.objects.order_by("pk").values_list("pk", flat=True))
    write_month_end_snapshots(as_of, ids[0], ids[-1], run.pk)
    return run


def pay_instalments(loan: Loan, through: date) -> None:
    """Pay every instalment of the loan that falls due on or before `through`, on its due date."""
    for instalment in loan.instalments.filter(due_date__lte=through).order_by("due_date"):
        services.record_repayment(
            loan, instalment.due_date, instalment.total_due, f"PAY-{instalment.number}"
        )


@pytest.fixture
def book(branch_north, branch_south, make_scheduled_loan):
    """Loans of two branches, closed on 31 May and 30 June 2023 with snapshots.

    North: a loan paid on time (normal), one never paid (substandard in May,
    with a repayment in June), one paid off and one written off in June.
    South: a loan that stops paying after April (special mention), and one
    disbursed in June (new).
    """

    def borrower(branch, industry_code="445299"):
        return BorrowerFactory(branch=branch, industry_code=industry_code)

    south = borrower(branch_south, "311811")
    loans = {
        "on_time": make_scheduled_loan(
            borrower=borrower(branch_north), disbursement_date=date(2023, 1, 1)
        ),
        "unpaid": make_scheduled_loan(
            borrower=borrower(branch_north),
            disbursement_date=date(2023, 1, 1),
            principal=Decimal("24000.00"),
        ),
        "paid_off": make_scheduled_loan(
            borrower=borrower(branch_north), disbursement_date=date(2023, 1, 1)
        ),
        "written_off": make_scheduled_loan(
            borrower=borrower(branch_north, "236115"),
            disbursement_date=date(2022, 6, 1),
        ),
        "stopped": make_scheduled_loan(
            borrower=south, disbursement_date=date(2023, 1, 1), product="fixed_asset"
        ),
        "new": make_scheduled_loan(borrower=south, disbursement_date=date(2023, 6, 10)),
    }
    pay_instalments(loans["on_time"], JUNE_END)
    pay_instalments(loans["paid_off"], MAY_END)
    pay_instalments(loans["stopped"], date(2023, 4, 30))
    close_month(MAY_END)

    services.record_repayment(loans["unpaid"], date(2023, 6, 12), Decimal("700.00"), "R-JUNE")
    remaining = loans["paid_off"].instalments.filter(due_date__gt=MAY_END)
    for number, instalment in enumerate(remaining.order_by("due_date"), start=1):
        services.record_repayment(
            loans["paid_off"], date(2023, 6, 15), instalment.total_due, f"PAYOFF-{number}"
        )
    Loan.objects.filter(pk=loans["paid_off"].pk).update(
        status=LoanStatus.PAID_OFF, closed_on=date(2023, 6, 15)
    )
    WriteOff.objects.create(
        loan=loans["written_off"],
        written_off_on=date(2023, 6, 20),
        principal=Decimal("5000.00"),
        reason="Borrower insolvent",
    )
    Loan.objects.filter(pk=loans["written_off"].pk).update(
        status=LoanStatus.WRITTEN_OFF, closed_on=date(2023, 6, 20)
    )
    services.record_repayment(
        loans["written_off"],
        date(2023, 6, 25),
        Decimal("300.00"),
        "RECOVERY",
        kind=RepaymentKind.RECOVERY,
    )
    close_month(JUNE_END)
    add_security(loans)
    add_activity(loans)
    return loans


def add_security(loans: dict[str, Loan]) -> None:
    """Pledge collateral and give guarantees, some of which the June report must leave out."""
    equipment = Collateral.objects.create(
        kind=CollateralKind.EQUIPMENT,
        description="Lathe",
        reference="C-1",
        owner_name="North",
        ltv_limit=Decimal("0.5"),
    )
    CollateralValuation.objects.create(
        collateral=equipment,
        valued_on=date(2023, 3, 1),
        value=Decimal("10000.00"),
        method="market",
        valuer="V",
    )
    # After the month end: the June report keeps the March value.
    CollateralValuation.objects.create(
        collateral=equipment,
        valued_on=date(2023, 7, 15),
        value=Decimal("1.00"),
        method="market",
        valuer="V",
    )
    CollateralPledge.objects.create(
        collateral=equipment, loan=loans["unpaid"], share=Decimal("0.5")
    )
    building = Collateral.objects.create(
        kind=CollateralKind.COMMERCIAL_REAL_ESTATE,
        description="Shop",
        reference="C-2",
        owner_name="South",
        ltv_limit=Decimal("0.7"),
    )
    CollateralValuation.objects.create(
        collateral=building,
        valued_on=date(2022, 12, 1),
        value=Decimal("30000.00"),
        method="market",
        valuer="V",
    )
    CollateralPledge.objects.create(collateral=building, loan=loans["stopped"])

    person = Guarantor.objects.create(
        kind=GuarantorKind.PERSON, name="Owner", registration_number="P-1"
    )
    scheme = Guarantor.objects.create(
        kind=GuarantorKind.PUBLIC_SCHEME, name="Scheme", registration_number="S-1"
    )
    Guarantee.objects.create(
        loan=loans["unpaid"],
        guarantor=person,
        guarantee_type=GuaranteeType.JOINT_AND_SEVERAL,
        amount=Decimal("6000.00"),
        valid_from=date(2023, 1, 1),
    )
    # Expired the day before the month end: left out.
    Guarantee.objects.create(
        loan=loans["stopped"],
        guarantor=scheme,
        guarantee_type=GuaranteeType.GENERAL,
        percentage=Decimal("50"),
        valid_from=date(2023, 1, 1),
        valid_to=date(2023, 6, 29),
    )
    Guarantee.objects.create(
        loan=loans["new"],
        guarantor=scheme,
        guarantee_type=GuaranteeType.GENERAL,
        percentage=Decimal("75"),
        valid_from=date(2023, 6, 10),
    )


def add_activity(loans: dict[str, Loan]) -> None:
    """Add a warning closed by staff in June, one open since May, and three done inspections."""
    EarlyWarningFactory(
        loan=loans["stopped"],
        rule_code="FIN_NET_LOSS",
        family="financial",
        severity="yellow",
        status=WarningStatus.RESOLVED,
        first_seen_on=date(2023, 6, 5),
        closed_at=datetime(2023, 6, 20, 12, tzinfo=UTC),
    )
    EarlyWarningFactory(
        loan=loans["unpaid"],
        rule_code="EXT_LITIGATION",
        family="external",
        severity="red",
        first_seen_on=date(2023, 5, 10),
    )
    done = [
        ("on_time", InspectionKind.ROUTINE, date(2023, 6, 10), date(2023, 6, 8)),
        ("unpaid", InspectionKind.SPECIAL, date(2023, 6, 5), date(2023, 6, 12)),
        # Done after the month end: missed in June.
        ("stopped", InspectionKind.ROUTINE, date(2023, 6, 21), date(2023, 7, 3)),
    ]
    for name, kind, due_date, inspected_on in done:
        InspectionFactory(
            loan=loans[name],
            kind=kind,
            due_date=due_date,
            inspected_on=inspected_on,
            status=InspectionStatus.SUBMITTED,
        )
    # Cancelled because its loan closed: not due in the report.
    InspectionFactory(
        loan=loans["on_time"],
        kind=InspectionKind.FIRST,
        due_date=date(2023, 6, 15),
        status=InspectionStatus.CANCELLED,
    )


# ---- Snapshots -----------------------------------------------------------------


def test_snapshots_cover_open_and_closed_loans(book):
    june = LoanMonthSnapshot.objects.filter(month_end=JUNE_END)

    assert june.count() == 6
    assert june.filter(is_open=True).count() == 4
    assert june.get(loan=book["paid_off"]).status == LoanStatus.PAID_OFF
    assert june.get(loan=book["written_off"]).status == LoanStatus.WRITTEN_OFF
    assert LoanMonthSnapshot.objects.filter(month_end=MAY_END).count() == 5


def test_snapshots_written_once_per_month_end(book):
    before = dict(LoanMonthSnapshot.objects.filter(month_end=JUNE_END).values_list("loan_id", "pk"))

    close_month(JUNE_END)
    close_month(JUNE_END)

    after = dict(LoanMonthSnapshot.objects.filter(month_end=JUNE_END).values_list("loan_id", "pk"))
    assert after == before
    assert LoanMonthSnapshot.objects.count() == 11


def test_snapshot_rejects_a_day_inside_the_month():
    with pytest.raises(ValueError, match="not the last day"):
        write_month_end_snapshots(date(2023, 6, 29), 1, 10, None)


# ---- Figures -------------------------------------------------------------------


def additive_values(figures: object, path: str = "") -> dict[str, object]:
    """Return every count and money amount of the figures by its path, ratios and ranks left out.

    Lists of rows are keyed by each row's code or kind, so that a branch's
    rows line up with the bank's.
    """
    skipped = {
        "share",
        "coverage",
        "secured_coverage",
        "npl_ratio",
        "special_mention_ratio",
        "coverage_ratio",
        "loan_provision_ratio",
        "required_coverage_ratio",
        "on_time_rate",
        "median_days",
        "mean_days",
        "rank",
        "worst_class",
        "max_days_past_due",
        "borrower_id",
        "code",
        "branch_code",
        "columns",
        "from",
    }
    values: dict[str, object] = {}
    if isinstance(figures, dict):
        for key, value in figures.items():
            if key not in skipped:
                values.update(additive_values(value, f"{path}/{key}"))
    elif isinstance(figures, list):
        for index, row in enumerate(figures):
            key = index
            if isinstance(row, dict):
                key = "-".join(
                    str(row.get(name, ""))
                    for name in (
                        "code",
                        "kind",
                        "family",
                        "severity",
                        "category",
                        "product",
                        "from",
                    )
                )
            values.update(additive_values(row, f"{path}[{key}]"))
    elif isinstance(figures, bool) or figures is None:
        pass
    elif isinstance(figures, int):
        values[path] = figures
    elif isinstance(figures, str):
        try:
            values[path] = Decimal(figures)
        except ArithmeticError:
            pass
    return values


def test_branch_reports_sum_to_bank(book, branch_north, branch_south):
    bank = compute_figures(JUNE, None)
    branches = [compute_figures(JUNE, branch.pk) for branch in (branch_north, branch_south)]

    bank_values = additive_values({key: bank[key] for key in SECTIONS if key != "borrowers"})
    summed: dict[str, object] = {}
    for figures in branches:
        branch_values = additive_values(
            {key: figures[key] for key in SECTIONS if key != "borrowers"}
        )
        for path, value in branch_values.items():
            summed[path] = summed.get(path, 0) + value

    assert bank["portfolio"]["loans"] == 4
    assert len(bank_values) > 250
    for path, value in bank_values.items():
        if "/by_branch[" in path:
            continue  # a branch report has its own branch's row only
        assert summed.get(path, 0) == value, path


def test_migration_rows_sum_to_start_class(book):
    figures = compute_figures(JUNE, None)

    start = {
        str(row["risk_class"]): (row["loans"], row["balance"])
        for row in LoanMonthSnapshot.objects.filter(month_end=MAY_END, is_open=True)
        .values("risk_class")
        .annotate(loans=Count("pk"), balance=Sum("outstanding_principal"))
    }
    matrix = {row["from"]: row for row in figures["migration"]["rows"]}
    for risk_class in ("1", "2", "3", "4", "5"):
        row = matrix[risk_class]
        loans, balance = start.get(risk_class, (0, Decimal("0")))
        assert sum(cell["loans"] for cell in row["cells"]) == loans, risk_class
        assert sum(Decimal(cell["balance_start"]) for cell in row["cells"]) == balance, risk_class
        assert row["loans"] == loans
    assert sum(cell["loans"] for cell in matrix[NEW]["cells"]) == 1


def test_migration_matrix_shows_exits_and_new(book):
    figures = compute_figures(JUNE, None)

    matrix = {row["from"]: row["cells"] for row in figures["migration"]["rows"]}
    column = {code: index for index, code in enumerate(COLUMNS)}
    assert matrix["1"][column["paid_off"]]["loans"] == 1
    assert matrix["4"][column["written_off"]]["loans"] == 1
    assert matrix["new"][column["1"]]["loans"] == 1
    assert matrix["new"][column["1"]]["balance_end"] == "12000.00"
    totals = figures["migration"]["totals"]
    by_class = {str(row["code"]): row for row in figures["classification"]["by_class"]}
    for risk_class in ("1", "2", "3", "4", "5"):
        assert totals[column[risk_class]]["loans"] == by_class[risk_class]["loans"]
        assert totals[column[risk_class]]["balance_end"] == by_class[risk_class]["balance"]


def test_npl_ratio_matches_independent_query(book):
    figures = compute_figures(JUNE, None)

    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT ROUND(100 * SUM(CASE WHEN l.risk_class >= 3 THEN p.outstanding_principal
                                        ELSE 0 END) / SUM(p.outstanding_principal), 2)
            FROM loans_loan l JOIN loans_loanposition p ON p.loan_id = l.id
            WHERE p.as_of = %s AND p.is_open
            """,
            [JUNE_END],
        )
        expected = cursor.fetchone()[0]
    assert expected > 0
    assert Decimal(figures["asset_quality"]["npl_ratio"]) == Decimal(str(expected))


def test_security_figures_use_month_end(book):
    figures = compute_figures(JUNE, None)

    collateral = {row["kind"]: row for row in figures["collateral"]["rows"]}
    assert collateral["equipment"]["pledged_value"] == "5000.00"
    assert collateral["commercial_real_estate"]["pledged_value"] == "30000.00"
    assert figures["collateral"]["secured_loans"] == 2
    guarantees = {row["kind"]: row for row in figures["guarantees"]["rows"]}
    assert guarantees["person"]["amount"] == "6000.00"
    assert guarantees["public_scheme"]["amount"] == "9000.00"
    assert guarantees["public_scheme"]["guarantees"] == 1


def test_activity_figures_of_the_month(book):
    figures = compute_figures(JUNE, None)

    warnings = {(row["family"], row["severity"]): row for row in figures["warnings"]["rows"]}
    assert warnings[("financial", "yellow")]["new"] == 1
    assert warnings[("financial", "yellow")]["closed"] == 1
    assert warnings[("financial", "yellow")]["median_days"] == "15.00"
    assert warnings[("external", "red")]["open"] == 1
    assert warnings[("external", "red")]["new"] == 0
    inspections = figures["inspections"]["total"]
    assert inspections["on_time"] == 1
    assert inspections["late"] == 1
    assert inspections["missed"] == inspections["due"] - 2
    assert inspections["missed"] >= 1
    # The cancelled first inspection of the fixture is due in June but not counted.
    first_in_june = Inspection.objects.filter(kind="first", due_date__range=(JUNE, JUNE_END))
    assert first_in_june.filter(status=InspectionStatus.CANCELLED).count() == 1
    first = {row["kind"]: row for row in figures["inspections"]["rows"]}["first"]
    assert first["due"] == first_in_june.count() - 1


def test_recoveries_and_write_offs(book):
    figures = compute_figures(JUNE, None)

    recoveries = {row["category"]: row for row in figures["recoveries"]["recoveries"]}
    assert recoveries["written_off"]["amount"] == "300.00"
    assert recoveries["non_performing"]["amount"] == "700.00"
    assert figures["recoveries"]["written_off_principal"] == "5000.00"
    assert figures["recoveries"]["written_off_loans"] == 1


def test_provisions_held_fall_back_to_required(book, settings):
    settings.POSTLOAN_PROVISIONS_HELD = {"2023-06": {"NORTH": "9000.00"}}

    provisions = compute_figures(JUNE, None)["provisions"]

    rows = {row["branch_code"]: row for row in provisions["by_branch"]}
    assert rows["NORTH"]["held"] == "9000.00"
    assert rows["NORTH"]["held_source"] == "recorded"
    assert rows["SOUTH"]["held"] == rows["SOUTH"]["required"]
    assert provisions["held_source"] == "mixed"
    assert Decimal(provisions["held"]) == Decimal("9000.00") + Decimal(rows["SOUTH"]["required"])


def test_figures_need_month_end_snapshot(book):
    with pytest.raises(MissingSnapshotError, match="2023-07-31"):
        compute_figures(date(2023, 7, 1), None)


def test_figures_query_count_is_flat(
    book, branch_south, make_scheduled_loan, django_assert_num_queries
):
    refresh_snapshot_statistics()  # so that neither count below includes an ANALYZE
    with CaptureQueriesContext(connection) as few:
        compute_figures(JUNE, None)
    for _ in range(5):
        make_scheduled_loan(
            borrower=BorrowerFactory(branch=branch_south), disbursement_date=date(2023, 2, 1)
        )
    close_month(JUNE_END)
    refresh_snapshot_statistics()

    with django_assert_num_queries(len(few.captured_queries)):
        figures = compute_figures(JUNE, None)

    assert figures["portfolio"]["loans"] == 9
    assert len(few.captured_queries) <= 16


# ---- Versions, files and schedule ----------------------------------------------


def generate(month: date, branch, user, capture) -> MonthlyReport:
    with capture(execute=True):
        report = request_report(month, branch, user)
    report.refresh_from_db()
    return report


def test_report_completes_with_files(book, risk_manager, django_capture_on_commit_callbacks):
    report = generate(JUNE, None, risk_manager, django_capture_on_commit_callbacks)

    assert report.status == ReportStatus.COMPLETED
    assert report.progress == 100
    assert report.version == 1
    assert report.figures["portfolio"]["loans"] == 4
    assert report.pdf.read(5) == b"%PDF-"
    assert report.xlsx.name.endswith(".xlsx")
    assert report.started_at <= report.finished_at


def test_regeneration_keeps_earlier_version(book, risk_manager, django_capture_on_commit_callbacks):
    first = generate(JUNE, None, risk_manager, django_capture_on_commit_callbacks)
    first_figures = first.figures
    first_pdf = first.pdf.read()
    first_xlsx = first.xlsx.read()

    services.record_repayment(book["unpaid"], date(2023, 6, 28), Decimal("5000.00"), "LATE")
    close_month(JUNE_END)
    second = generate(JUNE, None, risk_manager, django_capture_on_commit_callbacks)

    first.refresh_from_db()
    assert second.version == 2
    assert first.figures == first_figures
    assert first.pdf.open("rb").read() == first_pdf
    assert first.xlsx.open("rb").read() == first_xlsx
    assert first.pdf.name != second.pdf.name
    assert Decimal(second.figures["portfolio"]["balance"]) < Decimal(
        first_figures["portfolio"]["balance"]
    )


def test_failed_generation_is_recorded(risk_manager, django_capture_on_commit_callbacks):
    report = generate(date(2030, 1, 1), None, risk_manager, django_capture_on_commit_callbacks)

    assert report.status == ReportStatus.FAILED
    assert "No month-end snapshot for 2030-01-31" in report.error
    assert not report.pdf


def test_excel_has_a_numeric_sheet_per_section(
    book, risk_manager, django_capture_on_commit_callbacks
):
    report = generate(JUNE, None, risk_manager, django_capture_on_commit_callbacks)

    workbook = load_workbook(io.BytesIO(report.xlsx.read()))
    titles = [section.title for section in layout.report_sections(report.figures)]
    assert workbook.sheetnames == [title[:31] for title in titles]
    assert len(workbook.sheetnames) == len(SECTIONS)
    for sheet in workbook.worksheets:
        numbers = [
            cell
            for row in sheet.iter_rows()
            for cell in row
            if isinstance(cell.value, int | float) and not isinstance(cell.value, bool)
        ]
        assert numbers, sheet.title
        assert all(cell.number_format != "General" for cell in numbers), sheet.title
        assert sheet.column_dimensions["A"].width > 20
    portfolio = workbook["Portfolio"]
    rows = {row[0].value: row for row in portfolio.iter_rows() if row[0].value}
    assert rows["Open loans"][1].value == 4
    assert rows["Open loans"][1].number_format == "#,##0"
    header = rows["Product"]
    assert [cell.value for cell in header[:4]] == [
        "Product",
        "Loans",
        "Outstanding balance",
        "Share of balance (%)",
    ]
    assert all(cell.font.bold for cell in header[:4])
    assert rows["Working capital"][2].number_format == "#,##0.00"
    assert rows["Working capital"][2].value == float(
        report.figures["portfolio"]["by_product"][0]["balance"]
    )


def test_schedule_requests_bank_and_branches(
    book, branch_north, branch_south, risk_manager, django_capture_on_commit_callbacks
):
    completed_report(branch_north, requested_by=risk_manager)  # the schedule adds its own
    with django_capture_on_commit_callbacks() as callbacks:
        first = request_scheduled_reports(date(2023, 7, 1))
    with django_capture_on_commit_callbacks() as repeated:
        second = request_scheduled_reports(date(2023, 7, 1))

    scopes = {report.branch_id for report in first}
    assert scopes == {None, *Branch.objects.values_list("pk", flat=True)}
    assert {branch_north.pk, branch_south.pk} <= scopes
    assert all(report.month == JUNE and report.requested_by is None for report in first)
    assert len(callbacks) == len(first)
    assert second == []
    assert repeated == []


def test_beat_schedule_runs_on_first_day():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="reports.schedule_monthly_reports")

    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_month) == ("0", "2", "1")


def test_command_prints_progress(book):
    stdout = io.StringIO()

    call_command(
        "generate_monthly_report", "--month", "2023-06", "--branch", "NORTH", stdout=stdout
    )

    output = stdout.getvalue()
    assert " 60 % PDF" in output
    assert "completed" in output
    report = MonthlyReport.objects.get()
    assert report.branch.code == "NORTH"
    assert report.requested_by is None


def test_backfill_command_copies_positions(book):
    LoanMonthSnapshot.objects.filter(month_end=JUNE_END).delete()
    stdout = io.StringIO()

    call_command("snapshot_month_end", "--month-end", "2023-06-30", stdout=stdout)

    assert "copies" not in stdout.getvalue()
    assert LoanMonthSnapshot.objects.filter(month_end=JUNE_END).count() == 6
    assert LoanMonthSnapshot.objects.filter(month_end=JUNE_END, created_by_run=None).count() == 6


# ---- Pages ---------------------------------------------------------------------


def completed_report(branch, version: int = 1, requested_by=None) -> MonthlyReport:
    """Store a completed June version with computed figures and placeholder files.

    Rendering a real PDF takes seconds, so only the tests of generation do it.
    """
    report = MonthlyReport.objects.create(
        month=JUNE,
        branch=branch,
        version=version,
        requested_by=requested_by,
        status=ReportStatus.COMPLETED,
        progress=100,
        figures=compute_figures(JUNE, branch.pk if branch else None),
    )
    report.pdf.save("monthly-report.pdf", ContentFile(b"%PDF-1.7 placeholder"), save=False)
    report.xlsx.save("monthly-report.xlsx", ContentFile(b"PK placeholder"), save=False)
    report.save()
    return report


@pytest.fixture
def reports(book, branch_north, branch_south):
    """A completed bank report and one for each branch, for June 2023."""
    return {
        scope: completed_report(branch)
        for scope, branch in (("bank", None), ("north", branch_north), ("south", branch_south))
    }


def detail_url(report: MonthlyReport) -> str:
    return reverse("reports:monthly_report_detail", args=[report.pk])


def download_url(report: MonthlyReport, file_format: str) -> str:
    return reverse("reports:monthly_report_download", args=[report.pk, file_format])


@pytest.mark.parametrize("role", ["risk_manager", "committee_member", "auditor", "administrator"])
def test_bank_wide_roles_read_every_report(client, reports, role, request):
    client.force_login(request.getfixturevalue(role))

    for report in reports.values():
        assert client.get(detail_url(report)).status_code == 200
        assert client.get(download_url(report, "pdf")).status_code == 200


@pytest.mark.parametrize("role", ["officer", "branch_manager"])
def test_branch_roles_read_own_branch_only(client, reports, role, request):
    client.force_login(request.getfixturevalue(role))

    assert client.get(detail_url(reports["north"])).status_code == 200
    assert client.get(download_url(reports["north"], "xlsx")).status_code == 200
    for scope in ("bank", "south"):
        assert client.get(detail_url(reports[scope])).status_code == 404
        assert client.get(download_url(reports[scope], "pdf")).status_code == 404
        assert client.get(download_url(reports[scope], "xlsx")).status_code == 404
        progress = reverse("reports:monthly_report_progress", args=[reports[scope].pk])
        assert client.get(progress).status_code == 404


@pytest.mark.parametrize("role", ["officer", "branch_manager"])
def test_branch_roles_list_own_branch_only(client, reports, role, request):
    client.force_login(request.getfixturevalue(role))

    response = client.get(reverse("reports:monthly_report_list"))

    listed = {row["latest"].pk for row in response.context["rows"]}
    assert listed == {reports["north"].pk}
    assert b"Regenerate" not in response.content


@pytest.mark.parametrize("role", ["officer", "branch_manager", "committee_member", "auditor"])
def test_generate_refused_to_readers(client, book, role, request):
    client.force_login(request.getfixturevalue(role))

    response = client.post(reverse("reports:monthly_report_generate"), {"month": "2023-06"})

    assert response.status_code == 403
    assert not MonthlyReport.objects.exists()


def test_anonymous_sent_to_login(client, reports):
    response = client.get(detail_url(reports["bank"]))

    assert response.status_code == 302
    assert "login" in response["Location"]


@pytest.mark.parametrize("role", ["risk_manager", "administrator"])
def test_generate_queues_next_version(
    client, book, role, request, django_capture_on_commit_callbacks
):
    client.force_login(request.getfixturevalue(role))
    first = completed_report(None)

    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("reports:monthly_report_generate"), {"month": "2023-06", "branch": ""}
        )

    latest = MonthlyReport.objects.get(version=2)
    assert response.status_code == 302
    assert response["Location"] == detail_url(latest)
    assert latest.status == ReportStatus.QUEUED
    assert latest.requested_by == request.getfixturevalue(role)
    assert len(callbacks) == 1
    first.refresh_from_db()
    assert first.status == ReportStatus.COMPLETED


def test_generate_page_runs_the_report(
    client, book, branch_south, risk_manager, django_capture_on_commit_callbacks
):
    client.force_login(risk_manager)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("reports:monthly_report_generate"),
            {"month": "2023-06", "branch": branch_south.pk},
        )

    report = MonthlyReport.objects.get()
    assert report.branch == branch_south
    assert report.status == ReportStatus.COMPLETED
    response = client.get(detail_url(report))
    assert b'id="section-migration"' in response.content


def test_generate_rejects_month_without_snapshot(client, book, risk_manager):
    client.force_login(risk_manager)

    response = client.post(
        reverse("reports:monthly_report_generate"), {"month": "2023-04"}, follow=True
    )

    assert not MonthlyReport.objects.exists()
    assert b"No month-end snapshot exists for 2023-04-30" in response.content


def test_detail_shows_charts_and_tables(client, reports, risk_manager):
    client.force_login(risk_manager)

    response = client.get(detail_url(reports["bank"]))

    content = response.content.decode()
    for chart in ("class-chart", "bucket-chart", "warning-chart"):
        assert f'data-chart-source="{chart}"' in content
    assert 'id="table-migration_loans"' in content
    assert "background-color: rgba(28, 47, 74" in content
    assert '<td class="num">' in content
    assert "hx-get" not in content


def test_progress_polls_until_done(client, book, risk_manager):
    client.force_login(risk_manager)
    report = request_report(JUNE, None, risk_manager)  # on_commit never runs in this test
    url = reverse("reports:monthly_report_progress", args=[report.pk])

    queued = client.get(url, headers={"HX-Request": "true"})
    MonthlyReport.objects.filter(pk=report.pk).update(status=ReportStatus.COMPLETED)
    done = client.get(url, headers={"HX-Request": "true"})

    assert b'hx-trigger="every 2s"' in queued.content
    assert "HX-Refresh" not in queued
    assert done["HX-Refresh"] == "true"
    assert b"hx-trigger" not in done.content
    detail = client.get(detail_url(report))
    assert b'hx-trigger="every 2s"' not in detail.content


def test_download_sends_the_stored_file(client, reports, auditor):
    client.force_login(auditor)
    report = reports["bank"]

    response = client.get(download_url(report, "pdf"))

    assert b"".join(response.streaming_content) == report.pdf.open("rb").read()
    assert 'filename="monthly-report-2023-06-bank-v1.pdf"' in response["Content-Disposition"]
    assert client.get(download_url(report, "docx")).status_code == 404


def test_list_query_count_is_flat(client, reports, risk_manager, django_assert_max_num_queries):
    client.force_login(risk_manager)
    url = reverse("reports:monthly_report_list")
    with django_assert_max_num_queries(12) as few:
        client.get(url)
    for version in (2, 3, 4):
        for report in reports.values():
            completed_report(report.branch, version)
    MonthlyReport.objects.bulk_create(
        MonthlyReport(month=date(2023, month, 1), version=1, status=ReportStatus.FAILED)
        for month in range(1, 6)
    )

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)

    assert len(response.context["rows"]) == 8


# ---- The SBA sample, December 2008 ---------------------------------------------

SBA_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sba-7a-loans-sample.csv"


def pdf_text(path: Path) -> str:
    command = ["pdftotext", "-layout", str(path), "-"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_sba_december_2008_report(risk_manager, django_capture_on_commit_callbacks):
    """Import the SBA sample, close November and December 2008, and print December's report.

    The PDF's pages are written as PNG files to test-artifacts/monthly-report/.
    The test takes about a minute, most of it the import.
    """
    if shutil.which("pdftoppm") is None or shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext, pdftoppm) is not installed")
    call_command(
        "import_loans",
        str(SBA_SAMPLE),
        "--format",
        "sba",
        "--as-of",
        "2008-12-31",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    close_month(date(2008, 11, 30))
    close_month(date(2008, 12, 31))

    report = generate(date(2008, 12, 1), None, risk_manager, django_capture_on_commit_callbacks)

    assert report.status == ReportStatus.COMPLETED, report.error
    figures = report.figures
    open_loans = LoanMonthSnapshot.objects.filter(month_end=date(2008, 12, 31), is_open=True)
    assert figures["portfolio"]["loans"] == open_loans.count() > 1000
    assert (
        figures["recoveries"]["written_off_loans"]
        == WriteOff.objects.filter(
            written_off_on__gte=date(2008, 12, 1), written_off_on__lte=date(2008, 12, 31)
        ).count()
    )
    november = dict(
        LoanMonthSnapshot.objects.filter(month_end=date(2008, 11, 30), is_open=True)
        .values("risk_class")
        .annotate(loans=Count("pk"))
        .values_list("risk_class", "loans")
    )
    for row in figures["migration"]["rows"]:
        if row["from"] != NEW:
            assert row["loans"] == november.get(int(row["from"]), 0)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old_page in ARTIFACTS.glob("sba-2008-12-page-*.png"):
        old_page.unlink()
    pdf_path = ARTIFACTS / "sba-2008-12.pdf"
    pdf_path.write_bytes(report.pdf.open("rb").read())
    text = pdf_text(pdf_path)
    for heading in (
        "December 2008",
        "Migration matrix",
        "NPL ratio",
        "Collateral coverage",
        "10 riskiest borrowers",
        "Recoveries and write-offs",
    ):
        assert heading in text
    subprocess.run(
        ["pdftoppm", "-png", "-r", "90", str(pdf_path), str(ARTIFACTS / "sba-2008-12-page")],
        check=True,
    )
    pages = sorted(ARTIFACTS.glob("sba-2008-12-page-*.png"))
    assert len(pages) >= len(SECTIONS)
