"""Import loans with their schedules, repayments and guarantees from CSV or XLSX."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext as _

from loans.importers.base import ImportFileError
from loans.importers.run import FORMATS, ImportRejected, ImportReport, import_loans


def _parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise CommandError(
            _("Invalid --as-of date %(value)r: expected YYYY-MM-DD.") % {"value": value}
        ) from error


class Command(BaseCommand):
    help = _(
        "Import loans from a CSV (UTF-8) or XLSX file. Every row is validated before "
        "anything is written; loans already in the book are skipped as unchanged."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help=_("The loans file, .csv or .xlsx."))
        parser.add_argument(
            "--format",
            required=True,
            choices=sorted(FORMATS),
            help=_("native: the Postloan layout in docs/import.md; sba: the SBA 7(a) file."),
        )
        parser.add_argument(
            "--as-of",
            help=_(
                "Date the book is imported as of, YYYY-MM-DD (default: today). SBA "
                "repayments are replayed up to it; native repayments after it are rejected."
            ),
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help=_("Import the valid rows and write the invalid ones to a rejects CSV file."),
        )
        parser.add_argument(
            "--rejects",
            type=Path,
            help=_("Path of the rejects CSV file (default: NAME.rejects.csv beside the input)."),
        )

    def handle(self, *args, **options) -> None:
        as_of = _parse_date(options["as_of"]) if options["as_of"] else timezone.localdate()
        try:
            report = import_loans(
                options["file"],
                options["format"],
                as_of,
                skip_invalid=options["skip_invalid"],
                rejects_path=options["rejects"],
                progress=self._progress,
            )
        except ImportFileError as error:
            raise CommandError(_("%(error)s Nothing was written.") % {"error": error}) from error
        except DatabaseError as error:
            # Another import may have created the same loans since validation.
            raise CommandError(
                _("The database rejected the import: %(error)s. Nothing was written.")
                % {"error": error}
            ) from error
        except ImportRejected as rejection:
            self._errors(rejection.report)
            raise CommandError(
                _(
                    "%(count)d invalid value(s), %(rows)d row(s) of the loans file rejected: "
                    "nothing was written. Fix them, or run again with --skip-invalid to "
                    "import the valid rows."
                )
                % {"count": len(rejection.report.errors), "rows": rejection.report.rejected}
            ) from None
        if report.errors:
            self._errors(report)
        self._notes(report)
        self._summary(report)

    def _progress(self, step: str, done: int, total: int) -> None:
        labels = {"read": _("read"), "validated": _("validated"), "written": _("written")}
        self.stdout.write(f"{labels.get(step, step)} {done}/{total}")

    def _errors(self, report: ImportReport) -> None:
        for error in report.errors:
            self.stderr.write(str(error))
        for path in report.rejects_files:
            self.stderr.write(_("rejected rows written to %(path)s") % {"path": path})

    def _notes(self, report: ImportReport) -> None:
        for note in sorted(report.notes, key=lambda note: -note.count):
            values = ", ".join(f'"{value}"' for value in note.values)
            rows = ", ".join(str(row) for row in note.rows)
            if note.count > len(note.rows):
                rows += ", ..."
            self.stdout.write(
                _(
                    "note: %(table)s column %(column)s on %(count)d row(s) (rows %(rows)s; "
                    "values %(values)s): %(reason)s"
                )
                % {
                    "table": note.table,
                    "column": note.column,
                    "count": note.count,
                    "rows": rows or "-",
                    "values": values,
                    "reason": note.reason,
                }
            )

    def _summary(self, report: ImportReport) -> None:
        lines = [
            (_("rows read"), report.rows_read),
            (_("loans created"), report.created),
            (_("unchanged (already present)"), report.unchanged),
            (_("rejected"), report.rejected),
            (_("written off"), report.written_off),
            (_("elapsed seconds"), f"{report.elapsed_seconds:.1f}"),
        ]
        for label, value in lines:
            self.stdout.write(f"{label}: {value}")
