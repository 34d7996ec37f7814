"""Early-warning lifecycle: services, deadlines, escalation, and who may take which step."""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from loans import access
from monitoring import services, tasks
from monitoring.models import (
    ActionKind,
    EarlyWarning,
    Notification,
    SeverityDeadline,
    WarningAction,
    WarningStatus,
)
from monitoring.tasks import dispatch_close_of_day

from .factories import BorrowerFactory, EarlyWarningFactory, UserFactory

pytestmark = pytest.mark.django_db

AS_OF = date(2023, 7, 1)
ROLES = ("officer", "risk_manager", "committee_member", "auditor", "administrator")


@pytest.fixture
def south_officer(branch_south):
    return UserFactory(
        username="south-officer",
        email="south@example.com",
        roles=[access.CREDIT_OFFICER],
        branches=[branch_south],
    )


@pytest.fixture
def book(branch_north, branch_south, officer, make_scheduled_loan):
    """One loan in each branch, unpaid since 2023-02-01, after close-of-day on AS_OF.

    Each loan is 150 days past due, so REP_OVERDUE (yellow), REP_DPD_30
    (orange) and REP_DPD_90 (red) fire on both, first seen on AS_OF.
    """
    north = make_scheduled_loan(
        borrower=BorrowerFactory(branch=branch_north, legal_name="Birch Bakery Ltd"),
        officer=officer,
    )
    south = make_scheduled_loan(
        borrower=BorrowerFactory(branch=branch_south, legal_name="Cedar Freight Ltd")
    )
    dispatch_close_of_day(AS_OF)
    services.set_missing_deadlines(AS_OF)
    return SimpleNamespace(
        north=north,
        south=south,
        north_red=EarlyWarning.objects.get(loan=north, rule_code="REP_DPD_90"),
        north_orange=EarlyWarning.objects.get(loan=north, rule_code="REP_DPD_30"),
        south_red=EarlyWarning.objects.get(loan=south, rule_code="REP_DPD_90"),
    )


def _kinds(warning: EarlyWarning) -> list[str]:
    return list(warning.actions.order_by("performed_at", "pk").values_list("kind", flat=True))


# ---- Deadlines ---------------------------------------------------------------


def test_close_of_day_warnings_get_deadlines(book):
    deadlines = dict(
        EarlyWarning.objects.filter(loan=book.north).values_list("severity", "deadline")
    )

    assert deadlines == {
        "red": AS_OF + timedelta(days=3),
        "orange": AS_OF + timedelta(days=10),
        "yellow": AS_OF + timedelta(days=30),
    }


def test_set_missing_deadlines_uses_configured_days(book):
    SeverityDeadline.objects.filter(severity="red").update(days=5)
    EarlyWarning.objects.filter(severity="red").update(deadline=None)
    book.north_orange.deadline = date(2023, 8, 31)
    book.north_orange.save()

    updated = services.set_missing_deadlines(AS_OF)

    book.north_red.refresh_from_db()
    book.north_orange.refresh_from_db()
    assert updated == 2
    assert book.north_red.deadline == date(2023, 7, 6)
    assert book.north_orange.deadline == date(2023, 8, 31)


def test_set_missing_deadlines_skips_closed_warnings(book, risk_manager):
    services.dismiss(book.north_red, risk_manager, "Restructuring agreed.")
    EarlyWarning.objects.filter(pk=book.north_red.pk).update(deadline=None)

    services.set_missing_deadlines(AS_OF)

    book.north_red.refresh_from_db()
    assert book.north_red.deadline is None


def test_set_missing_deadlines_falls_back_to_defaults(book):
    SeverityDeadline.objects.all().delete()
    EarlyWarning.objects.update(deadline=None)

    services.set_missing_deadlines(AS_OF)

    book.north_orange.refresh_from_db()
    assert book.north_orange.deadline == AS_OF + timedelta(days=10)


# ---- Steps on one warning ----------------------------------------------------


