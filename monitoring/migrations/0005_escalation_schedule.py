"""Seed the days to resolve a warning per severity, and schedule the daily escalation.

Administrators change both in the admin. The escalation runs in the morning,
after the nightly close-of-day run, and counts deadlines to the current date
in TIME_ZONE.
"""

from django.db import migrations

TASK_NAME = "Escalate red warnings past their deadline"
DEADLINE_DAYS = {"red": 3, "orange": 10, "yellow": 30}


def seed_and_schedule(apps, schema_editor):
    SeverityDeadline = apps.get_model("monitoring", "SeverityDeadline")
    for severity, days in DEADLINE_DAYS.items():
        SeverityDeadline.objects.get_or_create(severity=severity, defaults={"days": days})

    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0", hour="7", day_of_week="*", day_of_month="*", month_of_year="*"
    )
    PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "monitoring.escalate_overdue_warnings",
            "crontab": crontab,
            "enabled": True,
        },
    )


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0004_warning_lifecycle"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed_and_schedule, unschedule)]
