"""Reads of the loan book shared by the pages, the CSV export and the reports.

Every function starts from `loans.access.visible_loans` or `visible_borrowers`,
so a credit officer never reads another branch's loans through them. Figures
are as of a business date: a loan's position counts only when it was written
by the close-of-day run for that date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, F, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from monitoring.close_of_day.positions import DPD_BUCKETS
from monitoring.models import ClassificationChange, EarlyWarning, WarningStatus
from monitoring.rules import rule_descriptions

from .access import CREDIT_OFFICER, User, sees_whole_book, visible_borrowers, visible_loans
from .models import (
    ZERO,
    Borrower,
    Branch,
    CollateralPledge,
    CollateralValuation,
    Guarantee,
    Instalment,
    Loan,
    LoanPosition,
    Repayment,
    RepaymentAllocation,
)

CENT = Decimal("0.01")

# Sort keys accepted in ?sort= on the loan list, and the field each one orders by.
LOAN_SORTS: dict[str, str] = {
    "contract": "contract_number",
    "borrower": "borrower__legal_name",
    "principal": "principal",
    "outstanding": "position__outstanding_principal",
    "dpd": "position__days_past_due",
    "class": "risk_class",
    "disbursed": "disbursement_date",
}
DEFAULT_LOAN_SORT = "contract"


def dpd_bucket_label(code: str) -> str:
    for bucket_code, low, high in DPD_BUCKETS:
        if bucket_code != code:
            continue
        if high == 0:
            return _("Current")
        if high is None:
            return _("Over %(days)s days") % {"days": low - 1}
        return _("%(low)s–%(high)s days") % {"low": low, "high": high}
    return code


def dpd_bucket_choices() -> list[tuple[str, str]]:
    return [(code, dpd_bucket_label(code)) for code, _low, _high in DPD_BUCKETS]


def scoped_branches(user: User) -> QuerySet[Branch]:
    """Return the branches whose loans the user may see."""
    if sees_whole_book(user):
        return Branch.objects.all()
    return Branch.objects.filter(staff=user)


def scoped_officers(user: User) -> QuerySet:
    """Return the credit officers of the branches the user may see."""
    officers = get_user_model().objects.filter(groups__name=CREDIT_OFFICER)
    if not sees_whole_book(user):
        officers = officers.filter(branches__in=scoped_branches(user))
    return officers.distinct().order_by("last_name", "first_name", "username")


# ---- Loan list -------------------------------------------------------------


def loan_rows(user: User) -> QuerySet[Loan]:
    """Return the user's loans with everything a list row or CSV line shows, in one query."""
    return visible_loans(user).select_related("borrower", "branch", "officer", "position")


def search_loans(loans: QuerySet[Loan], text: str) -> QuerySet[Loan]:
    """Match the start of the contract number, or any part of the borrower's legal name.

    NOTE: `icontains` on the legal name scans every borrower row. For a book of
    a million loans it needs a pg_trgm GIN index on loans_borrower.legal_name.
    """
    text = text.strip()
    if not text:
        return loans
    return loans.filter(
        Q(contract_number__istartswith=text) | Q(borrower__legal_name__icontains=text)
    )


def sort_loans(loans: QuerySet[Loan], sort: str | None) -> tuple[QuerySet[Loan], str]:
    """Order by a whitelisted sort key such as "dpd" or "-dpd", and return the key used."""
    sort = sort or DEFAULT_LOAN_SORT
    key = sort.removeprefix("-")
    if key not in LOAN_SORTS:
        sort = key = DEFAULT_LOAN_SORT
    column = F(LOAN_SORTS[key])
    ordering = column.desc(nulls_last=True) if sort.startswith("-") else column.asc(nulls_last=True)
    return loans.order_by(ordering, "pk"), sort


def position_as_of(loan: Loan, as_of: date | None) -> LoanPosition | None:
    """Return the loan's position if the close-of-day run for `as_of` wrote it."""
    try:
        position = loan.position
    except LoanPosition.DoesNotExist:
        return None
    if as_of is None or position.as_of != as_of:
        return None
    return position


