"""SQL fragments that differ between PostgreSQL and SQLite.

The close-of-day run is written as set-wise SQL; these helpers keep the
statements identical on both backends apart from the few functions that
are spelled differently.
"""

from __future__ import annotations

from django.db import connection


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


def days_between(later: str, earlier: str) -> str:
    """Return an expression for the whole days from `earlier` to `later`."""
    if is_postgresql():
        return f"(({later})::date - ({earlier})::date)"
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


def greatest(*expressions: str) -> str:
    name = "GREATEST" if is_postgresql() else "MAX"
    return f"{name}({', '.join(expressions)})"


def json_object(pairs: dict[str, str]) -> str:
    """Return an expression building a JSON object from SQL expressions."""
    arguments = ", ".join(f"'{key}', {value}" for key, value in pairs.items())
    if is_postgresql():
        return f"jsonb_build_object({arguments})"
    return f"json_object({arguments})"


def money_text(expression: str) -> str:
    """Return an expression rendering a money amount as text with two decimals."""
    if is_postgresql():
        return f"CAST(ROUND(({expression})::numeric, 2) AS TEXT)"
    # The doubled percent sign survives the driver's parameter substitution.
    return f"printf('%%.2f', {expression})"


def as_of_param() -> str:
    """Return the placeholder of the named `as_of` date parameter."""
    return "CAST(%(as_of)s AS DATE)" if is_postgresql() else "%(as_of)s"