def test_acknowledge_records_action_and_history(book, risk_manager):
    warning = services.acknowledge(book.north_red, risk_manager)

    action = warning.actions.get()
    record = warning.history.latest()
    assert warning.status == WarningStatus.ACKNOWLEDGED
    assert action.kind == ActionKind.ACKNOWLEDGE
    assert action.performed_by == risk_manager
    assert record.status == WarningStatus.ACKNOWLEDGED
    assert record.history_user == risk_manager


def test_acknowledge_twice_is_rejected(book, risk_manager):
    services.acknowledge(book.north_red, risk_manager)

    with pytest.raises(ValidationError, match="already acknowledged"):
        services.acknowledge(book.north_red, risk_manager)


def test_start_work_moves_to_in_progress(book, risk_manager):
    warning = services.start_work(book.north_red, risk_manager)

    assert warning.status == WarningStatus.IN_PROGRESS
    assert _kinds(warning) == [ActionKind.START]


def test_record_action_moves_to_in_progress(book, officer):
    warning = services.record_action(
        book.north_red, officer, ActionKind.CONTACT_BORROWER, "Called the owner."
    )

    action = warning.actions.get()
    assert warning.status == WarningStatus.IN_PROGRESS
    assert action.kind == ActionKind.CONTACT_BORROWER
    assert action.note == "Called the owner."
    assert action.performed_by == officer
    assert warning.history.latest().history_user == officer


def test_record_action_rejects_other_kinds(book, risk_manager):
    with pytest.raises(ValidationError, match="not a disposal action"):
        services.record_action(book.north_red, risk_manager, ActionKind.RESOLVE, "Done.")

    book.north_red.refresh_from_db()
    assert book.north_red.status == WarningStatus.OPEN
    assert not book.north_red.actions.exists()


def test_note_without_text_is_rejected(book, risk_manager):
    with pytest.raises(ValidationError, match="Enter the text of the note"):
        services.record_action(book.north_red, risk_manager, ActionKind.NOTE, "  ")


def test_resolve_stores_reason_and_closes(book, risk_manager):
    warning = services.resolve(book.north_red, risk_manager, "  Arrears repaid in full.  ")

    assert warning.status == WarningStatus.RESOLVED
    assert warning.closing_reason == "Arrears repaid in full."
    assert warning.closed_at is not None
    assert warning.actions.get().note == "Arrears repaid in full."


@pytest.mark.parametrize("close", [services.resolve, services.dismiss])
def test_close_without_reason_changes_nothing(book, risk_manager, close):
    with pytest.raises(ValidationError, match="Enter the reason for"):
        close(book.north_red, risk_manager, "   ")

    book.north_red.refresh_from_db()
    assert book.north_red.status == WarningStatus.OPEN
    assert book.north_red.closing_reason == ""
    assert not book.north_red.actions.exists()


def test_closed_warning_rejects_every_step(book, risk_manager, officer):
    services.dismiss(book.north_red, risk_manager, "Duplicate of a manual warning.")
    steps = [
        lambda: services.acknowledge(book.north_red, risk_manager),
        lambda: services.start_work(book.north_red, risk_manager),
        lambda: services.assign([book.north_red], officer, risk_manager),
        lambda: services.record_action(book.north_red, officer, ActionKind.NOTE, "Late note."),
        lambda: services.resolve(book.north_red, risk_manager, "Again."),
        lambda: services.dismiss(book.north_red, risk_manager, "Again."),
    ]

    for step in steps:
        with pytest.raises(ValidationError):
            step()

    book.north_red.refresh_from_db()
    assert book.north_red.status == WarningStatus.DISMISSED
    assert _kinds(book.north_red) == [ActionKind.DISMISS]


@pytest.mark.parametrize("role", ["officer", "committee_member", "auditor"])
def test_services_reject_roles_without_right(book, request, role):
    user = request.getfixturevalue(role)
    risk = UserFactory(username="risk-2", roles=[access.RISK_MANAGER])

    with pytest.raises(PermissionDenied):
        services.acknowledge(book.north_red, user)
    with pytest.raises(PermissionDenied):
        services.assign([book.north_red], risk, user)
    with pytest.raises(PermissionDenied):
        services.dismiss(book.north_red, user, "No.")


