"""Collateral warning rules: loan-to-value, value drop, stale valuation, insurance."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal

import factory
import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loans.collateral import collateral_support
from loans.models import (
    Collateral,
    CollateralKind,
    CollateralPledge,
    CollateralValuation,
    Instalment,
    Loan,
)
from monitoring.close_of_day.positions import refresh_positions
from monitoring.close_of_day.warnings import evaluate_rules
from monitoring.models import EarlyWarning, WarningRule, WarningStatus
from monitoring.rules import get_rule, sync_rules
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, LoanFactory

pytestmark = pytest.mark.django_db

# make_scheduled_loan disburses 12,000.00 on 2023-01-01 with the first
# instalment due on 2023-02-01, so on this date the whole principal is
# outstanding and nothing is overdue yet.
AS_OF = date(2023, 1, 15)
COLLATERAL_RULES = [
    "COL_LTV_OVER_LIMIT",
    "COL_VALUE_DROP",
    "COL_VALUATION_STALE",
    "COL_INSURANCE_EXPIRED",
    "COL_INSURANCE_EXPIRING",
]


class CollateralFactory(factory.django.DjangoModelFactory):
    """Commercial real estate that may be lent against up to 50% of its value."""

    class Meta:
        model = Collateral

    kind = CollateralKind.COMMERCIAL_REAL_ESTATE
    description = "Warehouse"
    reference = factory.Sequence(lambda n: f"COL{n:06d}")
    owner_name = "Owner Ltd"
    ltv_limit = Decimal("0.5000")


def _pledge(
    loan: Loan,
    valuations: Iterable[tuple[date, str]] = (),
    share: str = "1",
    **fields,
) -> Collateral:
    """Pledge a new item to `loan` with its valuations as (valued_on, value) pairs."""
    item = CollateralFactory(**fields)
    CollateralPledge.objects.create(collateral=item, loan=loan, share=Decimal(share))
    CollateralValuation.objects.bulk_create(
        CollateralValuation(
            collateral=item, valued_on=valued_on, value=Decimal(value), method="desk", valuer="V"
        )
        for valued_on, value in valuations
    )
    return item


def _active(rule_code: str) -> set[int]:
    return set(
        EarlyWarning.objects.filter(
            rule_code=rule_code, status__in=WarningStatus.active()
        ).values_list("loan_id", flat=True)
    )


def _evidence(loan: Loan, rule_code: str) -> dict:
    return EarlyWarning.objects.get(loan=loan, rule_code=rule_code).evidence


def test_rules_have_family_and_severity():
    severities = {code: get_rule(code).severity for code in COLLATERAL_RULES}

    assert severities == {
        "COL_LTV_OVER_LIMIT": "orange",
        "COL_VALUE_DROP": "orange",
        "COL_VALUATION_STALE": "yellow",
        "COL_INSURANCE_EXPIRED": "orange",
        "COL_INSURANCE_EXPIRING": "yellow",
    }
    assert {get_rule(code).family for code in COLLATERAL_RULES} == {"collateral"}
    assert all(get_rule(code).closes_itself for code in COLLATERAL_RULES)


# Loan-to-value


def test_ltv_rule_fires_above_support(make_scheduled_loan):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2022, 12, 1), "20000.00")])

    dispatch_close_of_day(AS_OF)

    evidence = _evidence(loan, "COL_LTV_OVER_LIMIT")
    assert evidence["outstanding_principal"] == "12000.00"
    assert evidence["support"] == "10000.00"
    assert evidence["ltv"] == "0.6000"
    assert evidence["items"] == 1
    assert evidence["valued_items"] == 1
    assert EarlyWarning.objects.get(loan=loan, rule_code="COL_LTV_OVER_LIMIT").severity == "orange"


@pytest.mark.parametrize(("value", "fires"), [("24000.00", False), ("23999.98", True)])
def test_ltv_rule_boundary_at_support(make_scheduled_loan, value, fires):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2022, 12, 1), value)])

    dispatch_close_of_day(AS_OF)

    assert (loan.pk in _active("COL_LTV_OVER_LIMIT")) is fires


def test_ltv_uses_latest_valuation_by_run_date(make_scheduled_loan):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2022, 12, 1), "10000.00")], share="0.5", ltv_limit=Decimal("0.8"))
    _pledge(
        loan,
        [
            (date(2022, 6, 1), "10000.00"),
            (date(2022, 12, 1), "12000.00"),
            (date(2023, 2, 1), "50000.00"),
        ],
        ltv_limit=Decimal("0.6"),
    )
    _pledge(loan, [])

    dispatch_close_of_day(AS_OF)

    # 10,000 x 0.5 x 0.8 + 12,000 x 1 x 0.6. The valuation after the run date is ignored.
    evidence = _evidence(loan, "COL_LTV_OVER_LIMIT")
    assert evidence["support"] == "11200.00"
    # 12,000 / (10,000 x 0.5 + 12,000 x 1)
    assert evidence["ltv"] == "0.7059"
    assert evidence["items"] == 3
    assert evidence["valued_items"] == 2


def test_ltv_support_matches_collateral_support(make_scheduled_loan):
    first = make_scheduled_loan()
    second = make_scheduled_loan()
    shared = _pledge(
        first, [(date(2022, 12, 1), "15000.01")], share="0.4", ltv_limit=Decimal("0.7")
    )
    CollateralPledge.objects.create(collateral=shared, loan=second, share=Decimal("0.6"))

    dispatch_close_of_day(AS_OF)

    support = collateral_support([first.pk, second.pk])
    # 15,000.01 x 0.4 x 0.7 = 4,200.0028 and 15,000.01 x 0.6 x 0.7 = 6,300.0042
    assert support == {first.pk: Decimal("4200.00"), second.pk: Decimal("6300.00")}
    assert _evidence(first, "COL_LTV_OVER_LIMIT")["support"] == str(support[first.pk])
    assert _evidence(second, "COL_LTV_OVER_LIMIT")["support"] == str(support[second.pk])


def test_ltv_needs_a_valued_item(make_scheduled_loan):
    unvalued = make_scheduled_loan()
    _pledge(unvalued, [])
    valued_later = make_scheduled_loan()
    _pledge(valued_later, [(date(2023, 2, 1), "1000.00")])
    unsecured = make_scheduled_loan()

    dispatch_close_of_day(AS_OF)

    fired = _active("COL_LTV_OVER_LIMIT")
    assert unvalued.pk not in fired
    assert valued_later.pk not in fired
    assert unsecured.pk not in fired


def test_ltv_warning_resolves_after_revaluation(make_scheduled_loan):
    loan = make_scheduled_loan()
    item = _pledge(loan, [(date(2022, 12, 1), "20000.00")])
    dispatch_close_of_day(AS_OF)
    CollateralValuation.objects.create(
        collateral=item, valued_on=date(2023, 1, 16), value="30000.00", method="desk", valuer="V"
    )

    dispatch_close_of_day(date(2023, 1, 16))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="COL_LTV_OVER_LIMIT")
    assert warning.status == WarningStatus.RESOLVED
    assert warning.cleared_on == date(2023, 1, 16)


# Value drop


@pytest.mark.parametrize(("latest", "fires"), [("80000.00", False), ("79990.00", True)])
def test_value_drop_boundary_at_twenty_percent(make_scheduled_loan, latest, fires):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2022, 1, 10), "100000.00"), (date(2023, 1, 10), latest)])

    dispatch_close_of_day(AS_OF)

    assert (loan.pk in _active("COL_VALUE_DROP")) is fires


def test_value_drop_evidence(make_scheduled_loan):
    loan = make_scheduled_loan()
    item = _pledge(loan, [(date(2022, 1, 10), "100000.00"), (date(2023, 1, 10), "79990.00")])

    dispatch_close_of_day(AS_OF)

    warning = EarlyWarning.objects.get(loan=loan, rule_code="COL_VALUE_DROP")
    assert warning.severity == "orange"
    assert warning.evidence["collateral_reference"] == item.reference
    assert warning.evidence["previous_valued_on"] == "2022-01-10"
    assert warning.evidence["previous_value"] == "100000.00"
    assert warning.evidence["valued_on"] == "2023-01-10"
    assert warning.evidence["value"] == "79990.00"
    assert warning.evidence["drop_percent"] == "20.01"
    assert warning.evidence["items"] == 1
    assert warning.evidence["threshold_drop_percent"] == 20


def test_value_drop_compares_latest_two(make_scheduled_loan):
    older_drop = make_scheduled_loan()
    _pledge(
        older_drop,
        [
            (date(2021, 1, 10), "100000.00"),
            (date(2022, 1, 10), "70000.00"),
            (date(2023, 1, 10), "69000.00"),
        ],
    )
    later_drop = make_scheduled_loan()
    _pledge(later_drop, [(date(2022, 1, 10), "100000.00"), (date(2023, 1, 20), "10000.00")])
    one_valuation = make_scheduled_loan()
    _pledge(one_valuation, [(date(2022, 1, 10), "100000.00")])

    dispatch_close_of_day(AS_OF)

    fired = _active("COL_VALUE_DROP")
    assert older_drop.pk not in fired
    assert later_drop.pk not in fired
    assert one_valuation.pk not in fired


def test_value_drop_reports_worst_item(make_scheduled_loan):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2022, 1, 10), "1000.00"), (date(2023, 1, 10), "700.00")])
    worst = _pledge(loan, [(date(2022, 3, 1), "50000.00"), (date(2022, 9, 1), "20000.00")])
    _pledge(loan, [(date(2022, 1, 10), "1000.00"), (date(2023, 1, 10), "900.00")])

    dispatch_close_of_day(AS_OF)

    evidence = _evidence(loan, "COL_VALUE_DROP")
    assert evidence["collateral_reference"] == worst.reference
    assert evidence["drop_percent"] == "60.00"
    assert evidence["items"] == 2


def test_drop_threshold_follows_warning_rule(make_scheduled_loan):
    down_25 = make_scheduled_loan()
    _pledge(down_25, [(date(2022, 1, 10), "1000.00"), (date(2023, 1, 10), "750.00")])
    down_35 = make_scheduled_loan()
    _pledge(down_35, [(date(2022, 1, 10), "1000.00"), (date(2023, 1, 10), "650.00")])
    sync_rules()
    WarningRule.objects.filter(code="COL_VALUE_DROP").update(thresholds={"drop_percent": 30})

    dispatch_close_of_day(AS_OF)

    fired = _active("COL_VALUE_DROP")
    assert down_25.pk not in fired
    assert down_35.pk in fired
    assert _evidence(down_35, "COL_VALUE_DROP")["threshold_drop_percent"] == 30


def test_drop_threshold_may_be_fractional(make_scheduled_loan):
    down_12_5 = make_scheduled_loan()
    _pledge(down_12_5, [(date(2022, 1, 10), "1000.00"), (date(2023, 1, 10), "875.00")])
    down_12_6 = make_scheduled_loan()
    _pledge(down_12_6, [(date(2022, 1, 10), "1000.00"), (date(2023, 1, 10), "874.00")])
    sync_rules()
    WarningRule.objects.filter(code="COL_VALUE_DROP").update(thresholds={"drop_percent": 12.5})

    dispatch_close_of_day(AS_OF)

    fired = _active("COL_VALUE_DROP")
    assert down_12_5.pk not in fired
    assert down_12_6.pk in fired
    assert _evidence(down_12_6, "COL_VALUE_DROP")["drop_percent"] == "12.60"


@pytest.mark.parametrize("drop_percent", [0, 100.5, "20"])
def test_drop_threshold_schema_rejects(drop_percent):
    with pytest.raises(ValidationError, match="COL_VALUE_DROP threshold drop_percent"):
        get_rule("COL_VALUE_DROP").clean_thresholds({"drop_percent": drop_percent})


# Valuation out of date


@pytest.mark.parametrize(
    ("kind", "valued_on", "fires"),
    [
        (CollateralKind.COMMERCIAL_REAL_ESTATE, date(2022, 1, 15), False),
        (CollateralKind.COMMERCIAL_REAL_ESTATE, date(2022, 1, 14), True),
        (CollateralKind.RESIDENTIAL_REAL_ESTATE, date(2020, 1, 15), False),
        (CollateralKind.RESIDENTIAL_REAL_ESTATE, date(2020, 1, 14), True),
        (CollateralKind.EQUIPMENT, date(2022, 7, 15), False),
        (CollateralKind.EQUIPMENT, date(2022, 7, 14), True),
        (CollateralKind.VEHICLES, date(2022, 7, 14), True),
        (CollateralKind.INVENTORY, date(2022, 7, 14), True),
        (CollateralKind.DEPOSITS, date(2010, 1, 1), False),
    ],
)
def test_stale_valuation_interval_per_kind(make_scheduled_loan, kind, valued_on, fires):
    loan = make_scheduled_loan()
    _pledge(loan, [(valued_on, "100000.00")], kind=kind)

    dispatch_close_of_day(AS_OF)

    assert (loan.pk in _active("COL_VALUATION_STALE")) is fires


@pytest.mark.parametrize(
    ("valued_on", "fires"), [(date(2022, 9, 30), False), (date(2022, 9, 29), True)]
)
def test_stale_valuation_at_month_end(make_scheduled_loan, valued_on, fires):
    loan = make_scheduled_loan()
    _pledge(loan, [(valued_on, "5000.00")], kind=CollateralKind.VEHICLES)

    # Six months before 31 March is 30 September, the last day of that month.
    dispatch_close_of_day(date(2023, 3, 31))

    assert (loan.pk in _active("COL_VALUATION_STALE")) is fires


def test_stale_valuation_evidence(make_scheduled_loan):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2022, 12, 1), "100000.00")])
    item = _pledge(loan, [(date(2021, 6, 1), "100000.00"), (date(2023, 2, 1), "90000.00")])

    dispatch_close_of_day(AS_OF)

    warning = EarlyWarning.objects.get(loan=loan, rule_code="COL_VALUATION_STALE")
    assert warning.severity == "yellow"
    assert warning.evidence["collateral_reference"] == item.reference
    assert warning.evidence["collateral_kind"] == "commercial_real_estate"
    assert warning.evidence["last_valued_on"] == "2021-06-01"
    assert warning.evidence["interval_months"] == 12
    assert warning.evidence["items"] == 1


def test_missing_valuation_is_stale(make_scheduled_loan):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2021, 6, 1), "100000.00")])
    missing = _pledge(loan, [], kind=CollateralKind.RECEIVABLES)

    dispatch_close_of_day(AS_OF)

    evidence = _evidence(loan, "COL_VALUATION_STALE")
    assert evidence["collateral_reference"] == missing.reference
    assert evidence["collateral_kind"] == "receivables"
    assert evidence["last_valued_on"] is None
    assert evidence["interval_months"] is None
    assert evidence["items"] == 2


def test_stale_thresholds_follow_warning_rule(make_scheduled_loan):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2021, 6, 1), "100000.00")])
    sync_rules()
    WarningRule.objects.filter(code="COL_VALUATION_STALE").update(
        thresholds={
            "commercial_real_estate_months": 24,
            "residential_real_estate_months": 36,
            "movables_months": 6,
        }
    )

    dispatch_close_of_day(AS_OF)

    assert loan.pk not in _active("COL_VALUATION_STALE")


def test_stale_warning_resolves_after_revaluation(make_scheduled_loan):
    loan = make_scheduled_loan()
    item = _pledge(loan, [(date(2021, 6, 1), "100000.00")])
    dispatch_close_of_day(AS_OF)
    CollateralValuation.objects.create(
        collateral=item, valued_on=date(2023, 1, 16), value="95000.00", method="desk", valuer="V"
    )

    dispatch_close_of_day(date(2023, 1, 16))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="COL_VALUATION_STALE")
    assert warning.status == WarningStatus.RESOLVED
    assert warning.cleared_on == date(2023, 1, 16)


# Insurance


@pytest.mark.parametrize(
    ("expires_on", "expired", "expiring"),
    [
        (date(2023, 1, 14), True, False),
        (date(2023, 1, 15), False, True),
        (date(2023, 2, 14), False, True),
        (date(2023, 2, 15), False, False),
        (None, False, False),
    ],
)
def test_insurance_rules_by_expiry(make_scheduled_loan, expires_on, expired, expiring):
    loan = make_scheduled_loan()
    _pledge(loan, [(date(2022, 12, 1), "100000.00")], insurance_expires_on=expires_on)

    dispatch_close_of_day(AS_OF)

    assert (loan.pk in _active("COL_INSURANCE_EXPIRED")) is expired
    assert (loan.pk in _active("COL_INSURANCE_EXPIRING")) is expiring


def test_insurance_expired_evidence(make_scheduled_loan):
    loan = make_scheduled_loan()
    first = _pledge(loan, [], insurance_expires_on=date(2022, 12, 31))
    _pledge(loan, [], insurance_expires_on=date(2023, 1, 10))
    _pledge(loan, [], insurance_expires_on=date(2024, 1, 10))

    dispatch_close_of_day(AS_OF)

    warning = EarlyWarning.objects.get(loan=loan, rule_code="COL_INSURANCE_EXPIRED")
    assert warning.severity == "orange"
    assert warning.evidence["collateral_reference"] == first.reference
    assert warning.evidence["insurance_expires_on"] == "2022-12-31"
    assert warning.evidence["days_expired"] == 15
    assert warning.evidence["items"] == 2


def test_insurance_expiring_evidence(make_scheduled_loan):
    loan = make_scheduled_loan()
    item = _pledge(loan, [], insurance_expires_on=date(2023, 2, 14))

    dispatch_close_of_day(AS_OF)

    warning = EarlyWarning.objects.get(loan=loan, rule_code="COL_INSURANCE_EXPIRING")
    assert warning.severity == "yellow"
    assert warning.evidence["collateral_reference"] == item.reference
    assert warning.evidence["insurance_expires_on"] == "2023-02-14"
    assert warning.evidence["days_left"] == 30
    assert warning.evidence["items"] == 1
    assert warning.evidence["threshold_days"] == 30


def test_insurance_renewal_resolves_warning(make_scheduled_loan):
    loan = make_scheduled_loan()
    item = _pledge(loan, [], insurance_expires_on=date(2023, 1, 10))
    dispatch_close_of_day(AS_OF)
    Collateral.objects.filter(pk=item.pk).update(insurance_expires_on=date(2024, 1, 10))

    dispatch_close_of_day(date(2023, 1, 16))

    warning = EarlyWarning.objects.get(loan=loan, rule_code="COL_INSURANCE_EXPIRED")
    assert warning.status == WarningStatus.RESOLVED
    assert loan.pk not in _active("COL_INSURANCE_EXPIRING")


# Set-wise evaluation


def _collateral_book(count: int) -> tuple[int, int]:
    """Create `count` loans on which every collateral rule fires; return their id range."""
    borrower = BorrowerFactory()
    loans = Loan.objects.bulk_create(
        LoanFactory.build(borrower=borrower, branch=borrower.branch) for _ in range(count)
    )
    Instalment.objects.bulk_create(
        Instalment(
            loan=loan,
            number=1,
            due_date=date(2023, 2, 1),
            principal_due="12000.00",
            interest_due="60.00",
        )
        for loan in loans
    )
    items = Collateral.objects.bulk_create(
        CollateralFactory.build(insurance_expires_on=date(2023, 1, 1 + index % 2 * 20))
        for index in range(2 * count)
    )
    CollateralPledge.objects.bulk_create(
        CollateralPledge(collateral=item, loan=loans[index // 2], share=Decimal("0.5"))
        for index, item in enumerate(items)
    )
    CollateralValuation.objects.bulk_create(
        CollateralValuation(
            collateral=item, valued_on=valued_on, value=value, method="desk", valuer="V"
        )
        for item in items
        for valued_on, value in ((date(2020, 1, 1), "9000.00"), (date(2021, 1, 1), "5000.00"))
    )
    ids = [loan.pk for loan in loans]
    return min(ids), max(ids)


def _rule_queries(count: int) -> tuple[int, dict[str, int]]:
    """Return the queries of one pass of the collateral rules and the warnings it opened."""
    low, high = _collateral_book(count)
    refresh_positions(AS_OF, low, high)
    with CaptureQueriesContext(connection) as queries:
        counts = evaluate_rules(AS_OF, low, high, run_id=None, codes=COLLATERAL_RULES)
    EarlyWarning.objects.all().delete()
    return len(queries), {code: counts[f"{code}_opened"] for code in COLLATERAL_RULES}


def test_collateral_rule_queries_are_constant():
    small_queries, small_opened = _rule_queries(5)
    large_queries, large_opened = _rule_queries(200)

    assert small_queries == large_queries
    assert small_opened == dict.fromkeys(COLLATERAL_RULES, 5)
    assert large_opened == dict.fromkeys(COLLATERAL_RULES, 200)
