"""Forms of the inspection pages: the report, its checklist, the review, the compliance period.

The forms check types and choices only. The rules of a draft and of a
submission (required fields, dates, comments on "no") live in
`services`, whose errors the views put next to the fields with `add_errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from loans.models import RiskClass

from ..models import ChecklistAnswer, ChecklistItem, Inspection
from .services import CHECKLIST_ITEMS


class InspectionForm(forms.ModelForm):
    suggested_class = forms.TypedChoiceField(
        label=_("Suggested class"),
        choices=[("", _("No change suggested")), *RiskClass.choices],
        coerce=int,
        empty_value=None,
        required=False,
        help_text=_("A class other than the loan's goes to the committee as a proposal."),
    )

    class Meta:
        model = Inspection
        fields = ["inspected_on", "place", "people_met", "findings", "risk_opinion"]
        widgets = {
            "inspected_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "findings": forms.Textarea(attrs={"rows": 5}),
            "risk_opinion": forms.Textarea(attrs={"rows": 3}),
        }
        help_texts = {
            "people_met": _("Names and positions, separated by commas."),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.initial.setdefault("suggested_class", self.instance.suggested_class)
        # The service decides what a submission requires; a draft requires nothing.
        for field in self.fields.values():
            field.required = False


class ChecklistForm(forms.Form):
    """One checklist item: the answer as radio buttons, and a comment required on "no"."""

    answer = forms.ChoiceField(
        choices=ChecklistAnswer.choices, widget=forms.RadioSelect, required=False
    )
    comment = forms.CharField(
        label=_("Comment"), widget=forms.Textarea(attrs={"rows": 2}), required=False
    )

    def __init__(self, *args, item: ChecklistItem, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.item = item
        self.fields["answer"].label = item.label


class BaseChecklistFormSet(forms.BaseFormSet):
    """The seven checklist items, in the order of ChecklistItem, one form each."""

    def get_form_kwargs(self, index: int) -> dict[str, Any]:
        # An unchanged item still has to be cleaned, because the service is
        # given every item's answer, so no form may be skipped as empty.
        return {
            **super().get_form_kwargs(index),
            "item": CHECKLIST_ITEMS[index],
            "empty_permitted": False,
        }

    def clean(self) -> None:
        if self.total_form_count() != len(CHECKLIST_ITEMS):
            raise ValidationError(
                _("The checklist has %(expected)s items, but %(count)s were posted.")
                % {"expected": len(CHECKLIST_ITEMS), "count": self.total_form_count()}
            )

    def answers(self) -> dict[str, dict[str, str]]:
        """Return {item: {"answer": ..., "comment": ...}} of a valid formset."""
        return {form.item.value: form.cleaned_data for form in self.forms}


ChecklistFormSet = forms.formset_factory(
    ChecklistForm,
    formset=BaseChecklistFormSet,
    extra=0,
    max_num=len(CHECKLIST_ITEMS),
    absolute_max=len(CHECKLIST_ITEMS),
    validate_max=True,
)

CHECKLIST_PREFIX = "checks"


def checklist_formset(inspection: Inspection, data: Mapping | None = None) -> BaseChecklistFormSet:
    """Return the checklist formset, bound to `data` or filled with the stored answers."""
    stored = {check.item: check for check in inspection.checks.all()}
    initial = [
        {
            "answer": stored[item].answer if item in stored else "",
            "comment": stored[item].comment if item in stored else "",
        }
        for item in CHECKLIST_ITEMS
    ]
    return ChecklistFormSet(data, initial=initial, prefix=CHECKLIST_PREFIX)


def add_errors(form: InspectionForm, formset: BaseChecklistFormSet, error: ValidationError) -> None:
    """Put a service's errors next to their fields: the form's, or a checklist item's."""
    by_item = {form.item.value: form for form in formset.forms}
    for key, messages in error.message_dict.items():
        item, _dot, field = key.partition(".")
        if field and item in by_item:
            by_item[item].add_error(field, messages)
        elif key in form.fields:
            form.add_error(key, messages)
        else:
            form.add_error(None, messages)


class ReturnForm(forms.Form):
    comment = forms.CharField(
        label=_("What should the officer change?"),
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        required=True,
        error_messages={"required": _("Enter what the officer should change before resubmitting.")},
    )


class CompliancePeriodForm(forms.Form):
    """Branch and period of the compliance page; the period defaults to the current quarter."""

    branch = forms.ModelChoiceField(
        label=_("Branch"), queryset=None, required=False, empty_label=_("All my branches")
    )
    date_from = forms.DateField(
        label=_("Due from"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    date_to = forms.DateField(
        label=_("Due to"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )

    def __init__(self, *args, branches, whole_book: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["branch"].queryset = branches
        if whole_book:
            self.fields["branch"].empty_label = _("All branches")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        date_from: date | None = cleaned.get("date_from")
        date_to: date | None = cleaned.get("date_to")
        if date_from and date_to and date_from > date_to:
            self.add_error(
                "date_to",
                _("The end %(end)s is before the start %(start)s.")
                % {"end": date_to, "start": date_from},
            )
        return cleaned