@pytest.mark.parametrize("role", ["committee_member", "auditor"])
def test_record_action_rejects_read_only_roles(book, request, role):
    with pytest.raises(PermissionDenied):
        services.record_action(
            book.north_red, request.getfixturevalue(role), ActionKind.NOTE, "Seen."
        )


def test_record_action_rejects_other_branch_officer(book, south_officer):
    with pytest.raises(PermissionDenied):
        services.record_action(book.north_red, south_officer, ActionKind.NOTE, "Seen.")


# ---- Assigning many warnings -------------------------------------------------


def test_assign_updates_status_history_and_notifies(book, risk_manager, officer):
    warnings = [book.north_red, book.north_orange]

    count = services.assign(warnings, officer, risk_manager)

    assert count == 2
    for warning in warnings:
        warning.refresh_from_db()
        action = warning.actions.get()
        assert warning.assigned_to == officer
        assert warning.status == WarningStatus.ACKNOWLEDGED
        assert action.kind == ActionKind.ASSIGN
        assert action.assigned_to == officer
        assert warning.history.latest().history_user == risk_manager
        assert warning.history.latest().assigned_to_id == officer.pk
    assert Notification.objects.filter(recipient=officer).count() == 2


def test_assign_keeps_in_progress_status(book, risk_manager, administrator):
    services.start_work(book.north_red, risk_manager)

    services.assign([book.north_red], administrator, risk_manager)

    book.north_red.refresh_from_db()
    assert book.north_red.status == WarningStatus.IN_PROGRESS


def test_assign_query_count_is_constant(book, risk_manager, administrator):
    few = [EarlyWarningFactory(loan=book.north, rule_code=f"FEW_{n}") for n in range(2)]
    many = [EarlyWarningFactory(loan=book.south, rule_code=f"MANY_{n}") for n in range(30)]
    # The first call caches both users' roles on the user objects.
    services.assign([book.north_red], administrator, risk_manager)

    with CaptureQueriesContext(connection) as few_queries:
        services.assign(few, administrator, risk_manager)
    with CaptureQueriesContext(connection) as many_queries:
        services.assign(many, administrator, risk_manager)

    assert len(many_queries) == len(few_queries)
    assert EarlyWarning.objects.filter(assigned_to=administrator).count() == 33


def test_assign_rejects_officer_of_other_branch(book, risk_manager, south_officer):
    with pytest.raises(ValidationError, match="cannot see the loans"):
        services.assign([book.north_red, book.south_red], south_officer, risk_manager)

    book.south_red.refresh_from_db()
    assert book.south_red.assigned_to is None
    assert not WarningAction.objects.exists()


def test_assign_with_closed_warning_changes_nothing(book, risk_manager, administrator):
    services.resolve(book.north_orange, risk_manager, "Paid.")

    with pytest.raises(ValidationError, match="closed"):
        services.assign([book.north_red, book.north_orange], administrator, risk_manager)

    book.north_red.refresh_from_db()
    assert book.north_red.assigned_to is None


# ---- Escalation --------------------------------------------------------------


def test_escalate_overdue_red_warnings_only(book, risk_manager, south_officer):
    red_deadline = AS_OF + timedelta(days=3)

    count = services.escalate_overdue(red_deadline + timedelta(days=1))

    escalated = set(
        EarlyWarning.objects.filter(escalated_at__isnull=False).values_list("pk", flat=True)
    )
    action = book.north_red.actions.get()
    assert count == 2
    assert escalated == {book.north_red.pk, book.south_red.pk}
    assert action.kind == ActionKind.ESCALATE
    assert action.performed_by is None
    assert book.north_red.history.latest().escalated_at is not None


@pytest.fixture
def south_manager(branch_south):
    return UserFactory(
        username="south-manager",
        email="south-manager@example.com",
        roles=[access.BRANCH_MANAGER],
        branches=[branch_south],
    )


