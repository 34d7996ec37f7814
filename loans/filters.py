"""The loan list's filter form (django-filter), scoped to what the user may see."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .models import Ifrs9Stage, Loan, LoanStatus, RiskClass
from .selectors import dpd_bucket_choices, scoped_branches, scoped_officers, search_loans


class OfficerChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_full_name() or obj.get_username()


class OfficerFilter(django_filters.ModelChoiceFilter):
    field_class = OfficerChoiceField


def _branches(request: HttpRequest | None) -> QuerySet:
    return scoped_branches(request.user)


def _officers(request: HttpRequest | None) -> QuerySet:
    return scoped_officers(request.user)


class LoanFilter(django_filters.FilterSet):
    """Filters of the loan list and its CSV export.

    Takes `request` and a `business_date`, so the DPD bucket filter reads the
    positions of that date. The choice lists contain only the user's branches
    and their officers, so the id of another branch is an invalid choice.
    """

    q = django_filters.CharFilter(
        label=_("Contract or borrower"),
        method="filter_text",
        help_text=_("Start of the contract number, or part of the borrower's legal name."),
    )
    branch = django_filters.ModelChoiceFilter(
        label=_("Branch"), queryset=_branches, empty_label=_("All branches")
    )
    risk_class = django_filters.ChoiceFilter(
        label=_("Risk class"), choices=RiskClass.choices, empty_label=_("All classes")
    )
    ifrs9_stage = django_filters.ChoiceFilter(
        label=_("IFRS 9 stage"), choices=Ifrs9Stage.choices, empty_label=_("All stages")
    )
    dpd_bucket = django_filters.ChoiceFilter(
        label=_("DPD bucket"),
        choices=dpd_bucket_choices,
        method="filter_dpd_bucket",
        empty_label=_("All buckets"),
    )
    officer = OfficerFilter(
        label=_("Credit officer"), queryset=_officers, empty_label=_("All officers")
    )
    status = django_filters.ChoiceFilter(
        label=_("Status"), choices=LoanStatus.choices, empty_label=_("All statuses")
    )

    class Meta:
        model = Loan
        fields: list[str] = []

    def __init__(self, *args, business_date=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.business_date = business_date

    def filter_text(self, queryset: QuerySet[Loan], name: str, value: str) -> QuerySet[Loan]:
        return search_loans(queryset, value)

    def filter_dpd_bucket(self, queryset: QuerySet[Loan], name: str, value: str) -> QuerySet[Loan]:
        if self.business_date is None:
            return queryset.none()
        return queryset.filter(position__as_of=self.business_date, position__dpd_bucket=value)
