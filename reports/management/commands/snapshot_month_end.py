"""Backfill the month-end snapshot of a month whose close-of-day run did not write one."""

from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from loans.models import LoanPosition
from monitoring.close_of_day.run import plan_chunks
from reports.models import LoanMonthSnapshot
from reports.snapshots import is_month_end, write_month_end_snapshots


def _parse_month_end(value: str) -> date:
    try:
        month_end = date.fromisoformat(value)
    except ValueError as error:
        raise CommandError(f"Invalid --month-end {value!r}: expected YYYY-MM-DD.") from error
    if not is_month_end(month_end):
        raise CommandError(f"Invalid --month-end {value}: not the last day of its month.")
    return month_end


class Command(BaseCommand):
    help = (
        "Write the month-end snapshot of every loan for a month end that close-of-day did "
        "not snapshot. It copies today's positions, classes and provisions, whatever date "
        "the last close-of-day run computed them for, so run it right after that run."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--month-end", required=True, help="Last day of the month to snapshot, YYYY-MM-DD."
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Overwrite the month end's existing snapshot rows instead of stopping.",
        )

    def handle(self, *args, **options) -> None:
        month_end = _parse_month_end(options["month_end"])
        existing = LoanMonthSnapshot.objects.filter(month_end=month_end).count()
        if existing and not options["replace"]:
            raise CommandError(
                f"{existing} snapshot rows exist for {month_end}; pass --replace to overwrite them."
            )
        position_dates = sorted(
            LoanPosition.objects.order_by().values_list("as_of", flat=True).distinct()
        )
        if not position_dates:
            raise CommandError("No loan positions: run close-of-day first.")
        self.stdout.write(
            f"Copying positions as of {', '.join(map(str, position_dates))} "
            f"into the snapshot of {month_end}."
        )
        written = 0
        for low, high in plan_chunks():
            with transaction.atomic():
                written += write_month_end_snapshots(
                    month_end, low, high, None, from_current_positions=True
                )
        self.stdout.write(f"Snapshot rows written for {month_end}: {written}.")
