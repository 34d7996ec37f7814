"""External family of early-warning rules."""

from __future__ import annotations
