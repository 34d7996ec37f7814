"""Month-end snapshots of the loan book and the monthly post-loan management reports."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.models import MONEY, ZERO, Ifrs9Stage, RiskClass


class LoanMonthSnapshot(models.Model):
    """A loan's class, stage, balance and arrears at a month end, written by close-of-day.

    Reports read these rows, so a past month's figures never depend on
    reconstructing history from later data. The references have no database
    constraints: the rows are copies written set-wise for the whole book, and
    checking five foreign keys per row at commit cost more than the insert.
    """

    month_end = models.DateField(_("month end"))
    loan = models.ForeignKey(
        "loans.Loan",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    branch = models.ForeignKey(
        "loans.Branch",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    borrower = models.ForeignKey(
        "loans.Borrower",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    officer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    product = models.CharField(_("product"), max_length=20)
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(_("status"), max_length=20)
    is_open = models.BooleanField(_("open"))
    risk_class = models.PositiveSmallIntegerField(_("risk class"), choices=RiskClass.choices)
    ifrs9_stage = models.PositiveSmallIntegerField(_("IFRS 9 stage"), choices=Ifrs9Stage.choices)
    outstanding_principal = models.DecimalField(_("outstanding principal"), **MONEY)
    overdue_principal = models.DecimalField(_("overdue principal"), **MONEY, default=ZERO)
    overdue_interest = models.DecimalField(_("overdue interest"), **MONEY, default=ZERO)
    days_past_due = models.PositiveIntegerField(_("days past due"))
    dpd_bucket = models.CharField(_("DPD bucket"), max_length=10)
    specific_provision = models.DecimalField(_("specific provision"), **MONEY, default=ZERO)
    general_provision = models.DecimalField(_("general provision"), **MONEY, default=ZERO)
    created_by_run = models.ForeignKey(
        "monitoring.JobRun",
        on_delete=models.DO_NOTHING,
        null=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        verbose_name = _("loan month-end snapshot")
        verbose_name_plural = _("loan month-end snapshots")
        constraints = [
            models.UniqueConstraint(fields=["month_end", "loan"], name="snapshot_once_per_month"),
        ]
        indexes = [models.Index(fields=["month_end", "branch"], name="snapshot_month_branch_idx")]

    def __str__(self) -> str:
        return f"{self.loan_id} at {self.month_end}"


class ReportStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")


def report_file_path(report: MonthlyReport, filename: str) -> str:
    scope = f"branch-{report.branch_id}" if report.branch_id else "bank"
    return f"reports/{report.month:%Y-%m}/{scope}/v{report.version}/{filename}"


class MonthlyReport(models.Model):
    """One version of the monthly post-loan report of the bank or a branch.

    The figures are computed once and stored; a regeneration is a new
    version and the earlier ones are kept unchanged.
    """

    month = models.DateField(_("month"), help_text=_("The first day of the reported month."))
    branch = models.ForeignKey(
        "loans.Branch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty for the report of the whole bank."),
    )
    version = models.PositiveIntegerField(_("version"), default=1)
    status = models.CharField(
        _("status"), max_length=10, choices=ReportStatus.choices, default=ReportStatus.QUEUED
    )
    progress = models.PositiveSmallIntegerField(_("progress (%)"), default=0)
    progress_step = models.CharField(_("current step"), max_length=100, blank=True)
    figures = models.JSONField(_("figures"), default=dict, blank=True)
    pdf = models.FileField(_("PDF"), upload_to=report_file_path, blank=True, max_length=255)
    xlsx = models.FileField(_("Excel"), upload_to=report_file_path, blank=True, max_length=255)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty for the report the schedule creates on the first day of the month."),
    )
    requested_at = models.DateTimeField(_("requested at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    error = models.TextField(_("error"), blank=True)

    class Meta:
        ordering = ["-month", "branch", "-version"]
        verbose_name = _("monthly report")
        verbose_name_plural = _("monthly reports")
        constraints = [
            models.UniqueConstraint(
                fields=["month", "branch", "version"], name="report_version_once"
            ),
            models.UniqueConstraint(
                fields=["month", "version"],
                condition=Q(branch__isnull=True),
                name="bank_report_version_once",
            ),
        ]

    def __str__(self) -> str:
        scope = self.branch_id or "bank"
        return f"{self.month:%Y-%m} {scope} v{self.version}"


class PortfolioSummary(models.Model):
    """Open loans of one date, grouped as the dashboards read them.

    One row per branch, officer, risk class, IFRS 9 stage, DPD bucket,
    industry sector and product. Written by the close-of-day run
    (reports.summary), so that dashboards add up a few thousand rows
    instead of every open position. A date's rows are rebuilt whole, and
    the latest date and the month ends are kept.
    """

    as_of = models.DateField(_("as of"))
    branch = models.ForeignKey(
        "loans.Branch", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # Derived rows, rebuilt by every run, must not stop a user from being
    # deleted, so the officer is not a database foreign key. The next run's
    # rows no longer name a deleted officer.
    officer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    risk_class = models.PositiveSmallIntegerField(_("risk class"), choices=RiskClass.choices)
    ifrs9_stage = models.PositiveSmallIntegerField(_("IFRS 9 stage"), choices=Ifrs9Stage.choices)
    dpd_bucket = models.CharField(_("DPD bucket"), max_length=10)
    industry = models.CharField(
        _("industry"),
        max_length=2,
        blank=True,
        help_text=_("First two digits of the borrower's industry code (the NAICS sector)."),
    )
    product = models.CharField(_("product"), max_length=20)
    loans = models.PositiveIntegerField(_("loans"))
    balance = models.DecimalField(_("outstanding principal"), **MONEY)
    overdue_principal = models.DecimalField(_("overdue principal"), **MONEY)
    overdue_interest = models.DecimalField(_("overdue interest"), **MONEY)
    specific_provision = models.DecimalField(_("specific provision"), **MONEY)
    general_provision = models.DecimalField(_("general provision"), **MONEY)

    class Meta:
        verbose_name = _("portfolio summary row")
        verbose_name_plural = _("portfolio summary rows")
        # Two partial unique indexes, because a NULL officer never equals
        # another in a plain unique index on PostgreSQL or SQLite.
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "as_of",
                    "branch",
                    "officer",
                    "risk_class",
                    "ifrs9_stage",
                    "dpd_bucket",
                    "industry",
                    "product",
                ],
                condition=Q(officer__isnull=False),
                name="summary_group_once",
            ),
            models.UniqueConstraint(
                fields=[
                    "as_of",
                    "branch",
                    "risk_class",
                    "ifrs9_stage",
                    "dpd_bucket",
                    "industry",
                    "product",
                ],
                condition=Q(officer__isnull=True),
                name="summary_group_once_no_officer",
            ),
        ]
        # A date's rows for the whole book, a branch or one officer.
        indexes = [models.Index(fields=["as_of", "officer"], name="summary_date_officer_idx")]

    def __str__(self) -> str:
        return f"{self.as_of} branch {self.branch_id} officer {self.officer_id}"
