"""Check the loans and warnings of inspections once per statement instead of with foreign keys.

A foreign key's check locked the loan row (and for a special inspection
the warning row) of every inspection inserted, and the first lock on a page
wrote the whole page to the WAL. Statement-level triggers keep the
guarantee on PostgreSQL with one anti-join per statement and no locks: an
inserted inspection must name an existing loan and, if any, an existing
warning, and a deleted loan or warning must have no inspections left that
name it (Django's CASCADE and SET_NULL see to that first). SQLite, the
demonstration database, keeps no check, as with the other keys Django
creates without a constraint.
"""

import django.db.models.deletion
from django.db import migrations, models

CREATE = """
CREATE FUNCTION inspection_references_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT n.loan_id INTO missing
    FROM inspection_new n
    WHERE NOT EXISTS (SELECT 1 FROM loans_loan l WHERE l.id = n.loan_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'An inspection names loan %, which does not exist.', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT n.trigger_warning_id INTO missing
    FROM inspection_new n
    WHERE n.trigger_warning_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM monitoring_earlywarning w WHERE w.id = n.trigger_warning_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'An inspection names warning %, which does not exist.', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER inspection_references_exist
    AFTER INSERT ON monitoring_inspection
    REFERENCING NEW TABLE AS inspection_new
    FOR EACH STATEMENT EXECUTE FUNCTION inspection_references_exist();

CREATE FUNCTION loan_has_no_inspections() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept bigint;
BEGIN
    SELECT o.id INTO kept
    FROM loan_old o
    WHERE EXISTS (SELECT 1 FROM monitoring_inspection i WHERE i.loan_id = o.id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'Loan % still has inspections and cannot be deleted.', kept
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER loan_has_no_inspections
    AFTER DELETE ON loans_loan
    REFERENCING OLD TABLE AS loan_old
    FOR EACH STATEMENT EXECUTE FUNCTION loan_has_no_inspections();

CREATE FUNCTION warning_has_no_inspections() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept bigint;
BEGIN
    SELECT o.id INTO kept
    FROM warning_old o
    WHERE EXISTS (SELECT 1 FROM monitoring_inspection i WHERE i.trigger_warning_id = o.id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'Warning % is named by an inspection and cannot be deleted.', kept
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER warning_has_no_inspections
    AFTER DELETE ON monitoring_earlywarning
    REFERENCING OLD TABLE AS warning_old
    FOR EACH STATEMENT EXECUTE FUNCTION warning_has_no_inspections();
"""

DROP = """
DROP TRIGGER warning_has_no_inspections ON monitoring_earlywarning;
DROP FUNCTION warning_has_no_inspections();
DROP TRIGGER loan_has_no_inspections ON loans_loan;
DROP FUNCTION loan_has_no_inspections();
DROP TRIGGER inspection_references_exist ON monitoring_inspection;
DROP FUNCTION inspection_references_exist();
"""


def create_triggers(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_triggers(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("loans", "0009_history_audit_indexes"),
        ("monitoring", "0025_inspection_trigger_warning_without_constraint"),
    ]

    operations = [
        migrations.AlterField(
            model_name="inspection",
            name="loan",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="inspections",
                to="loans.loan",
            ),
        ),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
