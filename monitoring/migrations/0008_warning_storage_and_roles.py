"""Leave page space for the nightly refresh of warnings; give the roles the newer models.

Every close-of-day run rewrites the last-seen date and evidence of each active
warning. None of those columns is indexed, so with free space in the page
PostgreSQL keeps the new row version there without touching the eight indexes
of the table (a heap-only update). With the default fill factor of 100 the pages
of a freshly filled table are full and every refresh updated every index.

The role groups were created before the warning rules, signals and guarantee
network tables existed, so they are updated here with those models' permissions.
"""

from django.db import migrations

WARNING_FILL_FACTOR = 70


def set_fill_factor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"ALTER TABLE monitoring_earlywarning SET (fillfactor = {WARNING_FILL_FACTOR})"
        )


def reset_fill_factor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE monitoring_earlywarning RESET (fillfactor)")


def update_role_groups(apps, schema_editor):
    from loans.roles import create_role_groups

    create_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0007_warning_queue_indexes"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(set_fill_factor, reset_fill_factor),
        migrations.RunPython(update_role_groups, migrations.RunPython.noop),
    ]
