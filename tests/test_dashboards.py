"""Dashboards of each role and the portfolio summary table behind them."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q, Sum
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loans import access
from loans.models import Loan, LoanPosition, RiskClass
from monitoring.models import (
    ChangeSource,
    ClassificationChange,
    ClassificationProposal,
    EarlyWarning,
    Inspection,
    ProposalSource,
    Severity,
    WarningFamily,
    WarningStatus,
)
from monitoring.tasks import dispatch_close_of_day
from reports.dashboards import last_month_ends
from reports.models import LoanMonthSnapshot, PortfolioSummary
from reports.summary import refresh_month_end_summary, refresh_portfolio_summary

from .factories import (
    BorrowerFactory,
    BranchFactory,
    EarlyWarningFactory,
    InspectionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 6, 30)
URL = reverse("reports:dashboard")
# Disbursement dates that put a 12-month loan without repayments into
# different arrears on AS_OF: current, 1-30, 31-60, 91-180 days past due.
DISBURSED = (date(2023, 6, 10), date(2023, 5, 10), date(2023, 4, 10), date(2023, 1, 10))


@pytest.fixture(autouse=True)
def _empty_cache():
    """Start every test with no cached dashboard figures."""
    cache.clear()


@pytest.fixture
def officer_two(branch_north):
    return UserFactory(
        username="officer2",
        first_name="Olga",
        last_name="Second",
        roles=[access.CREDIT_OFFICER],
        branches=[branch_north],
    )


@pytest.fixture
def officer_south(branch_south):
    return UserFactory(
        username="officer-south", roles=[access.CREDIT_OFFICER], branches=[branch_south]
    )


def _loans(make_scheduled_loan, branch, officer, industry: str, count: int = 4) -> list[Loan]:
    borrower = BorrowerFactory(branch=branch, industry_code=industry)
    return [
        make_scheduled_loan(
            borrower=borrower,
            officer=officer,
            disbursement_date=DISBURSED[index % len(DISBURSED)],
            principal=Decimal("12000.00") + index * 1000,
        )
        for index in range(count)
    ]


@pytest.fixture
def book(make_scheduled_loan, branch_north, branch_south, officer, officer_two, officer_south):
    """Loans of two officers in North and one in South, after a close-of-day run.

    One South loan names the North officer, who does not work in South.
    """
    mine = _loans(make_scheduled_loan, branch_north, officer, "236118")
    colleague = _loans(make_scheduled_loan, branch_north, officer_two, "541110", count=3)
    south = _loans(make_scheduled_loan, branch_south, officer_south, "722511", count=3)
    south_but_mine = _loans(make_scheduled_loan, branch_south, officer, "236220", count=2)
    unassigned = _loans(make_scheduled_loan, branch_north, None, "", count=1)
    dispatch_close_of_day(AS_OF)
    refresh_portfolio_summary(AS_OF)
    return SimpleNamespace(
        mine=mine,
        colleague=colleague,
        south=south,
        south_but_mine=south_but_mine,
        unassigned=unassigned,
        north=branch_north,
        south_branch=branch_south,
    )


def _get(client, user, **params):
    client.force_login(user)
    response = client.get(URL, params)
    assert response.status_code == 200
    return response


def _open_positions(**filters) -> dict:
    return LoanPosition.objects.filter(as_of=AS_OF, is_open=True, **filters).aggregate(
        loans=Count("pk"),
        balance=Sum("outstanding_principal"),
        npl=Sum("outstanding_principal", filter=Q(loan__risk_class__gte=3)),
    )


def _by_class(**filters) -> dict[str, Decimal]:
    rows = (
        LoanPosition.objects.filter(as_of=AS_OF, is_open=True, **filters)
        .values("loan__risk_class")
        .annotate(balance=Sum("outstanding_principal"))
    )
    return {str(row["loan__risk_class"]): row["balance"] for row in rows}


# ---- Summary table --------------------------------------------------------------


def _expected_summary() -> dict[tuple, dict]:
    """Group the open positions in Python, independently of the summary's SQL."""
    groups: dict[tuple, dict] = defaultdict(lambda: defaultdict(Decimal))
    positions = LoanPosition.objects.filter(as_of=AS_OF, is_open=True).select_related(
        "loan", "loan__borrower"
    )
    for position in positions:
        loan = position.loan
        key = (
            loan.branch_id,
            loan.officer_id,
            loan.risk_class,
            loan.ifrs9_stage,
            position.dpd_bucket,
            loan.borrower.industry_code[:2],
            loan.product,
        )
        group = groups[key]
        group["loans"] += 1
        group["balance"] += position.outstanding_principal
        group["overdue_principal"] += position.overdue_principal
        group["overdue_interest"] += position.overdue_interest
        group["specific_provision"] += position.specific_provision
        group["general_provision"] += position.general_provision
    return {key: dict(values) for key, values in groups.items()}


