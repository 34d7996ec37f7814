"""Create the five role groups with their model permissions."""

from django.db import migrations

from loans.roles import ROLE_PERMISSIONS, create_role_groups


def create_roles(apps, schema_editor):
    create_role_groups(apps)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMISSIONS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0001_initial"),
        ("loans", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
