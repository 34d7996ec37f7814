"""Admin for close-of-day runs, early warnings and classification changes."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from loans.admin import AuditedHistoryAdmin, ReadOnlyAdmin

from .models import (
    AgendaItem,
    ClassificationChange,
    ClassificationProposal,
    CommitteePolicy,
    EarlyWarning,
    ExternalSignal,
    FirstInspectionTerm,
    FlaggedGuarantee,
    GuaranteeNetworkMember,
    Inspection,
    InspectionCheck,
    InspectionPolicy,
    JobRun,
    Notification,
    PostLoanPlan,
    ProposalVote,
    Restructuring,
    ReviewMeeting,
    SeverityDeadline,
    WarningAction,
    WarningRule,
    WatchedIndustry,
)
from .rules import get_rule


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    """Close-of-day runs, written by the job. Staff may only change the status of a stuck run."""

    list_display = (
        "as_of",
        "kind",
        "status",
        "started_at",
        "finished_at",
        "duration",
        "progress",
        "positions_written",
        "class_changes",
        "triggered_by",
    )
    list_filter = ("status", "kind")
    date_hierarchy = "as_of"
    readonly_fields = (
        "kind",
        "as_of",
        "started_at",
        "finished_at",
        "chunk_count",
        "chunks_done",
        "counts",
        "errors",
        "triggered_by",
    )

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("chunks done"))
    def progress(self, obj: JobRun) -> str:
        return f"{obj.chunks_done}/{obj.chunk_count}"

    @admin.display(description=_("positions written"))
    def positions_written(self, obj: JobRun) -> int | None:
        return (obj.counts or {}).get("steps", {}).get("positions_written")

    @admin.display(description=_("class changes"))
    def class_changes(self, obj: JobRun) -> int | None:
        return (obj.counts or {}).get("steps", {}).get("class_changes")


@admin.register(EarlyWarning)
class EarlyWarningAdmin(AuditedHistoryAdmin):
    list_display = (
        "rule_code",
        "loan",
        "family",
        "severity",
        "status",
        "first_seen_on",
        "last_seen_on",
        "cleared_on",
        "assigned_to",
    )
    # No filter on rule_code: it has no choices, so the filter would read every warning.
    list_filter = ("status", "severity", "family")
    list_select_related = ("loan", "assigned_to")
    search_fields = ("^loan__contract_number", "^rule_code")
    raw_id_fields = ("loan", "assigned_to", "created_by_run")
    show_full_result_count = False
    list_per_page = 50


@admin.register(ClassificationChange)
class ClassificationChangeAdmin(ReadOnlyAdmin):
    list_display = (
        "loan",
        "as_of",
        "previous_class",
        "new_class",
        "previous_stage",
        "new_stage",
        "reason_code",
        "source",
        "ratified",
    )
    list_filter = ("source", "ratified", "new_class")
    list_select_related = ("loan",)
    search_fields = ("^loan__contract_number",)
    raw_id_fields = ("loan", "job_run")


class WarningRuleForm(forms.ModelForm):
    """Check the thresholds against the schema of the rule defined in code."""

    class Meta:
        model = WarningRule
        fields = ("severity", "enabled", "thresholds")

    def clean_thresholds(self):
        thresholds = self.cleaned_data["thresholds"]
        rule = get_rule(self.instance.code)
        if rule is None:
            raise forms.ValidationError(
                _("No rule %(code)s is defined in the code."), params={"code": self.instance.code}
            )
        rule.clean_thresholds(thresholds)
        return thresholds


@admin.register(WarningRule)
class WarningRuleAdmin(AuditedHistoryAdmin):
    """Severity, thresholds and the enabled flag of each rule; rules themselves live in code."""

    form = WarningRuleForm
    list_display = ("code", "family", "severity", "enabled", "thresholds", "updated_at")
    list_filter = ("family", "severity", "enabled")
    readonly_fields = ("code", "family", "description", "threshold_schema")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("threshold schema"))
    def threshold_schema(self, obj):
        rule = get_rule(obj.code)
        return json.dumps(rule.json_schema(), indent=2) if rule else "-"


@admin.register(SeverityDeadline)
class SeverityDeadlineAdmin(AuditedHistoryAdmin):
    list_display = ("severity", "days")


@admin.register(WarningAction)
class WarningActionAdmin(ReadOnlyAdmin):
    list_display = ("warning", "kind", "performed_by", "performed_at", "assigned_to")
    list_filter = ("kind",)
    list_select_related = ("warning", "performed_by", "assigned_to")
    show_full_result_count = False


@admin.register(ExternalSignal)
class ExternalSignalAdmin(AuditedHistoryAdmin):
    list_display = ("borrower", "kind", "observed_on", "ended_on", "recorded_by")
    list_filter = ("kind",)
    raw_id_fields = ("borrower", "recorded_by")
    search_fields = ("^borrower__legal_name",)


@admin.register(WatchedIndustry)
class WatchedIndustryAdmin(AuditedHistoryAdmin):
    list_display = ("code_prefix", "reason", "active")
    list_filter = ("active",)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("recipient", "message", "created_at", "read_at")
    raw_id_fields = ("recipient", "warning")
    show_full_result_count = False


@admin.register(GuaranteeNetworkMember)
class GuaranteeNetworkMemberAdmin(ReadOnlyAdmin):
    """The last close-of-day run's guarantee circles and chains, per open loan."""

    list_display = (
        "loan",
        "borrower",
        "kind",
        "circle_id",
        "member_count",
        "chain_length",
        "npl_member_count",
        "as_of",
    )
    list_filter = ("kind",)
    list_select_related = ("loan", "borrower")
    raw_id_fields = ("loan", "borrower")


