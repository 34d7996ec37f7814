"""Template tags of the early-warning pages and the navigation bar."""

from __future__ import annotations

from django import template

from ..selectors import unread_notification_count

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notifications(context: template.Context) -> int:
    """Return the signed-in user's unread notifications: one COUNT query per page."""
    request = context.get("request")
    if request is None:
        return 0
    return unread_notification_count(request.user)