def _summary_rows(as_of: date = AS_OF) -> dict[tuple, dict]:
    rows = {}
    for row in PortfolioSummary.objects.filter(as_of=as_of):
        key = (
            row.branch_id,
            row.officer_id,
            row.risk_class,
            row.ifrs9_stage,
            row.dpd_bucket,
            row.industry,
            row.product,
        )
        rows[key] = {
            "loans": row.loans,
            "balance": row.balance,
            "overdue_principal": row.overdue_principal,
            "overdue_interest": row.overdue_interest,
            "specific_provision": row.specific_provision,
            "general_provision": row.general_provision,
        }
    return rows


def test_summary_equals_positions_after_run(book):
    expected = _expected_summary()

    assert _summary_rows() == expected
    assert len(expected) > 5
    assert {key[4] for key in expected} >= {"current", "1-30", "31-60", "91-180"}


def test_summary_refresh_replaces_the_date(book):
    before = _summary_rows()

    written = refresh_portfolio_summary(AS_OF, run_id=1)

    assert written == len(before)
    assert PortfolioSummary.objects.filter(as_of=AS_OF).count() == len(before)
    assert _summary_rows() == before


def test_summary_follows_a_rerun(book):
    book.colleague[0].officer = book.mine[0].officer
    book.colleague[0].save()

    dispatch_close_of_day(AS_OF)
    refresh_portfolio_summary(AS_OF)

    assert _summary_rows() == _expected_summary()


def test_summary_keeps_month_ends_only(book):
    template = PortfolioSummary.objects.filter(as_of=AS_OF).first()
    for day in (date(2023, 5, 31), date(2023, 6, 15), date(2023, 6, 29), date(2023, 3, 1)):
        PortfolioSummary.objects.create(
            **{
                field.attname: getattr(template, field.attname)
                for field in PortfolioSummary._meta.concrete_fields
                if field.name not in ("id", "as_of")
            },
            as_of=day,
        )

    refresh_portfolio_summary(date(2023, 7, 1))

    kept = set(PortfolioSummary.objects.values_list("as_of", flat=True).distinct())
    # 2023-03-01 is outside the window that a refresh prunes.
    assert kept == {date(2023, 3, 1), date(2023, 5, 31), AS_OF}


def test_month_end_summary_from_snapshots(book):
    positions = LoanPosition.objects.filter(as_of=AS_OF).select_related("loan")
    LoanMonthSnapshot.objects.bulk_create(
        LoanMonthSnapshot(
            month_end=date(2023, 5, 31),
            loan=position.loan,
            branch_id=position.loan.branch_id,
            borrower_id=position.loan.borrower_id,
            officer_id=position.loan.officer_id,
            product=position.loan.product,
            currency=position.loan.currency,
            status=position.loan.status,
            is_open=position.is_open,
            risk_class=position.loan.risk_class,
            ifrs9_stage=position.loan.ifrs9_stage,
            outstanding_principal=position.outstanding_principal,
            overdue_principal=position.overdue_principal,
            overdue_interest=position.overdue_interest,
            days_past_due=position.days_past_due,
            dpd_bucket=position.dpd_bucket,
            specific_provision=position.specific_provision,
            general_provision=position.general_provision,
        )
        for position in positions
    )

    refresh_month_end_summary(date(2023, 5, 31))

    assert _summary_rows(date(2023, 5, 31)) == _expected_summary()


def test_month_end_summary_rejects_other_days():
    with pytest.raises(ValueError, match="2023-05-30"):
        refresh_month_end_summary(date(2023, 5, 30))


def test_last_month_ends_cross_the_year():
    assert last_month_ends(date(2023, 2, 14), count=3) == [
        date(2022, 11, 30),
        date(2022, 12, 31),
        date(2023, 1, 31),
    ]
    assert last_month_ends(date(2024, 2, 29), count=2) == [date(2024, 1, 31), date(2024, 2, 29)]


# ---- Credit officer -------------------------------------------------------------