@admin.register(FlaggedGuarantee)
class FlaggedGuaranteeAdmin(ReadOnlyAdmin):
    """The last close-of-day run's worst flagged guarantor per loan and guarantor rule."""

    list_display = (
        "loan",
        "reason",
        "guarantor",
        "days_past_due",
        "risk_class",
        "total_guaranteed",
        "net_worth",
        "flagged_guarantors",
        "as_of",
    )
    list_filter = ("reason",)
    list_select_related = ("loan", "guarantor")
    raw_id_fields = ("loan", "guarantor")


@admin.register(InspectionPolicy)
class InspectionPolicyAdmin(AuditedHistoryAdmin):
    """The one policy row; collateral revaluation intervals are COL_VALUATION_STALE's thresholds."""

    list_display = (
        "normal_months",
        "large_loan_amount",
        "large_loan_months",
        "special_mention_months",
        "non_performing_months",
        "updated_at",
    )

    def has_add_permission(self, request):
        return not InspectionPolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FirstInspectionTerm)
class FirstInspectionTermAdmin(AuditedHistoryAdmin):
    list_display = ("product", "days")


@admin.register(PostLoanPlan)
class PostLoanPlanAdmin(ReadOnlyAdmin):
    """Plans come from the policy through the close-of-day run; history shows each change."""

    list_display = (
        "loan",
        "derived_for_class",
        "first_inspection_due",
        "routine_interval_months",
        "next_routine_due",
        "next_revaluation_due",
        "next_statement_due",
        "updated_on",
    )
    raw_id_fields = ("loan", "officer")


class InspectionCheckInline(admin.TabularInline):
    model = InspectionCheck
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Inspection)
class InspectionAdmin(ReadOnlyAdmin):
    """Inspections are logged and reviewed in the application; the admin only shows them."""

    list_display = ("loan", "kind", "status", "due_date", "overdue_since", "officer", "adverse")
    list_filter = ("kind", "status", "adverse")
    raw_id_fields = ("loan", "officer", "trigger_warning")
    inlines = [InspectionCheckInline]


@admin.register(InspectionCheck)
class InspectionCheckAdmin(ReadOnlyAdmin):
    list_display = ("inspection", "item", "answer")
    list_filter = ("item", "answer")
    raw_id_fields = ("inspection",)


@admin.register(ClassificationProposal)
class ClassificationProposalAdmin(ReadOnlyAdmin):
    list_display = ("loan", "current_class", "proposed_class", "source", "status", "created_at")
    list_filter = ("source", "status")
    raw_id_fields = ("loan", "proposed_by", "inspection")


@admin.register(CommitteePolicy)
class CommitteePolicyAdmin(AuditedHistoryAdmin):
    list_display = ("quorum", "updated_at")

    def has_add_permission(self, request):
        return not CommitteePolicy.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ProposalVote)
class ProposalVoteAdmin(ReadOnlyAdmin):
    """Votes are cast in the committee inbox and cannot be changed afterwards."""

    list_display = ("proposal", "member", "decision", "cast_at")
    list_filter = ("decision",)
    raw_id_fields = ("proposal", "member")


@admin.register(Restructuring)
class RestructuringAdmin(AuditedHistoryAdmin):
    list_display = ("loan", "restructured_on", "class_before", "observation_ends_on")
    raw_id_fields = ("loan", "recorded_by")


@admin.register(ReviewMeeting)
class ReviewMeetingAdmin(ReadOnlyAdmin):
    list_display = ("title", "held_on", "status")
    list_filter = ("status",)


@admin.register(AgendaItem)
class AgendaItemAdmin(ReadOnlyAdmin):
    list_display = ("meeting", "position", "kind", "title", "decision")
    list_filter = ("kind", "decision")
    raw_id_fields = ("meeting", "loan", "proposal", "warning")
