"""The audit trail: the history records of the loan book and monitoring, filtered and diffed.

Every model of the apps loans and monitoring that django-simple-history
tracks is audited. A page is read newest first with keyset paging (the
history date and id of a row are the cursor), so no page counts the rows
or skips over them. The changes of each row are taken against the previous
history row of the same record, which one query fetches for the whole page.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache

from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import F, Field, ManyToManyField, Model, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _
from simple_history.exceptions import NotHistoricalModelError
from simple_history.models import HistoricalRecords
from simple_history.utils import get_history_model_for_model

from loans.access import ADMINISTRATOR, AUDITOR, RISK_MANAGER, User, has_role

AUDITED_APPS = ("loans", "monitoring")
DEFAULT_MODEL_KEY = "loans.loan"
PAGE_SIZE = 50

CREATED, CHANGED, DELETED = "+", "~", "-"
CHANGE_TYPES = {CREATED: _("Created"), CHANGED: _("Changed"), DELETED: _("Deleted")}

# Every history reason the close-of-day run writes starts with this, in any case.
CLOSE_OF_DAY_REASON_PREFIX = "close-of-day"
CLOSE_OF_DAY_USER = _("Close-of-day run")
# Rows with no user and another reason: imports, scheduled jobs, the shell.
SYSTEM_USER = _("System")


def may_browse_audit_trail(user: User) -> bool:
    """Return whether the user may browse the history of every record."""
    if not user.is_authenticated:
        return False
    return user.is_superuser or has_role(user, AUDITOR, RISK_MANAGER, ADMINISTRATOR)


# ---- Audited models ----------------------------------------------------------


@dataclass(frozen=True)
class AuditedModel:
    """A history-tracked model: its key ("app_label.model_name"), name and history model."""

    key: str
    model: type[Model]
    history_model: type[Model]

    @property
    def label(self) -> str:
        return capfirst(self.model._meta.verbose_name)

    @property
    def pk_name(self) -> str:
        return self.model._meta.pk.name

    @property
    def fields(self) -> list[Field]:
        """Return the tracked fields whose changes are shown: all but the primary key."""
        return [field for field in self.history_model.tracked_fields if not field.primary_key]

    @property
    def m2m_fields(self) -> list[ManyToManyField]:
        return list(self.history_model._history_m2m_fields)


@cache
def audited_models() -> dict[str, AuditedModel]:
    """Return every history-tracked model of the audited apps, by key, found in the app registry."""
    found = {}
    for app_label in AUDITED_APPS:
        for model in apps.get_app_config(app_label).get_models():
            try:
                history_model = get_history_model_for_model(model)
            except NotHistoricalModelError:
                continue
            key = model._meta.label_lower
            found[key] = AuditedModel(key=key, model=model, history_model=history_model)
    return found


def audited_model_choices() -> list[tuple[str, str]]:
    """Return (key, label) of every audited model, sorted by label in the active language."""
    return sorted(((key, model.label) for key, model in audited_models().items()), key=_second)


def _second(pair: tuple[str, str]) -> str:
    return pair[1].casefold()


# ---- Filters and pages -------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    """Filters of one model's history: record, user, change type and dates.

    `user_id` 0 selects the rows written with no user (the close-of-day run,
    imports, scheduled jobs). `date_to` is inclusive, and both dates are days in
    the active time zone.
    """

    model: AuditedModel
    record_id: int | None = None
    user_id: int | None = None
    change_type: str = ""
    date_from: date | None = None
    date_to: date | None = None


NO_USER_ID = 0


def _start_of_day(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def history_rows(filters: AuditFilters) -> QuerySet:
    """Return the history rows that match the filters, newest first, with the username."""
    rows = filters.model.history_model._default_manager.all()
    if filters.record_id is not None:
        rows = rows.filter(**{filters.model.pk_name: filters.record_id})
    if filters.user_id == NO_USER_ID:
        rows = rows.filter(history_user__isnull=True)
    elif filters.user_id is not None:
        rows = rows.filter(history_user_id=filters.user_id)
    if filters.change_type:
        rows = rows.filter(history_type=filters.change_type)
    if filters.date_from is not None:
        rows = rows.filter(history_date__gte=_start_of_day(filters.date_from))
    if filters.date_to is not None:
        rows = rows.filter(history_date__lt=_start_of_day(filters.date_to + timedelta(days=1)))
    return rows.annotate(history_username=F("history_user__username")).order_by(
        "-history_date", "-history_id"
    )


def _older_than(rows: QuerySet, history_date, history_id: int) -> QuerySet:
    """Keep the rows before (history_date, history_id) in the newest-first order.

    The plain `history_date <=` bound lets PostgreSQL start its index scan at
    the cursor; the OR only breaks ties of equal dates.
    """
    return rows.filter(
        Q(history_date__lt=history_date) | Q(history_id__lt=history_id),
        history_date__lte=history_date,
    )


def _newer_than(rows: QuerySet, history_date, history_id: int) -> QuerySet:
    return rows.filter(
        Q(history_date__gt=history_date) | Q(history_id__gt=history_id),
        history_date__gte=history_date,
    )


@dataclass(frozen=True)
class FieldChange:
    """One field of a history row: its name, label and the old and new values as shown."""

    name: str
    label: str
    old: str
    new: str


@dataclass(frozen=True)
class AuditEntry:
    """A history row and its changes against the previous row of the same record."""

    history_id: int
    history_date: datetime
    user_id: int | None
    username: str
    change_type: str
    record_id: int
    reason: str
    changes: list[FieldChange]
    has_previous: bool

    @property
    def user_label(self) -> str:
        if self.username:
            return self.username
        if self.reason.casefold().startswith(CLOSE_OF_DAY_REASON_PREFIX):
            return str(CLOSE_OF_DAY_USER)
        return str(SYSTEM_USER)

    @property
    def is_system(self) -> bool:
        return self.user_id is None

    @property
    def change_type_label(self) -> str:
        return str(CHANGE_TYPES.get(self.change_type, self.change_type))


@dataclass(frozen=True)
class AuditPage:
    """One page of entries, newest first, with the cursors of the pages around it."""

    entries: list[AuditEntry]
    newer_cursor: int | None
    older_cursor: int | None


def audit_page(
    filters: AuditFilters, before: int | None = None, after: int | None = None
) -> AuditPage:
    """Return the page of entries older than history id `before`, or newer than `after`.

    With neither cursor, return the newest page. A cursor is the history id
    of the last (or first) row of the page next to this one. Any history id
    of the model works as a cursor, whether or not its row matches the filters.
    """
    rows = history_rows(filters)
    manager = filters.model.history_model._default_manager
    if after is not None:
        cursor_date = Subquery(manager.filter(history_id=after).values("history_date")[:1])
        rows = _newer_than(rows, cursor_date, after).order_by("history_date", "history_id")
    elif before is not None:
        cursor_date = Subquery(manager.filter(history_id=before).values("history_date")[:1])
        rows = _older_than(rows, cursor_date, before)
    fetched = list(rows[: PAGE_SIZE + 1])
    more = len(fetched) > PAGE_SIZE
    fetched = fetched[:PAGE_SIZE]
    if after is not None:
        fetched.reverse()
        has_newer, has_older = more, True
    else:
        has_newer, has_older = before is not None, more
    entries = build_entries(filters.model, fetched)
    return AuditPage(
        entries=entries,
        newer_cursor=entries[0].history_id if entries and has_newer else None,
        older_cursor=entries[-1].history_id if entries and has_older else None,
    )


def iter_entries(filters: AuditFilters, chunk_size: int) -> Iterator[AuditEntry]:
    """Yield every entry that matches the filters, newest first, `chunk_size` rows per query."""
    rows = history_rows(filters)
    chunk = list(rows[:chunk_size])
    while chunk:
        yield from build_entries(filters.model, chunk)
        if len(chunk) < chunk_size:
            return
        last = chunk[-1]
        chunk = list(_older_than(rows, last.history_date, last.history_id)[:chunk_size])


# ---- Differences -------------------------------------------------------------


def build_entries(audited: AuditedModel, rows: list[Model]) -> list[AuditEntry]:
    """Diff each row against the previous row of its record, with one query for all of them."""
    previous = _previous_rows(audited, rows)
    m2m_values = _m2m_values(audited, [*rows, *previous.values()])
    entries = []
    for row in rows:
        before = previous.get(row.history_id)
        entries.append(
            AuditEntry(
                history_id=row.history_id,
                history_date=row.history_date,
                user_id=row.history_user_id,
                username=row.history_username or "",
                change_type=row.history_type,
                record_id=getattr(row, audited.pk_name),
                reason=row.history_change_reason or "",
                changes=_changes(audited, row, before, m2m_values),
                has_previous=before is not None,
            )
        )
    return entries


def _previous_rows(audited: AuditedModel, rows: list[Model]) -> dict[int, Model]:
    """Return, by history id of each row, the previous history row of the same record.

    One query: for each row a subquery takes the history id just before it
    from the (record id, history_date) index, and the outer query loads
    those rows. Rows on the same page are previous rows of each other too,
    so each row's predecessor is the latest earlier row among both sets.
    """
    if not rows:
        return {}
    manager = audited.history_model._default_manager
    pk_name = audited.pk_name
    earlier = _older_than(
        manager.filter(**{pk_name: OuterRef(pk_name)}),
        OuterRef("history_date"),
        OuterRef("history_id"),
    ).order_by("-history_date", "-history_id")
    previous_ids = (
        manager.filter(history_id__in=[row.history_id for row in rows])
        .annotate(previous_id=Subquery(earlier.values("history_id")[:1]))
        .values("previous_id")
    )
    fetched = list(manager.filter(history_id__in=previous_ids))

    by_record: dict[int, list[Model]] = defaultdict(list)
    for row in {row.history_id: row for row in [*rows, *fetched]}.values():
        by_record[getattr(row, pk_name)].append(row)
    previous = {}
    for versions in by_record.values():
        versions.sort(key=lambda row: (row.history_date, row.history_id))
        for earlier_row, row in zip(versions, versions[1:], strict=False):
            previous[row.history_id] = earlier_row
    return previous


def _m2m_values(audited: AuditedModel, rows: list[Model]) -> dict[str, dict[int, frozenset]]:
    """Return, by many-to-many field and history id, the ids in the snapshot (one query each)."""
    values: dict[str, dict[int, frozenset]] = {}
    history_ids = [row.history_id for row in rows]
    for field in audited.m2m_fields:
        snapshot_model = HistoricalRecords.m2m_models[field]
        target = snapshot_model._meta.get_field(field.m2m_reverse_field_name()).attname
        members: dict[int, set] = defaultdict(set)
        pairs = snapshot_model._default_manager.filter(history_id__in=history_ids).values_list(
            "history_id", target
        )
        for history_id, member_id in pairs:
            members[history_id].add(member_id)
        values[field.name] = {
            history_id: frozenset(members.get(history_id, ())) for history_id in history_ids
        }
    return values


def _changes(
    audited: AuditedModel, row: Model, before: Model | None, m2m_values: dict
) -> list[FieldChange]:
    """Return the fields that differ from `before`, or each field with a value of a created row.

    A changed or deleted row with no earlier row (history recorded after
    the record existed) has no changes to show.
    """
    if before is None and row.history_type != CREATED:
        return []
    changes = []
    for field in audited.fields:
        new = getattr(row, field.attname)
        old = getattr(before, field.attname) if before is not None else None
        if before is None and new in (None, ""):
            continue
        if before is not None and old == new:
            continue
        changes.append(_field_change(field, old, new))
    for field in audited.m2m_fields:
        new = m2m_values[field.name][row.history_id]
        old = m2m_values[field.name][before.history_id] if before is not None else frozenset()
        if old != new:
            changes.append(_field_change(field, old, new))
    return changes


def _field_change(field: Field, old: object, new: object) -> FieldChange:
    return FieldChange(
        name=field.name,
        label=capfirst(field.verbose_name),
        old=display_value(field, old),
        new=display_value(field, new),
    )


def display_value(field: Field, value: object) -> str:
    """Return a stored value as the audit trail shows it.

    Foreign keys show the id, choices their label, many-to-many sets their
    ids in order, datetimes the local time, JSON its text with sorted keys.
    """
    if value is None:
        return ""
    if isinstance(value, frozenset):
        return ", ".join(str(member) for member in sorted(value))
    if field.is_relation:
        return str(value)
    if field.choices:
        label = dict(field.flatchoices).get(value, value)
        return str(label)
    if isinstance(value, bool):
        return str(_("yes") if value else _("no"))
    if isinstance(value, datetime):
        local = timezone.localtime(value) if timezone.is_aware(value) else value
        return local.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
    return str(value)