def test_escalation_notifies_risk_and_branch_managers(
    book, risk_manager, officer, branch_manager, south_officer, south_manager, committee_member
):
    services.escalate_overdue(AS_OF + timedelta(days=4))

    recipients = set(
        Notification.objects.filter(warning=book.north_red).values_list(
            "recipient__username", flat=True
        )
    )
    south_recipients = set(
        Notification.objects.filter(warning=book.south_red).values_list(
            "recipient__username", flat=True
        )
    )
    # Branch managers are the branch heads; officers and committee members are not notified.
    assert recipients == {"risk", "manager"}
    assert south_recipients == {"risk", "south-manager"}


def test_escalation_mails_after_commit(
    book, risk_manager, south_officer, south_manager, mailoutbox, django_capture_on_commit_callbacks
):
    risk_manager.email = "risk@example.com"
    risk_manager.save()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.escalate_overdue(AS_OF + timedelta(days=4))
        assert mailoutbox == []
    for callback in callbacks:
        callback()

    recipients = sorted(address for mail in mailoutbox for address in mail.to)
    risk_mail = next(mail for mail in mailoutbox if mail.to == ["risk@example.com"])
    assert recipients == ["risk@example.com", "south-manager@example.com"]
    assert book.north.contract_number in risk_mail.body
    assert book.south.contract_number in risk_mail.body


def test_escalation_happens_once(book, risk_manager):
    services.escalate_overdue(AS_OF + timedelta(days=4))

    again = services.escalate_overdue(AS_OF + timedelta(days=5))

    assert again == 0
    assert WarningAction.objects.filter(kind=ActionKind.ESCALATE).count() == 2


def test_escalation_waits_until_deadline_passes(book, risk_manager):
    count = services.escalate_overdue(AS_OF + timedelta(days=3))

    assert count == 0


def test_escalation_skips_closed_warnings(book, risk_manager):
    services.resolve(book.north_red, risk_manager, "Paid.")

    count = services.escalate_overdue(AS_OF + timedelta(days=4))

    book.north_red.refresh_from_db()
    assert count == 1
    assert book.north_red.escalated_at is None


def test_escalation_task_sets_deadlines_first(book, risk_manager):
    EarlyWarning.objects.update(deadline=None)

    count = tasks.escalate_overdue_warnings("2023-07-05")

    book.south_red.refresh_from_db()
    assert count == 2
    assert book.south_red.deadline == date(2023, 7, 4)


def test_escalation_is_on_beat_schedule():
    task = PeriodicTask.objects.get(task="monitoring.escalate_overdue_warnings")

    assert task.enabled
    assert task.crontab.hour == "7"
    assert dict(SeverityDeadline.objects.values_list("severity", "days")) == {
        "red": 3,
        "orange": 10,
        "yellow": 30,
    }


# ---- Pages: scope and permissions --------------------------------------------


def _action(client, warning, htmx: bool = False, **data):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(reverse("monitoring:warning_action", args=[warning.pk]), data, **headers)


@pytest.mark.parametrize("role", ROLES)
def test_warning_page_renders_for_role(client, request, book, role):
    client.force_login(request.getfixturevalue(role))

    response = client.get(reverse("monitoring:warning_detail", args=[book.north_red.pk]))

    assert response.status_code == 200
    assert response.context["warning"] == book.north_red


def test_other_branch_officer_gets_404(client, book, south_officer):
    client.force_login(south_officer)

    page = client.get(reverse("monitoring:warning_detail", args=[book.north_red.pk]))
    step = _action(client, book.north_red, action="record", kind="note", note="Hello.")

    assert page.status_code == 404
    assert step.status_code == 404
    assert not book.north_red.actions.exists()


def test_anonymous_user_is_sent_to_login(client, book):
    response = client.get(reverse("monitoring:warning_detail", args=[book.north_red.pk]))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


MANAGER_STEPS = [
    {"action": "acknowledge"},
    {"action": "start"},
    {"action": "assign", "assignee": "ASSIGNEE"},
    {"action": "resolve", "reason": "Paid."},
    {"action": "dismiss", "reason": "False alarm."},
]
RECORD_STEP = {"action": "record", "kind": "contact_borrower", "note": "Called."}


