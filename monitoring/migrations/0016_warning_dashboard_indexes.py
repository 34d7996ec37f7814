"""Partial indexes for the dashboards' counts of active warnings and unratified floors.

The risk dashboard counts active warnings by family, severity and age, and
the officer and branch dashboards count them by their loan's officer. With
800,000 active warnings, PostgreSQL read the table's rows for both. The
committee dashboard counts the floor changes not yet ratified, a small part
of a table that every run adds to. These indexes hold every column the
counts read, so they count from the index.
"""

from django.db import migrations, models

ACTIVE = models.Q(status__in=["open", "acknowledged", "in_progress"])


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0015_history_audit_indexes")]

    operations = [
        migrations.AddIndex(
            model_name="earlywarning",
            index=models.Index(
                fields=["family", "severity", "first_seen_on"],
                condition=ACTIVE,
                name="warning_active_family_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="earlywarning",
            index=models.Index(
                fields=["loan", "severity"], condition=ACTIVE, name="warning_active_loan_idx"
            ),
        ),
        migrations.AddIndex(
            model_name="classificationchange",
            index=models.Index(
                fields=["as_of"],
                condition=models.Q(source="floor", ratified=False),
                name="change_unratified_floor_idx",
            ),
        ),
    ]
