"""The history declaration of every audited model: simple-history with the audit trail's indexes."""

from __future__ import annotations

from django.db import models
from django.db.backends.utils import names_digest
from simple_history.models import HistoricalRecords


class AuditedHistoricalRecords(HistoricalRecords):
    """django-simple-history's `HistoricalRecords` with the indexes the audit trail filters on.

    The history model gets an index on (history_user, history_date) and one on
    (tracked record id, history_date), so the audit trail finds a user's or a
    record's changes in a date range, newest first, without a scan. They
    replace the single-column indexes that simple-history puts on history_user
    and on the record id, which lead them. history_date keeps its own index.
    A partial index on the dates of deletions, which are rare, serves the
    "deleted" filter that would otherwise read the whole table.

    `written_by_run` marks a model whose history rows come mostly from the
    close-of-day run, with no user. Its user index then leaves those rows
    out: the index of dates serves the "system" filter, which matches most
    rows, and the run's inserts skip one index entry each.
    """

    def __init__(self, *args, written_by_run: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.written_by_run = written_by_run

    def copy_fields(self, model: type[models.Model]) -> dict[str, models.Field]:
        fields = super().copy_fields(model)
        # Many-to-many snapshot tables copy an auto-created through model; they
        # get no composite index, so they keep the one on the id.
        if not model._meta.auto_created:
            fields[model._meta.pk.name].db_index = False
        return fields

    def get_extra_fields(self, model: type[models.Model], fields: dict) -> dict:
        extra = super().get_extra_fields(model, fields)
        user = extra.get("history_user")
        if isinstance(user, models.ForeignKey):
            user.db_index = False
        return extra

    def get_meta_options(self, model: type[models.Model]) -> dict:
        options = super().get_meta_options(model)
        digest = names_digest(model._meta.label_lower, length=8)
        if self.written_by_run:
            # A partial index needs a name: unique per model and at most 30 characters.
            by_user = models.Index(
                fields=["history_user", "history_date"],
                condition=models.Q(history_user__isnull=False),
                name=f"history_user_{digest}",
            )
        else:
            by_user = models.Index(fields=["history_user", "history_date"])
        options["indexes"] = [
            *options.get("indexes", ()),
            by_user,
            models.Index(fields=[model._meta.pk.name, "history_date"]),
            models.Index(
                fields=["history_date"],
                condition=models.Q(history_type="-"),
                name=f"history_deleted_{digest}",
            ),
        ]
        return options
