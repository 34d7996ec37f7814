"""Run one import: read and validate every file, then write the valid loans or nothing."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from django.db import DatabaseError
from django.utils.translation import gettext as _

from loans.models import Collateral, Loan

from .base import PROGRESS_EVERY, ImportFileError, Messages, Note, Progress, RowError, cell_text
from .native import parse_native
from .plans import CollateralPlan, LoanPlan, ParsedImport
from .sba import parse_sba
from .writer import existing_values, write_plans

logger = logging.getLogger(__name__)

Parser = Callable[[Path, date, Messages, Progress], ParsedImport]
FORMATS: dict[str, Parser] = {"native": parse_native, "sba": parse_sba}

# Fields compared when a contract number is already in the book: equal values
# mean the same loan was imported before, so the row is skipped as unchanged.
IDENTITY_FIELDS = ("borrower__registration_number", "currency", "principal", "disbursement_date")


@dataclass
class ImportReport:
    path: Path
    rows_read: int = 0
    created: int = 0
    unchanged: int = 0
    rejected: int = 0
    written_off: int = 0
    elapsed_seconds: float = 0.0
    errors: list[RowError] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    rejects_files: list[Path] = field(default_factory=list)


class ImportRejected(Exception):
    """Some rows are invalid and --skip-invalid was not given: nothing was written."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"{len(report.errors)} errors in {report.path}")
        self.report = report


def default_rejects_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")


