"""The class floors of one loan and the conditions for leaving non-performing.

The figures come from the close-of-day run's own SQL: the positions query
(`positions.arrears_query`), the loan's own floors (`_own_floor_case`), the
restructuring floors (`restructuring_floors_query`) and the thresholds of
`ClassificationPolicy`. Positions are computed for the date asked, so a
repayment recorded since the last run already counts.

Debtor contagion counts the loan in question at its objective floors alone,
because the question is which class the facts allow for it. The borrower's
other loans count at their class, or at the class a pending upgrade
proposal would give them, and never better than their own floors. So two
non-performing loans of one borrower can both be proposed for an upgrade
and approved one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from dateutil.relativedelta import relativedelta
from django.db import connection
from django.db.models import F
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from loans.models import Instalment, Loan, RiskClass

from ..close_of_day.classification import (
    ClassificationPolicy,
    _own_floor_case,
    current_policy,
    restructuring_floors_query,
)
from ..close_of_day.positions import _chunk_positions, arrears_query
from ..models import ClassificationProposal, ProposalStatus, Restructuring
from ..sql import as_of_param, is_postgresql

# Leaving non-performing needs on-time payment of the instalments that fell
# due in this many months before the as-of date, and at least this many of them.
NPL_EXIT_MONTHS = 6
NPL_EXIT_MIN_INSTALMENTS = 2

NON_PERFORMING = frozenset(int(c) for c in RiskClass.non_performing())


@dataclass(frozen=True)
class LoanFigures:
    """A loan's position on a date, with the floors of its own facts."""

    loan_id: int
    status: str
    risk_class: int
    is_open: bool
    outstanding_principal: Decimal
    overdue_principal: Decimal
    overdue_interest: Decimal
    oldest_unpaid_due_date: date | None
    days_past_due: int
    own_floor: int
    own_reason: str
    restructuring_floor: int
    restructuring_reason: str

    @property
    def objective_floor(self) -> int:
        return max(self.own_floor, self.restructuring_floor)


@dataclass(frozen=True)
class Floor:
    """The class a loan's floors require on a date, the reason code and its message."""

    risk_class: int
    reason_code: str
    reason: str
    figures: LoanFigures | None
    contagion_share: Decimal | None = None
    contagious_loans: list[str] = field(default_factory=list)


def _figures_query(policy: ClassificationPolicy) -> str:
    own_floor, own_reason = _own_floor_case(policy, loan="p", position="p")
    return f"""
        SELECT p.loan_id, p.status, p.risk_class, p.is_open, p.outstanding_principal,
               p.overdue_principal, p.overdue_interest, p.oldest_unpaid_due_date,
               p.days_past_due, {own_floor} AS own_floor, {own_reason} AS own_reason,
               CASE WHEN p.is_open THEN COALESCE(rf.restructuring_floor, 1) ELSE 1 END
                   AS restructuring_floor,
               COALESCE(rf.restructuring_reason, '') AS restructuring_reason
        FROM ({_chunk_positions(f"({arrears_query()})")}) p
        LEFT JOIN ({restructuring_floors_query()}) rf ON rf.loan_id = p.loan_id
    """


def loan_figures(loan_ids: list[int], as_of: date) -> dict[int, LoanFigures]:
    """Return the position and own floors of each loan disbursed by `as_of`.

    One query per loan, because the positions query reads a range of loan
    ids and a borrower's loans are rarely next to each other.
    """
    query = _figures_query(current_policy())
    figures: dict[int, LoanFigures] = {}
    with connection.cursor() as cursor:
        for loan_id in loan_ids:
            cursor.execute(query, {"as_of": as_of, "low": loan_id, "high": loan_id})
            row = cursor.fetchone()
            if row is None:
                continue
            figures[loan_id] = _figures_from_row(row)
    return figures


