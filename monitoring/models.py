"""Close-of-day runs, early warnings and classification changes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from loans.history import AuditedHistoricalRecords
from loans.models import Loan, Product, RiskClass


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
    # The loan's branch, copied so that a branch's queue and its counts read
    # the warnings alone instead of joining every active warning to its loan.
    # The close-of-day run keeps it equal to the loan's branch.
    branch = models.ForeignKey(
        "loans.Branch", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # The loan's credit officer, copied for the same reason: a branch
    # manager's dashboard counts the branch's warnings per officer from the
    # branch index, which carries it. The run keeps it equal to the loan's.
    officer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
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
        db_index=False,
    )
    deadline = models.DateField(_("deadline"), null=True, blank=True)
    escalated_at = models.DateTimeField(_("escalated at"), null=True, blank=True)
    closed_at = models.DateTimeField(_("closed at"), null=True, blank=True)
    closing_reason = models.CharField(_("closing reason"), max_length=255, blank=True)
    # Not indexed: nothing looks warnings up by run, and each index costs the
    # close-of-day run a write for every warning it opens.
    created_by_run = models.ForeignKey(
        JobRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    history = AuditedHistoricalRecords()

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
        # Every index here costs the close-of-day run a write for each warning
        # it opens, so each one serves a page. The severity counts of the queue
        # read the branch index, whose entries are exactly the active warnings.
        # It also carries the family, first-seen date and officer, so the
        # dashboards count active warnings by family, severity and age, and a
        # branch's by officer, from it.
        indexes = [
            models.Index(
                fields=["assigned_to"],
                condition=Q(assigned_to__isnull=False),
                name="warning_assigned_idx",
            ),
            models.Index(
                fields=["branch", "severity"],
                include=["family", "first_seen_on", "officer"],
                condition=Q(status__in=["open", "acknowledged", "in_progress"]),
                name="warning_active_branch_cover",
            ),
            # The warning queue's first page in its two sort orders, read from
            # the index (migration 0007 explains the severity rank).
            models.Index(
                models.Case(
                    models.When(severity="red", then=models.Value(3)),
                    models.When(severity="orange", then=models.Value(2)),
                    models.When(severity="yellow", then=models.Value(1)),
                    default=models.Value(0),
                    output_field=models.IntegerField(),
                ).desc(),
                models.F("first_seen_on"),
                models.F("id"),
                condition=Q(status__in=["open", "acknowledged", "in_progress"]),
                name="warning_queue_severity_idx",
            ),
            models.Index(
                fields=["first_seen_on", "id"],
                condition=Q(status__in=["open", "acknowledged", "in_progress"]),
                name="warning_queue_first_seen_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule_code} on {self.loan_id}"

    def save(self, *args, **kwargs) -> None:
        if self.loan_id is not None:
            if self.branch_id is None:
                self.branch_id = self.loan.branch_id
            if self._state.adding and self.officer_id is None:
                self.officer_id = self.loan.officer_id
        super().save(*args, **kwargs)


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
    ratified_at = models.DateTimeField(_("ratified at"), null=True, blank=True)
    ratified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    # A database default, so the close-of-day run's set-wise inserts need not name it.
    ratification_comment = models.TextField(_("ratification comment"), blank=True, db_default="")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        ordering = ["loan", "-as_of", "-id"]
        verbose_name = _("classification change")
        verbose_name_plural = _("classification changes")
        indexes = [
            models.Index(fields=["loan", "as_of"]),
            # The committee's ratification list and its count.
            models.Index(
                fields=["as_of"],
                condition=Q(source="floor", ratified=False),
                name="change_unratified_floor_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loan_id} {self.previous_class}->{self.new_class} {self.as_of}"


class WarningRule(models.Model):
    """The administrator's settings of one early-warning rule defined in code."""

    code = models.CharField(_("code"), max_length=40, unique=True)
    family = models.CharField(_("family"), max_length=20, choices=WarningFamily.choices)
    severity = models.CharField(_("severity"), max_length=10, choices=Severity.choices)
    description = models.CharField(_("description"), max_length=255)
    enabled = models.BooleanField(_("enabled"), default=True)
    thresholds = models.JSONField(_("thresholds"), default=dict, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["family", "code"]
        verbose_name = _("warning rule")
        verbose_name_plural = _("warning rules")

    def __str__(self) -> str:
        return self.code


class SeverityDeadline(models.Model):
    """Days a warning of a severity may stay unresolved before it is overdue."""

    severity = models.CharField(_("severity"), max_length=10, choices=Severity.choices, unique=True)
    days = models.PositiveSmallIntegerField(_("days to resolve"))
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["days"]
        verbose_name = _("warning deadline")
        verbose_name_plural = _("warning deadlines")

    def __str__(self) -> str:
        return f"{self.severity}: {self.days}"


class ActionKind(models.TextChoices):
    ACKNOWLEDGE = "acknowledge", _("Acknowledged")
    ASSIGN = "assign", _("Assigned")
    START = "start", _("Work started")
    CONTACT_BORROWER = "contact_borrower", _("Contacted the borrower")
    SPECIAL_INSPECTION = "special_inspection", _("Requested a special inspection")
    DEMAND_COLLATERAL = "demand_collateral", _("Demanded more collateral")
    FREEZE_LIMITS = "freeze_limits", _("Froze undrawn limits")
    ACCELERATE = "accelerate", _("Accelerated the loan")
    PROPOSE_RESTRUCTURING = "propose_restructuring", _("Proposed restructuring")
    LEGAL_ACTION = "legal_action", _("Took legal action")
    NOTE = "note", _("Note")
    ESCALATE = "escalate", _("Escalated")
    RESOLVE = "resolve", _("Resolved")
    DISMISS = "dismiss", _("Dismissed")

    @classmethod
    def disposals(cls) -> list[str]:
        return [
            cls.CONTACT_BORROWER,
            cls.SPECIAL_INSPECTION,
            cls.DEMAND_COLLATERAL,
            cls.FREEZE_LIMITS,
            cls.ACCELERATE,
            cls.PROPOSE_RESTRUCTURING,
            cls.LEGAL_ACTION,
            cls.NOTE,
        ]


class WarningAction(models.Model):
    """One step in a warning's timeline: who did what, when, and why."""

    warning = models.ForeignKey(EarlyWarning, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(_("action"), max_length=30, choices=ActionKind.choices)
    note = models.TextField(_("note"), blank=True)
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty for steps taken by the close-of-day run."),
    )
    performed_at = models.DateTimeField(_("performed at"))
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["warning", "performed_at", "id"]
        verbose_name = _("warning action")
        verbose_name_plural = _("warning actions")

    def __str__(self) -> str:
        return f"{self.kind} on {self.warning_id}"


class SignalKind(models.TextChoices):
    LITIGATION = "litigation", _("Litigation")
    ENFORCEMENT = "enforcement", _("Enforcement")
    TAX_ARREARS = "tax_arrears", _("Tax arrears")
    KEY_PERSON_LEAVING = "key_person_leaving", _("Key person leaving")
    NEGATIVE_NEWS = "negative_news", _("Negative news")
    PRODUCTION_HALT = "production_halt", _("Production halt")


class ExternalSignal(models.Model):
    """A fact about a borrower recorded by staff, such as litigation or tax arrears."""

    borrower = models.ForeignKey(
        "loans.Borrower", on_delete=models.CASCADE, related_name="external_signals"
    )
    kind = models.CharField(_("kind"), max_length=30, choices=SignalKind.choices)
    description = models.TextField(_("description"))
    observed_on = models.DateField(_("observed on"))
    ended_on = models.DateField(
        _("ended on"), null=True, blank=True, help_text=_("Empty while the signal applies.")
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    recorded_at = models.DateTimeField(_("recorded at"), auto_now_add=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["-observed_on"]
        verbose_name = _("external signal")
        verbose_name_plural = _("external signals")
        constraints = [
            models.CheckConstraint(
                condition=Q(ended_on__isnull=True) | Q(ended_on__gte=models.F("observed_on")),
                name="signal_ends_after_observed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.borrower_id} {self.observed_on}"


class WatchedIndustry(models.Model):
    """An industry code prefix on the watch list (NAICS "4411" covers 441110...)."""

    code_prefix = models.CharField(_("industry code prefix"), max_length=10, unique=True)
    reason = models.CharField(_("reason"), max_length=255)
    active = models.BooleanField(_("active"), default=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["code_prefix"]
        verbose_name = _("watched industry")
        verbose_name_plural = _("watched industries")

    def __str__(self) -> str:
        return self.code_prefix


class Notification(models.Model):
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    warning = models.ForeignKey(
        EarlyWarning, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    message = models.CharField(_("message"), max_length=500)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    read_at = models.DateTimeField(_("read at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("notification")
        verbose_name_plural = _("notifications")
        indexes = [models.Index(fields=["recipient", "read_at"])]

    def __str__(self) -> str:
        return self.message


class NetworkKind(models.TextChoices):
    CIRCLE = "circle", _("Guarantee circle")
    CHAIN = "chain", _("Guarantee chain with a non-performing member")


class GuaranteeNetworkMember(models.Model):
    """An open loan of a borrower in a guarantee circle, or on a chain with a non-performing member.

    Written by the last close-of-day run only (`refresh_guarantee_network`),
    which replaces every row: one per open loan of each member borrower and
    kind, so that the rules read a chunk's rows by loan id. A member borrower
    without open loans has no row.
    """

    as_of = models.DateField(_("as of"))
    # The run rewrites every row from the loans it reads in the same
    # transaction, so the keys need no database constraint. Their checks
    # added 3.0 s to an insert of 4.6 s for 200,000 rows (PostgreSQL 15, two
    # shared cores). Django still cascades deletes. The unique constraint's
    # index, which starts with the loan, serves loan lookups.
    loan = models.ForeignKey(
        Loan,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("loan"),
    )
    borrower = models.ForeignKey(
        "loans.Borrower",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("borrower"),
    )
    kind = models.CharField(_("kind"), max_length=10, choices=NetworkKind.choices)
    circle_id = models.BigIntegerField(
        _("circle"),
        null=True,
        blank=True,
        help_text=_("Smallest borrower id of the circle; empty for a chain."),
    )
    member_count = models.PositiveIntegerField(_("borrowers in the circle"), null=True, blank=True)
    chain_length = models.PositiveIntegerField(
        _("chain length"),
        null=True,
        blank=True,
        help_text=_("Borrowers on the longest chain found through this borrower."),
    )
    npl_member_count = models.PositiveIntegerField(_("non-performing members"), default=0)
    npl_members = models.JSONField(
        _("non-performing member ids"),
        default=list,
        blank=True,
        help_text=_("Borrower ids, the smallest first, at most 20 of them."),
    )

    class Meta:
        ordering = ["kind", "loan"]
        verbose_name = _("guarantee network member")
        verbose_name_plural = _("guarantee network members")
        constraints = [
            # Its index serves the network rules' join on (loan, kind).
            models.UniqueConstraint(fields=["loan", "kind"], name="network_member_unique_per_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.borrower_id} {self.kind} {self.as_of}"


class GuarantorFlag(models.TextChoices):
    OVERDUE = "overdue", _("Guarantor past due")
    NON_PERFORMING = "non_performing", _("Guarantor non-performing")
    OVER_EXTENDED = "over_extended", _("Guarantor over-extended")


class FlaggedGuarantee(models.Model):
    """The worst guarantor of an open loan for one guarantor rule, as of the last run.

    Written by `refresh_guarantee_network` for the whole book, which
    replaces every row, and read per chunk by the guarantor rules of phase
    2. The figures are the guarantor's. Days past due and risk class are the
    worst over its own open loans when it is also a borrower, and the total
    is what it guarantees on open loans.
    """

    # Keys without database constraints, as in GuaranteeNetworkMember.
    loan = models.ForeignKey(
        Loan,
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
        verbose_name=_("loan"),
    )
    reason = models.CharField(_("reason"), max_length=20, choices=GuarantorFlag.choices)
    as_of = models.DateField(_("as of"))
    guarantor = models.ForeignKey(
        "loans.Guarantor",
        on_delete=models.CASCADE,
        related_name="+",
        db_constraint=False,
        verbose_name=_("guarantor"),
    )
    days_past_due = models.PositiveIntegerField(_("guarantor's days past due"), null=True)
    risk_class = models.PositiveSmallIntegerField(
        _("guarantor's risk class"), choices=RiskClass.choices, null=True
    )
    total_guaranteed = models.DecimalField(
        _("guarantor's total guaranteed"),
        max_digits=18,
        decimal_places=2,
        help_text=_("Amounts, or percentages of the outstanding principal, on open loans."),
    )
    net_worth = models.DecimalField(
        _("guarantor's net worth"), max_digits=18, decimal_places=2, null=True
    )
    flagged_guarantors = models.PositiveIntegerField(
        _("guarantors flagged"), help_text=_("Guarantors of the loan flagged for this reason.")
    )

    class Meta:
        ordering = ["loan", "reason"]
        verbose_name = _("flagged guarantee")
        verbose_name_plural = _("flagged guarantees")
        constraints = [
            # Its index serves the guarantor rules' join on (loan, reason).
            models.UniqueConstraint(
                fields=["loan", "reason"], name="flagged_guarantee_unique_per_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loan_id} {self.reason} {self.as_of}"


# Post-loan plans and inspections (cycle steps 1 and 2 of the product brief).


class InspectionPolicy(models.Model):
    """The bank's inspection policy; one row, edited by administrators.

    Days to the first inspection are per product (`FirstInspectionTerm`).
    Collateral revaluation intervals are the thresholds of the
    COL_VALUATION_STALE warning rule, so the plan and the warning use one
    setting.
    """

    normal_months = models.PositiveSmallIntegerField(
        _("routine interval for normal loans (months)"), default=6
    )
    large_loan_amount = models.DecimalField(
        _("large loan amount"),
        max_digits=18,
        decimal_places=2,
        default=1_000_000,
        help_text=_("Normal loans with a principal above this amount use the large-loan interval."),
    )
    large_loan_months = models.PositiveSmallIntegerField(
        _("routine interval for large normal loans (months)"), default=3
    )
    special_mention_months = models.PositiveSmallIntegerField(
        _("routine interval for special mention (months)"), default=3
    )
    non_performing_months = models.PositiveSmallIntegerField(
        _("routine interval for substandard, doubtful and loss (months)"), default=1
    )
    special_inspection_days = models.PositiveSmallIntegerField(
        _("days to a special inspection after a red warning"), default=7
    )
    statement_due_days = models.PositiveSmallIntegerField(
        _("days after the fiscal year end for the financial statements"), default=120
    )
    lookahead_days = models.PositiveSmallIntegerField(
        _("days ahead the close-of-day run creates inspections"),
        default=30,
        help_text=_(
            "An inspection appears in the officer's tasks this many days before it is due."
        ),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    history = AuditedHistoricalRecords()

    class Meta:
        verbose_name = _("inspection policy")
        verbose_name_plural = _("inspection policy")

    def __str__(self) -> str:
        return str(_("Inspection policy"))

    @classmethod
    def current(cls) -> InspectionPolicy:
        policy = cls.objects.order_by("pk").first()
        return policy if policy is not None else cls.objects.create()


class FirstInspectionTerm(models.Model):
    """Days from disbursement to the first inspection, for one product."""

    product = models.CharField(_("product"), max_length=20, choices=Product.choices, unique=True)
    days = models.PositiveSmallIntegerField(_("days to the first inspection"))
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["product"]
        verbose_name = _("first inspection term")
        verbose_name_plural = _("first inspection terms")

    def __str__(self) -> str:
        return f"{self.product}: {self.days}"


class PostLoanPlan(models.Model):
    """A loan's post-loan plan, derived from the policy; its history keeps every change."""

    # A plan is derived data: the run recomputes it from the loan and the
    # policy every night. Its keys have no database constraints, so the
    # first derivation of 800,000 plans skips 1,600,000 key checks at commit
    # (benchmarks/inspections.py). Django still cascades a deleted loan to
    # its plan and sets a deleted officer to NULL.
    loan = models.OneToOneField(
        Loan, on_delete=models.CASCADE, related_name="plan", db_constraint=False
    )
    # The loan's officer, copied by the run from the loan.
    officer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    starts_on = models.DateField(
        _("plan starts on"),
        help_text=_(
            "Disbursement date, or the business date the plan was first derived for a loan"
            " disbursed before the bank used Postloan."
        ),
    )
    derived_for_class = models.PositiveSmallIntegerField(
        _("derived for class"), choices=RiskClass.choices
    )
    first_inspection_due = models.DateField(_("first inspection due"), null=True, blank=True)
    routine_interval_months = models.PositiveSmallIntegerField(_("routine interval (months)"))
    next_routine_due = models.DateField(_("next routine inspection due"))
    next_revaluation_due = models.DateField(
        _("next collateral revaluation due"), null=True, blank=True
    )
    next_statement_due = models.DateField(_("next financial statements due"))
    updated_on = models.DateField(_("updated on"))
    # As for inspections: the run writes a history row per new or changed
    # plan, and nothing reads the history by loan or officer.
    history = AuditedHistoricalRecords(no_db_index=["loan", "officer"], written_by_run=True)

    class Meta:
        verbose_name = _("post-loan plan")
        verbose_name_plural = _("post-loan plans")

    def __str__(self) -> str:
        return f"plan of {self.loan_id}"


class InspectionKind(models.TextChoices):
    FIRST = "first", _("First inspection (fund use)")
    ROUTINE = "routine", _("Routine inspection")
    SPECIAL = "special", _("Special inspection")


class InspectionStatus(models.TextChoices):
    SCHEDULED = "scheduled", _("Scheduled")
    DRAFT = "draft", _("Draft")
    SUBMITTED = "submitted", _("Submitted")
    RETURNED = "returned", _("Returned")
    APPROVED = "approved", _("Approved")
    # Set by the close-of-day run on a scheduled inspection of a loan that was
    # paid off or written off before anyone started it.
    CANCELLED = "cancelled", _("Cancelled")

    @classmethod
    def pending(cls) -> list[str]:
        """Statuses of an inspection the officer still has to carry out or submit."""
        return [cls.SCHEDULED, cls.DRAFT, cls.RETURNED]


PENDING_INSPECTION = Q(status__in=["scheduled", "draft", "returned"])


class Inspection(models.Model):
    """A dated inspection, scheduled by the plan or a red warning and logged by the officer."""

    # Indexed by the unique constraint on loan, kind and due date, which it leads.
    # On PostgreSQL, statement-level triggers check the loan and the warning
    # of new inspections, and reject deleting a loan or warning that an
    # inspection names (migration 0026). They replace foreign keys, whose
    # check at commit locked each loan and warning row of the run's new
    # inspections: the first lock on a page wrote the whole page to the WAL,
    # a quarter of a first run's WAL. That run over 1,000,000 loans took
    # 12.5 to 12.8 s with the triggers, 13.9 to 15.1 s with the keys
    # (benchmarks/inspections.py).
    loan = models.ForeignKey(
        Loan,
        on_delete=models.CASCADE,
        related_name="inspections",
        db_index=False,
        db_constraint=False,
    )
    # The loan's branch and officer, copied so that the task list and the
    # compliance page read inspections alone. The loan has the database
    # constraints on both, so the copies and the run have none of their own:
    # each would cost a key check at commit for every inspection the run
    # creates. Django still applies PROTECT and SET_NULL.
    branch = models.ForeignKey(
        "loans.Branch",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    officer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="inspections",
        db_index=False,
        db_constraint=False,
    )
    kind = models.CharField(_("kind"), max_length=10, choices=InspectionKind.choices)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=InspectionStatus.choices,
        default=InspectionStatus.SCHEDULED,
    )
    due_date = models.DateField(_("due date"))
    overdue_since = models.DateField(
        _("overdue since"),
        null=True,
        blank=True,
        help_text=_("Set by the close-of-day run once the due date has passed unsubmitted."),
    )
    # The red warning a special inspection follows. The triggers described at
    # `loan` check it in the same way.
    trigger_warning = models.ForeignKey(
        EarlyWarning,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="special_inspections",
        db_index=False,
        db_constraint=False,
    )
    created_by_run = models.ForeignKey(
        JobRun,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    inspected_on = models.DateField(_("inspection date"), null=True, blank=True)
    place = models.CharField(_("place"), max_length=255, blank=True)
    people_met = models.CharField(_("people met"), max_length=500, blank=True)
    findings = models.TextField(_("findings"), blank=True)
    risk_opinion = models.TextField(_("risk opinion"), blank=True)
    suggested_class = models.PositiveSmallIntegerField(
        _("suggested class"), choices=RiskClass.choices, null=True, blank=True
    )
    adverse = models.BooleanField(
        _("adverse findings"),
        default=False,
        help_text=_("Set on submission: a checklist answer of no, or a worse suggested class."),
    )
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    # Indexed only where set (see Meta.indexes): the run creates inspections
    # without them, and an index entry for each would cost it a write.
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    reviewed_at = models.DateTimeField(_("reviewed at"), null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    review_comment = models.TextField(_("review comment"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    # The close-of-day run writes a history row for each inspection it
    # creates. Nothing reads the history by these copied keys, so they get no
    # index, which the run would pay for on every row.
    history = AuditedHistoricalRecords(
        no_db_index=[
            "loan",
            "branch",
            "officer",
            "trigger_warning",
            "created_by_run",
            "submitted_by",
            "reviewed_by",
        ],
        written_by_run=True,
    )

    class Meta:
        ordering = ["due_date", "id"]
        verbose_name = _("inspection")
        verbose_name_plural = _("inspections")
        constraints = [
            # The close-of-day run inserts with ON CONFLICT on these, so two
            # runs on one date never create an inspection twice.
            models.UniqueConstraint(
                fields=["loan", "kind", "due_date"], name="inspection_once_per_loan_kind_due"
            ),
            models.UniqueConstraint(
                fields=["loan", "kind"],
                condition=Q(status__in=["scheduled", "draft", "returned"]),
                name="inspection_one_pending_per_kind",
            ),
        ]
        indexes = [
            # My tasks: an officer's pending inspections by due date.
            models.Index(
                fields=["officer", "due_date"],
                condition=Q(status__in=["scheduled", "draft", "returned"]),
                name="inspection_pending_officer_idx",
            ),
            # Branch compliance: inspections of a branch by due date, with what
            # the counts per officer read, so they come from the index alone.
            models.Index(
                fields=["branch", "due_date"],
                include=["officer", "status", "inspected_on"],
                name="inspection_branch_cover_idx",
            ),
            # The foreign-key check when a warning is deleted looks inspections up
            # by their trigger; without it each deleted warning scans the table.
            models.Index(
                fields=["trigger_warning"],
                condition=Q(trigger_warning__isnull=False),
                name="inspection_trigger_warning_idx",
            ),
            # Deleting a user looks their submissions and reviews up (PROTECT).
            models.Index(
                fields=["submitted_by"],
                condition=Q(submitted_by__isnull=False),
                name="inspection_submitted_by_idx",
            ),
            models.Index(
                fields=["reviewed_by"],
                condition=Q(reviewed_by__isnull=False),
                name="inspection_reviewed_by_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} inspection of {self.loan_id} due {self.due_date}"

    def save(self, *args, **kwargs) -> None:
        if self.branch_id is None and self.loan_id is not None:
            self.branch_id = self.loan.branch_id
        super().save(*args, **kwargs)

    @property
    def is_editable(self) -> bool:
        return self.status in InspectionStatus.pending()


class ChecklistItem(models.TextChoices):
    BUSINESS_OPERATING = "business_operating", _("Business operating normally")
    FUND_USE = "fund_use", _("Funds used as agreed")
    COLLATERAL = "collateral", _("Collateral present and in condition")
    GUARANTOR = "guarantor", _("Guarantor status unchanged")
    MANAGEMENT = "management", _("No change in management, ownership or legal standing")
    FINANCIAL_POSITION = "financial_position", _("Financial position sound")
    REPAYMENT_SOURCE = "repayment_source", _("Repayment source intact")


class ChecklistAnswer(models.TextChoices):
    YES = "yes", _("Yes")
    NO = "no", _("No")
    NOT_APPLICABLE = "na", _("Not applicable")


class InspectionCheck(models.Model):
    """One answered item of an inspection's checklist."""

    inspection = models.ForeignKey(Inspection, on_delete=models.CASCADE, related_name="checks")
    item = models.CharField(_("item"), max_length=30, choices=ChecklistItem.choices)
    answer = models.CharField(_("answer"), max_length=3, choices=ChecklistAnswer.choices)
    comment = models.TextField(_("comment"), blank=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["inspection", "id"]
        verbose_name = _("checklist answer")
        verbose_name_plural = _("checklist answers")
        constraints = [
            models.UniqueConstraint(fields=["inspection", "item"], name="inspection_item_once"),
            models.CheckConstraint(
                condition=~Q(answer="no") | ~Q(comment=""), name="inspection_no_needs_comment"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.item}: {self.answer}"


class ProposalSource(models.TextChoices):
    MANUAL = "manual", _("Proposed by hand")
    INSPECTION = "inspection", _("Inspection")
    RUN = "run", _("Close-of-day run")


class ProposalStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    WITHDRAWN = "withdrawn", _("Withdrawn")


class ClassificationProposal(models.Model):
    """A proposed change of a loan's risk class, awaiting the committee's decision."""

    loan = models.ForeignKey(
        Loan, on_delete=models.CASCADE, related_name="classification_proposals"
    )
    current_class = models.PositiveSmallIntegerField(_("current class"), choices=RiskClass.choices)
    proposed_class = models.PositiveSmallIntegerField(
        _("proposed class"), choices=RiskClass.choices
    )
    source = models.CharField(_("source"), max_length=20, choices=ProposalSource.choices)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Empty for proposals of the close-of-day run."),
    )
    inspection = models.ForeignKey(
        Inspection,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="proposals",
        db_index=False,
    )
    created_by_run = models.ForeignKey(
        JobRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )
    reasons = models.TextField(_("reasons"))
    position_improved = models.BooleanField(
        _("the debtor's position has improved"),
        default=False,
        help_text=_("The recorded judgement that leaving non-performing requires."),
    )
    evidence = models.JSONField(
        _("evidence"),
        default=dict,
        blank=True,
        help_text=_("Facts at the time of the proposal: days past due, warnings, class floor."),
    )
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=ProposalStatus.choices,
        default=ProposalStatus.PENDING,
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decision_comment = models.TextField(_("decision"), blank=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("classification proposal")
        verbose_name_plural = _("classification proposals")
        constraints = [
            models.CheckConstraint(
                condition=~Q(proposed_class=models.F("current_class")),
                name="proposal_changes_class",
            ),
        ]
        indexes = [
            models.Index(
                fields=["loan"], condition=Q(status="pending"), name="proposal_pending_loan_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loan_id} {self.current_class}->{self.proposed_class} {self.status}"


class CommitteePolicy(models.Model):
    """The committee's voting rule; one row, edited by administrators."""

    quorum = models.PositiveSmallIntegerField(
        _("quorum"),
        default=2,
        help_text=_("Votes of one kind (approve or reject) that decide a proposal."),
    )
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    history = AuditedHistoricalRecords()

    class Meta:
        verbose_name = _("committee policy")
        verbose_name_plural = _("committee policy")
        constraints = [
            models.CheckConstraint(condition=Q(quorum__gte=1), name="committee_quorum_positive"),
        ]

    def __str__(self) -> str:
        return str(_("Committee policy"))

    @classmethod
    def current(cls) -> CommitteePolicy:
        policy = cls.objects.order_by("pk").first()
        return policy if policy is not None else cls.objects.create()


class VoteDecision(models.TextChoices):
    APPROVE = "approve", _("Approve")
    REJECT = "reject", _("Reject")


class ProposalVote(models.Model):
    """One committee member's vote on a classification proposal."""

    proposal = models.ForeignKey(
        ClassificationProposal, on_delete=models.CASCADE, related_name="votes"
    )
    member = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(_("decision"), max_length=10, choices=VoteDecision.choices)
    comment = models.TextField(_("comment"))
    cast_at = models.DateTimeField(_("cast at"), auto_now_add=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["proposal", "cast_at", "id"]
        verbose_name = _("vote")
        verbose_name_plural = _("votes")
        constraints = [
            models.UniqueConstraint(fields=["proposal", "member"], name="vote_once_per_member"),
        ]

    def __str__(self) -> str:
        return f"{self.member_id} {self.decision} {self.proposal_id}"


class Restructuring(models.Model):
    """A restructuring of a loan, which starts an observation period for its class.

    The observation period runs from the first repayment date after the
    change for at least two repayment periods and at least one year.
    """

    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="restructurings")
    restructured_on = models.DateField(_("restructured on"))
    class_before = models.PositiveSmallIntegerField(
        _("class before restructuring"), choices=RiskClass.choices
    )
    first_repayment_on = models.DateField(_("first repayment date after the change"))
    observation_ends_on = models.DateField(_("observation period ends on"))
    reason = models.TextField(_("reason"), blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["loan", "-restructured_on", "-id"]
        verbose_name = _("restructuring")
        verbose_name_plural = _("restructurings")
        constraints = [
            models.CheckConstraint(
                condition=Q(observation_ends_on__gte=models.F("first_repayment_on"))
                & Q(first_repayment_on__gte=models.F("restructured_on")),
                name="restructuring_dates_in_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loan_id} restructured {self.restructured_on}"


class MeetingStatus(models.TextChoices):
    PLANNED = "planned", _("Planned")
    HELD = "held", _("Held")
    CLOSED = "closed", _("Minutes closed")


class ReviewMeeting(models.Model):
    """A post-loan review meeting with its agenda, decisions and minutes."""

    title = models.CharField(_("title"), max_length=200)
    held_on = models.DateField(_("date"))
    location = models.CharField(_("location"), max_length=200, blank=True)
    attendees = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="review_meetings", blank=True
    )
    status = models.CharField(
        _("status"), max_length=10, choices=MeetingStatus.choices, default=MeetingStatus.PLANNED
    )
    notes = models.TextField(_("notes"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    history = AuditedHistoricalRecords(m2m_fields=[attendees])

    class Meta:
        ordering = ["-held_on", "-id"]
        verbose_name = _("review meeting")
        verbose_name_plural = _("review meetings")

    def __str__(self) -> str:
        return f"{self.title} {self.held_on}"


class AgendaItemKind(models.TextChoices):
    PROPOSAL = "proposal", _("Classification proposal")
    WARNING = "warning", _("Red warning")
    NON_PERFORMING = "non_performing", _("Non-performing loan")
    OTHER = "other", _("Other")


class ItemDecision(models.TextChoices):
    PENDING = "", _("Not yet decided")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")
    NOTED = "noted", _("Noted")
    ACTION = "action", _("Action assigned")
    DEFERRED = "deferred", _("Deferred")


class AgendaItem(models.Model):
    """One item of a meeting's agenda, with the decision taken on it."""

    meeting = models.ForeignKey(ReviewMeeting, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField(_("position"))
    kind = models.CharField(_("kind"), max_length=20, choices=AgendaItemKind.choices)
    title = models.CharField(_("title"), max_length=255)
    loan = models.ForeignKey(
        Loan, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    proposal = models.ForeignKey(
        ClassificationProposal,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="agenda_items",
    )
    warning = models.ForeignKey(
        EarlyWarning, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decision = models.CharField(
        _("decision"), max_length=10, choices=ItemDecision.choices, blank=True, default=""
    )
    notes = models.TextField(_("notes"), blank=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["meeting", "position", "id"]
        verbose_name = _("agenda item")
        verbose_name_plural = _("agenda items")
        constraints = [
            models.UniqueConstraint(fields=["meeting", "position"], name="agenda_position_once"),
        ]

    def __str__(self) -> str:
        return f"{self.meeting_id}#{self.position} {self.title}"
