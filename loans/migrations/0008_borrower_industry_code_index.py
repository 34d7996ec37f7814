"""Index the borrowers' industry codes for the watched-industry warning rule.

The rule finds the borrowers whose code starts with a watched prefix with a
range comparison in collation "C" (monitoring.rules.external), which this
index answers without reading the table. It is created on PostgreSQL only:
SQLite compares text by its bytes already and its demo books are small.
"""

from django.db import migrations

CREATE = (
    "CREATE INDEX IF NOT EXISTS borrower_industry_code_idx ON loans_borrower "
    '((industry_code COLLATE "C"), id)'
)
DROP = "DROP INDEX IF EXISTS borrower_industry_code_idx"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("loans", "0007_document_inspection")]

    operations = [migrations.RunPython(create_index, drop_index)]
