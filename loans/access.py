"""Roles and branch scoping: which loans and borrowers a user may see.

Credit officers and branch managers see the loans and borrowers of the
branches they belong to. Risk managers, committee members, auditors and administrators see the whole
book. Every page, list, search and download goes through these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from .models import Borrower, Loan

CREDIT_OFFICER = "Credit officer"
BRANCH_MANAGER = "Branch manager"
RISK_MANAGER = "Risk manager"
COMMITTEE_MEMBER = "Committee member"
AUDITOR = "Auditor"
ADMINISTRATOR = "Administrator"

ROLES = (CREDIT_OFFICER, BRANCH_MANAGER, RISK_MANAGER, COMMITTEE_MEMBER, AUDITOR, ADMINISTRATOR)
# Roles that see only the branches their user belongs to.
BRANCH_ROLES = (CREDIT_OFFICER, BRANCH_MANAGER)
BANK_WIDE_ROLES = (RISK_MANAGER, COMMITTEE_MEMBER, AUDITOR, ADMINISTRATOR)
ROLE_LABELS = {
    CREDIT_OFFICER: _("Credit officer"),
    BRANCH_MANAGER: _("Branch manager"),
    RISK_MANAGER: _("Risk manager"),
    COMMITTEE_MEMBER: _("Committee member"),
    AUDITOR: _("Auditor"),
    ADMINISTRATOR: _("Administrator"),
}

User = AbstractBaseUser | AnonymousUser


def role_names(user: User) -> list[str]:
    """Return the user's roles, cached on the user object for the request."""
    if not user.is_authenticated:
        return []
    cached = getattr(user, "_postloan_roles", None)
    if cached is None:
        cached = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._postloan_roles = cached
    return cached


def has_role(user: User, *roles: str) -> bool:
    return bool(set(role_names(user)) & set(roles))


def sees_whole_book(user: User) -> bool:
    return user.is_authenticated and (user.is_superuser or has_role(user, *BANK_WIDE_ROLES))


def has_any_role(user: User) -> bool:
    return user.is_authenticated and (user.is_superuser or bool(role_names(user)))


def role_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a page view: anonymous users are sent to log in, users with no role get 403."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not has_any_role(request.user):
            raise PermissionDenied("No Postloan role is assigned to this user.")
        return view(request, *args, **kwargs)

    return wrapper


def visible_loans(user: User) -> QuerySet[Loan]:
    loans = Loan.objects.all()
    if sees_whole_book(user):
        return loans
    if not has_role(user, *BRANCH_ROLES):
        return loans.none()
    return loans.filter(branch__staff=user)


def visible_borrowers(user: User) -> QuerySet[Borrower]:
    borrowers = Borrower.objects.all()
    if sees_whole_book(user):
        return borrowers
    if not has_role(user, *BRANCH_ROLES):
        return borrowers.none()
    loans_in_branch = Loan.objects.filter(borrower=OuterRef("pk"), branch__staff=user)
    return borrowers.filter(Exists(loans_in_branch) | Exists(
        Borrower.objects.filter(pk=OuterRef("pk"), branch__staff=user)
    ))


def get_visible_loan(user: User, pk: int) -> Loan:
    """Return the loan if the user may see it; 404 otherwise, so ids do not leak."""
    loan = visible_loans(user).filter(pk=pk).first()
    if loan is None:
        raise Http404("No such loan.")
    return loan


def get_visible_borrower(user: User, pk: int) -> Borrower:
    borrower = visible_borrowers(user).filter(pk=pk).first()
    if borrower is None:
        raise Http404("No such borrower.")
    return borrower
