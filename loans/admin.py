"""Admin for the loan book.

The loan tables are large: a million loans and tens of millions of
instalments. Foreign keys therefore use raw id inputs and change lists skip
the full count. Searches match the start of indexed codes, and list filters
use short choice lists.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext_lazy as _
from simple_history.admin import SimpleHistoryAdmin

from .models import (
    Borrower,
    Branch,
    Collateral,
    CollateralPledge,
    CollateralValuation,
    Document,
    DocumentVersion,
    Guarantee,
    Guarantor,
    Instalment,
    Loan,
    LoanPosition,
    Repayment,
    RepaymentAllocation,
    WriteOff,
)


class AuditedHistoryAdmin(SimpleHistoryAdmin):
    """SimpleHistoryAdmin whose history pages only show past versions.

    simple-history's page of one past version is a change form that saves the
    posted fields back to the record (a revert). SIMPLE_HISTORY_REVERT_DISABLED
    only hides its button, so a POST to it is rejected here.
    """

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method not in ("GET", "HEAD"):
            raise PermissionDenied(_("History is read-only: a past version cannot be restored."))
        return super().history_form_view(request, object_id, version_id, extra_context)

    def has_change_history_permission(self, request, obj=None) -> bool:
        return False


class LargeTableAdmin(AuditedHistoryAdmin):
    """History-tracked admin for tables too large to count on every change list page."""

    show_full_result_count = False
    list_per_page = 50


class ReadOnlyAdmin(admin.ModelAdmin):
    """Admin for rows that only a batch job writes: view them, never add, change or delete."""

    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Branch)
class BranchAdmin(AuditedHistoryAdmin):
    list_display = ("code", "name", "region")
    search_fields = ("code", "name")
    filter_horizontal = ("staff",)


@admin.register(Borrower)
class BorrowerAdmin(LargeTableAdmin):
    list_display = ("legal_name", "registration_number", "size_class", "industry_code", "branch")
    list_filter = ("size_class", "branch")
    list_select_related = ("branch",)
    search_fields = ("^registration_number", "^legal_name")


class InstalmentInline(admin.TabularInline):
    model = Instalment
    extra = 0
    fields = (
        "number",
        "due_date",
        "principal_due",
        "interest_due",
        "principal_paid",
        "interest_paid",
        "settled_on",
    )
    readonly_fields = ("principal_paid", "interest_paid", "settled_on")


@admin.register(Loan)
class LoanAdmin(LargeTableAdmin):
    list_display = (
        "contract_number",
        "borrower",
        "branch",
        "product",
        "principal",
        "disbursement_date",
        "status",
        "risk_class",
        "ifrs9_stage",
    )
    list_filter = ("status", "risk_class", "ifrs9_stage", "product", "branch")
    list_select_related = ("borrower", "branch")
    search_fields = ("^contract_number",)
    raw_id_fields = ("borrower", "officer")
    inlines = (InstalmentInline,)


@admin.register(Instalment)
class InstalmentAdmin(LargeTableAdmin):
    list_display = (
        "loan",
        "number",
        "due_date",
        "principal_due",
        "interest_due",
        "principal_paid",
        "interest_paid",
        "settled_on",
    )
    list_select_related = ("loan",)
    search_fields = ("^loan__contract_number",)
    raw_id_fields = ("loan",)


class RepaymentAllocationInline(admin.TabularInline):
    model = RepaymentAllocation
    extra = 0
    raw_id_fields = ("instalment", "loan")


@admin.register(Repayment)
class RepaymentAdmin(LargeTableAdmin):
    list_display = ("loan", "value_date", "amount", "kind", "reference", "unallocated")
    list_filter = ("kind",)
    list_select_related = ("loan",)
    search_fields = ("^loan__contract_number", "^reference")
    raw_id_fields = ("loan",)
    inlines = (RepaymentAllocationInline,)


@admin.register(RepaymentAllocation)
class RepaymentAllocationAdmin(admin.ModelAdmin):
    list_display = ("repayment", "instalment", "value_date", "principal", "interest", "penalty")
    search_fields = ("^loan__contract_number",)
    raw_id_fields = ("repayment", "instalment", "loan")
    show_full_result_count = False


@admin.register(WriteOff)
class WriteOffAdmin(AuditedHistoryAdmin):
    list_display = ("loan", "written_off_on", "principal", "interest", "reason")
    list_select_related = ("loan",)
    search_fields = ("^loan__contract_number",)
    raw_id_fields = ("loan",)


@admin.register(Guarantor)
class GuarantorAdmin(LargeTableAdmin):
    list_display = ("name", "kind", "registration_number", "borrower", "net_worth")
    list_filter = ("kind",)
    list_select_related = ("borrower",)
    search_fields = ("^registration_number", "^name")
    raw_id_fields = ("borrower",)


@admin.register(Guarantee)
class GuaranteeAdmin(LargeTableAdmin):
    list_display = (
        "loan",
        "guarantor",
        "guarantee_type",
        "amount",
        "percentage",
        "valid_from",
        "valid_to",
    )
    list_filter = ("guarantee_type",)
    list_select_related = ("loan", "guarantor")
    search_fields = ("^loan__contract_number", "^guarantor__name")
    raw_id_fields = ("loan", "guarantor")


class CollateralValuationInline(admin.TabularInline):
    model = CollateralValuation
    extra = 0


class CollateralPledgeInline(admin.TabularInline):
    model = CollateralPledge
    extra = 0
    raw_id_fields = ("loan",)


@admin.register(Collateral)
class CollateralAdmin(LargeTableAdmin):
    list_display = ("reference", "kind", "description", "owner_name", "lien_rank", "ltv_limit")
    list_filter = ("kind",)
    search_fields = ("^reference", "^owner_name")
    raw_id_fields = ("owner_borrower",)
    inlines = (CollateralValuationInline, CollateralPledgeInline)


@admin.register(CollateralValuation)
class CollateralValuationAdmin(LargeTableAdmin):
    list_display = ("collateral", "valued_on", "value", "method", "valuer")
    list_select_related = ("collateral",)
    search_fields = ("^collateral__reference",)
    raw_id_fields = ("collateral",)


@admin.register(CollateralPledge)
class CollateralPledgeAdmin(LargeTableAdmin):
    list_display = ("collateral", "loan", "share")
    list_select_related = ("collateral", "loan")
    search_fields = ("^collateral__reference", "^loan__contract_number")
    raw_id_fields = ("collateral", "loan")


@admin.register(LoanPosition)
class LoanPositionAdmin(ReadOnlyAdmin):
    list_display = (
        "loan",
        "as_of",
        "is_open",
        "outstanding_principal",
        "overdue_principal",
        "overdue_interest",
        "days_past_due",
        "dpd_bucket",
        "specific_provision",
        "general_provision",
        "required_provision",
    )
    list_filter = ("is_open", "dpd_bucket")
    list_select_related = ("loan",)
    search_fields = ("^loan__contract_number",)
    raw_id_fields = ("loan",)

    @admin.display(description=_("provision required"))
    def required_provision(self, obj: LoanPosition):
        return obj.required_provision


class DocumentVersionInline(admin.TabularInline):
    model = DocumentVersion
    extra = 0
    fields = (
        "number",
        "original_name",
        "content_type",
        "size",
        "sha256",
        "uploaded_by",
        "uploaded_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdmin):
    """Documents are uploaded in the application; versions are never changed or deleted."""

    list_display = (
        "title",
        "category",
        "borrower",
        "loan",
        "collateral",
        "inspection",
        "created_at",
    )
    list_filter = ("category",)
    raw_id_fields = ("borrower", "loan", "collateral", "inspection", "created_by")
    inlines = [DocumentVersionInline]


@admin.register(DocumentVersion)
class DocumentVersionAdmin(ReadOnlyAdmin):
    list_display = ("document", "number", "original_name", "size", "sha256", "uploaded_by")
    raw_id_fields = ("document", "uploaded_by")