def test_officer_sees_only_own_loans_in_branch(client, book, officer):
    response = _get(client, officer)

    figures = response.context["figures"]
    expected = _open_positions(loan__officer=officer, loan__branch=book.north)
    assert response.context["selected"] == "officer"
    assert figures.totals.loans == expected["loans"] == len(book.mine)
    assert figures.totals.balance == expected["balance"]
    assert figures.totals.npl_balance == (expected["npl"] or 0)
    by_class = {row.code: row.balance for row in figures.by_class if row.loans}
    assert by_class == _by_class(loan__officer=officer, loan__branch=book.north)


def test_officer_excludes_other_branches(client, book, officer):
    response = _get(client, officer)

    attention = response.context["attention"]
    south_ids = {loan.pk for loan in book.south_but_mine}
    assert south_ids.isdisjoint(loan.pk for loan in attention)
    assert response.context["figures"].totals.loans == len(book.mine)


def test_officer_attention_lists_arrears_first(client, book, officer):
    response = _get(client, officer)

    attention = response.context["attention"]
    expected = list(
        Loan.objects.filter(
            officer=officer,
            branch=book.north,
            position__is_open=True,
        )
        .filter(Q(position__days_past_due__gt=0) | Q(risk_class__gt=1))
        .order_by("-position__days_past_due")
        .values_list("pk", flat=True)
    )
    assert [loan.pk for loan in attention] == expected
    assert attention[0].position.days_past_due > 90
    assert attention[0].overdue_amount == (
        attention[0].position.overdue_principal + attention[0].position.overdue_interest
    )


def test_officer_tasks_count_like_my_tasks(client, book, officer):
    loan = book.mine[0]
    Inspection.objects.all().delete()
    InspectionFactory(loan=loan, due_date=AS_OF - timedelta(days=3))
    InspectionFactory(loan=book.mine[1], due_date=AS_OF + timedelta(days=2))
    InspectionFactory(loan=book.mine[2], due_date=AS_OF + timedelta(days=30), status="draft")
    InspectionFactory(loan=book.mine[3], due_date=AS_OF - timedelta(days=1), status="returned")
    InspectionFactory(loan=book.colleague[0], due_date=AS_OF - timedelta(days=3))

    response = _get(client, officer)

    tasks = {code: count for code, _label, count in response.context["tasks"]}
    assert tasks == {"overdue": 2, "due_soon": 1, "drafts": 1, "returned": 1}


def test_officer_warnings_by_severity(client, book, officer):
    EarlyWarning.objects.all().delete()
    EarlyWarningFactory(loan=book.mine[0], severity=Severity.RED)
    EarlyWarningFactory(loan=book.mine[1], severity=Severity.ORANGE, rule_code="REP_DPD_30")
    EarlyWarningFactory(loan=book.mine[1], severity=Severity.YELLOW, status="resolved")
    EarlyWarningFactory(loan=book.colleague[0], severity=Severity.RED)
    EarlyWarningFactory(loan=book.south_but_mine[0], severity=Severity.RED)

    response = _get(client, officer)

    counts = {severity: count for severity, _label, count in response.context["warnings"]}
    assert counts == {"red": 1, "orange": 1, "yellow": 0}
    assert f"officer={officer.pk}&amp;severity=red" in response.content.decode()


# ---- Branch manager ----------------------------------------------------------------


def test_branch_manager_sees_branch_by_officer(client, book, branch_manager, officer, officer_two):
    response = _get(client, branch_manager)

    figures = response.context["figures"]
    expected = _open_positions(loan__branch=book.north)
    assert response.context["selected"] == "branch"
    assert figures.totals.loans == expected["loans"]
    assert figures.totals.balance == expected["balance"]
    rows = {row.label: row.totals for row in figures.by_officer}
    assert set(rows) == {"officer", "Olga Second", "No officer"}
    for user in (officer, officer_two):
        own = _open_positions(loan__branch=book.north, loan__officer=user)
        label = user.get_full_name() or user.username
        assert rows[label].loans == own["loans"]
        assert rows[label].balance == own["balance"]


def test_branch_manager_excludes_other_branches(client, book, branch_manager):
    EarlyWarning.objects.all().delete()
    EarlyWarningFactory(loan=book.south[0])
    EarlyWarningFactory(loan=book.mine[0], severity=Severity.ORANGE)

    response = _get(client, branch_manager)

    labels = {row.label for row in response.context["officers"]}
    assert "officer-south" not in labels
    counts = {severity: count for severity, _label, count in response.context["warnings"]}
    assert counts == {"red": 0, "orange": 1, "yellow": 0}
    assert [branch.label for branch in response.context["figures"].by_branch] == ["North"]


