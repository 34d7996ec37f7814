"""Routes of the committee pages, added to the monitoring namespace."""

from __future__ import annotations

urlpatterns: list = []