def attach_positions(loans: Iterable[Loan], as_of: date | None) -> list[Loan]:
    """Set `current_position` on each loan, loaded with select_related("position")."""
    rows = list(loans)
    for loan in rows:
        loan.current_position = position_as_of(loan, as_of)
    return rows


# ---- Loan detail -----------------------------------------------------------


@dataclass(frozen=True)
class PledgeRow:
    pledge: CollateralPledge
    latest_valuation: CollateralValuation | None
    pledged_value: Decimal | None


@dataclass(frozen=True)
class ClassHistoryRow:
    changed_at: datetime
    changed_by: str
    previous_class: int | None
    new_class: int
    previous_stage: int | None
    new_stage: int
    reason: str


@dataclass
class LoanDetail:
    loan: Loan
    position: LoanPosition | None
    instalments: list[Instalment]
    repayments: list[Repayment]
    guarantees: list[Guarantee]
    pledges: list[PledgeRow]
    active_warnings: list[EarlyWarning]
    past_warnings: list[EarlyWarning]
    classification_changes: list[ClassificationChange]
    class_history: list[ClassHistoryRow] = field(default_factory=list)
    collateral_value: Decimal = ZERO

    @property
    def loan_to_value(self) -> Decimal | None:
        """Return outstanding principal / pledged collateral value in percent, rounded half-up."""
        if self.position is None or not self.collateral_value:
            return None
        ratio = self.position.outstanding_principal * 100 / self.collateral_value
        return ratio.quantize(CENT, rounding=ROUND_HALF_UP)


def get_loan_detail(user: User, pk: int, as_of: date | None) -> LoanDetail | None:
    """Return everything the loan page shows in a fixed number of queries.

    Return None when the user may not see the loan or it does not exist.
    """
    loan = (
        visible_loans(user)
        .select_related("borrower", "branch", "officer", "position")
        .filter(pk=pk)
        .first()
    )
    if loan is None:
        return None

    instalments = list(loan.instalments.order_by("due_date", "number"))
    for instalment in instalments:
        instalment.is_overdue = _is_overdue(instalment, as_of)

    warnings = _warnings(loan)
    pledges = _pledges(loan)
    return LoanDetail(
        loan=loan,
        position=position_as_of(loan, as_of),
        instalments=instalments,
        repayments=_repayments(loan),
        guarantees=list(loan.guarantees.select_related("guarantor").order_by("valid_from", "pk")),
        pledges=pledges,
        active_warnings=[w for w in warnings if w.status in WarningStatus.active()],
        past_warnings=[w for w in warnings if w.status not in WarningStatus.active()],
        classification_changes=list(loan.classification_changes.order_by("-as_of", "-pk")),
        class_history=_class_history(loan),
        collateral_value=sum((row.pledged_value or ZERO for row in pledges), ZERO),
    )


def _is_overdue(instalment: Instalment, as_of: date | None) -> bool:
    """Tell whether the instalment was due before `as_of` and not settled by then."""
    if as_of is None or instalment.due_date >= as_of:
        return False
    return instalment.settled_on is None or instalment.settled_on > as_of


def _repayments(loan: Loan) -> list[Repayment]:
    allocations = RepaymentAllocation.objects.select_related("instalment").order_by(
        "instalment__number", "pk"
    )
    return list(
        loan.repayments.prefetch_related(Prefetch("allocations", queryset=allocations)).order_by(
            "value_date", "pk"
        )
    )


def _pledges(loan: Loan) -> list[PledgeRow]:
    pledges = (
        loan.pledges.select_related("collateral")
        .prefetch_related("collateral__valuations")
        .order_by("collateral__lien_rank", "collateral__reference")
    )
    rows = []
    for pledge in pledges:
        # Valuations are ordered newest first by the model's Meta.ordering.
        valuations = list(pledge.collateral.valuations.all())
        latest = valuations[0] if valuations else None
        pledged_value = None
        if latest is not None:
            pledged_value = (latest.value * pledge.share).quantize(CENT, rounding=ROUND_HALF_UP)
        rows.append(PledgeRow(pledge=pledge, latest_valuation=latest, pledged_value=pledged_value))
    return rows


