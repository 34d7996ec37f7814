"""Create one user per role for the demo and print their passwords."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count

from loans import access
from loans.models import Branch, Loan

DEMO_USERS = (
    ("officer", access.CREDIT_OFFICER),
    ("manager", access.BRANCH_MANAGER),
    ("risk", access.RISK_MANAGER),
    ("committee1", access.COMMITTEE_MEMBER),
    ("committee2", access.COMMITTEE_MEMBER),
    ("auditor", access.AUDITOR),
    ("admin", access.ADMINISTRATOR),
)


class Command(BaseCommand):
    help = (
        "Create (or reset) one demo user per role with a new random password, put the "
        "credit officer in a branch and make them the officer of its unassigned loans."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--officer-branch",
            help="Branch code of the demo credit officer (default: the branch with most loans).",
        )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        branch = self._officer_branch(options["officer_branch"])
        self.stdout.write("Demo users (username / password / role):")
        for username, role in DEMO_USERS:
            password = secrets.token_urlsafe(9)
            user = self._reset_user(username, role, password)
            if role == access.BRANCH_MANAGER and branch is not None:
                branch.staff.add(user)
                role = f"{role}, branch {branch.code}"
            if role == access.CREDIT_OFFICER and branch is not None:
                branch.staff.add(user)
                assigned = Loan.objects.filter(branch=branch, officer__isnull=True).update(
                    officer=user
                )
                role = f"{role}, branch {branch.code}, {assigned} loans assigned"
            self.stdout.write(f"  {username:<11} {password:<14} {role}")

    def _officer_branch(self, code: str | None) -> Branch | None:
        if code:
            branch = Branch.objects.filter(code=code).first()
            if branch is None:
                raise CommandError(f"Branch {code!r} not found.")
            return branch
        return Branch.objects.annotate(loan_count=Count("loans")).order_by("-loan_count").first()

    def _reset_user(self, username: str, role: str, password: str):
        user, _created = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.is_staff = role == access.ADMINISTRATOR
        user.is_superuser = role == access.ADMINISTRATOR
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        return user
