"""The audit trail's filter form."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from .audit import (
    CHANGE_TYPES,
    DEFAULT_MODEL_KEY,
    NO_USER_ID,
    AuditFilters,
    audited_model_choices,
    audited_models,
)

NO_USER = "none"


class DateInput(forms.DateInput):
    input_type = "date"


class AuditFilterForm(forms.Form):
    """Filters of the audit trail page and its CSV export, bound to the query string.

    The record type defaults to loans. The user field takes a user id, or
    "none" for the rows written with no user (the close-of-day run, imports
    and scheduled jobs).
    """

    model = forms.ChoiceField(label=_("Record type"), required=False)
    record = forms.IntegerField(label=_("Record id"), required=False, min_value=1)
    user = forms.ChoiceField(label=_("User"), required=False)
    change_type = forms.ChoiceField(
        label=_("Change"),
        required=False,
        choices=[("", _("All changes")), *CHANGE_TYPES.items()],
    )
    date_from = forms.DateField(label=_("From"), required=False, widget=DateInput)
    date_to = forms.DateField(
        label=_("To"),
        required=False,
        widget=DateInput,
        help_text=_("Inclusive."),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = audited_model_choices()
        self.fields["model"].initial = DEFAULT_MODEL_KEY
        users = get_user_model().objects.order_by("username").values_list("pk", "username")
        self.fields["user"].choices = [
            ("", _("All users")),
            (NO_USER, _("No user: close-of-day run and system")),
            *((str(pk), username) for pk, username in users),
        ]

    def clean_model(self) -> str:
        return self.cleaned_data["model"] or DEFAULT_MODEL_KEY

    def clean(self) -> dict:
        cleaned = super().clean()
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to and date_from > date_to:
            self.add_error(
                "date_to",
                _("The end date %(end)s is before the start date %(start)s.")
                % {"end": date_to.isoformat(), "start": date_from.isoformat()},
            )
        return cleaned

    def filters(self) -> AuditFilters | None:
        """Return the filters of a valid form, None when a filter is invalid."""
        if not self.is_valid():
            return None
        data = self.cleaned_data
        return AuditFilters(
            model=audited_models()[data["model"]],
            record_id=data["record"],
            user_id=_user_id(data["user"]),
            change_type=data["change_type"],
            date_from=data["date_from"],
            date_to=data["date_to"],
        )


def _user_id(choice: str) -> int | None:
    if choice == NO_USER:
        return NO_USER_ID
    return int(choice) if choice else None
