"""Forms of the early-warning queue and the warning page."""

from __future__ import annotations

from datetime import date

from django import forms
from django.utils.translation import gettext_lazy as _

from loans.access import User
from loans.filters import OfficerChoiceField
from loans.selectors import scoped_branches, scoped_officers

from .models import (
    ActionKind,
    EarlyWarning,
    ExternalSignal,
    Severity,
    SignalKind,
    WarningFamily,
    WarningStatus,
)
from .rules import all_rules
from .selectors import (
    AGE_BUCKET_LABELS,
    AGE_BUCKETS,
    ASSIGNEE_ME,
    ASSIGNEE_UNASSIGNED,
    STATUS_ACTIVE,
    STATUS_ANY,
    STATUS_CLOSED,
    assignable_users,
)
from .services import CLOSING_REASON_MAX_LENGTH


class UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return obj.get_full_name() or obj.get_username()


def _rule_choices() -> list[tuple[str, str]]:
    return [(rule.code, rule.code) for rule in sorted(all_rules(), key=lambda rule: rule.code)]


class WarningQueueFilterForm(forms.Form):
    """Filters of the warning queue, bound to the query string.

    The branch and officer lists contain only what the user may see, so the
    id of another branch is an invalid choice. The assignee field takes
    "unassigned", "me" or a user id.
    """

    severity = forms.ChoiceField(
        label=_("Severity"),
        required=False,
        choices=[("", _("All severities")), *Severity.choices],
    )
    family = forms.ChoiceField(
        label=_("Family"),
        required=False,
        choices=[("", _("All families")), *WarningFamily.choices],
    )
    rule = forms.ChoiceField(label=_("Rule"), required=False)
    branch = forms.ModelChoiceField(
        label=_("Branch"), required=False, queryset=None, empty_label=_("All branches")
    )
    officer = OfficerChoiceField(
        label=_("Credit officer"), required=False, queryset=None, empty_label=_("All officers")
    )
    age = forms.ChoiceField(
        label=_("Age"),
        required=False,
        choices=[
            ("", _("Any age")),
            *[(code, AGE_BUCKET_LABELS[code]) for code, _youngest, _oldest in AGE_BUCKETS],
        ],
    )
    assignee = forms.ChoiceField(label=_("Assignee"), required=False)
    status = forms.ChoiceField(
        label=_("Status"),
        required=False,
        choices=[
            (STATUS_ACTIVE, _("Active")),
            (STATUS_CLOSED, _("Closed")),
            (STATUS_ANY, _("Any status")),
            *WarningStatus.choices,
        ],
    )

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rule"].choices = [("", _("All rules")), *_rule_choices()]
        self.fields["branch"].queryset = scoped_branches(user)
        self.fields["officer"].queryset = scoped_officers(user)
        self.assignees = list(assignable_users(viewer=user))
        self.fields["assignee"].choices = [
            ("", _("Anyone")),
            (ASSIGNEE_UNASSIGNED, _("Unassigned")),
            (ASSIGNEE_ME, _("Assigned to me")),
            *[
                (str(person.pk), person.get_full_name() or person.get_username())
                for person in self.assignees
            ],
        ]

    def clean_assignee(self):
        """Return "unassigned", "me", the chosen user, or "" for no filter."""
        value = self.cleaned_data["assignee"]
        if value in ("", ASSIGNEE_UNASSIGNED, ASSIGNEE_ME):
            return value
        return next(user for user in self.assignees if str(user.pk) == value)


