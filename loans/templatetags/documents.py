"""The documents panel: `{% load documents %}{% documents_panel owner %}`."""

from __future__ import annotations

from django import template

from loans.documents import Owner
from loans.views_documents import panel_context

register = template.Library()


@register.inclusion_tag("loans/_documents.html", takes_context=True)
def documents_panel(context: template.Context, owner: Owner) -> dict:
    """Render the documents of a borrower, loan, collateral item or inspection for request.user.

    Nothing is rendered when the user may not see the owner.
    """
    return panel_context(context["request"], owner)
