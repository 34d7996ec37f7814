"""Types shared by the loan importers: source rows, errors, notes and cell parsers.

Row numbers count the header as row 1, so the first data row is row 2: the
number a spreadsheet shows beside the row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext as _

# A cell as read from CSV (always str) or XLSX (str, number, datetime or None).
Cell = str | int | float | date | None

# Called with (step, done, total), e.g. ("validated", 500, 4000).
Progress = Callable[[str, int, int], None]

# Rows between two progress lines on the command line.
PROGRESS_EVERY = 500
_PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


class ImportFileError(Exception):
    """A file that cannot be read as a table at all: nothing in it is imported."""


@dataclass(frozen=True)
class RowError:
    """One invalid value: `row` is None for errors about the whole file."""

    table: str
    row: int | None
    column: str
    value: str
    reason: str

    def __str__(self) -> str:
        if self.row is None:
            return f"{self.table}: {self.reason}"
        return _('%(table)s row %(row)s, column %(column)s, value "%(value)s": %(reason)s') % {
            "table": self.table,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "reason": self.reason,
        }


# Row numbers and distinct values kept as examples for each note.
NOTE_EXAMPLES = 5


@dataclass
class Note:
    """Values read with one assumption (an unknown code, a default): never an error."""

    table: str
    column: str
    reason: str
    count: int = 0
    rows: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)

    def add(self, row: int | None, value: str) -> None:
        self.count += 1
        if row is not None and len(self.rows) < NOTE_EXAMPLES:
            self.rows.append(row)
        if value not in self.values and len(self.values) < NOTE_EXAMPLES:
            self.values.append(value)


@dataclass
class SourceRow:
    number: int
    values: dict[str, Cell]
    # Non-blank values beyond the last header column, usually a quoting mistake.
    overflow: int = 0


@dataclass
class Table:
    """A file read as a header and data rows; `label` names it in messages."""

    label: str
    header: list[str]
    rows: list[SourceRow]


@dataclass
class Messages:
    """Errors and notes collected while reading every file of one import."""

    errors: list[RowError] = field(default_factory=list)
    notes: dict[tuple[str, str, str], Note] = field(default_factory=dict)

    def error(self, table: str, row: int | None, column: str, value: Cell, reason: str) -> None:
        self.errors.append(RowError(table, row, column, cell_text(value), reason))

    def note(self, table: str, row: int | None, column: str, value: Cell, reason: str) -> None:
        key = (table, column, reason)
        if key not in self.notes:
            self.notes[key] = Note(table, column, reason)
        self.notes[key].add(row, cell_text(value))


def cell_text(value: Cell) -> str:
    """Return a cell as the text a person would see in the file."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def check_header(table: Table, required: Iterable[str], optional: Iterable[str]) -> None:
    """Raise ImportFileError unless the header names every required column once."""
    required = list(required)
    known = set(required) | set(optional)
    header = table.header
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise ImportFileError(
            _("%(table)s: the header repeats column(s) %(columns)s: each column may appear once.")
            % {"table": table.label, "columns": ", ".join(duplicates)}
        )
    if not known & set(header):
        raise ImportFileError(
            _(
                "%(table)s: wrong header: none of the expected columns was found. "
                "Expected %(expected)s; found %(found)s. Check the --format option "
                "and that the first row is the header."
            )
            % {
                "table": table.label,
                "expected": ", ".join(required),
                "found": ", ".join(name for name in header if name) or _("(blank)"),
            }
        )
    missing = [name for name in required if name not in header]
    if missing:
        raise ImportFileError(
            _("%(table)s: missing required column(s) %(columns)s in the header row.")
            % {"table": table.label, "columns": ", ".join(missing)}
        )


