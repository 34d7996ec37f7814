"""Routes of the meetings pages, added to the monitoring namespace."""

from __future__ import annotations

urlpatterns: list = []