def _figures_from_row(row: tuple) -> LoanFigures:
    oldest = row[7]
    if isinstance(oldest, str):
        oldest = date.fromisoformat(oldest)
    return LoanFigures(
        loan_id=row[0],
        status=row[1],
        risk_class=int(row[2]),
        is_open=bool(row[3]),
        outstanding_principal=_money(row[4]),
        overdue_principal=_money(row[5]),
        overdue_interest=_money(row[6]),
        oldest_unpaid_due_date=oldest,
        days_past_due=int(row[8]),
        own_floor=int(row[9]),
        own_reason=row[10] or "",
        restructuring_floor=int(row[11]),
        restructuring_reason=row[12] or "",
    )


def _money(value) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# ---- Floors ------------------------------------------------------------------


def _pending_upgrades(loan_ids: list[int]) -> dict[int, int]:
    """Return the best class proposed by a pending upgrade proposal of each loan."""
    rows = ClassificationProposal.objects.filter(
        loan_id__in=loan_ids,
        status=ProposalStatus.PENDING,
        proposed_class__lt=F("current_class"),
    ).values_list("loan_id", "proposed_class")
    best: dict[int, int] = {}
    for loan_id, proposed in rows:
        best[loan_id] = min(best.get(loan_id, proposed), proposed)
    return best


def _contagion(
    loan: Loan, figures: dict[int, LoanFigures], policy: ClassificationPolicy
) -> tuple[Decimal | None, list[int]]:
    """Return the non-performing share of the borrower's open debt and the loans making it up."""
    others = [loan_id for loan_id in figures if loan_id != loan.pk]
    upgrades = _pending_upgrades(others)
    total = Decimal(0)
    non_performing = Decimal(0)
    npl_loans: list[int] = []
    for loan_id, row in figures.items():
        if not row.is_open:
            continue
        if loan_id == loan.pk:
            counted_class = row.objective_floor
        else:
            counted_class = max(upgrades.get(loan_id, row.risk_class), row.objective_floor)
        total += row.outstanding_principal
        if counted_class in NON_PERFORMING:
            non_performing += row.outstanding_principal
            npl_loans.append(loan_id)
    if total <= 0:
        return None, []
    share = non_performing / total
    return (share if share > policy.contagion_share else None), npl_loans


