"""The guarantee network page: members, circle highlighting, branch scoping, query count."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loans import access
from loans.models import Guarantee, GuaranteeType, Guarantor, GuarantorKind, RiskClass
from monitoring.guarantee_network import MAX_CHAIN_EDGES, PRUNE_MAX_ROUNDS, network_around
from monitoring.models import JobRun, JobStatus

from .factories import BorrowerFactory, LoanFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 6, 30)
# The statements of network_around are bounded by its loop constants (see
# tests/test_guarantee_network.py). The page adds a fixed number: session,
# user, roles, business date, notifications, the borrower, then the classes,
# names and visibility of all nodes at once.
PAGE_OWN_QUERIES = 10
PAGE_QUERY_LIMIT = PRUNE_MAX_ROUNDS + 4 * MAX_CHAIN_EDGES + 75 + PAGE_OWN_QUERIES


@pytest.fixture
def business_date():
    return JobRun.objects.create(
        as_of=AS_OF, status=JobStatus.COMPLETED, finished_at=timezone.now()
    )


def build(branches: dict[str, object], edges: list[tuple[str, str]], npl=()) -> dict[str, int]:
    """Create a borrower with one open loan per name, in its branch, and a guarantee per edge.

    In an edge (src, dst) src guarantees dst's loan. Returns the borrower id per name.
    """
    ids, loans, guarantors = {}, {}, {}
    for name, branch in branches.items():
        borrower = BorrowerFactory(branch=branch, legal_name=f"Firm {name}")
        risk_class = RiskClass.DOUBTFUL if name in npl else RiskClass.NORMAL
        loans[name] = LoanFactory(borrower=borrower, risk_class=risk_class)
        guarantors[name] = Guarantor.objects.create(
            kind=GuarantorKind.COMPANY,
            name=f"Firm {name}",
            registration_number=f"G-{borrower.pk}",
            borrower=borrower,
        )
        ids[name] = borrower.pk
    for src, dst in edges:
        Guarantee.objects.create(
            loan=loans[dst],
            guarantor=guarantors[src],
            guarantee_type=GuaranteeType.JOINT_AND_SEVERAL,
            amount=Decimal("5000.00"),
            valid_from=date(2023, 1, 1),
        )
    return ids


@pytest.fixture
def circle(branch_north, branch_south, business_date):
    """A, B and C guarantee each other in a circle; C also guarantees D, which is doubtful.

    C is a borrower of the south branch, the others of the north branch.
    """
    branches = {"A": branch_north, "B": branch_north, "C": branch_south, "D": branch_north}
    return build(branches, [("A", "B"), ("B", "C"), ("C", "A"), ("C", "D")], npl=("D",))


def node_attributes(html: str, borrower_id: int) -> str:
    """Return the opening tag of the drawing's group for the borrower."""
    match = re.search(rf'<g class="pl-net-node[^"]*" data-node="{borrower_id}"[^>]*>', html)
    assert match, f"no drawn node for borrower {borrower_id}"
    return match.group(0)


def test_network_page_highlights_circle(client, risk_manager, circle):
    client.force_login(risk_manager)

    response = client.get(reverse("monitoring:borrower_network", args=[circle["A"]]))

    assert response.status_code == 200
    page = response.context["network"]
    assert [c.number for c in page.circles] == [1]
    assert {node.name for node in page.circles[0].members} == {"Firm A", "Firm B", "Firm C"}
    assert {node.name: node.is_npl for node in page.nodes} == {
        "Firm A": False,
        "Firm B": False,
        "Firm C": False,
        "Firm D": True,
    }
    assert [edge.kind for edge in page.edges if edge.in_circle] == ["circle"] * 3
    html = response.content.decode()
    for name in ("A", "B", "C"):
        assert 'data-circle="1"' in node_attributes(html, circle[name])
    assert "data-circle" not in node_attributes(html, circle["D"])
    assert len(re.findall(r'<path d="[^"]+" class="pl-net-edge pl-net-edge-circle"', html)) == 3
    assert 'data-alert="circle"' in html


def test_network_page_shows_class(client, risk_manager, circle):
    client.force_login(risk_manager)

    response = client.get(reverse("monitoring:borrower_network", args=[circle["D"]]))

    nodes = {node.name: node for node in response.context["network"].nodes}
    assert nodes["Firm D"].class_label == "Doubtful"
    assert nodes["Firm D"].is_centre
    assert nodes["Firm A"].class_label == "Normal"
    assert 'data-alert="circle"' not in response.content.decode()


def test_network_page_depth_limits_members(client, risk_manager, circle):
    client.force_login(risk_manager)

    response = client.get(
        reverse("monitoring:borrower_network", args=[circle["D"]]), {"depth": "1"}
    )

    assert {node.name for node in response.context["network"].nodes} == {"Firm C", "Firm D"}


def test_other_branch_officer_gets_404(client, circle, branch_south):
    south_only = UserFactory(
        username="south-officer", roles=[access.CREDIT_OFFICER], branches=[branch_south]
    )
    client.force_login(south_only)

    response = client.get(reverse("monitoring:borrower_network", args=[circle["A"]]))

    assert response.status_code == 404


def test_officer_sees_no_foreign_names(client, officer, circle):
    client.force_login(officer)

    response = client.get(reverse("monitoring:borrower_network", args=[circle["A"]]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Firm A" in html
    assert "Firm C" not in html
    assert "Other branch&#x27;s borrower 1" in html
    assert reverse("loans:borrower_detail", args=[circle["C"]]) not in html
    assert 'data-circle="1"' in node_attributes(html, circle["C"])


def test_network_page_query_count(client, officer, branch_north, business_date):
    names = [f"N{number}" for number in range(12)]
    ids = build(
        dict.fromkeys(names, branch_north),
        [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))],
    )
    client.force_login(officer)
    url = reverse("monitoring:borrower_network", args=[ids["N0"]])
    client.get(url, {"depth": "4"})

    with CaptureQueriesContext(connection) as network_queries:
        network_around(ids["N0"], AS_OF, depth=4)
    with CaptureQueriesContext(connection) as page_queries:
        response = client.get(url, {"depth": "4"})

    assert len(response.context["network"].nodes) == 9
    assert len(page_queries) <= PAGE_QUERY_LIMIT
    assert len(page_queries) - len(network_queries) <= PAGE_OWN_QUERIES
