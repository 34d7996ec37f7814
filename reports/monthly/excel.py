"""Render a report version as an Excel workbook with openpyxl, one sheet per section.

Numbers are stored as numbers with a number format, so they add up in
Excel. Money has two decimals. Ratios are percentages with two decimals:
12.34 is 12.34 %, and the column heading ends in "(%)".
"""

from __future__ import annotations

from io import BytesIO

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from ..models import MonthlyReport
from .layout import COUNT, DAYS, MONEY, PERCENT, Cell, Section, Table, report_sections
from .presentation import report_heading

NUMBER_FORMATS = {COUNT: "#,##0", MONEY: "#,##0.00", PERCENT: "0.00", DAYS: "0.00"}
BOLD = Font(bold=True)
TITLE = Font(bold=True, size=13)
HEADER_FILL = PatternFill("solid", fgColor="E9EEF5")
# Widths of the first column (the labels) and of the others, in characters.
LABEL_COLUMN_WIDTH = 34
NUMBER_COLUMN_WIDTH = 18
# Excel refuses sheet titles longer than this.
SHEET_TITLE_LENGTH = 31


def _write_cell(sheet: Worksheet, row: int, column: int, cell: Cell, bold: bool = False) -> None:
    target = sheet.cell(row=row, column=column, value=cell.value)
    if cell.kind in NUMBER_FORMATS and cell.value is not None:
        target.number_format = NUMBER_FORMATS[cell.kind]
    if bold:
        target.font = BOLD


def _write_table(sheet: Worksheet, row: int, table: Table) -> int:
    """Write the table from `row` on; return the next free row."""
    sheet.cell(row=row, column=1, value=table.title).font = BOLD
    row += 1
    for column, heading in enumerate(table.columns, start=1):
        target = sheet.cell(row=row, column=column, value=heading.label)
        target.font = BOLD
        target.fill = HEADER_FILL
        target.alignment = Alignment(
            wrap_text=True, vertical="top", horizontal="right" if heading.is_number else "left"
        )
    row += 1
    for cells in table.rows:
        for column, cell in enumerate(cells, start=1):
            _write_cell(sheet, row, column, cell)
        row += 1
    if table.total is not None:
        for column, cell in enumerate(table.total, start=1):
            _write_cell(sheet, row, column, cell, bold=True)
        row += 1
    return row + 1


def _write_section(sheet: Worksheet, heading: str, section: Section) -> None:
    sheet.cell(row=1, column=1, value=section.title).font = TITLE
    sheet.cell(row=2, column=1, value=heading)
    row = 4
    for fact in section.facts:
        sheet.cell(row=row, column=1, value=fact.label)
        _write_cell(sheet, row, 2, fact.cell)
        row += 1
    if section.facts:
        row += 1
    for table in section.tables:
        row = _write_table(sheet, row, table)
    for note in section.notes:
        sheet.cell(row=row, column=1, value=note)
        row += 1
    widest = max([2, *(len(table.columns) for table in section.tables)])
    sheet.column_dimensions["A"].width = LABEL_COLUMN_WIDTH
    for column in range(2, widest + 1):
        sheet.column_dimensions[get_column_letter(column)].width = NUMBER_COLUMN_WIDTH
    sheet.freeze_panes = "A4"


def render_xlsx(report: MonthlyReport) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)
    heading = report_heading(report)
    for section in report_sections(report.figures):
        sheet = workbook.create_sheet(section.title[:SHEET_TITLE_LENGTH])
        _write_section(sheet, heading, section)
    workbook.properties.title = heading
    workbook.properties.creator = "Postloan"
    output = BytesIO()
    workbook.save(output)
    return output.getvalue()
