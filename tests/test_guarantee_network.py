"""Guarantee circles, chains and a borrower's network, on PostgreSQL and SQLite.

Run this file with DATABASE_URL=sqlite:////tmp/gn.sqlite3 as well: every
expected value is written out, so both backends must return the same.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from loans.models import (
    Borrower,
    Guarantee,
    GuaranteeType,
    Guarantor,
    GuarantorKind,
    Loan,
    LoanPosition,
    RiskClass,
)
from monitoring.guarantee_network import (
    MAX_CHAIN_EDGES,
    PRUNE_MAX_ROUNDS,
    OpenLoans,
    chain_members,
    circle_members,
    network_around,
)

from .factories import BorrowerFactory, BranchFactory, LoanFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2024, 6, 30)

# Statements per call whatever the graph: the bounded loops (pruning rounds;
# search levels with their ANALYZE, two measuring passes) plus table set-up,
# SELECTs and savepoints.
CIRCLE_QUERY_LIMIT = PRUNE_MAX_ROUNDS + 25
CHAIN_QUERY_LIMIT = 4 * MAX_CHAIN_EDGES + 35
NETWORK_QUERY_LIMIT = CIRCLE_QUERY_LIMIT + CHAIN_QUERY_LIMIT + 15


def build_network(
    edges: list[tuple[str, str]],
    npl: tuple[str, ...] = (),
    nodes: tuple[str, ...] = (),
    **guarantee_fields,
) -> dict[str, int]:
    """Create a borrower with one open loan per name, and a guarantee per edge (src, dst).

    The guarantor of src guarantees dst's loan. Returns the borrower id per name.
    """
    names = sorted({name for edge in edges for name in edge} | set(npl) | set(nodes))
    branch = BranchFactory()
    borrowers = Borrower.objects.bulk_create(
        BorrowerFactory.build(branch=branch, legal_name=f"Firm {name}") for name in names
    )
    ids = {name: borrower.pk for name, borrower in zip(names, borrowers, strict=True)}
    loans = Loan.objects.bulk_create(
        LoanFactory.build(
            borrower=borrower,
            risk_class=RiskClass.SUBSTANDARD if name in npl else RiskClass.NORMAL,
        )
        for name, borrower in zip(names, borrowers, strict=True)
    )
    loan_ids = {name: loan.pk for name, loan in zip(names, loans, strict=True)}
    guarantors = Guarantor.objects.bulk_create(
        Guarantor(
            kind=GuarantorKind.COMPANY,
            name=f"Firm {name}",
            registration_number=f"G-{ids[name]}",
            borrower_id=ids[name],
        )
        for name in names
    )
    guarantor_ids = {name: g.pk for name, g in zip(names, guarantors, strict=True)}
    fields = {"amount": Decimal("5000.00"), "valid_from": date(2023, 1, 1)} | guarantee_fields
    Guarantee.objects.bulk_create(
        Guarantee(
            loan_id=loan_ids[dst],
            guarantor_id=guarantor_ids[src],
            guarantee_type=GuaranteeType.JOINT_AND_SEVERAL,
            **fields,
        )
        for src, dst in edges
    )
    return ids


def cycle(*names: str) -> list[tuple[str, str]]:
    return [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]


def path(*names: str) -> list[tuple[str, str]]:
    return list(zip(names, names[1:], strict=False))


def by_name(ids: dict[str, int], result: dict[int, object]) -> dict[str, object]:
    names = {pk: name for name, pk in ids.items()}
    return {names[pk]: value for pk, value in result.items()}


def named_members(ids: dict[str, int], result: dict) -> dict[str, list[str]]:
    names = {pk: name for name, pk in ids.items()}
    return {
        names[pk]: [names[seed] for seed in entry["npl_members"]] for pk, entry in result.items()
    }


def named_lengths(ids: dict[str, int], result: dict) -> dict[str, int]:
    return {name: entry["chain_length"] for name, entry in by_name(ids, result).items()}


# Circles ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 3, 5])
def test_circle_members_share_one_id(size):
    names = tuple("ABCDE"[:size])
    ids = build_network(cycle(*names))

    circles = circle_members(AS_OF)

    assert set(circles) == set(ids.values())
    assert set(circles.values()) == {min(ids.values())}


def test_disjoint_circles_get_two_ids():
    ids = build_network(cycle("A", "B") + cycle("C", "D", "E"))

    circles = by_name(ids, circle_members(AS_OF))

    assert circles == {
        "A": ids["A"],
        "B": ids["A"],
        "C": ids["C"],
        "D": ids["C"],
        "E": ids["C"],
    }


def test_acyclic_graph_has_no_circles():
    tree = [("R", "S"), ("R", "T"), ("S", "U"), ("S", "V")]
    diamond = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
    build_network(tree + diamond)

    circles = circle_members(AS_OF)

    assert circles == {}


def test_circle_tail_not_in_circle():
    ids = build_network(cycle("A", "B") + [("B", "C"), ("X", "A")])

    circles = by_name(ids, circle_members(AS_OF))

    assert circles == {"A": ids["A"], "B": ids["A"]}


def test_circles_joined_by_edge_stay_apart():
    ids = build_network(cycle("A", "B", "C") + cycle("D", "E") + [("C", "D")])

    circles = by_name(ids, circle_members(AS_OF))

    assert circles == {
        "A": ids["A"],
        "B": ids["A"],
        "C": ids["A"],
        "D": ids["D"],
        "E": ids["D"],
    }


def test_figure_eight_is_one_circle():
    ids = build_network(cycle("A", "B", "C") + cycle("C", "D", "E"))

    circles = circle_members(AS_OF)

    assert set(circles) == set(ids.values())
    assert set(circles.values()) == {ids["A"]}


def test_expired_guarantee_breaks_circle():
    ids = build_network(path("A", "B", "C"))
    closing = Guarantee.objects.create(
        loan=Loan.objects.get(borrower_id=ids["A"]),
        guarantor=Guarantor.objects.get(borrower_id=ids["C"]),
        guarantee_type=GuaranteeType.GENERAL,
        amount=Decimal("1000.00"),
        valid_from=date(2023, 1, 1),
        valid_to=date(2024, 6, 29),
    )

    expired = circle_members(AS_OF)
    on_last_day = circle_members(closing.valid_to)

    assert expired == {}
    assert set(on_last_day) == {ids["A"], ids["B"], ids["C"]}


def test_future_guarantee_not_counted():
    build_network(cycle("A", "B"), valid_from=date(2024, 7, 1))

    circles = circle_members(AS_OF)

    assert circles == {}


def test_closed_loan_breaks_circle():
    ids = build_network(cycle("A", "B", "C"))
    Loan.objects.filter(borrower_id=ids["B"]).update(closed_on=date(2024, 3, 31))

    circles = circle_members(AS_OF)
    before_closing = circle_members(date(2024, 3, 30))

    assert circles == {}
    assert set(before_closing) == set(ids.values())


def test_position_mode_reads_loan_positions():
    ids = build_network(cycle("A", "B"))
    for loan in Loan.objects.filter(borrower_id__in=ids.values()):
        LoanPosition.objects.create(
            loan=loan,
            as_of=AS_OF,
            is_open=loan.borrower_id != ids["B"],
            outstanding_principal=Decimal("1000.00"),
            overdue_principal=Decimal("0.00"),
            overdue_interest=Decimal("0.00"),
            days_past_due=0,
            dpd_bucket="current",
        )

    by_positions = circle_members(AS_OF, OpenLoans.POSITION)
    by_closed_on = circle_members(AS_OF, OpenLoans.CLOSED_ON)

    assert by_positions == {}
    assert set(by_closed_on) == set(ids.values())


def test_non_borrower_guarantor_adds_no_edge():
    ids = build_network(path("A", "B"))
    outsider = Guarantor.objects.create(
        kind=GuarantorKind.PERSON, name="Jane Doe", registration_number="P-1"
    )
    Guarantee.objects.create(
        loan=Loan.objects.get(borrower_id=ids["A"]),
        guarantor=outsider,
        guarantee_type=GuaranteeType.GENERAL,
        percentage=Decimal("50"),
        valid_from=date(2023, 1, 1),
    )

    circles = circle_members(AS_OF)

    assert circles == {}


# Chains ----------------------------------------------------------------------


def test_chain_of_four_flags_all():
    ids = build_network(path("A", "B", "C", "D"), npl=("B",))

    chains = chain_members(AS_OF)

    assert named_members(ids, chains) == {"A": ["B"], "B": ["B"], "C": ["B"], "D": ["B"]}
    assert named_lengths(ids, chains) == {"A": 4, "B": 4, "C": 4, "D": 4}


def test_chain_npl_at_end_flags_all():
    ids = build_network(path("A", "B", "C", "D"), npl=("D",))

    chains = chain_members(AS_OF)

    assert named_members(ids, chains) == {"A": ["D"], "B": ["D"], "C": ["D"], "D": ["D"]}
    assert named_lengths(ids, chains) == {"A": 4, "B": 4, "C": 4, "D": 4}


def test_chain_without_npl_flags_none():
    build_network(path("A", "B", "C", "D"))

    chains = chain_members(AS_OF)

    assert chains == {}


def test_chain_of_two_flags_none():
    build_network(path("A", "B"), npl=("A",))

    chains = chain_members(AS_OF)

    assert chains == {}


def test_npl_circle_of_two_flags_none():
    build_network(cycle("A", "B"), npl=("A",))

    chains = chain_members(AS_OF)

    assert chains == {}


def test_npl_circle_of_three_flags_all():
    ids = build_network(cycle("A", "B", "C"), npl=("A",))

    chains = chain_members(AS_OF)

    assert named_members(ids, chains) == {"A": ["A"], "B": ["A"], "C": ["A"]}
    assert named_lengths(ids, chains) == {"A": 3, "B": 3, "C": 3}


def test_chain_through_circle_stays_simple():
    # Going round A <-> B must not lengthen the chain N -> A -> B.
    ids = build_network([("N", "A")] + cycle("A", "B"), npl=("N",))

    chains = chain_members(AS_OF)

    assert named_members(ids, chains) == {"N": ["N"], "A": ["N"], "B": ["N"]}
    assert named_lengths(ids, chains) == {"N": 3, "A": 3, "B": 3}


def test_shared_guarantor_forms_no_chain():
    # A guarantees B and C: no directed path contains three borrowers.
    build_network([("A", "B"), ("A", "C")], npl=("A",))

    chains = chain_members(AS_OF)

    assert chains == {}


def test_branch_gets_its_own_length():
    ids = build_network(path("A", "B", "C", "D") + [("B", "X")], npl=("A",))

    chains = chain_members(AS_OF)

    assert set(named_members(ids, chains)) == {"A", "B", "C", "D", "X"}
    assert named_lengths(ids, chains) == {"A": 4, "B": 4, "C": 4, "D": 4, "X": 3}


def test_direct_edge_extended_by_neighbour():
    # N -> X alone is two borrowers; P -> N makes P -> N -> X a chain.
    ids = build_network([("N", "X"), ("P", "N")], npl=("N",))

    chains = chain_members(AS_OF)

    assert named_members(ids, chains) == {"N": ["N"], "P": ["N"], "X": ["N"]}


def test_two_npl_members_both_listed():
    ids = build_network(path("A", "B", "C"), npl=("A", "C"))

    chains = chain_members(AS_OF)

    assert named_members(ids, chains) == {
        "A": ["A", "C"],
        "B": ["A", "C"],
        "C": ["A", "C"],
    }


def test_chain_beyond_cap_not_flagged():
    names = tuple(f"N{i:02d}" for i in range(MAX_CHAIN_EDGES + 3))
    ids = build_network(path(*names), npl=(names[0],))

    chains = by_name(ids, chain_members(AS_OF))

    assert set(chains) == set(names[: MAX_CHAIN_EDGES + 1])
    assert chains[names[0]]["chain_length"] == MAX_CHAIN_EDGES + 1


def test_dense_group_flags_all():
    names = tuple(f"M{i}" for i in range(9))
    everyone = [(a, b) for a in names for b in names if a != b]
    ids = build_network(everyone, npl=(names[0],))

    chains = by_name(ids, chain_members(AS_OF))

    assert set(chains) == set(names)
    assert all(3 <= entry["chain_length"] <= len(names) for entry in chains.values())


def test_custom_npl_selection_used():
    ids = build_network(path("A", "B", "C"))
    npl_sql = f"SELECT {ids['C']} AS borrower_id"

    chains = chain_members(AS_OF, npl_sql=npl_sql)

    assert named_members(ids, chains) == {"A": ["C"], "B": ["C"], "C": ["C"]}


def test_mixed_graph_exact_result():
    edges = (
        cycle("A", "B", "C")
        + [("C", "D"), ("D", "E"), ("E", "F")]
        + cycle("G", "H")
        + [("H", "I"), ("J", "G")]
        + [("K", "L")]
    )
    ids = build_network(edges, npl=("E", "H"), nodes=("Z",))

    circles = by_name(ids, circle_members(AS_OF))
    chains = chain_members(AS_OF)

    assert circles == {"A": ids["A"], "B": ids["A"], "C": ids["A"], "G": ids["G"], "H": ids["G"]}
    assert named_members(ids, chains) == {
        "A": ["E"],
        "B": ["E"],
        "C": ["E"],
        "D": ["E"],
        "E": ["E"],
        "F": ["E"],
        "G": ["H"],
        "H": ["H"],
        "I": ["H"],
        "J": ["H"],
    }
    assert named_lengths(ids, chains) == {
        "A": 6,
        "B": 6,
        "C": 6,
        "D": 6,
        "E": 6,
        "F": 6,
        "G": 4,
        "H": 4,
        "I": 4,
        "J": 4,
    }


# Query counts ------------------------------------------------------------------


def layered_network(size: int) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """Return the edges and NPL names of `size` borrowers.

    Half of them form circles of three. The other half form one long path
    into the first circle, so pruning needs more rounds as `size` grows.
    """
    names = [f"N{i:04d}" for i in range(size)]
    edges: list[tuple[str, str]] = []
    circle_count = size // 6
    for start in range(0, circle_count * 3, 3):
        edges += cycle(*names[start : start + 3])
    tail = names[circle_count * 3 :]
    edges += path(*tail) + [(tail[-1], names[0])]
    return edges, tuple(names[::7])


@pytest.mark.parametrize("size", [10, 300])
def test_query_count_independent_of_size(size, django_assert_max_num_queries):
    edges, npl = layered_network(size)
    ids = build_network(edges, npl=npl)

    with django_assert_max_num_queries(CIRCLE_QUERY_LIMIT):
        circles = circle_members(AS_OF)
    with django_assert_max_num_queries(CHAIN_QUERY_LIMIT):
        chains = chain_members(AS_OF)

    assert len(circles) == (size // 6) * 3
    assert set(chains) <= set(ids.values())
    assert chains


# Network around a borrower -----------------------------------------------------


def test_network_marks_circle_and_chain():
    ids = build_network(cycle("A", "B") + path("B", "C", "D", "E"), npl=("D",))

    network = network_around(ids["B"], AS_OF, depth=2)

    nodes = {node["name"]: node for node in network["nodes"]}
    assert list(nodes) == ["Firm B", "Firm A", "Firm C", "Firm D"]
    assert nodes["Firm A"]["in_circle"] is True
    assert nodes["Firm A"]["circle_id"] == ids["A"]
    assert nodes["Firm C"]["in_circle"] is False
    assert nodes["Firm D"]["is_npl"] is True
    assert nodes["Firm C"]["npl_members"] == [ids["D"]]
    assert nodes["Firm D"]["steps"] == 2
    edges = {(edge["from"], edge["to"]): edge for edge in network["edges"]}
    assert set(edges) == {
        (ids["A"], ids["B"]),
        (ids["B"], ids["A"]),
        (ids["B"], ids["C"]),
        (ids["C"], ids["D"]),
    }
    assert edges[(ids["A"], ids["B"])]["in_circle"] is True
    assert edges[(ids["B"], ids["C"])]["in_circle"] is False
    assert edges[(ids["C"], ids["D"])]["on_chain"] is True


def test_network_sums_guarantee_amounts():
    ids = build_network(path("A", "B"))
    second_loan = LoanFactory(borrower_id=ids["B"], branch=Borrower.objects.get(pk=ids["B"]).branch)
    Guarantee.objects.create(
        loan=second_loan,
        guarantor=Guarantor.objects.get(borrower_id=ids["A"]),
        guarantee_type=GuaranteeType.GENERAL,
        percentage=Decimal("12.5"),
        valid_from=date(2023, 1, 1),
    )

    network = network_around(ids["A"], AS_OF)

    assert [(e["from"], e["to"], e["amount"]) for e in network["edges"]] == [
        (ids["A"], ids["B"], Decimal("6500.00"))
    ]


def test_network_of_lone_borrower():
    ids = build_network([], nodes=("A",))

    network = network_around(ids["A"], AS_OF)

    assert [node["id"] for node in network["nodes"]] == [ids["A"]]
    assert network["edges"] == []


def test_network_unknown_borrower_raises():
    build_network(path("A", "B"))

    with pytest.raises(Borrower.DoesNotExist):
        network_around(10**9, AS_OF)


@pytest.mark.parametrize("size", [10, 300])
def test_network_query_count_bounded(size, django_assert_max_num_queries):
    edges, _npl = layered_network(size)
    ids = build_network(edges)

    with django_assert_max_num_queries(NETWORK_QUERY_LIMIT):
        network = network_around(ids["N0000"], AS_OF, depth=3)

    assert network["nodes"][0]["id"] == ids["N0000"]
