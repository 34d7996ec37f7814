"""Forms of the committee pages: inbox filters, proposing, voting, ratifying."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from loans.access import User
from loans.models import RiskClass
from loans.selectors import scoped_branches

from ..models import ProposalSource, VoteDecision
from .selectors import CHANGE_REASON_LABELS, DIRECTION_DOWNGRADE, DIRECTION_UPGRADE


class InboxFilterForm(forms.Form):
    """Filters of the pending proposals and the ratification list, bound to the query string.

    The branch lists contain only the branches the user may see, so the id
    of another branch is an invalid choice.
    """

    branch = forms.ModelChoiceField(label=_("Branch"), queryset=None, required=False)
    source = forms.ChoiceField(
        label=_("Source"), required=False, choices=[("", _("All sources")), *ProposalSource.choices]
    )
    direction = forms.ChoiceField(
        label=_("Direction"),
        required=False,
        choices=[
            ("", _("Both")),
            (DIRECTION_UPGRADE, _("Upgrades")),
            (DIRECTION_DOWNGRADE, _("Downgrades")),
        ],
    )
    proposed_class = forms.TypedChoiceField(
        label=_("Proposed class"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", _("All classes")), *RiskClass.choices],
    )
    awaiting_me = forms.BooleanField(label=_("Awaiting my vote"), required=False)

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["branch"].queryset = scoped_branches(user)
        self.fields["branch"].empty_label = _("All branches")


class RatificationFilterForm(forms.Form):
    ratify_branch = forms.ModelChoiceField(label=_("Branch"), queryset=None, required=False)
    reason_code = forms.ChoiceField(
        label=_("Reason"),
        required=False,
        choices=[("", _("All reasons")), *((k, v) for k, v in CHANGE_REASON_LABELS.items())],
    )

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ratify_branch"].queryset = scoped_branches(user)
        self.fields["ratify_branch"].empty_label = _("All branches")


class ProposalForm(forms.Form):
    proposed_class = forms.TypedChoiceField(
        label=_("Proposed class"), coerce=int, choices=RiskClass.choices
    )
    reasons = forms.CharField(
        label=_("Reasons"),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("The facts behind the proposed class, for the committee."),
    )
    position_improved = forms.BooleanField(
        label=_("The debtor's position has improved"),
        required=False,
        help_text=_("Your recorded judgement; a loan leaves non-performing only with it."),
    )

    def __init__(self, *args, current_class: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["proposed_class"].choices = [
            (value, label) for value, label in RiskClass.choices if value != current_class
        ]


class VoteForm(forms.Form):
    decision = forms.ChoiceField(
        label=_("Decision"), choices=VoteDecision.choices, widget=forms.RadioSelect
    )
    comment = forms.CharField(
        label=_("Comment"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Required: the reason for your vote, kept with it."),
    )


class RatifyForm(forms.Form):
    changes = forms.ModelMultipleChoiceField(queryset=None, label=_("Floor changes"))
    comment = forms.CharField(label=_("Comment"), required=False, max_length=1000)

    def __init__(self, *args, changes, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["changes"].queryset = changes
        self.fields["changes"].error_messages["required"] = _("Tick at least one floor change.")
