"""Indexes that let the warning queue read its first page in sort order.

The queue lists active warnings sorted by severity (red first) or by age. Without
an index in that order, PostgreSQL sorted every active warning, with its loan,
borrower and branch, for each page. The severity expression must stay identical
to `_SEVERITY_RANK` in monitoring/selectors.py, or PostgreSQL will not use it.
"""

from django.db import migrations, models
from django.db.models import Case, F, IntegerField, Q, Value, When

ACTIVE = Q(status__in=["open", "acknowledged", "in_progress"])
SEVERITY_RANK = Case(
    When(severity="red", then=Value(3)),
    When(severity="orange", then=Value(2)),
    When(severity="yellow", then=Value(1)),
    default=Value(0),
    output_field=IntegerField(),
)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0006_guarantee_network_member"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="earlywarning",
            index=models.Index(
                SEVERITY_RANK.desc(),
                F("first_seen_on"),
                F("id"),
                condition=ACTIVE,
                name="warning_queue_severity_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="earlywarning",
            index=models.Index(
                fields=["first_seen_on", "id"],
                condition=ACTIVE,
                name="warning_queue_first_seen_idx",
            ),
        ),
    ]
