"""Guarantor warning rules and the guarantee-network step, through whole close-of-day runs."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.urls import reverse

from loans.models import (
    Guarantee,
    GuaranteeType,
    Guarantor,
    GuarantorKind,
    Loan,
    RiskClass,
)
from monitoring.close_of_day.network import refresh_guarantee_network
from monitoring.guarantee_network import MAX_CHAIN_EDGES, PRUNE_MAX_ROUNDS
from monitoring.models import (
    EarlyWarning,
    FlaggedGuarantee,
    GuaranteeNetworkMember,
    JobRun,
    WarningRule,
    WarningStatus,
)
from monitoring.rules import sync_rules
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, LoanFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2024, 6, 30)

GUARANTOR_RULES = (
    "GUA_GUARANTOR_OVERDUE",
    "GUA_GUARANTOR_NPL",
    "GUA_OVEREXTENDED",
    "GUA_CIRCLE",
    "GUA_CIRCLE_NPL",
    "GUA_CHAIN_NPL",
)


def build_network(
    edges: list[tuple[str, str]], npl: tuple[str, ...] = (), nodes: tuple[str, ...] = ()
) -> dict[str, Loan]:
    """Create a borrower with one open loan per name, and a guarantee per edge (src, dst).

    The borrower src, as a guarantor, guarantees dst's loan. The loans have
    no schedule, so they are never past due. Those named in `npl` are in
    the substandard class. Returns the loan per name.
    """
    names = sorted({name for edge in edges for name in edge} | set(npl) | set(nodes))
    loans = {
        name: LoanFactory(
            borrower=BorrowerFactory(legal_name=f"Firm {name}"),
            risk_class=RiskClass.SUBSTANDARD if name in npl else RiskClass.NORMAL,
        )
        for name in names
    }
    for src, dst in edges:
        guarantee(loans[dst], guarantor_of(loans[src]))
    return loans


def guarantor_of(loan: Loan, net_worth: Decimal | None = None) -> Guarantor:
    guarantor, _created = Guarantor.objects.get_or_create(
        borrower=loan.borrower,
        defaults={
            "kind": GuarantorKind.COMPANY,
            "name": loan.borrower.legal_name,
            "registration_number": f"G-{loan.borrower.registration_number}",
            "net_worth": net_worth,
        },
    )
    return guarantor


def person(name: str, net_worth: Decimal | None) -> Guarantor:
    return Guarantor.objects.create(
        kind=GuarantorKind.PERSON, name=name, registration_number=f"P-{name}", net_worth=net_worth
    )


def guarantee(loan: Loan, guarantor: Guarantor, **fields) -> Guarantee:
    fields.setdefault("valid_from", date(2023, 1, 1))
    if "percentage" not in fields:
        fields.setdefault("amount", Decimal("5000.00"))
    return Guarantee.objects.create(
        loan=loan, guarantor=guarantor, guarantee_type=GuaranteeType.GENERAL, **fields
    )


def cycle(*names: str) -> list[tuple[str, str]]:
    return [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]


def path(*names: str) -> list[tuple[str, str]]:
    return list(zip(names, names[1:], strict=False))


def fired(code: str) -> dict[int, dict]:
    """Return the evidence of the active warnings of rule `code`, per loan id."""
    warnings = EarlyWarning.objects.filter(rule_code=code, status__in=WarningStatus.active())
    return dict(warnings.values_list("loan_id", "evidence"))


def loan_ids(loans: dict[str, Loan], names: str) -> set[int]:
    return {loans[name].pk for name in names}


def set_thresholds(code: str, **thresholds) -> None:
    sync_rules()
    WarningRule.objects.filter(code=code).update(thresholds=thresholds)


# Circles ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 3, 5])
def test_circle_members_fire(size):
    members = "ABCDE"[:size]
    loans = build_network(cycle(*members) + [("A", "T"), ("U", "A")], nodes=("Z",))

    dispatch_close_of_day(AS_OF)

    circle = fired("GUA_CIRCLE")
    assert set(circle) == loan_ids(loans, members)
    first = circle[loans["A"].pk]
    assert first["circle_id"] == min(loans[name].borrower_id for name in members)
    assert first["circle_members"] == size
    assert first["npl_members"] == 0
    assert first["npl_borrower_ids"] == []
    assert first["as_of"] == AS_OF.isoformat()
    assert fired("GUA_CIRCLE_NPL") == {}


def test_circle_with_npl_member_is_red():
    loans = build_network(cycle("A", "B", "C"), npl=("B",))

    dispatch_close_of_day(AS_OF)

    red = fired("GUA_CIRCLE_NPL")
    assert set(red) == loan_ids(loans, "ABC")
    assert red[loans["C"].pk]["npl_members"] == 1
    assert red[loans["C"].pk]["npl_borrower_ids"] == [loans["B"].borrower_id]
    assert fired("GUA_CIRCLE") == {}


def test_overdue_circle_member_counts_npl(make_scheduled_loan):
    loans = build_network(cycle("A", "B"))
    # First instalment due on 2024-02-01 and unpaid: 150 days past due, so
    # phase 2 moves the loan to substandard whatever its class before.
    late = make_scheduled_loan(borrower=loans["A"].borrower, disbursement_date=date(2024, 1, 1))

    dispatch_close_of_day(AS_OF)

    assert set(fired("GUA_CIRCLE_NPL")) == loan_ids(loans, "AB") | {late.pk}
    assert fired("GUA_CIRCLE") == {}


def test_acyclic_graph_fires_nothing():
    tree = [("R", "S"), ("R", "T"), ("S", "U"), ("S", "V")]
    diamond = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
    build_network(tree + diamond)

    dispatch_close_of_day(AS_OF)

    assert EarlyWarning.objects.filter(family="guarantor").count() == 0
    assert GuaranteeNetworkMember.objects.count() == 0


def test_expired_guarantee_resolves_circle():
    loans = build_network(path("A", "B"))
    closing = guarantee(loans["A"], guarantor_of(loans["B"]), valid_to=AS_OF)
    dispatch_close_of_day(AS_OF)
    opened = set(fired("GUA_CIRCLE"))

    dispatch_close_of_day(closing.valid_to + timedelta(days=1))

    assert opened == loan_ids(loans, "AB")
    assert fired("GUA_CIRCLE") == {}
    resolved = EarlyWarning.objects.filter(rule_code="GUA_CIRCLE", status=WarningStatus.RESOLVED)
    assert resolved.count() == 2


# Chains ----------------------------------------------------------------------


def test_chain_of_four_fires_members():
    loans = build_network(path("A", "B", "C", "D") + path("X", "Y"), npl=("B",))

    dispatch_close_of_day(AS_OF)

    chain = fired("GUA_CHAIN_NPL")
    assert set(chain) == loan_ids(loans, "ABCD")
    assert chain[loans["D"].pk]["chain_length"] == 4
    assert chain[loans["D"].pk]["npl_members"] == 1
    assert chain[loans["D"].pk]["npl_borrower_ids"] == [loans["B"].borrower_id]
    assert chain[loans["D"].pk]["threshold_chain_length"] == 3


def test_chain_without_npl_fires_nothing():
    build_network(path("A", "B", "C", "D"))

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_CHAIN_NPL") == {}


def test_chain_shorter_than_threshold_skipped():
    build_network(path("A", "B", "C", "D"), npl=("B",))
    set_thresholds("GUA_CHAIN_NPL", min_chain_length=5)

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_CHAIN_NPL") == {}


def test_chain_warning_stays_open_when_cleared():
    loans = build_network(path("A", "B", "C"), npl=("C",))
    dispatch_close_of_day(AS_OF)
    Loan.objects.filter(pk=loans["C"].pk).update(closed_on=AS_OF + timedelta(days=1))

    dispatch_close_of_day(AS_OF + timedelta(days=1))

    warning = EarlyWarning.objects.get(rule_code="GUA_CHAIN_NPL", loan=loans["A"])
    assert warning.status == WarningStatus.OPEN
    assert warning.cleared_on == AS_OF + timedelta(days=1)


# Guarantor in arrears ----------------------------------------------------------


@pytest.mark.parametrize(
    ("disbursed", "overdue_fires", "npl_fires"),
    [
        (date(2024, 6, 1), False, False),  # nothing due yet
        (date(2024, 5, 1), False, False),  # 29 days past due
        (date(2024, 4, 1), True, False),  # 60 days past due
        (date(2024, 1, 1), True, True),  # 150 days past due: substandard
    ],
)
def test_guarantor_arrears_fire(make_scheduled_loan, disbursed, overdue_fires, npl_fires):
    guarantor_loan = make_scheduled_loan(disbursement_date=disbursed)
    guaranteed = LoanFactory()
    guarantee(guaranteed, guarantor_of(guarantor_loan))

    dispatch_close_of_day(AS_OF)

    assert (guaranteed.pk in fired("GUA_GUARANTOR_OVERDUE")) is overdue_fires
    assert (guaranteed.pk in fired("GUA_GUARANTOR_NPL")) is npl_fires
    assert guarantor_loan.pk not in fired("GUA_GUARANTOR_OVERDUE")


def test_guarantor_arrears_evidence(make_scheduled_loan):
    guarantor_loan = make_scheduled_loan(disbursement_date=date(2024, 4, 1))
    guaranteed = LoanFactory()
    guarantor = guarantor_of(guarantor_loan)
    guarantee(guaranteed, guarantor)
    guarantee(guaranteed, person("Jane Doe", None))

    dispatch_close_of_day(AS_OF)

    evidence = fired("GUA_GUARANTOR_OVERDUE")[guaranteed.pk]
    assert evidence["guarantor_id"] == guarantor.pk
    assert evidence["guarantor_name"] == guarantor.name
    assert evidence["guarantor_borrower_id"] == guarantor_loan.borrower_id
    assert evidence["guarantor_days_past_due"] == 60
    assert evidence["guarantor_risk_class"] == RiskClass.SPECIAL_MENTION
    assert evidence["flagged_guarantors"] == 1
    assert evidence["threshold_days"] == 30


def test_guarantor_npl_by_class_only():
    guarantor_loan = LoanFactory(risk_class=RiskClass.DOUBTFUL)
    guaranteed = LoanFactory()
    guarantee(guaranteed, guarantor_of(guarantor_loan))

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_GUARANTOR_NPL")[guaranteed.pk]["guarantor_risk_class"] == RiskClass.DOUBTFUL
    assert guaranteed.pk not in fired("GUA_GUARANTOR_OVERDUE")


def test_worst_of_two_guarantors_named(make_scheduled_loan):
    milder = make_scheduled_loan(disbursement_date=date(2024, 4, 1))
    worse = make_scheduled_loan(disbursement_date=date(2024, 3, 1))
    guaranteed = LoanFactory()
    guarantee(guaranteed, guarantor_of(milder))
    guarantee(guaranteed, guarantor_of(worse))

    dispatch_close_of_day(AS_OF)

    evidence = fired("GUA_GUARANTOR_OVERDUE")[guaranteed.pk]
    assert evidence["guarantor_borrower_id"] == worse.borrower_id
    assert evidence["guarantor_days_past_due"] == 90
    assert evidence["flagged_guarantors"] == 2


@pytest.mark.parametrize(
    "validity",
    [
        {"valid_to": date(2024, 6, 29)},
        {"valid_from": date(2024, 7, 1)},
    ],
)
def test_guarantee_invalid_on_date_ignored(validity):
    guarantor_loan = LoanFactory(risk_class=RiskClass.LOSS)
    guaranteed = LoanFactory()
    guarantee(guaranteed, guarantor_of(guarantor_loan), **validity)

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_GUARANTOR_NPL") == {}


def test_own_guarantee_ignored():
    loan = LoanFactory(risk_class=RiskClass.LOSS)
    guarantee(loan, guarantor_of(loan))

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_GUARANTOR_NPL") == {}


# Over-extended guarantor -------------------------------------------------------


@pytest.mark.parametrize(
    ("second_amount", "expected"),
    [(Decimal("4000.00"), False), (Decimal("4000.01"), True)],
)
def test_overextended_at_boundary(second_amount, expected):
    guarantor = person("John Roe", Decimal("10000.00"))
    first, second = LoanFactory(), LoanFactory()
    guarantee(first, guarantor, amount=Decimal("6000.00"))
    guarantee(second, guarantor, amount=second_amount)

    dispatch_close_of_day(AS_OF)

    assert set(fired("GUA_OVEREXTENDED")) == ({first.pk, second.pk} if expected else set())


def test_overextended_counts_percentage(make_scheduled_loan):
    guarantor = person("John Roe", Decimal("10000.00"))
    # Nothing repaid yet, so 12,000.00 outstanding; 50% of it is 6,000.00.
    by_share = make_scheduled_loan(disbursement_date=date(2024, 6, 15))
    by_amount = LoanFactory()
    guarantee(by_share, guarantor, percentage=Decimal("50"))
    guarantee(by_amount, guarantor, amount=Decimal("4000.01"))

    dispatch_close_of_day(AS_OF)

    evidence = fired("GUA_OVEREXTENDED")[by_share.pk]
    assert evidence["guarantor_total_guaranteed"] == "10000.01"
    assert evidence["guarantor_net_worth"] == "10000.00"
    assert evidence["flagged_guarantors"] == 1
    assert evidence["threshold_multiple"] == 1
    flagged = FlaggedGuarantee.objects.get(loan=by_amount, reason="over_extended")
    assert flagged.total_guaranteed == Decimal("10000.01")


def test_overextended_multiple_from_settings():
    guarantor = person("John Roe", Decimal("10000.00"))
    loan = LoanFactory()
    guarantee(loan, guarantor, amount=Decimal("15000.00"))
    set_thresholds("GUA_OVEREXTENDED", multiple=1.5)

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_OVEREXTENDED") == {}


def test_overextended_needs_net_worth():
    loan = LoanFactory()
    guarantee(loan, person("John Roe", None), amount=Decimal("15000.00"))

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_OVEREXTENDED") == {}


def test_overextended_skips_closed_loans():
    guarantor = person("John Roe", Decimal("10000.00"))
    open_loan, closed_loan = LoanFactory(), LoanFactory(closed_on=date(2024, 5, 31))
    guarantee(open_loan, guarantor, amount=Decimal("6000.00"))
    guarantee(closed_loan, guarantor, amount=Decimal("6000.00"))

    dispatch_close_of_day(AS_OF)

    assert fired("GUA_OVEREXTENDED") == {}


# Runs ------------------------------------------------------------------------


def test_three_runs_keep_one_warning(make_scheduled_loan):
    loans = build_network(cycle("A", "B") + cycle("C", "D") + path("E", "F", "G"), npl=("C", "E"))
    guarantor_loan = make_scheduled_loan(disbursement_date=date(2024, 1, 1))
    guarantee(loans["G"], guarantor_of(guarantor_loan))
    guarantee(loans["A"], person("John Roe", Decimal("1.00")))

    for _run in range(3):
        dispatch_close_of_day(AS_OF)

    active = EarlyWarning.objects.filter(family="guarantor", status__in=WarningStatus.active())
    pairs = list(active.values_list("loan_id", "rule_code"))
    assert len(pairs) == len(set(pairs))
    assert {code for _loan, code in pairs} == set(GUARANTOR_RULES)
    assert EarlyWarning.objects.filter(family="guarantor").count() == len(pairs)


def test_run_records_network_step():
    build_network(cycle("A", "B", "C"))

    run = dispatch_close_of_day(AS_OF)

    run = JobRun.objects.get(pk=run.pk)
    assert run.counts["steps"]["guarantee_circles"] == 1
    assert run.counts["steps"]["guarantee_circle_members"] == 3
    assert run.counts["steps"]["flagged_guarantees"] == 0
    assert run.counts["timings"]["steps"]["guarantee_network"] >= 0


def test_refresh_replaces_rows():
    loans = build_network(cycle("A", "B") + path("C", "D", "E"), npl=("C",))
    dispatch_close_of_day(AS_OF)
    Guarantee.objects.filter(loan=loans["A"]).update(valid_to=AS_OF)
    next_day = AS_OF + timedelta(days=1)

    dispatch_close_of_day(next_day)

    rows = GuaranteeNetworkMember.objects.values_list("borrower_id", "kind", "as_of")
    assert sorted(rows) == sorted((loans[name].borrower_id, "chain", next_day) for name in "CDE")
    flagged = FlaggedGuarantee.objects.values_list("loan_id", "reason", "as_of")
    assert list(flagged) == [(loans["D"].pk, "non_performing", next_day)]


@pytest.mark.parametrize("size", [6, 60])
def test_refresh_query_count_bounded(size, django_assert_max_num_queries):
    names = [f"N{i:02d}" for i in range(size)]
    edges = []
    for start in range(0, size, 3):
        edges += cycle(*names[start : start + 3])
    build_network(edges, npl=tuple(names[::5]))
    dispatch_close_of_day(AS_OF)
    limit = PRUNE_MAX_ROUNDS + 4 * MAX_CHAIN_EDGES + 80

    with django_assert_max_num_queries(limit):
        counts = refresh_guarantee_network(AS_OF, run_id=0)

    assert counts["guarantee_circle_members"] == size
    assert counts["guarantee_circles"] == size // 3


@pytest.mark.parametrize("model", ["guaranteenetworkmember", "flaggedguarantee"])
def test_admin_lists_rows_read_only(model, admin_client, django_assert_max_num_queries):
    loans = build_network(cycle("A", "B", "C") + path("C", "D", "E"), npl=("C",))
    dispatch_close_of_day(AS_OF)

    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse(f"admin:monitoring_{model}_changelist"))
    add_page = admin_client.get(reverse(f"admin:monitoring_{model}_add"))

    assert response.status_code == 200
    assert loans["D"].contract_number in response.content.decode()
    assert add_page.status_code == 403


@pytest.mark.django_db(transaction=True)
def test_refresh_outside_transaction_runs_both_parts(role_groups):
    # Outside a transaction on PostgreSQL the two tables are rewritten on two
    # connections at once; the result must be that of the single transaction.
    loans = build_network(cycle("A", "B") + path("C", "D", "E"), npl=("C",))
    dispatch_close_of_day(AS_OF)
    with transaction.atomic():
        single = refresh_guarantee_network(AS_OF, run_id=0)
    members = sorted(GuaranteeNetworkMember.objects.values_list("loan_id", "kind"))
    flags = sorted(FlaggedGuarantee.objects.values_list("loan_id", "reason"))

    parallel = refresh_guarantee_network(AS_OF, run_id=0)

    assert parallel == single
    assert sorted(GuaranteeNetworkMember.objects.values_list("loan_id", "kind")) == members
    assert sorted(FlaggedGuarantee.objects.values_list("loan_id", "reason")) == flags
    assert (loans["D"].pk, "non_performing") in flags
    assert single["guarantee_circle_members"] == 2
