"""Report sections read from the month-end snapshot: portfolio, classes, quality, provisions.

One grouped pass over the month end's open snapshot rows gives every figure
of these sections except the industry mix, which needs the borrowers. The
groups are rolled up in Python, where there are at most a few thousand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection

from loans.models import Ifrs9Stage, Product, RiskClass
from monitoring.close_of_day.positions import DPD_BUCKETS

from ..snapshots import SNAPSHOT_TABLE
from .amounts import ZERO, money, money_text, percent_text
from .periods import ReportScope


@dataclass
class Tally:
    """Loans and amounts of one group of open snapshot rows."""

    loans: int = 0
    balance: Decimal = ZERO
    overdue_principal: Decimal = ZERO
    overdue_interest: Decimal = ZERO
    specific_provision: Decimal = ZERO
    general_provision: Decimal = ZERO

    def add(self, other: Tally) -> None:
        self.loans += other.loans
        self.balance += other.balance
        self.overdue_principal += other.overdue_principal
        self.overdue_interest += other.overdue_interest
        self.specific_provision += other.specific_provision
        self.general_provision += other.general_provision


@dataclass
class BookGroups:
    """The open loans of the month end, totalled and broken down by each dimension."""

    total: Tally = field(default_factory=Tally)
    by: dict[str, dict[object, Tally]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Tally))
    )


_DIMENSIONS = ("branch_id", "product", "currency", "risk_class", "ifrs9_stage", "dpd_bucket")


def _grouped_book_query(scope: ReportScope) -> str:
    columns = ", ".join(f"s.{name}" for name in _DIMENSIONS)
    return f"""
        SELECT {columns}, COUNT(*), SUM(s.outstanding_principal), SUM(s.overdue_principal),
               SUM(s.overdue_interest), SUM(s.specific_provision), SUM(s.general_provision)
        FROM {SNAPSHOT_TABLE} s
        WHERE s.month_end = %(month_end)s AND s.is_open AND {scope.branch_condition("s.branch_id")}
        GROUP BY {columns}
    """


def read_book_groups(scope: ReportScope) -> BookGroups:
    groups = BookGroups()
    with connection.cursor() as cursor:
        cursor.execute(_grouped_book_query(scope), scope.params())
        rows = cursor.fetchall()
    for row in rows:
        keys, figures = row[: len(_DIMENSIONS)], row[len(_DIMENSIONS) :]
        tally = Tally(figures[0], *(money(value) for value in figures[1:]))
        groups.total.add(tally)
        for name, key in zip(_DIMENSIONS, keys, strict=True):
            groups.by[name][key].add(tally)
    return groups


def _share_rows(
    tallies: dict[object, Tally],
    order: Iterable[object],
    total: Decimal,
    details: dict[object, dict] | None = None,
) -> list[dict]:
    """Return a row per key of `order`: loans, balance and share of `total` in percent.

    `details` adds fields to the row of a key, such as a branch's code and name.
    """
    rows = []
    for key in order:
        tally = tallies.get(key, Tally())
        rows.append(
            {
                "code": key,
                **(details or {}).get(key, {}),
                "loans": tally.loans,
                "balance": money_text(tally.balance),
                "share": percent_text(tally.balance, total),
            }
        )
    return rows


def _industry_tallies(scope: ReportScope) -> dict[str, Tally]:
    """Return the open loans and balance per industry: the first two digits of the code."""
    statement = f"""
        SELECT SUBSTR(b.industry_code, 1, 2), COUNT(*), SUM(s.outstanding_principal)
        FROM {SNAPSHOT_TABLE} s JOIN loans_borrower b ON b.id = s.borrower_id
        WHERE s.month_end = %(month_end)s AND s.is_open AND {scope.branch_condition("s.branch_id")}
        GROUP BY SUBSTR(b.industry_code, 1, 2)
    """
    with connection.cursor() as cursor:
        cursor.execute(statement, scope.params())
        return {(code or ""): Tally(loans, money(balance)) for code, loans, balance in cursor}


def portfolio_section(scope: ReportScope, groups: BookGroups, branches: dict[int, dict]) -> dict:
    total = groups.total.balance
    by = groups.by
    industries = _industry_tallies(scope)
    return {
        "loans": groups.total.loans,
        "balance": money_text(total),
        "by_product": _share_rows(by["product"], Product.values, total),
        "by_currency": _share_rows(by["currency"], sorted(by["currency"]), total),
        "by_branch": _share_rows(by["branch_id"], list(branches), total, branches),
        "by_industry": _share_rows(industries, sorted(industries), total),
    }


def classification_section(groups: BookGroups) -> dict:
    total = groups.total.balance
    return {
        "by_class": _share_rows(groups.by["risk_class"], RiskClass.values, total),
        "by_stage": _share_rows(groups.by["ifrs9_stage"], Ifrs9Stage.values, total),
    }


def _class_tally(groups: BookGroups, classes: Iterable[int]) -> Tally:
    tally = Tally()
    for risk_class in classes:
        tally.add(groups.by["risk_class"].get(risk_class, Tally()))
    return tally


def asset_quality_section(groups: BookGroups) -> dict:
    total = groups.total
    npl = _class_tally(groups, RiskClass.non_performing())
    special_mention = _class_tally(groups, [RiskClass.SPECIAL_MENTION])
    buckets = []
    for code, _low, _high in DPD_BUCKETS:
        tally = groups.by["dpd_bucket"].get(code, Tally())
        buckets.append(
            {
                "code": code,
                "loans": tally.loans,
                "balance": money_text(tally.balance),
                "overdue_principal": money_text(tally.overdue_principal),
                "overdue_interest": money_text(tally.overdue_interest),
                "share": percent_text(tally.balance, total.balance),
            }
        )
    return {
        "loans": total.loans,
        "balance": money_text(total.balance),
        "npl_loans": npl.loans,
        "npl_balance": money_text(npl.balance),
        "npl_ratio": percent_text(npl.balance, total.balance),
        "special_mention_loans": special_mention.loans,
        "special_mention_balance": money_text(special_mention.balance),
        "special_mention_ratio": percent_text(special_mention.balance, total.balance),
        "overdue_loans": total.loans - groups.by["dpd_bucket"].get("current", Tally()).loans,
        "overdue_principal": money_text(total.overdue_principal),
        "overdue_interest": money_text(total.overdue_interest),
        "by_bucket": buckets,
    }


def recorded_provisions_held(scope: ReportScope) -> dict[str, Decimal]:
    """Return the provisions held that the bank recorded for the month, by branch code.

    POSTLOAN_PROVISIONS_HELD maps "YYYY-MM" to {branch code: amount}.
    """
    configured = getattr(settings, "POSTLOAN_PROVISIONS_HELD", None) or {}
    month = configured.get(f"{scope.month:%Y-%m}", {})
    return {code: money(amount) for code, amount in month.items()}


def provisions_section(scope: ReportScope, groups: BookGroups, branches: dict[int, dict]) -> dict:
    """Return provisions required against held, per branch and in total, with coverage ratios.

    A branch with no figure recorded for the month counts its required
    provisions as held, so the bank's total stays the sum of the branches'.
    """
    recorded = recorded_provisions_held(scope)
    rows = []
    held_total = ZERO
    for branch_id, details in branches.items():
        tally = groups.by["branch_id"].get(branch_id, Tally())
        required = tally.specific_provision + tally.general_provision
        held = recorded.get(details["branch_code"], required)
        held_total += held
        rows.append(
            {
                "code": branch_id,
                **details,
                "specific_required": money_text(tally.specific_provision),
                "general_required": money_text(tally.general_provision),
                "required": money_text(required),
                "held": money_text(held),
                "held_source": "recorded" if details["branch_code"] in recorded else "required",
            }
        )
    total = groups.total
    required_total = total.specific_provision + total.general_provision
    npl_balance = _class_tally(groups, RiskClass.non_performing()).balance
    sources = {row["held_source"] for row in rows}
    if len(sources) == 1:
        held_source = sources.pop()
    elif sources:
        held_source = "mixed"
    else:
        held_source = "required"
    return {
        "specific_required": money_text(total.specific_provision),
        "general_required": money_text(total.general_provision),
        "required": money_text(required_total),
        "held": money_text(held_total),
        "held_source": held_source,
        "surplus": money_text(held_total - required_total),
        "npl_balance": money_text(npl_balance),
        "balance": money_text(total.balance),
        "coverage_ratio": percent_text(held_total, npl_balance),
        "loan_provision_ratio": percent_text(held_total, total.balance),
        "required_coverage_ratio": percent_text(required_total, npl_balance),
        "by_branch": rows,
    }
