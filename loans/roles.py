"""The six role groups and their model permissions.

Created by a data migration; tests that flush the database (transactional
and browser tests) call `create_role_groups` again.
"""

from __future__ import annotations

VIEW_BOOK = [
    ("loans", "view_branch"),
    ("loans", "view_borrower"),
    ("loans", "view_loan"),
    ("loans", "view_instalment"),
    ("loans", "view_repayment"),
    ("loans", "view_repaymentallocation"),
    ("loans", "view_writeoff"),
    ("loans", "view_guarantor"),
    ("loans", "view_guarantee"),
    ("loans", "view_collateral"),
    ("loans", "view_collateralvaluation"),
    ("loans", "view_collateralpledge"),
    ("loans", "view_loanposition"),
    ("monitoring", "view_earlywarning"),
    ("monitoring", "view_warningaction"),
    ("monitoring", "view_classificationchange"),
    ("monitoring", "view_jobrun"),
    ("monitoring", "view_warningrule"),
    ("monitoring", "view_externalsignal"),
    ("monitoring", "view_watchedindustry"),
    ("monitoring", "view_guaranteenetworkmember"),
    ("monitoring", "view_inspectionpolicy"),
    ("monitoring", "view_firstinspectionterm"),
    ("monitoring", "view_postloanplan"),
    ("monitoring", "view_inspection"),
    ("monitoring", "view_inspectioncheck"),
    ("monitoring", "view_classificationproposal"),
    ("monitoring", "view_committeepolicy"),
    ("monitoring", "view_proposalvote"),
    ("monitoring", "view_restructuring"),
    ("monitoring", "view_reviewmeeting"),
    ("monitoring", "view_agendaitem"),
    ("reports", "view_monthlyreport"),
    ("reports", "view_loanmonthsnapshot"),
    ("loans", "view_document"),
    ("loans", "view_documentversion"),
]
HISTORY = [
    ("loans", f"view_historical{model}")
    for model in (
        "branch",
        "borrower",
        "loan",
        "instalment",
        "repayment",
        "writeoff",
        "guarantor",
        "guarantee",
        "collateral",
        "collateralvaluation",
        "collateralpledge",
        "document",
        "documentversion",
    )
] + [
    ("monitoring", f"view_historical{model}")
    for model in (
        "earlywarning",
        "warningrule",
        "severitydeadline",
        "externalsignal",
        "watchedindustry",
        "inspectionpolicy",
        "firstinspectionterm",
        "postloanplan",
        "inspection",
        "inspectioncheck",
        "classificationproposal",
        "committeepolicy",
        "proposalvote",
        "restructuring",
        "reviewmeeting",
        "agendaitem",
    )
]

ROLE_PERMISSIONS = {
    "Credit officer": VIEW_BOOK,
    "Branch manager": VIEW_BOOK + [("monitoring", "change_inspection")],
    "Risk manager": VIEW_BOOK
    + [
        ("monitoring", "change_earlywarning"),
        ("monitoring", "add_jobrun"),
        ("monitoring", "change_inspection"),
        ("reports", "add_monthlyreport"),
    ],
    "Committee member": VIEW_BOOK
    + [
        ("monitoring", "change_classificationchange"),
        ("monitoring", "add_proposalvote"),
        ("monitoring", "add_reviewmeeting"),
        ("monitoring", "change_reviewmeeting"),
        ("monitoring", "change_agendaitem"),
    ],
    "Auditor": VIEW_BOOK + HISTORY,
    "Administrator": None,  # every permission of the project's apps
}
ADMIN_APPS = ("loans", "monitoring", "reports", "auth", "django_celery_beat")


def create_role_groups(apps) -> None:
    """Create or update the role groups; `apps` is a migration or the live app registry."""
    from django.contrib.auth.management import create_permissions
    from django.db.models import Q

    for app_config in apps.get_app_configs():
        # Migration states have no models module, and create_permissions skips
        # such apps, so mark them for the call and restore the value after.
        original = getattr(app_config, "models_module", None)
        app_config.models_module = original or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = original

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codes in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        if codes is None:
            permissions = Permission.objects.filter(content_type__app_label__in=ADMIN_APPS)
        else:
            # A model added by a later migration has no permissions yet. That
            # migration calls this function again and the role gets them then.
            matching = Q()
            for app, codename in codes:
                matching |= Q(content_type__app_label=app, codename=codename)
            permissions = Permission.objects.filter(matching)
        group.permissions.set(permissions)