@pytest.mark.parametrize("role", ["officer", "committee_member", "auditor"])
@pytest.mark.parametrize("step", MANAGER_STEPS, ids=lambda step: step["action"])
def test_manager_steps_refused_to_role(client, request, book, role, step, risk_manager):
    client.force_login(request.getfixturevalue(role))
    data = {**step, "assignee": risk_manager.pk} if "assignee" in step else step

    response = _action(client, book.north_red, **data)

    book.north_red.refresh_from_db()
    assert response.status_code == 403
    assert book.north_red.status == WarningStatus.OPEN
    assert not book.north_red.actions.exists()


@pytest.mark.parametrize("role", ["committee_member", "auditor"])
def test_read_only_roles_cannot_record(client, request, book, role):
    client.force_login(request.getfixturevalue(role))

    response = _action(client, book.north_red, **RECORD_STEP)

    assert response.status_code == 403
    assert not book.north_red.actions.exists()


@pytest.mark.parametrize("role", ["officer", "committee_member", "auditor"])
def test_bulk_assign_refused_to_role(client, request, book, role, risk_manager):
    client.force_login(request.getfixturevalue(role))

    response = client.post(
        reverse("monitoring:warning_bulk_assign"),
        {"bulk-warnings": [book.north_red.pk], "bulk-assignee": risk_manager.pk},
    )

    book.north_red.refresh_from_db()
    assert response.status_code == 403
    assert book.north_red.assigned_to is None


def test_officer_records_action_on_own_branch(client, book, officer):
    client.force_login(officer)

    response = _action(client, book.north_red, **RECORD_STEP)

    book.north_red.refresh_from_db()
    assert response.status_code == 302
    assert book.north_red.status == WarningStatus.IN_PROGRESS
    assert _kinds(book.north_red) == [ActionKind.CONTACT_BORROWER]


@pytest.mark.parametrize("role", ["risk_manager", "administrator"])
@pytest.mark.parametrize("step", MANAGER_STEPS, ids=lambda step: step["action"])
def test_manager_steps_allowed_to_role(client, request, book, role, step, officer):
    client.force_login(request.getfixturevalue(role))
    data = {**step, "assignee": officer.pk} if "assignee" in step else step

    response = _action(client, book.north_red, **data)

    assert response.status_code == 302
    assert book.north_red.actions.count() == 1


def test_dismissal_without_reason_is_refused(client, book, risk_manager):
    client.force_login(risk_manager)

    response = _action(client, book.north_red, action="dismiss", reason="  ")

    book.north_red.refresh_from_db()
    assert response.status_code == 200
    assert "Enter the reason for dismissing the warning." in response.content.decode()
    assert response.context["close_form"].errors["reason"] == [
        "Enter the reason for dismissing the warning."
    ]
    assert book.north_red.status == WarningStatus.OPEN
    assert not book.north_red.actions.exists()


def test_htmx_dismissal_without_reason_keeps_panel(client, book, risk_manager):
    client.force_login(risk_manager)

    response = _action(client, book.north_red, htmx=True, action="dismiss", reason="")

    html = response.content.decode()
    book.north_red.refresh_from_db()
    assert response.status_code == 200
    assert 'id="warning-actions"' in html
    assert "Enter the reason for dismissing the warning." in html
    assert book.north_red.status == WarningStatus.OPEN


def test_failed_steps_keep_typed_input(client, book, risk_manager):
    client.force_login(risk_manager)
    long_reason = "Borrower repaid " + "x" * 300

    note = _action(client, book.north_red, htmx=True, action="record", kind="note", note=" ")
    close = _action(client, book.north_red, htmx=True, action="resolve", reason=long_reason)

    assert "Enter the text of the note." in note.content.decode()
    assert '<option value="note" selected>' in note.content.decode()
    assert close.context["close_form"].errors["reason"]
    assert long_reason in close.content.decode()
    assert not book.north_red.actions.exists()


def test_htmx_step_swaps_actions_and_timeline(client, book, risk_manager):
    client.force_login(risk_manager)

    response = _action(
        client,
        book.north_red,
        htmx=True,
        action="record",
        kind="special_inspection",
        note="Visit Monday.",
    )

    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('id="warning-actions"') == 1
    assert 'id="warning-timeline"' in html
    assert 'hx-swap-oob="true"' in html
    assert "Visit Monday." in html
    assert "Action recorded." in html