def test_branch_manager_officer_table(client, book, branch_manager, officer):
    EarlyWarning.objects.all().delete()
    Inspection.objects.all().delete()
    EarlyWarningFactory(loan=book.mine[0])
    EarlyWarningFactory(loan=book.mine[1], rule_code="REP_DPD_60")
    InspectionFactory(loan=book.mine[0], due_date=AS_OF - timedelta(days=10))
    InspectionFactory(loan=book.south[0], due_date=AS_OF - timedelta(days=10))

    response = _get(client, branch_manager)

    row = next(row for row in response.context["officers"] if row.officer_id == officer.pk)
    assert row.warnings == {"red": 2, "orange": 0, "yellow": 0}
    assert dict(row.task_columns) == {"overdue": 1, "due_soon": 0, "drafts": 0, "returned": 0}
    total_overdue = sum(dict(r.task_columns)["overdue"] for r in response.context["officers"])
    assert total_overdue == 1


# ---- Risk manager -----------------------------------------------------------------------


def test_risk_manager_sees_whole_book(client, book, risk_manager):
    response = _get(client, risk_manager)

    figures = response.context["figures"]
    expected = _open_positions()
    assert figures.totals.loans == expected["loans"]
    assert figures.totals.balance == expected["balance"]
    branches = {row.label: row.totals.balance for row in figures.by_branch}
    assert branches == {
        "North": _open_positions(loan__branch=book.north)["balance"],
        "South": _open_positions(loan__branch=book.south_branch)["balance"],
    }
    industries = {row.code: row.totals.loans for row in figures.by_industry}
    assert industries == {"23": 6, "54": 3, "72": 3, "": 1}
    assert figures.by_industry[0].label == "23 Construction"
    stages = {row.code: row.balance for row in figures.by_stage if row.loans}
    expected_stages = (
        LoanPosition.objects.filter(as_of=AS_OF, is_open=True)
        .values("loan__ifrs9_stage")
        .annotate(balance=Sum("outstanding_principal"))
    )
    assert stages == {str(row["loan__ifrs9_stage"]): row["balance"] for row in expected_stages}


def test_risk_figures_follow_a_refresh(client, book, risk_manager):
    first = _get(client, risk_manager).context["figures"].totals.loans
    Loan.objects.filter(pk=book.mine[0].pk).update(officer=None)
    LoanPosition.objects.filter(loan__in=book.colleague).update(is_open=False)

    cached = _get(client, risk_manager).context["figures"].totals.loans
    refresh_portfolio_summary(AS_OF)
    refreshed = _get(client, risk_manager).context["figures"].totals.loans

    assert cached == first
    assert refreshed == first - len(book.colleague)
    assert refreshed == _open_positions()["loans"]


def test_risk_warnings_by_family_and_age(client, book, risk_manager):
    EarlyWarning.objects.all().delete()
    loan = book.mine[0]
    EarlyWarningFactory(loan=loan, first_seen_on=AS_OF - timedelta(days=7))
    EarlyWarningFactory(loan=loan, rule_code="R2", first_seen_on=AS_OF - timedelta(days=8))
    EarlyWarningFactory(
        loan=loan,
        rule_code="C1",
        family=WarningFamily.COLLATERAL,
        severity=Severity.YELLOW,
        first_seen_on=AS_OF - timedelta(days=31),
    )
    EarlyWarningFactory(
        loan=loan,
        rule_code="C2",
        family=WarningFamily.COLLATERAL,
        severity=Severity.ORANGE,
        first_seen_on=AS_OF - timedelta(days=91),
        status=WarningStatus.IN_PROGRESS,
    )
    EarlyWarningFactory(loan=loan, rule_code="C3", status=WarningStatus.DISMISSED)

    response = _get(client, risk_manager)

    matrix = response.context["matrix"]
    families = {family: counts for family, _label, counts in matrix.families}
    assert families["repayment"] == {"red": 2, "orange": 0, "yellow": 0}
    assert families["collateral"] == {"red": 0, "orange": 1, "yellow": 1}
    ages = {code: count for code, _label, count in matrix.ages}
    assert ages == {"0-7": 1, "8-30": 1, "31-90": 1, "91+": 1}
    assert matrix.total == EarlyWarning.objects.filter(status__in=WarningStatus.active()).count()


