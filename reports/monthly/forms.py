"""The form that requests a monthly report or a new version of one."""

from __future__ import annotations

from datetime import date

from django import forms
from django.utils.translation import gettext_lazy as _

from loans.models import Branch

from ..models import LoanMonthSnapshot
from .periods import ReportScope, parse_month


class ReportRequestForm(forms.Form):
    month = forms.CharField(
        label=_("Month"),
        widget=forms.TextInput(attrs={"type": "month", "placeholder": "YYYY-MM"}),
        help_text=_("A month that has ended, as YYYY-MM."),
    )
    branch = forms.ModelChoiceField(
        label=_("Scope"),
        queryset=Branch.objects.order_by("code"),
        required=False,
        empty_label=_("Whole bank"),
    )

    def __init__(self, *args, today: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today

    def clean_month(self) -> date:
        text = self.cleaned_data["month"].strip()
        try:
            month = parse_month(text)
        except ValueError as error:
            raise forms.ValidationError(
                _("Invalid month %(month)s: expected YYYY-MM."), params={"month": text}
            ) from error
        month_end = ReportScope(month).month_end
        if month_end >= self.today:
            raise forms.ValidationError(
                _("The month %(month)s has not ended: its last day is %(end)s."),
                params={"month": text, "end": month_end},
            )
        if not LoanMonthSnapshot.objects.filter(month_end=month_end).exists():
            raise forms.ValidationError(
                _(
                    "No month-end snapshot exists for %(end)s. Run close-of-day for that date, "
                    "or backfill it with manage.py snapshot_month_end."
                ),
                params={"end": month_end},
            )
        return month
