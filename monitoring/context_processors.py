"""Template context shared by every page."""

from __future__ import annotations

from django.http import HttpRequest

from loans.access import role_names

from .selectors import get_business_date


def business_date(request: HttpRequest) -> dict:
    context = {"business_date": get_business_date()}
    if request.user.is_authenticated:
        context["user_roles"] = role_names(request.user)
    return context
