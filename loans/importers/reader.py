"""Read a CSV (UTF-8) or XLSX file into a header and rows of cells."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from django.utils.translation import gettext as _
from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from .base import Cell, ImportFileError, SourceRow, Table, cell_text

XLSX_SUFFIXES = {".xlsx", ".xlsm"}


def read_table(path: Path, label: str) -> Table:
    """Read the file at `path`; raise ImportFileError when it is not a table."""
    if not path.is_file():
        raise ImportFileError(
            _("%(table)s: file not found: %(path)s") % {"table": label, "path": path}
        )
    if path.stat().st_size == 0:
        raise ImportFileError(
            _("%(table)s: the file is empty (0 bytes): expected a header row and data rows.")
            % {"table": label}
        )
    if path.suffix.lower() in XLSX_SUFFIXES:
        records = _xlsx_records(path, label)
    else:
        records = _csv_records(path, label)
    return _table(records, label)


def _csv_records(path: Path, label: str) -> list[list[Cell]]:
    data = path.read_bytes()
    try:
        # utf-8-sig drops the byte order mark that Excel writes before the header.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportFileError(
            _(
                "%(table)s: file is not UTF-8 encoded (byte 0x%(byte)02x at position "
                "%(position)d). Save it as CSV UTF-8 and import it again."
            )
            % {"table": label, "byte": data[error.start], "position": error.start}
        ) from None
    try:
        return list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise ImportFileError(
            _("%(table)s: not a valid CSV file: %(error)s") % {"table": label, "error": error}
        ) from None


def _xlsx_records(path: Path, label: str) -> list[list[Cell]]:
    # read_only=False because read-only worksheets do not expose merged cells.
    try:
        workbook = load_workbook(path, read_only=False, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as error:
        raise ImportFileError(
            _("%(table)s: not a valid XLSX workbook: %(error)s") % {"table": label, "error": error}
        ) from None
    sheet = workbook.worksheets[0]
    merged = [str(cell_range) for cell_range in sheet.merged_cells.ranges]
    if merged:
        raise ImportFileError(
            _(
                '%(table)s: worksheet "%(sheet)s" has merged cells %(ranges)s. '
                "Unmerge them and fill in every cell, then import it again."
            )
            % {"table": label, "sheet": sheet.title, "ranges": ", ".join(sorted(merged))}
        )
    return [list(values) for values in sheet.iter_rows(values_only=True)]


def _table(records: list[list[Cell]], label: str) -> Table:
    if not records or not any(cell_text(cell) for cell in records[0]):
        raise ImportFileError(
            _("%(table)s: the first row is blank: expected the header row.") % {"table": label}
        )
    header = [cell_text(cell) for cell in records[0]]
    while header and not header[-1]:
        header.pop()

    rows = []
    for number, record in enumerate(records[1:], start=2):
        if not any(cell_text(cell) for cell in record):
            continue
        overflow = [cell for cell in record[len(header) :] if cell_text(cell)]
        values = {
            name: record[index] if index < len(record) else None
            for index, name in enumerate(header)
            if name
        }
        rows.append(SourceRow(number, values, overflow=len(overflow)))

    if not rows:
        raise ImportFileError(
            _("%(table)s: the file has a header row but no data rows.") % {"table": label}
        )
    return Table(label=label, header=header, rows=rows)
