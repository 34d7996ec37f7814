"""The month a report covers and the scope it counts: the bank or one branch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from dateutil.relativedelta import relativedelta


def parse_month(text: str) -> date:
    """Return the first day of the month written as YYYY-MM; raise ValueError otherwise."""
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError as error:
        raise ValueError(f"Invalid month {text!r}: expected YYYY-MM.") from error


def previous_month(as_of: date) -> date:
    """Return the first day of the month before the one that contains `as_of`."""
    return as_of.replace(day=1) - relativedelta(months=1)


@dataclass(frozen=True)
class ReportScope:
    """One month, for the whole bank (`branch_id` None) or one branch."""

    month: date
    branch_id: int | None = None

    def __post_init__(self) -> None:
        if self.month.day != 1:
            raise ValueError(f"Invalid report month {self.month}: expected the first day.")

    @property
    def month_end(self) -> date:
        return self.month + relativedelta(months=1) - timedelta(days=1)

    @property
    def previous_month_end(self) -> date:
        return self.month - timedelta(days=1)

    def params(self) -> dict:
        """Return the named parameters that the report's SQL statements take."""
        return {
            "month_start": self.month,
            "month_end": self.month_end,
            "previous_month_end": self.previous_month_end,
            "branch_id": self.branch_id,
        }

    def branch_condition(self, column: str) -> str:
        """Return SQL limiting `column` to the scope's branch, or a condition always true."""
        if self.branch_id is None:
            return "1 = 1"
        return f"{column} = %(branch_id)s"
