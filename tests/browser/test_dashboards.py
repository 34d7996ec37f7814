"""Each role's dashboard in a real browser: charts drawn, figures shown, a screenshot saved."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from loans import access
from loans.models import RiskClass
from monitoring.models import ClassificationProposal, ProposalSource, Severity, WarningFamily
from monitoring.tasks import dispatch_close_of_day
from reports.summary import refresh_portfolio_summary
from tests.factories import BorrowerFactory, EarlyWarningFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Month ends of the runs; the last is the business date.
RUNS = (date(2023, 3, 31), date(2023, 4, 30), date(2023, 5, 31), date(2023, 6, 30))
AS_OF = RUNS[-1]
# Disbursement dates of 12-month loans without repayments: current, 1-30,
# 31-60, 61-90, 91-180 and 181-360 days past due on AS_OF.
DISBURSED = (
    date(2023, 6, 10),
    date(2023, 5, 10),
    date(2023, 4, 10),
    date(2023, 3, 10),
    date(2023, 1, 10),
    date(2022, 10, 10),
)
INDUSTRIES = ("236118", "541110", "722511", "445110", "311811")


@pytest.fixture
def book(branch_north, branch_south, officer, make_scheduled_loan):
    """About 40 loans of four officers in two branches, four month-end runs, some warnings."""
    officers = [
        officer,
        UserFactory(
            username="olga",
            first_name="Olga",
            last_name="Ivanova",
            roles=[access.CREDIT_OFFICER],
            branches=[branch_north],
        ),
        UserFactory(
            username="sam",
            first_name="Sam",
            last_name="Okafor",
            roles=[access.CREDIT_OFFICER],
            branches=[branch_south],
        ),
        UserFactory(
            username="lena",
            first_name="Lena",
            last_name="Berg",
            roles=[access.CREDIT_OFFICER],
            branches=[branch_south],
        ),
    ]
    loans = []
    for index in range(40):
        owner = officers[index % len(officers)]
        branch = branch_north if index % len(officers) < 2 else branch_south
        borrower = BorrowerFactory(branch=branch, industry_code=INDUSTRIES[index % 5])
        loans.append(
            make_scheduled_loan(
                borrower=borrower,
                officer=owner,
                disbursement_date=DISBURSED[(index * 7) % len(DISBURSED)],
                principal=Decimal(10000 + (index % 9) * 2500),
            )
        )
    for as_of in RUNS:
        dispatch_close_of_day(as_of)
        refresh_portfolio_summary(as_of)
    families = list(WarningFamily)
    for index, loan in enumerate(loans[:24]):
        EarlyWarningFactory(
            loan=loan,
            rule_code=f"MANUAL_{index}",
            family=families[index % len(families)],
            severity=list(Severity)[index % 3],
            first_seen_on=AS_OF - timedelta(days=index * 5),
        )
    for loan, proposed in (
        (loans[0], RiskClass.SUBSTANDARD),
        (loans[1], RiskClass.SPECIAL_MENTION),
    ):
        ClassificationProposal.objects.create(
            loan=loan,
            current_class=RiskClass.NORMAL,
            proposed_class=proposed,
            source=ProposalSource.MANUAL,
            reasons="Turnover down by a third.",
        )
    return loans


def _open_dashboard(page: Page, log_in, username: str) -> None:
    log_in(username)
    page.goto("/dashboard/")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    # Every canvas gets its Chart.js chart once postloan.js has run.
    page.wait_for_function(
        "Array.from(document.querySelectorAll('canvas'))"
        ".every(canvas => window.Chart && Chart.getChart(canvas))"
    )


@pytest.mark.parametrize(
    ("username", "role", "heading"),
    [
        ("officer", None, "My loans"),
        ("manager", access.BRANCH_MANAGER, "By credit officer"),
        ("risk", access.RISK_MANAGER, "Last 12 month ends"),
        ("committee", access.COMMITTEE_MEMBER, "Pending classification proposals"),
        ("auditor", access.AUDITOR, "Recent changes"),
    ],
)
def test_dashboard_of_each_role(
    page: Page, log_in, screenshot, book, branch_north, username, role, heading
):
    if role is not None:
        UserFactory(
            username=username,
            roles=[role],
            branches=[branch_north] if role == access.BRANCH_MANAGER else [],
        )

    _open_dashboard(page, log_in, username)

    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    for canvas in page.locator("canvas").all():
        expect(canvas).to_have_attribute("role", "img")
        assert canvas.get_attribute("aria-label")
    screenshot(f"dashboard-{username}")


def test_several_roles_switch_tabs(page: Page, log_in, screenshot, book, branch_north):
    UserFactory(
        username="both",
        roles=[access.BRANCH_MANAGER, access.COMMITTEE_MEMBER],
        branches=[branch_north],
    )
    _open_dashboard(page, log_in, "both")

    tabs = page.get_by_role("navigation", name="Dashboards of your roles")
    tabs.get_by_role("link", name="Committee").click()

    expect(tabs.get_by_role("link", name="Committee")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", name="Floor changes awaiting ratification")).to_be_visible()
    screenshot("dashboard-two-roles")