def test_risk_warnings_equal_orm_counts_after_run(client, book, risk_manager):
    response = _get(client, risk_manager)

    matrix = response.context["matrix"]
    expected = (
        EarlyWarning.objects.filter(status__in=WarningStatus.active())
        .values("family", "severity")
        .annotate(count=Count("pk"))
    )
    counted = {
        (family, severity): count
        for family, _label, counts in matrix.families
        for severity, count in counts.items()
        if count
    }
    assert counted == {(row["family"], row["severity"]): row["count"] for row in expected}
    assert matrix.total > 0


def test_risk_trend_reads_month_ends(client, book, risk_manager):
    template = {
        field.attname: getattr(PortfolioSummary.objects.first(), field.attname)
        for field in PortfolioSummary._meta.concrete_fields
        if field.name not in ("id", "as_of", "risk_class", "balance")
    }
    PortfolioSummary.objects.create(
        **template, as_of=date(2023, 4, 30), risk_class=1, balance=Decimal("900.00")
    )
    PortfolioSummary.objects.create(
        **template, as_of=date(2023, 4, 30), risk_class=3, balance=Decimal("100.00")
    )

    response = _get(client, risk_manager)

    trend = {point.month_end: point for point in response.context["trend"]}
    assert len(trend) == 12
    assert min(trend) == date(2022, 7, 31)
    assert trend[date(2023, 4, 30)].balance == Decimal("1000.00")
    assert trend[date(2023, 4, 30)].npl_ratio == Decimal("10.00")
    assert trend[date(2023, 4, 30)].special_mention_ratio == Decimal("0.00")
    assert trend[date(2023, 5, 31)].balance is None
    june = trend[AS_OF]
    expected = _open_positions()
    assert june.balance == expected["balance"]
    assert june.npl_ratio == (expected["npl"] * 100 / expected["balance"]).quantize(Decimal("0.01"))


# ---- Committee member -------------------------------------------------------------------------


def _proposal(loan, current: int, proposed: int, days_ago: int, status: str = "pending"):
    proposal = ClassificationProposal.objects.create(
        loan=loan,
        current_class=current,
        proposed_class=proposed,
        source=ProposalSource.MANUAL,
        reasons="Test proposal.",
        status=status,
    )
    ClassificationProposal.objects.filter(pk=proposal.pk).update(
        created_at=timezone.now() - timedelta(days=days_ago)
    )
    return proposal


def test_committee_sees_pending_work(client, book, committee_member):
    ClassificationChange.objects.all().delete()
    _proposal(book.mine[0], RiskClass.NORMAL, RiskClass.SUBSTANDARD, days_ago=3)
    _proposal(book.mine[1], RiskClass.NORMAL, RiskClass.SPECIAL_MENTION, days_ago=10)
    _proposal(book.south[0], RiskClass.DOUBTFUL, RiskClass.SUBSTANDARD, days_ago=1)
    _proposal(book.south[1], RiskClass.NORMAL, RiskClass.LOSS, days_ago=40, status="rejected")
    for ratified, as_of in ((False, date(2023, 6, 1)), (False, date(2023, 6, 20)), (True, AS_OF)):
        ClassificationChange.objects.create(
            loan=book.mine[0],
            as_of=as_of,
            previous_class=1,
            new_class=2,
            previous_stage=1,
            new_stage=2,
            reason_code="overdue",
            reason="Overdue.",
            source=ChangeSource.FLOOR,
            ratified=ratified,
        )

    response = _get(client, committee_member)

    figures = response.context["committee"]
    assert (figures.pending, figures.downgrades, figures.upgrades) == (3, 2, 1)
    assert (timezone.now() - figures.oldest_pending_at).days == 10
    assert figures.unratified_floors == 2
    assert figures.oldest_unratified_on == date(2023, 6, 1)
    assert len(response.context["trend"]) == 12


# ---- Auditor -----------------------------------------------------------------------------------


