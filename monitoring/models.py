"""Close-of-day runs, early warnings and classification changes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from loans.models import Loan, RiskClass


class JobStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    ABANDONED = "abandoned", _("Abandoned")


class JobRun(models.Model):
    """One close-of-day run for one business date."""

    kind = models.CharField(_("kind"), max_length=30, default="close_of_day")
    as_of = models.DateField(_("as of"))
    status = models.CharField(
        _("status"), max_length=10, choices=JobStatus.choices, default=JobStatus.RUNNING
    )
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    chunk_count = models.PositiveIntegerField(_("chunks"), default=0)
    chunks_done = models.PositiveIntegerField(_("chunks done"), default=0)
    counts = models.JSONField(_("counts per step"), default=dict, blank=True)
    errors = models.TextField(_("errors"), blank=True)
    triggered_by = models.CharField(_("triggered by"), max_length=100, blank=True)

    class Meta:
        ordering = ["-started_at"]
        verbose_name = _("job run")
        verbose_name_plural = _("job runs")
        indexes = [models.Index(fields=["kind", "status", "-as_of"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.as_of} {self.status}"

    @property
    def duration(self):
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class Severity(models.TextChoices):
    RED = "red", _("Red")
    ORANGE = "orange", _("Orange")
    YELLOW = "yellow", _("Yellow")


class WarningFamily(models.TextChoices):
    REPAYMENT = "repayment", _("Repayment")
    CAPITAL_ACCOUNT = "capital_account", _("Capital account")
    FINANCIAL = "financial", _("Financial")
    COLLATERAL = "collateral", _("Collateral")
    GUARANTOR = "guarantor", _("Guarantor")
    INSPECTION = "inspection", _("Inspection")
    EXTERNAL = "external", _("External and manual")


class WarningStatus(models.TextChoices):
    OPEN = "open", _("Open")
    ACKNOWLEDGED = "acknowledged", _("Acknowledged")
    IN_PROGRESS = "in_progress", _("In progress")
    RESOLVED = "resolved", _("Resolved")
    DISMISSED = "dismissed", _("Dismissed")

    @classmethod
    def active(cls) -> list[str]:
        return [cls.OPEN, cls.ACKNOWLEDGED, cls.IN_PROGRESS]


class EarlyWarning(models.Model):
    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="warnings")
    rule_code = models.CharField(_("rule"), max_length=40)
    family = models.CharField(_("family"), max_length=20, choices=WarningFamily.choices)
    severity = models.CharField(_("severity"), max_length=10, choices=Severity.choices)
    status = models.CharField(
        _("status"), max_length=15, choices=WarningStatus.choices, default=WarningStatus.OPEN
    )
    first_seen_on = models.DateField(_("first seen on"))
    last_seen_on = models.DateField(_("last seen on"))
    cleared_on = models.DateField(
        _("condition cleared on"),
        null=True,
        blank=True,
        help_text=_("First run date on which the rule no longer fired."),
    )
    evidence = models.JSONField(_("evidence"), default=dict)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_warnings",
    )
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closing_reason = models.CharField(_("closing reason"), max_length=255, blank=True)
    created_by_run = models.ForeignKey(
        JobRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["-last_seen_on", "id"]
        verbose_name = _("early warning")
        verbose_name_plural = _("early warnings")
        constraints = [
            models.UniqueConstraint(
                fields=["loan", "rule_code"],
                condition=Q(status__in=["open", "acknowledged", "in_progress"]),
                name="warning_one_active_per_loan_and_rule",
            ),
        ]
        indexes = [models.Index(fields=["status", "severity"])]

    def __str__(self) -> str:
        return f"{self.rule_code} on {self.loan_id}"


class ChangeSource(models.TextChoices):
    FLOOR = "floor", _("Objective floor (close-of-day run)")
    COMMITTEE = "committee", _("Committee decision")


class ClassificationChange(models.Model):
    """A change of a loan's risk class or IFRS 9 stage, with its reason."""

    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="classification_changes")
    as_of = models.DateField(_("as of"))
    previous_class = models.PositiveSmallIntegerField(
        _("previous class"), choices=RiskClass.choices
    )
    new_class = models.PositiveSmallIntegerField(_("new class"), choices=RiskClass.choices)
    previous_stage = models.PositiveSmallIntegerField(_("previous IFRS 9 stage"))
    new_stage = models.PositiveSmallIntegerField(_("new IFRS 9 stage"))
    reason_code = models.CharField(_("reason code"), max_length=40)
    reason = models.CharField(_("reason"), max_length=255)
    source = models.CharField(_("source"), max_length=20, choices=ChangeSource.choices)
    job_run = models.ForeignKey(
        JobRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="changes"
    )
    ratified = models.BooleanField(_("ratified by the committee"), default=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["loan", "-as_of", "-id"]
        verbose_name = _("classification change")
        verbose_name_plural = _("classification changes")
        indexes = [models.Index(fields=["loan", "as_of"])]