class AssignForm(forms.Form):
    """The new owner of warnings: anyone who may own one, or only those who see `branch_id`."""

    assignee = UserChoiceField(
        label=_("Assign to"), queryset=None, empty_label=_("Choose a person")
    )

    def __init__(self, *args, branch_id: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignee"].queryset = assignable_users(branch_id)


class BulkAssignForm(AssignForm):
    """The warnings ticked on the queue page and their new owner."""

    warnings = forms.ModelMultipleChoiceField(
        queryset=EarlyWarning.objects.none(),
        error_messages={"required": _("Tick at least one warning to assign.")},
    )

    def __init__(self, *args, warnings, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["warnings"].queryset = warnings


class DisposalForm(forms.Form):
    kind = forms.ChoiceField(
        label=_("Action"),
        choices=[(kind, ActionKind(kind).label) for kind in ActionKind.disposals()],
    )
    note = forms.CharField(
        label=_("Note"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("What was done, with whom, and what comes next. Required for a note."),
    )


class CloseForm(forms.Form):
    """The reason for resolving or dismissing a warning, one form with a button for each."""

    # Not required here, because the service rejects a blank reason with a message
    # that names the step (resolving or dismissing). The browser still requires one.
    reason = forms.CharField(
        label=_("Reason"),
        required=False,
        max_length=CLOSING_REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 2, "required": True}),
        help_text=_("Why the warning is resolved or dismissed. Kept on the warning's record."),
    )


# ---- External signals --------------------------------------------------------


class DateInput(forms.DateInput):
    """A browser date picker; the value is sent as YYYY-MM-DD whatever the locale."""

    input_type = "date"

    def __init__(self, attrs=None) -> None:
        super().__init__(attrs=attrs, format="%Y-%m-%d")


def _reject_future(value: date, today: date, field_label: str) -> None:
    if value > today:
        raise forms.ValidationError(
            _(
                "%(field)s %(value)s is after today, %(today)s. "
                "Enter today's date or an earlier one."
            ),
            code="future",
            params={"field": field_label, "value": value.isoformat(), "today": today.isoformat()},
        )


class ExternalSignalForm(forms.ModelForm):
    """A new signal against a borrower: what kind, when it became known, and what it is."""

    class Meta:
        model = ExternalSignal
        fields = ("kind", "observed_on", "description")
        labels = {
            "kind": _("Kind of signal"),
            "observed_on": _("Observed on"),
            "description": _("Description"),
        }
        help_texts = {
            "observed_on": _(
                "The date the fact became known to the bank. The signal applies from this date."
            ),
            "description": _(
                "What happened, the source (court, tax office, newspaper, visit) and any reference."
            ),
        }
        widgets = {
            "observed_on": DateInput(),
            "description": forms.Textarea(attrs={"rows": 4}),
        }
        error_messages = {
            "kind": {"required": _("Choose the kind of signal.")},
            "observed_on": {
                "required": _("Enter the date the signal was observed."),
                "invalid": _("Enter the date observed as YYYY-MM-DD."),
            },
            "description": {
                "required": _("Describe the signal: what happened and where it was found.")
            },
        }

    def __init__(self, *args, today: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today
        self.fields["kind"].choices = [("", _("Choose a kind")), *SignalKind.choices]
        self.fields["observed_on"].widget.attrs["max"] = today.isoformat()

    def clean_observed_on(self) -> date:
        observed_on = self.cleaned_data["observed_on"]
        _reject_future(observed_on, self.today, _("Observed on"))
        return observed_on

    def clean_description(self) -> str:
        description = self.cleaned_data["description"].strip()
        if not description:
            raise forms.ValidationError(
                _("Describe the signal: what happened and where it was found."), code="required"
            )
        return description


class EndSignalForm(forms.Form):
    """The date from which a signal no longer applies."""

    ended_on = forms.DateField(
        label=_("Ended on"),
        widget=DateInput(),
        error_messages={
            "required": _("Enter the date the signal ended."),
            "invalid": _("Enter the end date as YYYY-MM-DD."),
        },
        help_text=_(
            "The first day on which the signal no longer applies, such as the date of a ruling."
        ),
    )

    def __init__(self, *args, signal: ExternalSignal, today: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.signal = signal
        self.today = today
        self.fields["ended_on"].widget.attrs.update(
            {"min": signal.observed_on.isoformat(), "max": today.isoformat()}
        )

    def clean_ended_on(self) -> date:
        ended_on = self.cleaned_data["ended_on"]
        if ended_on < self.signal.observed_on:
            raise forms.ValidationError(
                _(
                    "Ended on %(value)s is before the signal was observed, on %(observed)s. "
                    "Enter %(observed)s or a later date."
                ),
                code="before_observed",
                params={
                    "value": ended_on.isoformat(),
                    "observed": self.signal.observed_on.isoformat(),
                },
            )
        _reject_future(ended_on, self.today, _("Ended on"))
        return ended_on


SIGNAL_STATE_OPEN = "open"
SIGNAL_STATE_ENDED = "ended"
SIGNAL_STATE_ANY = "any"


class SignalFilterForm(forms.Form):
    """Filters of the book-wide signal list, bound to the query string.

    The branch list contains only the user's branches, so the id of another
    branch is an invalid choice.
    """

    kind = forms.ChoiceField(
        label=_("Kind"), required=False, choices=[("", _("All kinds")), *SignalKind.choices]
    )
    state = forms.ChoiceField(
        label=_("State"),
        required=False,
        choices=[
            (SIGNAL_STATE_OPEN, _("Open")),
            (SIGNAL_STATE_ENDED, _("Ended")),
            (SIGNAL_STATE_ANY, _("Open or ended")),
        ],
    )
    branch = forms.ModelChoiceField(
        label=_("Branch"),
        required=False,
        queryset=None,
        empty_label=_("All branches"),
        help_text=_("The borrower's home branch or a branch that lent to it."),
    )

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["branch"].queryset = scoped_branches(user)
