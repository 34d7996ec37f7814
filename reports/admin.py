"""Admin for the monthly reports and month-end snapshots: both are written by jobs only."""

from __future__ import annotations

from django.contrib import admin

from loans.admin import ReadOnlyAdmin

from .models import LoanMonthSnapshot, MonthlyReport


@admin.register(MonthlyReport)
class MonthlyReportAdmin(ReadOnlyAdmin):
    list_display = ("month", "branch", "version", "status", "progress", "finished_at")
    list_filter = ("status",)


@admin.register(LoanMonthSnapshot)
class LoanMonthSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("month_end", "loan", "branch", "risk_class", "outstanding_principal")
    raw_id_fields = ("loan", "branch", "borrower", "officer")
