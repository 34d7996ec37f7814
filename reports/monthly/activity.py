"""Report sections on the month's work: early warnings and inspections.

Both read their own tables, which carry a copy of the loan's branch, so a
branch report filters them without joining the loans.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal
from statistics import median

from django.db.models import (
    Case,
    Count,
    DateField,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    Value,
    When,
)
from django.db.models.functions import TruncDate

from monitoring.models import (
    EarlyWarning,
    Inspection,
    InspectionKind,
    InspectionStatus,
    Severity,
    WarningFamily,
)

from .amounts import decimal_text, percent_text
from .periods import ReportScope

# A warning closes on the day staff resolved or dismissed it, or earlier on the
# run date on which its condition cleared. The close-of-day run stamps
# `closed_at` with the wall clock, which for a run on a past date is later
# than the business date. `cleared_on` is the business date itself.
_CLOSED_ON = Case(
    When(closed_at__isnull=True, then=Value(None, output_field=DateField())),
    When(
        Q(cleared_on__isnull=False) & Q(cleared_on__lt=TruncDate("closed_at")),
        then=F("cleared_on"),
    ),
    default=TruncDate("closed_at"),
    output_field=DateField(),
)


def _scoped(queryset, scope: ReportScope):
    if scope.branch_id is None:
        return queryset
    return queryset.filter(branch_id=scope.branch_id)


def _warning_counts(scope: ReportScope) -> dict[tuple[str, str], dict[str, int]]:
    start, end = scope.month, scope.month_end
    closed_in_month = Q(closed_on__gte=start, closed_on__lte=end)
    groups = (
        _scoped(EarlyWarning.objects.filter(first_seen_on__lte=end), scope)
        .annotate(closed_on=_CLOSED_ON)
        .values("family", "severity")
        .annotate(
            new=Count("pk", filter=Q(first_seen_on__gte=start)),
            open=Count("pk", filter=Q(closed_on__isnull=True) | Q(closed_on__gt=end)),
            closed=Count("pk", filter=closed_in_month),
        )
        .order_by()
    )
    return {
        (row["family"], row["severity"]): {key: row[key] for key in ("new", "open", "closed")}
        for row in groups
    }


def _days_to_close(scope: ReportScope) -> dict[tuple[str, str], Counter[int]]:
    """Return per family and severity how many warnings closed in the month took each day count."""
    days = ExpressionWrapper(F("closed_on") - F("first_seen_on"), output_field=DurationField())
    groups = (
        _scoped(EarlyWarning.objects.filter(first_seen_on__lte=scope.month_end), scope)
        .annotate(closed_on=_CLOSED_ON)
        .filter(closed_on__gte=scope.month, closed_on__lte=scope.month_end)
        .annotate(days=days)
        .values("family", "severity", "days")
        .annotate(warnings=Count("pk"))
        .order_by()
    )
    histograms: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for row in groups:
        histograms[(row["family"], row["severity"])][row["days"].days] += row["warnings"]
    return histograms


def _duration_figures(histogram: Counter[int]) -> dict:
    """Return the median and mean days to close of a histogram of day counts."""
    count = sum(histogram.values())
    if not count:
        return {"median_days": None, "mean_days": None}
    values = sorted(histogram.elements())
    mean = Decimal(sum(values)) / count
    return {
        "median_days": decimal_text(Decimal(str(median(values)))),
        "mean_days": decimal_text(mean),
    }


def warnings_section(scope: ReportScope) -> dict:
    """Return new, open and closed warnings by family and severity, and the days to close.

    New: first seen in the month. Open: first seen by the month end and not
    closed by then. Closed: closed in the month, whenever first seen.
    """
    counts = _warning_counts(scope)
    histograms = _days_to_close(scope)
    rows = []
    for family in WarningFamily.values:
        for severity in Severity.values:
            key = (family, severity)
            figures = counts.get(key, {"new": 0, "open": 0, "closed": 0})
            rows.append(
                {
                    "family": family,
                    "severity": severity,
                    **figures,
                    **_duration_figures(histograms.get(key, Counter())),
                }
            )
    every = Counter()
    for histogram in histograms.values():
        every.update(histogram)
    total = {
        key: sum(row[key] for row in rows) for key in ("new", "open", "closed")
    } | _duration_figures(every)
    return {"rows": rows, "total": total}


def inspections_section(scope: ReportScope) -> dict:
    """Return the inspections due in the month by kind: done on time, late, and missed.

    Done means submitted or approved with an inspection date by the month
    end. On time: done by the due date. Late: done after it but by the month
    end. Missed: not done by the month end, so every inspection due in the
    month is in exactly one of the three. Inspections cancelled because the
    loan was closed do not count.
    """
    done = Q(
        status__in=[InspectionStatus.SUBMITTED, InspectionStatus.APPROVED],
        inspected_on__isnull=False,
        inspected_on__lte=scope.month_end,
    )
    groups = (
        _scoped(
            Inspection.objects.filter(
                due_date__gte=scope.month, due_date__lte=scope.month_end
            ).exclude(status=InspectionStatus.CANCELLED),
            scope,
        )
        .values("kind")
        .annotate(
            due=Count("pk"),
            on_time=Count("pk", filter=done & Q(inspected_on__lte=F("due_date"))),
            late=Count("pk", filter=done & Q(inspected_on__gt=F("due_date"))),
        )
        .order_by()
    )
    by_kind = {row["kind"]: row for row in groups}
    rows = []
    for kind in InspectionKind.values:
        row = by_kind.get(kind, {"due": 0, "on_time": 0, "late": 0})
        missed = row["due"] - row["on_time"] - row["late"]
        rows.append(
            {
                "kind": kind,
                "due": row["due"],
                "on_time": row["on_time"],
                "late": row["late"],
                "missed": missed,
                "on_time_rate": percent_text(row["on_time"], row["due"]),
            }
        )
    total = {key: sum(row[key] for row in rows) for key in ("due", "on_time", "late", "missed")}
    total["on_time_rate"] = percent_text(total["on_time"], total["due"])
    return {"rows": rows, "total": total}
