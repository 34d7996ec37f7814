"""Create the inspection policy with the defaults of the product brief, and refresh the roles."""

from django.db import migrations

# Days from disbursement to the first inspection: a fund-use check within 15
# days for working capital and fixed-asset loans, 30 days for the others.
FIRST_INSPECTION_DAYS = {
    "working_capital": 15,
    "fixed_asset": 15,
    "trade_finance": 30,
    "revolving_line": 30,
}


def create_policy(apps, schema_editor):
    InspectionPolicy = apps.get_model("monitoring", "InspectionPolicy")
    FirstInspectionTerm = apps.get_model("monitoring", "FirstInspectionTerm")
    if not InspectionPolicy.objects.exists():
        InspectionPolicy.objects.create()
    for product, days in FIRST_INSPECTION_DAYS.items():
        FirstInspectionTerm.objects.get_or_create(product=product, defaults={"days": days})


def update_role_groups(apps, schema_editor):
    from loans.roles import create_role_groups

    create_role_groups(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0011_inspections"),
        ("loans", "0007_document_inspection"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(create_policy, migrations.RunPython.noop),
        migrations.RunPython(update_role_groups, migrations.RunPython.noop),
    ]
