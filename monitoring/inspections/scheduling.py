"""Special inspections requested on a warning.

The close-of-day run schedules special inspections for new red warnings
set-wise (`monitoring/close_of_day/inspections.py`). A user who records the
disposal action "special inspection" on a warning gets one the same way,
through `schedule_special_inspection`.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from loans.access import User
from loans.models import Loan

from ..models import EarlyWarning, Inspection, InspectionKind, InspectionPolicy, InspectionStatus
from ..selectors import get_business_date

logger = logging.getLogger(__name__)


def schedule_special_inspection(
    warning: EarlyWarning, requested_by: User | None, as_of: date | None = None
) -> tuple[Inspection, bool]:
    """Schedule a special inspection of the warning's loan, due the policy's days after `as_of`.

    `as_of` defaults to the business date (today before the first run).
    Return the inspection and True, or the loan's pending special inspection
    and False when it has one. Branch and officer come from the loan, and
    the inspection names the warning as its trigger. Call it in a transaction.
    """
    loan = Loan.objects.select_for_update().get(pk=warning.loan_id)
    pending = _pending_special(loan)
    if pending is not None:
        return pending, False

    as_of = as_of or get_business_date() or timezone.localdate()
    due_date = as_of + timedelta(days=InspectionPolicy.current().special_inspection_days)
    # One inspection per loan, kind and due date: an earlier special
    # inspection may already have been done with this due date.
    taken_dates = set(
        loan.inspections.filter(kind=InspectionKind.SPECIAL, due_date__gte=due_date).values_list(
            "due_date", flat=True
        )
    )
    while due_date in taken_dates:
        due_date += timedelta(days=1)

    inspection = Inspection(
        loan=loan,
        branch_id=loan.branch_id,
        officer_id=loan.officer_id,
        kind=InspectionKind.SPECIAL,
        due_date=due_date,
        trigger_warning=warning,
    )
    inspection._history_user = requested_by
    inspection._change_reason = f"Special inspection requested on warning {warning.pk}"
    try:
        with transaction.atomic():
            inspection.save()
    except IntegrityError:
        # A close-of-day chunk committed one for the loan since the check.
        pending = _pending_special(loan)
        if pending is None:
            raise
        return pending, False
    logger.info(
        "special inspection %s of loan %s scheduled on warning %s",
        inspection.pk,
        loan.pk,
        warning.pk,
    )
    return inspection, True


def _pending_special(loan: Loan) -> Inspection | None:
    return loan.inspections.filter(
        kind=InspectionKind.SPECIAL, status__in=InspectionStatus.pending()
    ).first()