def import_loans(
    path: Path,
    file_format: str,
    as_of: date,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Import the loans in `path`; raise ImportFileError or ImportRejected on invalid input."""
    started = time.monotonic()
    progress = progress or _no_progress
    logger.info("import_loans start file=%s format=%s as_of=%s", path.name, file_format, as_of)
    messages = Messages()
    try:
        parsed = FORMATS[file_format](path, as_of, messages, progress)
    except ImportFileError as error:
        logger.warning("import_loans failed file=%s: %s", path.name, error)
        raise

    unchanged = _skip_unchanged(parsed, messages)
    parsed.plans = _prepare_plans(parsed, progress)
    collateral = _new_collateral(parsed, unchanged, messages)
    bad_contracts = _bad_contracts(parsed, messages.errors)
    plans = [plan for plan in parsed.plans if plan.contract_number not in bad_contracts]
    collateral = [
        item
        for item in collateral
        if not any(contract in bad_contracts for contract, _share in item.pledges)
    ]
    rejected = _rejected_rows(parsed, messages.errors, bad_contracts)
    report = ImportReport(
        path=path,
        rows_read=len(parsed.tables[0].rows),
        unchanged=len(unchanged),
        rejected=len(rejected.get(parsed.tables[0].label, {})),
        errors=messages.errors,
        notes=list(messages.notes.values()),
    )

    if messages.errors and not skip_invalid:
        report.elapsed_seconds = time.monotonic() - started
        logger.warning(
            "import_loans rejected file=%s errors=%d rejected_rows=%d: nothing written",
            path.name,
            len(messages.errors),
            report.rejected,
        )
        raise ImportRejected(report)
    if messages.errors:
        target = rejects_path or default_rejects_path(path)
        report.rejects_files = _write_rejects(parsed, rejected, target)

    change_reason = _("Imported from %(file)s (%(format)s format)") % {
        "file": path.name,
        "format": file_format,
    }
    try:
        write_plans(plans, collateral, change_reason, progress)
    except DatabaseError as error:
        logger.error("import_loans failed file=%s: nothing written: %s", path.name, error)
        raise
    report.created = len(plans)
    report.written_off = sum(1 for plan in plans if plan.write_off is not None)
    report.elapsed_seconds = time.monotonic() - started
    _log_end(report)
    return report


def _log_end(report: ImportReport) -> None:
    logger.info(
        "import_loans end file=%s rows=%d created=%d unchanged=%d rejected=%d "
        "written_off=%d seconds=%.1f",
        report.path.name,
        report.rows_read,
        report.created,
        report.unchanged,
        report.rejected,
        report.written_off,
        report.elapsed_seconds,
    )


def _no_progress(step: str, done: int, total: int) -> None:
    return None


def _skip_unchanged(parsed: ParsedImport, messages: Messages) -> set[str]:
    """Drop plans for loans already in the book; report those whose data differs."""
    by_number = {plan.contract_number: plan for plan in parsed.plans}
    rows = existing_values(Loan, "contract_number", by_number, *IDENTITY_FIELDS)
    unchanged = set()
    for row in rows:
        plan = by_number[row["contract_number"]]
        planned = {
            "borrower__registration_number": plan.borrower.registration_number,
            "currency": plan.currency,
            "principal": plan.principal,
            "disbursement_date": plan.disbursement_date,
        }
        differences = [name for name in IDENTITY_FIELDS if row[name] != planned[name]]
        if not differences:
            unchanged.add(plan.contract_number)
            continue
        name = differences[0]
        messages.error(
            parsed.tables[0].label,
            plan.row,
            "contract_number",
            plan.contract_number,
            _(
                "exists: the book already has this contract number with a different "
                "%(field)s (%(book)s in the book, %(file)s in this file)"
            )
            % {"field": name.replace("__", "_"), "book": row[name], "file": planned[name]},
        )
    parsed.plans = [plan for plan in parsed.plans if plan.contract_number not in unchanged]
    return unchanged


def _prepare_plans(parsed: ParsedImport, progress: Progress) -> list[LoanPlan]:
    """Build schedules and replays for the new loans; return those without errors."""
    ready = []
    total = len(parsed.plans)
    for done, plan in enumerate(parsed.plans, start=1):
        if plan.prepare is None or plan.prepare(plan):
            ready.append(plan)
        if done % PROGRESS_EVERY == 0 or done == total:
            progress("validated", done, total)
    return ready


def _new_collateral(
    parsed: ParsedImport, unchanged: set[str], messages: Messages
) -> list[CollateralPlan]:
    """Return the collateral items to create; items of unchanged loans are skipped."""
    references = [item.reference for item in parsed.collateral]
    in_book = {row["reference"] for row in existing_values(Collateral, "reference", references)}
    new = []
    for item in parsed.collateral:
        contracts = {contract for contract, _share in item.pledges}
        if contracts <= unchanged:
            continue
        reason = None
        if item.reference in in_book:
            reason = _("exists: the book already has collateral with this reference")
        elif contracts & unchanged:
            reason = _(
                "pledged to loan(s) %(loans)s already in the book: pledges to existing "
                "loans are not imported"
            ) % {"loans": ", ".join(sorted(contracts & unchanged))}
        if reason is None:
            new.append(item)
            continue
        label, row = parsed.collateral_rows[item.reference][0]
        messages.error(label, row, "reference", item.reference, reason)
    return new


def _bad_contracts(parsed: ParsedImport, errors: list[RowError]) -> set[str]:
    """Return the contracts with an error on any of their rows, in any file."""
    bad: set[str] = set()
    for error in errors:
        bad.update(parsed.contract_rows.get((error.table, error.row), ()))
    # A collateral item pledged to several loans links them: one rejected loan
    # rejects the item, and so the others.
    linked = [contracts for contracts in parsed.contract_rows.values() if len(contracts) > 1]
    changed = True
    while changed:
        changed = False
        for contracts in linked:
            if bad.intersection(contracts) and not bad.issuperset(contracts):
                bad.update(contracts)
                changed = True
    return bad


def _rejected_rows(
    parsed: ParsedImport, errors: list[RowError], bad_contracts: set[str]
) -> dict[str, dict[int, list[RowError]]]:
    """Return the rejected rows of each table with their errors."""
    rejected: dict[str, dict[int, list[RowError]]] = {}
    for error in errors:
        if error.row is not None:
            rejected.setdefault(error.table, {}).setdefault(error.row, []).append(error)
    for (label, row), contracts in parsed.contract_rows.items():
        bad = sorted(bad_contracts.intersection(contracts))
        if not bad or row in rejected.get(label, {}):
            continue
        reason = _("rejected with loan %(loan)s, which has errors in another row or file") % {
            "loan": bad[0]
        }
        rejected.setdefault(label, {})[row] = [RowError(label, row, "", "", reason)]
    return rejected


def _write_rejects(
    parsed: ParsedImport, rejected: dict[str, dict[int, list[RowError]]], target: Path
) -> list[Path]:
    """Write each table's rejected rows with their errors; return the files written.

    The loans file's rows go to `target`, the rows of a sibling file KIND to
    TARGET_STEM.KIND.csv, so the rejects can be fixed and imported again.
    """
    written = []
    for index, table in enumerate(parsed.tables):
        rows = rejected.get(table.label)
        if not rows:
            continue
        path = target if index == 0 else target.with_name(f"{target.stem}.{table.label}.csv")
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow([*table.header, "row", "column", "value", "reason"])
            for source_row in table.rows:
                errors = rows.get(source_row.number)
                if not errors:
                    continue
                writer.writerow(
                    [cell_text(source_row.values.get(name)) for name in table.header]
                    + [
                        source_row.number,
                        " | ".join(error.column for error in errors),
                        " | ".join(error.value for error in errors),
                        " | ".join(error.reason for error in errors),
                    ]
                )
        written.append(path)
    return written
