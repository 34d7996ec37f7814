"""Forms of the meeting pages: the meeting, filters, the agenda builder and decisions."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from loans.models import Branch, Loan

from ..models import AgendaItem, ItemDecision, MeetingStatus, ReviewMeeting
from . import selectors
from .services import DEFAULT_CAPS, TITLE_MAX_LENGTH

# Highest cap the builder form accepts for one source in one step.
MAX_CAP = 200


class AttendeeField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_full_name() or obj.get_username()


class MeetingForm(forms.ModelForm):
    """The meeting's details and attendees; the view saves them through the services."""

    attendees = AttendeeField(
        label=_("Attendees"),
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ReviewMeeting
        fields = ["title", "held_on", "location", "attendees", "notes"]
        widgets = {
            "held_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
            "notes": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["attendees"].queryset = selectors.attendee_choices()


class MeetingFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[("", _("All statuses")), *MeetingStatus.choices],
    )
    date_from = forms.DateField(
        label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise ValidationError(_("The start date is after the end date."), code="date_order")
        return data


class CandidateFilterForm(forms.Form):
    branch = forms.ModelChoiceField(
        label=_("Branch"),
        required=False,
        queryset=Branch.objects.order_by("code"),
        empty_label=_("All branches"),
    )


class IdListField(forms.Field):
    """A list of record ids posted under one name, such as the ticked boxes of a list."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[int]:
        try:
            return sorted({int(item) for item in value or ()})
        except (TypeError, ValueError) as error:
            raise ValidationError(
                _("Invalid id in the ticked records: %(value)s."),
                code="invalid",
                params={"value": value},
            ) from error


class PickCandidatesForm(forms.Form):
    """The ticked candidates of the agenda builder."""

    proposal = IdListField(required=False)
    warning = IdListField(required=False)
    loan = IdListField(required=False)

    def clean(self) -> dict:
        data = super().clean()
        if not (data.get("proposal") or data.get("warning") or data.get("loan")):
            raise ValidationError(_("Tick at least one record to add."), code="empty")
        return data


class BuildAgendaForm(forms.Form):
    """How many of the oldest candidates of each source to add at once."""

    proposals = forms.IntegerField(
        label=_("Pending proposals"),
        min_value=0,
        max_value=MAX_CAP,
        initial=DEFAULT_CAPS.proposals,
    )
    warnings = forms.IntegerField(
        label=_("Red warnings"), min_value=0, max_value=MAX_CAP, initial=DEFAULT_CAPS.warnings
    )
    loans = forms.IntegerField(
        label=_("Non-performing loans"),
        min_value=0,
        max_value=MAX_CAP,
        initial=DEFAULT_CAPS.loans,
    )
    branch = forms.ModelChoiceField(
        label=_("Branch"),
        required=False,
        queryset=Branch.objects.order_by("code"),
        empty_label=_("All branches"),
    )


class OtherItemForm(forms.Form):
    title = forms.CharField(label=_("Title"), max_length=TITLE_MAX_LENGTH)
    contract_number = forms.CharField(
        label=_("Loan contract number"),
        required=False,
        max_length=50,
        help_text=_("Optional. Credit officers and branch managers see only items about a loan."),
    )
    notes = forms.CharField(
        label=_("Notes"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean_contract_number(self) -> Loan | None:
        number = self.cleaned_data["contract_number"].strip()
        if not number:
            return None
        loan = Loan.objects.filter(contract_number=number).first()
        if loan is None:
            raise ValidationError(
                _("No loan has the contract number %(number)s."),
                code="not_found",
                params={"number": number},
            )
        return loan


class DecisionChoiceField(forms.ChoiceField):
    """A decision list that offers the item's allowed decisions but accepts any decision.

    The service then rejects a decision the item may not take, with the reason.
    """

    def valid_value(self, value) -> bool:
        return value in ItemDecision.values


class DecisionForm(forms.Form):
    """An item's decision and notes; the list offers the decisions the item may take."""

    decision = DecisionChoiceField(label=_("Decision"), required=False)
    notes = forms.CharField(
        label=_("Notes"), required=False, widget=forms.Textarea(attrs={"rows": 3})
    )

    def __init__(self, *args, item: AgendaItem, **kwargs) -> None:
        kwargs.setdefault("initial", {"decision": item.decision, "notes": item.notes})
        kwargs.setdefault("auto_id", f"id_item{item.pk}_%s")
        super().__init__(*args, **kwargs)
        self.fields["decision"].choices = [
            (value, ItemDecision(value).label) for value in selectors.allowed_decisions(item)
        ]