def test_auditor_sees_latest_changes_merged(client, book, auditor, risk_manager):
    loan = book.colleague[0]
    loan._history_user = risk_manager
    loan.purpose = "Changed by the risk manager"
    loan.save()
    warning = EarlyWarningFactory(loan=book.mine[0], rule_code="LATEST")

    response = _get(client, auditor)

    changes = response.context["changes"]
    assert len(changes) == 25
    dates = [change.changed_at for change in changes]
    assert dates == sorted(dates, reverse=True)
    assert changes[0].kind == "warning"
    assert changes[0].object_id == warning.pk
    assert "LATEST" in changes[0].summary
    loan_change = next(change for change in changes if change.kind == "loan")
    assert loan_change.object_id == loan.pk
    assert loan_change.changed_by == "risk"
    assert {change.kind for change in changes} >= {"loan", "warning", "inspection"}


# ---- Roles and refusals -----------------------------------------------------------------------


def test_anonymous_user_goes_to_login(client):
    response = client.get(URL)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_user_without_role_gets_403(client):
    client.force_login(UserFactory(username="nobody"))

    assert client.get(URL).status_code == 403


def test_officer_refused_other_roles_tabs(client, book, officer):
    client.force_login(officer)

    for view in ("branch", "risk", "committee", "audit"):
        assert client.get(URL, {"view": view}).status_code == 403
    assert client.get(URL, {"view": "nonsense"}).status_code == 404


def test_auditor_refused_risk_tab(client, book, auditor):
    client.force_login(auditor)

    assert client.get(URL, {"view": "risk"}).status_code == 403


def test_several_roles_get_tabs(client, book, branch_north):
    user = UserFactory(
        username="both",
        roles=[access.BRANCH_MANAGER, access.RISK_MANAGER],
        branches=[branch_north],
    )

    default = _get(client, user)
    risk = _get(client, user, view="risk")

    assert [code for code, _label in default.context["tabs"]] == ["branch", "risk"]
    assert default.context["selected"] == "branch"
    assert risk.context["selected"] == "risk"
    assert risk.context["figures"].totals.loans == _open_positions()["loans"]
    assert 'aria-current="page"' in risk.content.decode()


def test_administrator_gets_whole_book(client, book, administrator):
    response = _get(client, administrator)

    assert response.context["selected"] == "risk"
    assert response.context["figures"].totals.loans == _open_positions()["loans"]


def test_dashboard_before_first_run(client, officer):
    response = _get(client, officer)

    assert "No figures yet" in response.content.decode()


def test_dashboard_without_summary(client, book, risk_manager):
    PortfolioSummary.objects.all().delete()

    response = _get(client, risk_manager)

    assert response.context["as_of"] is None
    assert "No portfolio summary exists" in response.content.decode()
    assert response.context["matrix"].total > 0


# ---- Query counts ---------------------------------------------------------------------------


def _query_count(client, user, view: str) -> int:
    client.force_login(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"view": view})
    assert response.status_code == 200
    return len(queries.captured_queries)


def _grow_book(make_scheduled_loan, branch_north, branch_south) -> None:
    """Add officers, loans, warnings, inspections and proposals, then run close-of-day again."""
    for index in range(3):
        extra = UserFactory(
            username=f"extra{index}", roles=[access.CREDIT_OFFICER], branches=[branch_north]
        )
        loans = _loans(make_scheduled_loan, branch_north, extra, f"{31 + index}1234", count=4)
        for loan in loans:
            EarlyWarningFactory(loan=loan, family=WarningFamily.FINANCIAL, rule_code="FIN")
            InspectionFactory(loan=loan, due_date=AS_OF - timedelta(days=2))
            _proposal(loan, RiskClass.NORMAL, RiskClass.SPECIAL_MENTION, days_ago=2)
    third = BranchFactory(code="EAST", name="East")
    _loans(make_scheduled_loan, third, None, "811111", count=3)
    _loans(make_scheduled_loan, branch_south, None, "621111", count=3)
    dispatch_close_of_day(AS_OF)
    refresh_portfolio_summary(AS_OF)


# Queries of each tab, the session, user, roles, business date and
# notification count of every page included.
ROLE_VIEWS = (
    ("officer", "officer", 12),
    ("branch_manager", "branch", 14),
    ("risk_manager", "risk", 12),
    ("committee_member", "committee", 11),
    ("auditor", "audit", 10),
)


@pytest.mark.parametrize(("fixture", "view", "maximum"), ROLE_VIEWS)
def test_query_count_fixed(
    request, client, book, make_scheduled_loan, branch_north, branch_south, fixture, view, maximum
):
    user = request.getfixturevalue(fixture)
    few = _query_count(client, user, view)

    _grow_book(make_scheduled_loan, branch_north, branch_south)
    many = _query_count(client, user, view)

    assert many == few
    assert few == maximum