def _warnings(loan: Loan) -> list[EarlyWarning]:
    descriptions = rule_descriptions()
    warnings = list(loan.warnings.select_related("assigned_to").order_by("-last_seen_on", "-pk"))
    for warning in warnings:
        warning.rule_description = descriptions.get(warning.rule_code, "")
        warning.evidence_items = [
            (key.replace("_", " ").capitalize(), value)
            for key, value in sorted((warning.evidence or {}).items())
        ]
    return warnings


def _class_history(loan: Loan) -> list[ClassHistoryRow]:
    """Return the loan's history records that set or changed its class or stage, newest first."""
    records = (
        Loan.history.filter(id=loan.pk)
        .select_related("history_user")
        .only(
            "history_id",
            "history_date",
            "history_type",
            "history_change_reason",
            "history_user__username",
            "risk_class",
            "ifrs9_stage",
        )
        .order_by("history_date", "history_id")
    )
    rows: list[ClassHistoryRow] = []
    previous = None
    for record in records:
        changed = previous is None or (
            record.risk_class != previous.risk_class or record.ifrs9_stage != previous.ifrs9_stage
        )
        if changed:
            rows.append(
                ClassHistoryRow(
                    changed_at=record.history_date,
                    changed_by=record.history_user.username if record.history_user else "",
                    previous_class=previous.risk_class if previous else None,
                    new_class=record.risk_class,
                    previous_stage=previous.ifrs9_stage if previous else None,
                    new_stage=record.ifrs9_stage,
                    reason=record.history_change_reason or "",
                )
            )
        previous = record
    rows.reverse()
    return rows


# ---- Borrowers -------------------------------------------------------------


def borrower_rows(user: User, as_of: date | None, text: str = "") -> QuerySet[Borrower]:
    """Return the user's borrowers with the count and balance of the loans the user may see."""
    loans = visible_loans(user).filter(borrower=OuterRef("pk")).order_by().values("borrower")
    loan_count = loans.annotate(count=Count("pk")).values("count")
    balance = (
        loans.filter(position__as_of=as_of, position__is_open=True)
        .annotate(total=Sum("position__outstanding_principal"))
        .values("total")
    )
    borrowers = (
        visible_borrowers(user)
        .select_related("branch")
        .annotate(
            loan_count=Coalesce(Subquery(loan_count), 0),
            outstanding=Subquery(balance),
        )
    )
    text = text.strip()
    if text:
        borrowers = borrowers.filter(
            Q(legal_name__icontains=text) | Q(registration_number__istartswith=text)
        )
    return borrowers.order_by("legal_name", "pk")


@dataclass
class BorrowerDetail:
    borrower: Borrower
    loans: list[Loan]
    guarantees_given: list[Guarantee]
    open_loans: int = 0
    outstanding: Decimal = ZERO
    overdue: Decimal = ZERO
    principal: Decimal = ZERO


def get_borrower_detail(user: User, pk: int, as_of: date | None) -> BorrowerDetail | None:
    borrower = visible_borrowers(user).select_related("branch").filter(pk=pk).first()
    if borrower is None:
        return None

    loans, _ = sort_loans(loan_rows(user).filter(borrower=borrower), "disbursed")
    loans = attach_positions(loans, as_of)
    guarantees = (
        Guarantee.objects.filter(guarantor__borrower=borrower, loan__in=visible_loans(user))
        .select_related("loan", "loan__borrower", "guarantor")
        .order_by("loan__contract_number")
    )
    detail = BorrowerDetail(borrower=borrower, loans=loans, guarantees_given=list(guarantees))
    for loan in loans:
        detail.principal += loan.principal
        position = loan.current_position
        if position is not None and position.is_open:
            detail.open_loans += 1
            detail.outstanding += position.outstanding_principal
            detail.overdue += position.overdue_principal + position.overdue_interest
    return detail
