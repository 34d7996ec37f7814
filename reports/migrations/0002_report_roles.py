"""Give the roles their permissions on the report models."""

from django.db import migrations


def update_role_groups(apps, schema_editor):
    from loans.roles import create_role_groups

    create_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("reports", "0001_monthly_reports"),
        ("monitoring", "0014_committee_and_meetings"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(update_role_groups, migrations.RunPython.noop)]
