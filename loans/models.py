"""The loan book: branches, borrowers, loans, schedules, repayments, guarantees, collateral."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from .history import AuditedHistoricalRecords

MONEY = {"max_digits": 18, "decimal_places": 2}
ZERO = Decimal("0.00")

# ISO 4217 codes the book accepts; an import naming any other code is rejected.
CURRENCIES = (
    "USD",
    "EUR",
    "GBP",
    "CHF",
    "JPY",
    "CNY",
    "HKD",
    "SGD",
    "CAD",
    "AUD",
    "SEK",
    "NOK",
    "DKK",
    "PLN",
    "CZK",
    "HUF",
    "RON",
    "INR",
    "ZAR",
    "BRL",
)


class Branch(models.Model):
    code = models.CharField(_("code"), max_length=20, unique=True)
    name = models.CharField(_("name"), max_length=200)
    region = models.CharField(_("region"), max_length=100, blank=True)
    staff = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="branches", blank=True, verbose_name=_("staff")
    )
    history = AuditedHistoricalRecords(m2m_fields=[staff])

    class Meta:
        ordering = ["code"]
        verbose_name = _("branch")
        verbose_name_plural = _("branches")

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


class SizeClass(models.TextChoices):
    MICRO = "micro", _("Micro")
    SMALL = "small", _("Small")
    MEDIUM = "medium", _("Medium")


class Borrower(models.Model):
    registration_number = models.CharField(_("registration number"), max_length=50, unique=True)
    legal_name = models.CharField(_("legal name"), max_length=255)
    industry_code = models.CharField(_("industry code"), max_length=10, blank=True)
    size_class = models.CharField(_("size class"), max_length=10, choices=SizeClass.choices)
    region = models.CharField(_("region"), max_length=100, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=20, blank=True)
    employees = models.PositiveIntegerField(_("employees"), null=True, blank=True)
    annual_revenue = models.DecimalField(_("annual revenue"), **MONEY, null=True, blank=True)
    founded_on = models.DateField(_("date founded"), null=True, blank=True)
    is_new_business = models.BooleanField(_("new business"), null=True, blank=True)
    group_name = models.CharField(_("group"), max_length=200, blank=True)
    branch = models.ForeignKey(
        Branch, on_delete=models.PROTECT, related_name="borrowers", verbose_name=_("home branch")
    )
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["legal_name"]
        verbose_name = _("borrower")
        verbose_name_plural = _("borrowers")
        indexes = [models.Index(fields=["legal_name"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(annual_revenue__isnull=True) | Q(annual_revenue__gte=0),
                name="borrower_revenue_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return self.legal_name


class Product(models.TextChoices):
    WORKING_CAPITAL = "working_capital", _("Working capital")
    FIXED_ASSET = "fixed_asset", _("Fixed-asset")
    TRADE_FINANCE = "trade_finance", _("Trade finance")
    REVOLVING_LINE = "revolving_line", _("Revolving line")


class RepaymentMethod(models.TextChoices):
    ANNUITY = "annuity", _("Equal instalments (annuity)")
    EQUAL_PRINCIPAL = "equal_principal", _("Equal principal")
    INTEREST_ONLY = "interest_only", _("Interest only, bullet principal")
    CUSTOM = "custom", _("Imported custom schedule")


class DayCount(models.TextChoices):
    ACT_360 = "act_360", _("Actual/360")
    ACT_365 = "act_365", _("Actual/365")
    THIRTY_360 = "30_360", _("30/360")


class Frequency(models.TextChoices):
    MONTHLY = "monthly", _("Monthly")
    QUARTERLY = "quarterly", _("Quarterly")


class LoanStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    PAID_OFF = "paid_off", _("Paid off")
    RESTRUCTURED = "restructured", _("Restructured")
    WRITTEN_OFF = "written_off", _("Written off")


class RiskClass(models.IntegerChoices):
    """The five-category classification; the order is the order of severity."""

    NORMAL = 1, _("Normal")
    SPECIAL_MENTION = 2, _("Special mention")
    SUBSTANDARD = 3, _("Substandard")
    DOUBTFUL = 4, _("Doubtful")
    LOSS = 5, _("Loss")

    @classmethod
    def non_performing(cls) -> list[int]:
        return [cls.SUBSTANDARD, cls.DOUBTFUL, cls.LOSS]

    @property
    def slug(self) -> str:
        return self.name.lower()


class Ifrs9Stage(models.IntegerChoices):
    STAGE_1 = 1, _("Stage 1")
    STAGE_2 = 2, _("Stage 2")
    STAGE_3 = 3, _("Stage 3")


class Loan(models.Model):
    contract_number = models.CharField(_("contract number"), max_length=50, unique=True)
    borrower = models.ForeignKey(
        Borrower, on_delete=models.PROTECT, related_name="loans", verbose_name=_("borrower")
    )
    branch = models.ForeignKey(
        Branch, on_delete=models.PROTECT, related_name="loans", verbose_name=_("branch")
    )
    officer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="loans",
        verbose_name=_("credit officer"),
    )
    product = models.CharField(_("product"), max_length=20, choices=Product.choices)
    purpose = models.CharField(_("purpose"), max_length=255, blank=True)
    currency = models.CharField(_("currency"), max_length=3, default="USD")
    principal = models.DecimalField(_("principal"), **MONEY)
    disbursement_date = models.DateField(_("disbursement date"))
    maturity_date = models.DateField(_("maturity date"))
    annual_rate = models.DecimalField(_("annual interest rate"), max_digits=9, decimal_places=6)
    day_count = models.CharField(_("day count"), max_length=10, choices=DayCount.choices)
    repayment_method = models.CharField(
        _("repayment method"), max_length=20, choices=RepaymentMethod.choices
    )
    frequency = models.CharField(_("repayment frequency"), max_length=10, choices=Frequency.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=LoanStatus.choices, default=LoanStatus.ACTIVE
    )
    closed_on = models.DateField(
        _("closed on"),
        null=True,
        blank=True,
        help_text=_("Date the loan was paid off or written off; empty while it is open."),
    )
    risk_class = models.PositiveSmallIntegerField(
        _("risk class"), choices=RiskClass.choices, default=RiskClass.NORMAL
    )
    ifrs9_stage = models.PositiveSmallIntegerField(
        _("IFRS 9 stage"), choices=Ifrs9Stage.choices, default=Ifrs9Stage.STAGE_1
    )
    source = models.CharField(_("source"), max_length=20, blank=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["contract_number"]
        verbose_name = _("loan")
        verbose_name_plural = _("loans")
        # The foreign keys of branch and officer have their own indexes. No
        # index contains risk_class or ifrs9_stage, so that the close-of-day
        # run's class changes can be heap-only updates.
        constraints = [
            models.CheckConstraint(condition=Q(principal__gt=0), name="loan_principal_positive"),
            models.CheckConstraint(
                condition=Q(maturity_date__gt=F("disbursement_date")),
                name="loan_maturity_after_disbursement",
            ),
            models.CheckConstraint(condition=Q(annual_rate__gte=0), name="loan_rate_not_negative"),
            models.CheckConstraint(
                condition=Q(closed_on__isnull=True) | Q(closed_on__gte=F("disbursement_date")),
                name="loan_closed_after_disbursement",
            ),
        ]

    def __str__(self) -> str:
        return self.contract_number


class Instalment(models.Model):
    """One due date of a loan's schedule, with what has been paid against it.

    `principal_paid`, `interest_paid` and `settled_on` are totals kept by the
    repayment allocation, so the close-of-day run can skip settled instalments
    without reading their allocations.
    """

    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="instalments")
    number = models.PositiveIntegerField(_("number"))
    due_date = models.DateField(_("due date"))
    principal_due = models.DecimalField(_("principal due"), **MONEY)
    interest_due = models.DecimalField(_("interest due"), **MONEY)
    principal_paid = models.DecimalField(_("principal paid"), **MONEY, default=ZERO)
    interest_paid = models.DecimalField(_("interest paid"), **MONEY, default=ZERO)
    settled_on = models.DateField(_("settled on"), null=True, blank=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["loan", "number"]
        verbose_name = _("instalment")
        verbose_name_plural = _("instalments")
        constraints = [
            models.UniqueConstraint(fields=["loan", "number"], name="instalment_unique_number"),
            models.CheckConstraint(
                condition=Q(principal_due__gte=0) & Q(interest_due__gte=0),
                name="instalment_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(principal_paid__lte=F("principal_due"))
                & Q(interest_paid__lte=F("interest_due")),
                name="instalment_not_overpaid",
            ),
        ]
        indexes = [
            models.Index(fields=["loan", "due_date"]),
            # The close-of-day run reads only instalments not yet settled; on
            # PostgreSQL the included columns let it do so from the index alone.
            models.Index(
                fields=["loan", "due_date"],
                include=["principal_due", "interest_due", "principal_paid", "interest_paid", "id"],
                condition=Q(settled_on__isnull=True),
                name="instalment_unsettled_idx",
            ),
            # Finds instalments settled after a past as-of date when close-of-day is re-run.
            models.Index(
                fields=["settled_on"],
                condition=Q(settled_on__isnull=False),
                name="instalment_settled_on_idx",
            ),
            # The instalments paid late or not yet paid, which the late-payment
            # warning rule counts, without reading the ones paid on time.
            models.Index(
                fields=["loan", "due_date"],
                include=["settled_on"],
                condition=Q(settled_on__isnull=True) | Q(settled_on__gt=F("due_date")),
                name="instalment_late_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loan_id} #{self.number} {self.due_date}"

    @property
    def total_due(self) -> Decimal:
        return self.principal_due + self.interest_due


class RepaymentKind(models.TextChoices):
    REGULAR = "regular", _("Regular repayment")
    RECOVERY = "recovery", _("Recovery")


class Repayment(models.Model):
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="repayments")
    value_date = models.DateField(_("value date"))
    amount = models.DecimalField(_("amount"), **MONEY)
    kind = models.CharField(
        _("kind"), max_length=10, choices=RepaymentKind.choices, default=RepaymentKind.REGULAR
    )
    reference = models.CharField(_("reference"), max_length=64)
    unallocated = models.DecimalField(
        _("unallocated"),
        **MONEY,
        default=ZERO,
        help_text=_("Part of the amount left after every instalment was paid."),
    )
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["loan", "value_date", "id"]
        verbose_name = _("repayment")
        verbose_name_plural = _("repayments")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="repayment_amount_positive"),
            models.UniqueConstraint(
                fields=["loan", "reference"], name="repayment_unique_reference"
            ),
        ]
        indexes = [models.Index(fields=["loan", "value_date"])]

    def __str__(self) -> str:
        return f"{self.loan_id} {self.value_date} {self.amount}"


class RepaymentAllocation(models.Model):
    """The part of a repayment applied to one instalment, by component."""

    repayment = models.ForeignKey(Repayment, on_delete=models.CASCADE, related_name="allocations")
    instalment = models.ForeignKey(Instalment, on_delete=models.PROTECT, related_name="allocations")
    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="+")
    value_date = models.DateField(_("value date"))
    penalty = models.DecimalField(_("penalty"), **MONEY, default=ZERO)
    interest = models.DecimalField(_("interest"), **MONEY, default=ZERO)
    principal = models.DecimalField(_("principal"), **MONEY, default=ZERO)

    class Meta:
        verbose_name = _("repayment allocation")
        verbose_name_plural = _("repayment allocations")
        constraints = [
            models.CheckConstraint(
                condition=Q(penalty__gte=0) & Q(interest__gte=0) & Q(principal__gte=0),
                name="allocation_amounts_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["instalment", "value_date"]),
            models.Index(fields=["loan", "value_date"]),
        ]

    def __str__(self) -> str:
        return f"{self.repayment_id} -> {self.instalment_id}"


class WriteOff(models.Model):
    loan = models.OneToOneField(Loan, on_delete=models.PROTECT, related_name="write_off")
    written_off_on = models.DateField(_("written off on"))
    principal = models.DecimalField(_("principal written off"), **MONEY)
    interest = models.DecimalField(_("interest written off"), **MONEY, default=ZERO)
    reason = models.CharField(_("reason"), max_length=255)
    history = AuditedHistoricalRecords()

    class Meta:
        verbose_name = _("write-off")
        verbose_name_plural = _("write-offs")
        constraints = [
            models.CheckConstraint(
                condition=Q(principal__gte=0) & Q(interest__gte=0),
                name="write_off_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loan_id} written off {self.written_off_on}"


class GuarantorKind(models.TextChoices):
    PERSON = "person", _("Person")
    COMPANY = "company", _("Company")
    PUBLIC_SCHEME = "public_scheme", _("Public guarantee scheme")


class Guarantor(models.Model):
    kind = models.CharField(_("kind"), max_length=20, choices=GuarantorKind.choices)
    name = models.CharField(_("name"), max_length=255)
    registration_number = models.CharField(
        _("registration or identity number"), max_length=50, unique=True
    )
    borrower = models.OneToOneField(
        Borrower,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="as_guarantor",
        help_text=_("Set when the guarantor is also a borrower of the bank."),
    )
    net_worth = models.DecimalField(_("net worth"), **MONEY, null=True, blank=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["name"]
        verbose_name = _("guarantor")
        verbose_name_plural = _("guarantors")

    def __str__(self) -> str:
        return self.name


class GuaranteeType(models.TextChoices):
    JOINT_AND_SEVERAL = "joint_several", _("Joint and several")
    GENERAL = "general", _("General")


class Guarantee(models.Model):
    loan = models.ForeignKey(Loan, on_delete=models.PROTECT, related_name="guarantees")
    guarantor = models.ForeignKey(Guarantor, on_delete=models.PROTECT, related_name="guarantees")
    guarantee_type = models.CharField(_("type"), max_length=20, choices=GuaranteeType.choices)
    amount = models.DecimalField(_("amount"), **MONEY, null=True, blank=True)
    percentage = models.DecimalField(
        _("percentage"), max_digits=7, decimal_places=4, null=True, blank=True
    )
    valid_from = models.DateField(_("valid from"))
    valid_to = models.DateField(_("valid to"), null=True, blank=True)
    history = AuditedHistoricalRecords()

    class Meta:
        verbose_name = _("guarantee")
        verbose_name_plural = _("guarantees")
        constraints = [
            models.UniqueConstraint(
                fields=["loan", "guarantor"], name="guarantee_unique_per_guarantor"
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=False) | Q(percentage__isnull=False),
                name="guarantee_has_amount_or_percentage",
            ),
            models.CheckConstraint(
                condition=Q(amount__isnull=True) | Q(amount__gt=0),
                name="guarantee_amount_positive",
            ),
            models.CheckConstraint(
                condition=Q(percentage__isnull=True)
                | (Q(percentage__gt=0) & Q(percentage__lte=100)),
                name="guarantee_percentage_range",
            ),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=F("valid_from")),
                name="guarantee_valid_to_after_from",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.guarantor_id} guarantees {self.loan_id}"


class CollateralKind(models.TextChoices):
    COMMERCIAL_REAL_ESTATE = "commercial_real_estate", _("Commercial real estate")
    RESIDENTIAL_REAL_ESTATE = "residential_real_estate", _("Residential real estate")
    EQUIPMENT = "equipment", _("Equipment")
    VEHICLES = "vehicles", _("Vehicles")
    INVENTORY = "inventory", _("Inventory")
    RECEIVABLES = "receivables", _("Receivables")
    DEPOSITS = "deposits", _("Deposits")
    EQUITY = "equity", _("Equity")


class Collateral(models.Model):
    kind = models.CharField(_("type"), max_length=30, choices=CollateralKind.choices)
    description = models.CharField(_("description"), max_length=255)
    reference = models.CharField(_("reference"), max_length=50, unique=True)
    owner_name = models.CharField(_("owner"), max_length=255)
    owner_borrower = models.ForeignKey(
        Borrower, on_delete=models.PROTECT, null=True, blank=True, related_name="collateral_owned"
    )
    lien_rank = models.PositiveSmallIntegerField(_("lien rank"), default=1)
    ltv_limit = models.DecimalField(
        _("loan-to-value limit"),
        max_digits=5,
        decimal_places=4,
        help_text=_("Share of the value that may be lent against this item, 0.5 for 50%."),
    )
    insurance_expires_on = models.DateField(_("insurance expires on"), null=True, blank=True)
    loans = models.ManyToManyField(Loan, through="CollateralPledge", related_name="collateral")
    history = AuditedHistoricalRecords()

    class Meta:
        verbose_name = _("collateral")
        verbose_name_plural = _("collateral")
        constraints = [
            models.CheckConstraint(
                condition=Q(ltv_limit__gt=0) & Q(ltv_limit__lte=1), name="collateral_ltv_range"
            ),
            models.CheckConstraint(condition=Q(lien_rank__gte=1), name="collateral_lien_rank"),
        ]
        indexes = [
            # The insurance warning rules read the items whose insurance
            # expires in a date range without visiting the table.
            models.Index(
                fields=["insurance_expires_on"],
                include=["id", "reference"],
                condition=Q(insurance_expires_on__isnull=False),
                name="collateral_insurance_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.description}"


class CollateralValuation(models.Model):
    collateral = models.ForeignKey(Collateral, on_delete=models.CASCADE, related_name="valuations")
    valued_on = models.DateField(_("valued on"))
    value = models.DecimalField(_("value"), **MONEY)
    method = models.CharField(_("method"), max_length=100)
    valuer = models.CharField(_("valuer"), max_length=200)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["collateral", "-valued_on"]
        verbose_name = _("collateral valuation")
        verbose_name_plural = _("collateral valuations")
        constraints = [
            models.CheckConstraint(condition=Q(value__gt=0), name="valuation_value_positive"),
            models.UniqueConstraint(
                fields=["collateral", "valued_on"], name="valuation_unique_per_day"
            ),
        ]
        indexes = [
            # An item's latest valuations on or before a date, read from the
            # index alone by the collateral warning rules.
            models.Index(
                fields=["collateral", "-valued_on"], include=["value"], name="valuation_latest_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.collateral_id} {self.valued_on} {self.value}"


class CollateralPledge(models.Model):
    collateral = models.ForeignKey(Collateral, on_delete=models.CASCADE, related_name="pledges")
    loan = models.ForeignKey(Loan, on_delete=models.CASCADE, related_name="pledges")
    share = models.DecimalField(
        _("share pledged"),
        max_digits=5,
        decimal_places=4,
        default=Decimal("1"),
        help_text=_("Share of the collateral's value pledged to this loan, 1 for all of it."),
    )
    history = AuditedHistoricalRecords()

    class Meta:
        verbose_name = _("collateral pledge")
        verbose_name_plural = _("collateral pledges")
        constraints = [
            models.UniqueConstraint(fields=["collateral", "loan"], name="pledge_unique"),
            models.CheckConstraint(
                condition=Q(share__gt=0) & Q(share__lte=1), name="pledge_share_range"
            ),
        ]
        indexes = [
            # A chunk of loans' pledges, read from the index alone by the
            # collateral warning rules.
            models.Index(
                fields=["loan", "collateral"], include=["share"], name="pledge_loan_collateral_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.collateral_id} pledged to {self.loan_id}"


class LoanPosition(models.Model):
    """A loan's arrears, balance and provision as of the last close-of-day run.

    Derived data, written set-wise by the close-of-day run and not history-
    tracked: the run's own records and the loan's history carry the changes.
    """

    loan = models.OneToOneField(
        Loan, on_delete=models.CASCADE, primary_key=True, related_name="position"
    )
    as_of = models.DateField(_("as of"))
    is_open = models.BooleanField(
        _("open"), help_text=_("Disbursed and neither paid off nor written off on the date.")
    )
    outstanding_principal = models.DecimalField(_("outstanding principal"), **MONEY)
    overdue_principal = models.DecimalField(_("overdue principal"), **MONEY)
    overdue_interest = models.DecimalField(_("overdue interest"), **MONEY)
    oldest_unpaid_due_date = models.DateField(_("oldest unpaid due date"), null=True)
    days_past_due = models.PositiveIntegerField(_("days past due"))
    dpd_bucket = models.CharField(_("DPD bucket"), max_length=10)
    last_default_trigger_on = models.DateField(
        _("last default trigger"),
        null=True,
        help_text=_("Last run date on which the loan was over 90 days past due or non-performing."),
    )
    specific_provision = models.DecimalField(_("specific provision"), **MONEY, default=ZERO)
    general_provision = models.DecimalField(_("general provision"), **MONEY, default=ZERO)

    class Meta:
        verbose_name = _("loan position")
        verbose_name_plural = _("loan positions")
        # No index contains as_of, which every run changes, so that the
        # nightly rewrite of the positions can be heap-only updates.
        indexes = [models.Index(fields=["dpd_bucket"], name="position_dpd_bucket_idx")]

    def __str__(self) -> str:
        return f"{self.loan_id} as of {self.as_of}"

    @property
    def required_provision(self) -> Decimal:
        return self.specific_provision + self.general_provision


class DocumentCategory(models.TextChoices):
    PHOTO = "photo", _("Photo")
    FINANCIAL_STATEMENT = "financial_statement", _("Financial statement")
    CONTRACT = "contract", _("Contract")
    VALUATION_REPORT = "valuation_report", _("Valuation report")
    INSURANCE = "insurance", _("Insurance policy")
    CORRESPONDENCE = "correspondence", _("Correspondence")
    OTHER = "other", _("Other")


class Document(models.Model):
    """A file attached to one borrower, loan, inspection or collateral item.

    The content lives in its versions: an upload adds a version and never
    replaces one.
    """

    title = models.CharField(_("title"), max_length=255)
    category = models.CharField(
        _("category"),
        max_length=30,
        choices=DocumentCategory.choices,
        default=DocumentCategory.OTHER,
    )
    borrower = models.ForeignKey(
        Borrower, on_delete=models.PROTECT, null=True, blank=True, related_name="documents"
    )
    loan = models.ForeignKey(
        Loan, on_delete=models.PROTECT, null=True, blank=True, related_name="documents"
    )
    collateral = models.ForeignKey(
        Collateral, on_delete=models.PROTECT, null=True, blank=True, related_name="documents"
    )
    inspection = models.ForeignKey(
        "monitoring.Inspection",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="documents",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        constraints = [
            # Exactly one of the four records owns the document.
            models.CheckConstraint(
                condition=(
                    Q(
                        borrower__isnull=False,
                        loan__isnull=True,
                        collateral__isnull=True,
                        inspection__isnull=True,
                    )
                    | Q(
                        borrower__isnull=True,
                        loan__isnull=False,
                        collateral__isnull=True,
                        inspection__isnull=True,
                    )
                    | Q(
                        borrower__isnull=True,
                        loan__isnull=True,
                        collateral__isnull=False,
                        inspection__isnull=True,
                    )
                    | Q(
                        borrower__isnull=True,
                        loan__isnull=True,
                        collateral__isnull=True,
                        inspection__isnull=False,
                    )
                ),
                name="document_has_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.title


def document_version_path(version: DocumentVersion, filename: str) -> str:
    """Store each version under its document and number, keeping no user-chosen path."""
    return f"documents/{version.document_id}/{version.number}/{version.sha256[:16]}"


class DocumentVersion(models.Model):
    """One uploaded version of a document, with its hash; never changed after upload."""

    document = models.ForeignKey(Document, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField(_("version"))
    file = models.FileField(_("file"), upload_to=document_version_path, max_length=255)
    original_name = models.CharField(_("file name"), max_length=255)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.PositiveBigIntegerField(_("size in bytes"))
    sha256 = models.CharField(_("SHA-256"), max_length=64)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    uploaded_at = models.DateTimeField(_("uploaded at"), auto_now_add=True)
    history = AuditedHistoricalRecords()

    class Meta:
        ordering = ["document", "-number"]
        verbose_name = _("document version")
        verbose_name_plural = _("document versions")
        constraints = [
            models.UniqueConstraint(fields=["document", "number"], name="document_version_once"),
        ]

    def __str__(self) -> str:
        return f"{self.document_id} v{self.number}"
