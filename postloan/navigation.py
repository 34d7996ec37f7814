"""The main navigation: which links a user sees and which one the current page belongs to."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from loans.access import (
    ADMINISTRATOR,
    AUDITOR,
    BRANCH_MANAGER,
    COMMITTEE_MEMBER,
    CREDIT_OFFICER,
    RISK_MANAGER,
    role_names,
)

EVERY_ROLE = None


@dataclass(frozen=True)
class Section:
    key: str
    label: str
    url_name: str
    icon: str
    roles: tuple[str, ...] | None
    # URL names ("namespace:name") of the pages inside the section, and name
    # prefixes for whole families of pages.
    pages: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()


SECTIONS = (
    Section("dashboard", _("Dashboard"), "reports:dashboard", "speedometer2", EVERY_ROLE),
    Section("portfolio", _("Portfolio"), "reports:portfolio", "pie-chart", EVERY_ROLE),
    Section(
        "tasks",
        _("My tasks"),
        "monitoring:my_tasks",
        "list-check",
        (CREDIT_OFFICER, BRANCH_MANAGER, RISK_MANAGER),
        pages=("monitoring:inspection_detail", "monitoring:inspection_review"),
    ),
    Section(
        "loans",
        _("Loans"),
        "loans:loan_list",
        "cash-stack",
        EVERY_ROLE,
        pages=("loans:loan_detail", "loans:loan_export", "monitoring:inspection_start"),
        prefixes=("loans:document",),
    ),
    Section(
        "borrowers",
        _("Borrowers"),
        "loans:borrower_list",
        "building",
        EVERY_ROLE,
        pages=("loans:borrower_detail", "monitoring:borrower_network"),
    ),
    Section(
        "warnings",
        _("Warnings"),
        "monitoring:warning_queue",
        "exclamation-triangle",
        EVERY_ROLE,
        prefixes=("monitoring:warning", "monitoring:notification"),
    ),
    Section(
        "signals",
        _("Signals"),
        "monitoring:signal_list",
        "megaphone",
        EVERY_ROLE,
        prefixes=("monitoring:signal", "monitoring:borrower_signals"),
    ),
    Section(
        "committee",
        _("Committee"),
        "monitoring:committee_inbox",
        "people",
        (COMMITTEE_MEMBER, RISK_MANAGER, AUDITOR, ADMINISTRATOR),
        prefixes=("monitoring:committee", "monitoring:proposal"),
    ),
    Section(
        "meetings",
        _("Meetings"),
        "monitoring:meeting_list",
        "calendar-event",
        (COMMITTEE_MEMBER, RISK_MANAGER, AUDITOR, ADMINISTRATOR),
        prefixes=("monitoring:meeting",),
    ),
    Section(
        "compliance",
        _("Compliance"),
        "monitoring:inspection_compliance",
        "clipboard-check",
        EVERY_ROLE,
    ),
    Section(
        "monthly",
        _("Monthly reports"),
        "reports:monthly_report_list",
        "file-earmark-bar-graph",
        EVERY_ROLE,
        prefixes=("reports:monthly_report",),
    ),
    Section(
        "audit",
        _("Audit trail"),
        "reports:audit_trail",
        "journal-text",
        (AUDITOR, RISK_MANAGER, ADMINISTRATOR),
        prefixes=("reports:audit",),
    ),
    Section(
        "jobs",
        _("Job runs"),
        "monitoring:jobrun_list",
        "clock-history",
        (RISK_MANAGER, AUDITOR, ADMINISTRATOR),
        prefixes=("monitoring:jobrun",),
    ),
)


@dataclass(frozen=True)
class NavigationLink:
    key: str
    label: str
    url: str
    icon: str
    active: bool
    exact: bool


def current_section(view_name: str) -> str | None:
    """Return the key of the section that the page named `view_name` belongs to."""
    for section in SECTIONS:
        if view_name == section.url_name or view_name in section.pages:
            return section.key
        if any(view_name.startswith(prefix) for prefix in section.prefixes):
            return section.key
    return None


def navigation(request: HttpRequest) -> dict:
    """Add `navigation`, the links of the user's roles with the current one marked."""
    user = request.user
    if not user.is_authenticated:
        return {}
    roles = set(role_names(user))
    match = request.resolver_match
    view_name = match.view_name if match else ""
    active = current_section(view_name)
    links = [
        NavigationLink(
            key=section.key,
            label=section.label,
            url=reverse(section.url_name),
            icon=section.icon,
            active=section.key == active,
            exact=view_name == section.url_name,
        )
        for section in SECTIONS
        if section.roles is EVERY_ROLE or user.is_superuser or roles & set(section.roles)
    ]
    return {"navigation": links}