class RowReader:
    """Parse the cells of one source row, recording each invalid value as an error.

    Each method returns None when the value is blank (and allowed to be) or
    invalid, so a caller can parse every column and then check `ok`.
    """

    def __init__(self, table: Table, row: SourceRow, messages: Messages) -> None:
        self.table = table
        self.row = row
        self.messages = messages
        self.failures = 0
        if row.overflow:
            self.fail(
                _("(after the last column)"),
                _(
                    "%(count)d more value(s) than the header has columns: check the quoting "
                    "of values that contain commas"
                )
                % {"count": row.overflow},
                value="",
            )

    @property
    def ok(self) -> bool:
        return self.failures == 0

    def raw(self, column: str) -> Cell:
        return self.row.values.get(column)

    def fail(self, column: str, reason: str, value: Cell | None = None) -> None:
        cell = self.raw(column) if value is None else value
        self.failures += 1
        self.messages.error(self.table.label, self.row.number, column, cell, reason)

    def note(self, column: str, reason: str) -> None:
        self.messages.note(self.table.label, self.row.number, column, self.raw(column), reason)

    def text(self, column: str, required: bool = False, max_length: int | None = None) -> str:
        value = cell_text(self.raw(column))
        if not value and required:
            self.fail(column, _("missing value: this column is required"))
        elif max_length is not None and len(value) > max_length:
            self.fail(
                column,
                _("too long: at most %(max)d characters, found %(length)d")
                % {"max": max_length, "length": len(value)},
            )
            return ""
        return value

    def decimal(
        self,
        column: str,
        required: bool = True,
        places: int = 2,
        minimum: Decimal | None = None,
        positive: bool = False,
        strip: str = "",
    ) -> Decimal | None:
        """Parse a plain decimal number (digits, one optional point, optional minus).

        `strip` lists characters removed first, such as "$, " for amounts
        written as "$1,000.00 ".
        """
        raw = self.raw(column)
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            # str() of a float is its shortest round-trip form, so an XLSX cell
            # holding 1234.56 becomes Decimal("1234.56"), not the binary value.
            text = str(raw)
        else:
            text = cell_text(raw)
            for character in strip:
                text = text.replace(character, "")
        if not text:
            if required:
                self.fail(column, _("missing value: a number is required"))
            return None
        value = _parse_number(text)
        if value is None:
            self.fail(column, _("not a number"))
            return None
        if value != value.quantize(Decimal(1).scaleb(-places)):
            if places == 0:
                self.fail(column, _("not a whole number"))
            else:
                self.fail(column, _("more than %(places)d decimal places") % {"places": places})
            return None
        if positive and value <= 0:
            self.fail(column, _("must be greater than 0"))
            return None
        if minimum is not None and value < minimum:
            self.fail(column, _("must be %(minimum)s or greater") % {"minimum": minimum})
            return None
        return value

    def integer(self, column: str, required: bool = True, minimum: int | None = None) -> int | None:
        number = self.decimal(column, required=required, places=0)
        if number is None:
            return None
        if minimum is not None and number < minimum:
            self.fail(column, _("must be %(minimum)d or greater") % {"minimum": minimum})
            return None
        return int(number)

    def date(
        self, column: str, parse: Callable[[str], date], expected: str, required: bool = True
    ) -> date | None:
        """Parse a date cell: an XLSX date, or text read by `parse`."""
        raw = self.raw(column)
        if isinstance(raw, datetime):
            return raw.date()
        if isinstance(raw, date):
            return raw
        text = cell_text(raw)
        if not text:
            if required:
                self.fail(column, _("missing value: a date is required"))
            return None
        try:
            return parse(text)
        except ValueError:
            self.fail(column, _("not a valid date: expected %(format)s") % {"format": expected})
            return None

    def choice(self, column: str, choices: dict[str, str], required: bool = True) -> str | None:
        """Map a code to its stored value; `choices` keys are lower case."""
        text = cell_text(self.raw(column))
        if not text:
            if required:
                self.fail(column, _("missing value: this column is required"))
            return None
        value = choices.get(text.lower())
        if value is None:
            allowed = ", ".join(sorted(set(choices.values())))
            self.fail(column, _("unknown code: expected one of %(allowed)s") % {"allowed": allowed})
        return value


def _parse_number(text: str) -> Decimal | None:
    if not _PLAIN_NUMBER.fullmatch(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def iso_date(text: str) -> date:
    """Parse YYYY-MM-DD strictly (date.fromisoformat also takes 20230101)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(text)
    return date.fromisoformat(text)
