"""factory-boy factories for the loan book and monitoring."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import factory
from dateutil.relativedelta import relativedelta
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from loans import models
from monitoring import models as monitoring_models


class BranchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Branch
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"B{n:03d}")
    name = factory.LazyAttribute(lambda o: f"Branch {o.code}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("correct-horse-battery")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for role in extracted or ():
            self.groups.add(Group.objects.get(name=role))

    @factory.post_generation
    def branches(self, create, extracted, **kwargs):
        for branch in extracted or ():
            branch.staff.add(self)


class BorrowerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Borrower

    registration_number = factory.Sequence(lambda n: f"REG{n:07d}")
    legal_name = factory.Sequence(lambda n: f"Borrower {n} Ltd")
    industry_code = "445299"
    size_class = models.SizeClass.SMALL
    branch = factory.SubFactory(BranchFactory)


class LoanFactory(factory.django.DjangoModelFactory):
    """A 12-month annuity of 12,000.00 at 6% (30/360); no instalments unless asked."""

    class Meta:
        model = models.Loan

    contract_number = factory.Sequence(lambda n: f"LN{n:08d}")
    borrower = factory.SubFactory(BorrowerFactory)
    branch = factory.LazyAttribute(lambda o: o.borrower.branch)
    product = models.Product.WORKING_CAPITAL
    currency = "USD"
    principal = Decimal("12000.00")
    disbursement_date = date(2023, 1, 1)
    maturity_date = factory.LazyAttribute(lambda o: o.disbursement_date + relativedelta(years=1))
    annual_rate = Decimal("0.060000")
    day_count = models.DayCount.THIRTY_360
    repayment_method = models.RepaymentMethod.ANNUITY
    frequency = models.Frequency.MONTHLY


class InstalmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = models.Instalment

    loan = factory.SubFactory(LoanFactory)
    number = factory.Sequence(lambda n: n + 1)
    due_date = date(2023, 2, 1)
    principal_due = Decimal("1000.00")
    interest_due = Decimal("50.00")


class EarlyWarningFactory(factory.django.DjangoModelFactory):
    """An open red REP_DPD_90 warning first seen on 2023-07-01."""

    class Meta:
        model = monitoring_models.EarlyWarning

    loan = factory.SubFactory(LoanFactory)
    rule_code = "REP_DPD_90"
    family = monitoring_models.WarningFamily.REPAYMENT
    severity = monitoring_models.Severity.RED
    status = monitoring_models.WarningStatus.OPEN
    first_seen_on = date(2023, 7, 1)
    last_seen_on = factory.LazyAttribute(lambda o: o.first_seen_on)
    evidence = factory.LazyAttribute(lambda o: {"days_past_due": 120, "as_of": str(o.last_seen_on)})


class PostLoanPlanFactory(factory.django.DjangoModelFactory):
    """A normal loan's plan, derived on the disbursement date."""

    class Meta:
        model = monitoring_models.PostLoanPlan

    loan = factory.SubFactory(LoanFactory)
    officer = factory.LazyAttribute(lambda o: o.loan.officer)
    starts_on = factory.LazyAttribute(lambda o: o.loan.disbursement_date)
    derived_for_class = factory.LazyAttribute(lambda o: o.loan.risk_class)
    first_inspection_due = factory.LazyAttribute(lambda o: o.starts_on + relativedelta(days=15))
    routine_interval_months = 6
    next_routine_due = factory.LazyAttribute(
        lambda o: o.first_inspection_due + relativedelta(months=6)
    )
    next_statement_due = date(2023, 4, 30)
    updated_on = factory.LazyAttribute(lambda o: o.starts_on)


class InspectionFactory(factory.django.DjangoModelFactory):
    """A scheduled routine inspection due on 2023-07-01; branch and officer from the loan."""

    class Meta:
        model = monitoring_models.Inspection

    loan = factory.SubFactory(LoanFactory)
    branch = factory.LazyAttribute(lambda o: o.loan.branch)
    officer = factory.LazyAttribute(lambda o: o.loan.officer)
    kind = monitoring_models.InspectionKind.ROUTINE
    status = monitoring_models.InspectionStatus.SCHEDULED
    due_date = date(2023, 7, 1)


class InspectionCheckFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = monitoring_models.InspectionCheck

    inspection = factory.SubFactory(InspectionFactory)
    item = monitoring_models.ChecklistItem.BUSINESS_OPERATING
    answer = monitoring_models.ChecklistAnswer.YES