def loan_floor_detail(loan: Loan, as_of: date) -> Floor:
    """Return the floor of the loan on `as_of` with its reason code and message."""
    policy = current_policy()
    sibling_ids = list(
        Loan.objects.filter(borrower_id=loan.borrower_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    figures = loan_figures(sibling_ids, as_of)
    own = figures.get(loan.pk)
    if own is None:
        return Floor(int(RiskClass.NORMAL), "", "", None)

    share, npl_loans = _contagion(loan, figures, policy)
    contagion_floor = int(RiskClass.SUBSTANDARD) if share is not None and own.is_open else 1
    candidates = [
        (own.own_floor, own.own_reason),
        (own.restructuring_floor, own.restructuring_reason),
        (contagion_floor, "debtor_contagion"),
    ]
    floor_class, code = max(candidates, key=lambda pair: pair[0])
    if floor_class == int(RiskClass.NORMAL):
        code = ""
    contracts = []
    if code == "debtor_contagion":
        contracts = list(
            Loan.objects.filter(pk__in=npl_loans)
            .order_by("contract_number")
            .values_list("contract_number", flat=True)
        )
    reason = floor_reason(code, own, share, contracts, loan, as_of, policy)
    return Floor(floor_class, code, reason, own, share, contracts)


def loan_floor(loan: Loan, as_of: date) -> tuple[int, str]:
    """Return the class the objective floors require for the loan on `as_of`, and why.

    The reason is a translated sentence naming the figures, empty when the
    floor is normal.
    """
    floor = loan_floor_detail(loan, as_of)
    return floor.risk_class, floor.reason


def floor_reason(
    code: str,
    figures: LoanFigures | None,
    contagion_share: Decimal | None,
    contagious_loans: list[str],
    loan: Loan,
    as_of: date,
    policy: ClassificationPolicy,
) -> str:
    """Return the message explaining the floor of reason `code`, with its figures."""
    if not code or figures is None:
        return ""
    days = figures.days_past_due
    limits = {
        "dpd_over_loss": policy.loss_after_days,
        "dpd_over_doubtful": policy.doubtful_after_days,
        "dpd_over_substandard": policy.substandard_after_days,
        "overdue": policy.technical_delay_days,
    }
    if code in limits:
        return _("%(days)s days past due, over the limit of %(limit)s days.") % {
            "days": days,
            "limit": limits[code],
        }
    if code == "written_off":
        return _("The loan is written off.")
    if code == "restructured":
        return _("The loan's status is restructured.")
    if code == "debtor_contagion":
        return _(
            "%(share)s %% of the borrower's open debt is non-performing, over %(limit)s %%: "
            "%(loans)s."
        ) % {
            "share": _percent(contagion_share),
            "limit": _percent(policy.contagion_share),
            "loans": ", ".join(contagious_loans),
        }
    return _restructuring_reason(code, loan, as_of)


def _percent(share: Decimal | None) -> str:
    return str(((share or Decimal(0)) * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _running_restructurings(loan: Loan, as_of: date) -> list[Restructuring]:
    return list(
        Restructuring.objects.filter(
            loan=loan, restructured_on__lte=as_of, observation_ends_on__gt=as_of
        ).order_by("restructured_on", "pk")
    )


def _restructuring_reason(code: str, loan: Loan, as_of: date) -> str:
    running = _running_restructurings(loan, as_of)
    if not running:
        return ""
    latest = running[-1]
    if code == "restructured_again":
        return _(
            "Restructured again on %(date)s, before the observation period of an earlier "
            "restructuring ended; its own observation period runs until %(end)s."
        ) % {"date": latest.restructured_on, "end": latest.observation_ends_on}
    npl = [r for r in running if r.class_before in NON_PERFORMING]
    if npl:
        return _(
            "Non-performing when restructured on %(date)s; the observation period runs "
            "until %(end)s."
        ) % {"date": npl[-1].restructured_on, "end": npl[-1].observation_ends_on}
    return _("Restructured on %(date)s; the observation period runs until %(end)s.") % {
        "date": latest.restructured_on,
        "end": latest.observation_ends_on,
    }


# ---- Leaving non-performing ------------------------------------------------------


def exit_window_start(as_of: date) -> date:
    """Return the day before the first due date counted for on-time payment."""
    return as_of - relativedelta(months=NPL_EXIT_MONTHS)


def exit_conditions_query(extra_condition: str = "TRUE") -> str:
    """Return per loan of the chunk the counts behind the conditions for leaving non-performing.

    Columns: `on_time` (instalments due after `window_start` up to the as-of
    date and settled on or before their due date), `late` (instalments due
    in that window before the as-of date and not settled by their due date)
    and `observation_ends_on` (the end of a running observation period of a
    restructuring made while the loan was non-performing, or NULL).
    An instalment due on the as-of date itself and not yet paid is not late.
    Takes the named parameters `as_of`, `window_start`, `low` and `high`.
    """
    d = as_of_param()
    window_start = "CAST(%(window_start)s AS DATE)" if is_postgresql() else "%(window_start)s"
    substandard = int(RiskClass.SUBSTANDARD)
    return f"""
        SELECT l.id AS loan_id,
               (SELECT COUNT(*) FROM loans_instalment i
                WHERE i.loan_id = l.id AND i.due_date > {window_start} AND i.due_date <= {d}
                  AND i.settled_on IS NOT NULL AND i.settled_on <= i.due_date) AS on_time,
               (SELECT COUNT(*) FROM loans_instalment i
                WHERE i.loan_id = l.id AND i.due_date > {window_start} AND i.due_date < {d}
                  AND (i.settled_on IS NULL OR i.settled_on > i.due_date)) AS late,
               (SELECT MAX(r.observation_ends_on) FROM monitoring_restructuring r
                WHERE r.loan_id = l.id AND r.class_before >= {substandard}
                  AND r.restructured_on <= {d} AND {d} < r.observation_ends_on)
                   AS observation_ends_on
        FROM loans_loan l
        WHERE l.id BETWEEN %(low)s AND %(high)s AND {extra_condition}
    """


def npl_exit_blockers(loan: Loan, as_of: date, position_improved: bool) -> list[str]:
    """Return why the loan may not leave non-performing on `as_of`; empty when it may.

    The conditions: the overdue principal and interest are repaid; the
    instalments due in the last six months were all paid on or before their
    due date, and at least two of them; a judgement that the debtor's
    position has improved is recorded; and no observation period of a
    restructuring made while the loan was non-performing is running.
    """
    figures = loan_figures([loan.pk], as_of).get(loan.pk)
    blockers: list[str] = []
    if figures is not None and (figures.overdue_principal > 0 or figures.overdue_interest > 0):
        blockers.append(
            _(
                "Overdue principal %(principal)s and overdue interest %(interest)s are not "
                "repaid (%(days)s days past due)."
            )
            % {
                "principal": figures.overdue_principal,
                "interest": figures.overdue_interest,
                "days": figures.days_past_due,
            }
        )
    on_time, late, observation_ends_on = _exit_counts(loan, as_of)
    blockers.extend(_payment_blockers(loan, as_of, on_time, late))
    if not position_improved:
        blockers.append(_("No judgement that the debtor's position has improved is recorded."))
    if observation_ends_on is not None:
        restructured = _running_restructurings(loan, as_of)
        npl = [r for r in restructured if r.class_before in NON_PERFORMING]
        blockers.append(
            _(
                "The loan was non-performing when restructured on %(date)s, and the "
                "observation period runs until %(end)s."
            )
            % {"date": npl[-1].restructured_on if npl else "", "end": observation_ends_on}
        )
    return blockers


def _exit_counts(loan: Loan, as_of: date) -> tuple[int, int, date | None]:
    params = {
        "as_of": as_of,
        "window_start": exit_window_start(as_of),
        "low": loan.pk,
        "high": loan.pk,
    }
    with connection.cursor() as cursor:
        cursor.execute(exit_conditions_query(), params)
        _loan_id, on_time, late, ends_on = cursor.fetchone()
    if isinstance(ends_on, str):
        ends_on = date.fromisoformat(ends_on)
    return int(on_time), int(late), ends_on


def _payment_blockers(loan: Loan, as_of: date, on_time: int, late: int) -> list[str]:
    start = exit_window_start(as_of)
    blockers = []
    if late:
        instalments = loan.instalments.filter(due_date__gt=start, due_date__lt=as_of).order_by(
            "due_date"
        )
        late_rows = [
            _late_instalment_text(i, as_of)
            for i in instalments
            if i.settled_on is None or i.settled_on > i.due_date
        ]
        blockers.append(
            ngettext(
                "%(count)s instalment due between %(start)s and %(end)s was not paid on time: "
                "%(list)s.",
                "%(count)s instalments due between %(start)s and %(end)s were not paid on time: "
                "%(list)s.",
                late,
            )
            % {
                "count": late,
                "start": start + relativedelta(days=1),
                "end": as_of,
                "list": "; ".join(late_rows),
            }
        )
    if on_time < NPL_EXIT_MIN_INSTALMENTS:
        blockers.append(
            ngettext(
                "Only %(count)s instalment due between %(start)s and %(end)s was paid on time; "
                "at least %(minimum)s consecutive on-time instalments over %(months)s months "
                "are needed.",
                "Only %(count)s instalments due between %(start)s and %(end)s were paid on "
                "time; at least %(minimum)s consecutive on-time instalments over %(months)s "
                "months are needed.",
                on_time,
            )
            % {
                "count": on_time,
                "start": start + relativedelta(days=1),
                "end": as_of,
                "minimum": NPL_EXIT_MIN_INSTALMENTS,
                "months": NPL_EXIT_MONTHS,
            }
        )
    return blockers


def _late_instalment_text(instalment: Instalment, as_of: date) -> str:
    if instalment.settled_on is None or instalment.settled_on > as_of:
        return _("no. %(number)s due %(due)s, not paid") % {
            "number": instalment.number,
            "due": instalment.due_date,
        }
    return _("no. %(number)s due %(due)s, paid %(paid)s") % {
        "number": instalment.number,
        "due": instalment.due_date,
        "paid": instalment.settled_on,
    }