def test_closed_warning_step_shows_message(client, book, risk_manager):
    client.force_login(risk_manager)
    services.resolve(book.north_red, risk_manager, "Paid.")

    response = _action(client, book.north_red, htmx=True, action="acknowledge")

    assert response.status_code == 200
    assert "closed warning takes no further actions" in response.content.decode()


def test_assign_choices_exclude_other_branch(client, book, risk_manager, officer, south_officer):
    client.force_login(risk_manager)

    page = client.get(reverse("monitoring:warning_detail", args=[book.north_red.pk]))
    step = _action(client, book.north_red, action="assign", assignee=south_officer.pk)

    choices = set(page.context["assign_form"].fields["assignee"].queryset)
    book.north_red.refresh_from_db()
    assert choices == {risk_manager, officer}
    assert step.context["assign_form"].errors["assignee"]
    assert book.north_red.assigned_to is None


def test_unknown_step_is_bad_request(client, book, risk_manager):
    client.force_login(risk_manager)

    response = _action(client, book.north_red, action="delete")

    assert response.status_code == 400


def test_warning_page_shows_evidence_and_loan(client, book, risk_manager):
    client.force_login(risk_manager)
    EarlyWarning.objects.filter(pk=book.north_red.pk).update(
        evidence={"days_past_due": 150, "custom_metric": "7"}
    )
    services.record_action(book.north_red, risk_manager, ActionKind.NOTE, "Owner abroad.")

    response = client.get(reverse("monitoring:warning_detail", args=[book.north_red.pk]))

    html = response.content.decode()
    detail = response.context["detail"]
    assert detail.evidence == [("custom_metric", "7"), ("Days past due", 150)]
    assert detail.position.days_past_due == 150
    assert "Birch Bakery Ltd" in html
    assert "Owner abroad." in html


def test_warning_page_query_count_is_constant(client, book, risk_manager, officer):
    client.force_login(risk_manager)
    with CaptureQueriesContext(connection) as quiet:
        client.get(reverse("monitoring:warning_detail", args=[book.north_red.pk]))
    services.assign([book.north_orange], officer, risk_manager)
    for number in range(5):
        services.record_action(book.north_orange, officer, ActionKind.NOTE, f"Note {number}.")

    with CaptureQueriesContext(connection) as busy:
        client.get(reverse("monitoring:warning_detail", args=[book.north_orange.pk]))

    assert len(busy) == len(quiet)


# ---- Notifications -----------------------------------------------------------


def test_notifications_page_and_mark_read(client, book, risk_manager):
    services.escalate_overdue(AS_OF + timedelta(days=4))
    client.force_login(risk_manager)

    listed = client.get(reverse("monitoring:notifications"))
    first = Notification.objects.filter(recipient=risk_manager).first()
    client.post(reverse("monitoring:notification_mark_read"), {"notification": first.pk})
    unread_after_one = Notification.objects.filter(recipient=risk_manager, read_at=None).count()
    client.post(reverse("monitoring:notification_mark_read"))

    assert listed.status_code == 200
    assert len(listed.context["page_obj"]) == 2
    assert 'class="badge rounded-pill text-bg-danger">2<' in listed.content.decode()
    assert unread_after_one == 1
    assert not Notification.objects.filter(recipient=risk_manager, read_at=None).exists()


def test_mark_read_leaves_other_users_alone(client, book, risk_manager, branch_manager):
    services.escalate_overdue(AS_OF + timedelta(days=4))
    others = Notification.objects.get(recipient=branch_manager)
    client.force_login(risk_manager)

    client.post(reverse("monitoring:notification_mark_read"), {"notification": others.pk})

    others.refresh_from_db()
    assert others.read_at is None


def test_scheduled_escalation_counts_from_business_date(book):
    # The book's run is as of 2023-07-01: red deadlines fall on 2023-07-04, so
    # on the business date nothing is overdue, although today's date is later.
    count = tasks.escalate_overdue_warnings()

    assert count == 0
    assert not EarlyWarning.objects.filter(escalated_at__isnull=False).exists()
