"""The minutes of a meeting as PDF, rendered by WeasyPrint from an HTML template.

The template uses only the system fonts (DejaVu) and no external resources.
The URL fetcher rejects every URL except `data:` URLs and files under the
project's static folder, so rendering never reaches the network.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.text import slugify
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from loans.access import User

from ..models import ReviewMeeting
from . import selectors

TEMPLATE = "monitoring/meetings/minutes_pdf.html"
DEFAULT_BANK_NAME = "Postloan"


def _static_dir() -> Path:
    return Path(settings.BASE_DIR, "static").resolve()


class LocalOnlyFetcher(URLFetcher):
    """A URL fetcher that serves `data:` URLs and files under the static folder, nothing else."""

    def fetch(self, url: str, headers=None):
        parsed = urlparse(url)
        if parsed.scheme == "data":
            return super().fetch(url, headers)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path)).resolve()
            if path.is_relative_to(_static_dir()):
                return super().fetch(url, headers)
        raise ValueError(
            f"Rejected {url!r}: the minutes load only data: URLs and only static files."
        )


def bank_name() -> str:
    """Return the POSTLOAN_BANK_NAME setting, or "Postloan" when it is missing or empty."""
    return getattr(settings, "POSTLOAN_BANK_NAME", "") or DEFAULT_BANK_NAME


def minutes_filename(meeting: ReviewMeeting) -> str:
    """Return a download name such as minutes-2024-03-05-march-review.pdf."""
    title = slugify(meeting.title)[:60].strip("-") or f"meeting-{meeting.pk}"
    return f"minutes-{meeting.held_on:%Y-%m-%d}-{title}.pdf"


def minutes_context(meeting: ReviewMeeting, user: User) -> dict:
    return {
        "meeting": meeting,
        "items": selectors.agenda_rows(user, meeting),
        "attendees": selectors.attendee_list(meeting),
        "every_item": selectors.sees_every_item(user),
        "bank_name": bank_name(),
        "generated_at": timezone.localtime(),
        "generated_by": user,
    }


def render_minutes_pdf(meeting: ReviewMeeting, user: User) -> bytes:
    """Render the minutes with the agenda items the user may see, as PDF bytes."""
    html = render_to_string(TEMPLATE, minutes_context(meeting, user))
    document = HTML(
        string=html,
        base_url=_static_dir().as_uri() + "/",
        url_fetcher=LocalOnlyFetcher(),
    )
    return document.write_pdf()
