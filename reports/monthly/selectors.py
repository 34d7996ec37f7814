"""Report versions a user may see, and the rows of the report list.

Risk managers, committee members, auditors and administrators see every
report. Credit officers and branch managers see the reports of the branches
they belong to, and neither the bank's report nor another branch's.
"""

from __future__ import annotations

from collections import defaultdict

from django.db.models import Count, F, Max, QuerySet

from loans.access import ADMINISTRATOR, BRANCH_ROLES, RISK_MANAGER, User, has_role, sees_whole_book

from ..models import MonthlyReport


def visible_reports(user: User) -> QuerySet[MonthlyReport]:
    if sees_whole_book(user):
        return MonthlyReport.objects.all()
    if not has_role(user, *BRANCH_ROLES):
        return MonthlyReport.objects.none()
    return MonthlyReport.objects.filter(branch__staff=user)


def get_visible_report(user: User, pk: int) -> MonthlyReport | None:
    return visible_reports(user).select_related("branch", "requested_by").filter(pk=pk).first()


def may_generate(user: User) -> bool:
    """Tell whether the user may request a report or a new version: risk managers and admins."""
    return user.is_authenticated and (
        user.is_superuser or has_role(user, RISK_MANAGER, ADMINISTRATOR)
    )


def report_groups(user: User) -> QuerySet[dict]:
    """Return one row per month and scope the user may see: newest month first, the bank first.

    Each row contains `month`, `branch_id`, `latest` (the highest version) and `versions`.
    """
    return (
        visible_reports(user)
        .values("month", "branch_id", "branch__code")
        .annotate(latest=Max("version"), versions=Count("pk"))
        .order_by("-month", F("branch__code").asc(nulls_first=True))
    )


def versions_by_group(user: User, groups: list[dict]) -> dict[tuple, list[MonthlyReport]]:
    """Return the versions of the listed groups, newest first, keyed by (month, branch id)."""
    if not groups:
        return {}
    keys = {(group["month"], group["branch_id"]) for group in groups}
    versions: dict[tuple, list[MonthlyReport]] = defaultdict(list)
    reports = (
        visible_reports(user)
        .filter(month__in={month for month, _branch in keys})
        .select_related("branch", "requested_by")
        .defer("figures")
        .order_by("-version")
    )
    for report in reports:
        key = (report.month, report.branch_id)
        if key in keys:
            versions[key].append(report)
    return versions
