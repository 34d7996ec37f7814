"""Early-warning rules, one family per module, registered by code.

A rule is a SQL condition over a loan's close-of-day position (alias `p`),
its loan row (alias `l`) and any tables the rule joins, with the evidence to
store when it fires. The close-of-day run evaluates every enabled rule for a
chunk of loans in a few statements, whatever the number of loans.

Thresholds are named values that administrators edit in `WarningRule`. The
SQL of a rule refers to them as `{name}`; they are validated against the
rule's JSON schema (numbers only) and written into the statement as
literals, so the planner treats them as constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jsonschema
from django.core.exceptions import ValidationError
from django.utils.functional import Promise
from django.utils.translation import gettext as _

REGISTRY: dict[str, Rule] = {}

Thresholds = dict[str, int | Decimal]


@dataclass(frozen=True)
class ChunkTable:
    """A temporary table of facts about the chunk's loans that several rules join.

    The run fills it once per chunk, before the rules that name it are
    evaluated, so those rules do not each repeat the same joins. `select` may
    use the chunk parameters; `key` is the column indexed for the joins.
    """

    name: str
    select: str
    key: str = "loan_id"


@dataclass(frozen=True)
class Rule:
    """One early-warning rule.

    `joins` contains extra `JOIN` clauses for the chunk's select; they may use
    the parameters `%(as_of)s`, `%(low)s` and `%(high)s` (the chunk's loan
    id range). `phase` 1 rules run after the positions are refreshed, phase
    2 rules after classification, when every loan of the book has today's
    class. `closes_itself` sets what happens when the condition clears: the
    warning is resolved by the run, or it stays open, marked as cleared,
    until a person closes it. `chunk_tables` are filled before the rule is
    evaluated, and its joins may read them by name.
    """

    code: str
    family: str
    severity: str
    description: str | Promise
    condition: str
    evidence: dict[str, str]
    thresholds: Thresholds = field(default_factory=dict)
    schema: dict[str, dict[str, Any]] = field(default_factory=dict)
    joins: str = ""
    closes_itself: bool = True
    phase: int = 1
    chunk_tables: tuple[ChunkTable, ...] = ()
    # Pairs of thresholds (smaller, larger) where the first must stay below
    # the second, which a JSON schema cannot express.
    ordered: tuple[tuple[str, str], ...] = ()

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": self.schema,
            "required": sorted(self.thresholds),
            "additionalProperties": False,
        }

    def clean_thresholds(self, values: dict[str, Any]) -> Thresholds:
        """Return `values` checked against the schema, numbers as int or Decimal.

        Raise ValidationError naming the threshold and the value refused.
        """
        if not isinstance(values, dict):
            raise ValidationError(_("Thresholds must be an object of names and numbers."))
        validator = jsonschema.Draft202012Validator(self.json_schema())
        errors = sorted(validator.iter_errors(values), key=lambda error: list(error.path))
        if errors:
            raise ValidationError(
                [
                    _("%(rule)s threshold %(name)s: %(problem)s")
                    % {
                        "rule": self.code,
                        "name": ".".join(str(part) for part in error.path) or "-",
                        "problem": error.message,
                    }
                    for error in errors
                ]
            )
        problems = [
            _("%(rule)s threshold %(name)s: %(value)s must be less than %(other)s (%(limit)s)")
            % {
                "rule": self.code,
                "name": smaller,
                "value": values[smaller],
                "other": larger,
                "limit": values[larger],
            }
            for smaller, larger in self.ordered
            if values[smaller] >= values[larger]
        ]
        if problems:
            raise ValidationError(problems)
        # JSON Schema counts 30.0 as an integer. SQL must get 30, because a
        # date plus a decimal is an error on PostgreSQL.
        return {
            name: int(value)
            if self.schema.get(name, {}).get("type") == "integer"
            else Decimal(str(value))
            for name, value in values.items()
        }

    def describe(self, thresholds: dict[str, Any] | None = None) -> str:
        """Return the description in the active language, with the thresholds' values.

        Descriptions name their thresholds as `%(name)s`, so that a page shows
        the value an administrator set, not the default written in the code.
        """
        text = str(self.description)
        if "%(" not in text:
            return text
        values = {**self.thresholds, **(thresholds or {})}
        return text % {name: _number_text(value) for name, value in values.items()}

    def render(self, text: str, thresholds: Thresholds) -> str:
        """Replace each `{name}` in `text` by the threshold's SQL literal."""

        def literal(match: re.Match) -> str:
            value = thresholds[match.group(1)]
            if isinstance(value, bool) or not isinstance(value, int | Decimal):
                raise TypeError(f"Threshold {match.group(1)} of {self.code} is not a number.")
            return str(value)

        if not thresholds:
            return text
        names = "|".join(re.escape(name) for name in thresholds)
        return re.sub(r"\{(" + names + r")\}", literal, text)


@dataclass(frozen=True)
class ConfiguredRule:
    """A rule with the administrator's severity and thresholds applied."""

    rule: Rule
    severity: str
    thresholds: Thresholds

    @property
    def code(self) -> str:
        return self.rule.code

    @property
    def family(self) -> str:
        return self.rule.family

    @property
    def closes_itself(self) -> bool:
        return self.rule.closes_itself

    @property
    def condition(self) -> str:
        return self.rule.render(self.rule.condition, self.thresholds)

    @property
    def joins(self) -> str:
        return self.rule.render(self.rule.joins, self.thresholds)

    @property
    def chunk_tables(self) -> tuple[ChunkTable, ...]:
        return self.rule.chunk_tables

    @property
    def evidence(self) -> dict[str, str]:
        return {
            key: self.rule.render(value, self.thresholds)
            for key, value in self.rule.evidence.items()
        }


def register(rule: Rule) -> Rule:
    if rule.code in REGISTRY:
        raise ValueError(f"Warning rule {rule.code} is registered twice.")
    rule.clean_thresholds(dict(rule.thresholds))
    REGISTRY[rule.code] = rule
    return rule


def all_rules() -> list[Rule]:
    """Return every rule defined in code, in a stable order."""
    from . import (  # noqa: F401  (register families)
        collateral,
        external,
        guarantor,
        inspection,
        repayment,
    )

    return sorted(REGISTRY.values(), key=lambda rule: (rule.family, rule.code))


def get_rule(code: str) -> Rule | None:
    all_rules()
    return REGISTRY.get(code)


def configured_rules(
    phase: int | None = None, codes: list[str] | None = None
) -> list[ConfiguredRule]:
    """Return the enabled rules with their settings, in one query.

    A rule without a `WarningRule` row (a new rule before `sync_rules` has
    run) uses its defaults and is enabled. Stored thresholds that no longer
    match the schema are refused with ValidationError, so a run never
    evaluates a rule with unvalidated settings.
    """
    from ..models import WarningRule

    settings = {row.code: row for row in WarningRule.objects.all()}
    configured = []
    for rule in all_rules():
        if phase is not None and rule.phase != phase:
            continue
        if codes is not None and rule.code not in codes:
            continue
        row = settings.get(rule.code)
        if row is None:
            configured.append(ConfiguredRule(rule, rule.severity, dict(rule.thresholds)))
            continue
        if not row.enabled:
            continue
        values = {**rule.thresholds, **(row.thresholds or {})}
        configured.append(ConfiguredRule(rule, row.severity, rule.clean_thresholds(values)))
    return configured


def sync_rules() -> int:
    """Create the `WarningRule` row of each rule that has none; return how many.

    Existing rows keep the administrator's severity, thresholds and enabled
    flag; only the family and description follow the code. A threshold added
    in code is added to the row with its default.
    """
    from ..models import WarningRule

    created = 0
    existing = {row.code: row for row in WarningRule.objects.all()}
    for rule in all_rules():
        defaults = {name: _json_number(value) for name, value in rule.thresholds.items()}
        row = existing.get(rule.code)
        if row is None:
            WarningRule.objects.create(
                code=rule.code,
                family=rule.family,
                severity=rule.severity,
                description=rule.describe(defaults)[:255],
                thresholds=defaults,
            )
            created += 1
            continue
        thresholds = {**defaults, **(row.thresholds or {})}
        thresholds = {name: thresholds[name] for name in defaults}
        description = rule.describe(thresholds)[:255]
        if (row.family, row.description, row.thresholds) != (rule.family, description, thresholds):
            row.family = rule.family
            row.description = description
            row.thresholds = thresholds
            row.save()
    return created


def rule_descriptions() -> dict[str, str]:
    """Return each rule's description with its administrator's thresholds, in one query."""
    from ..models import WarningRule

    stored = dict(WarningRule.objects.values_list("code", "thresholds"))
    return {rule.code: rule.describe(stored.get(rule.code)) for rule in all_rules()}


def _number_text(value: Any) -> str:
    """Return a threshold as people write it: 20 and 12.5, not 20.0 or 12.50."""
    if isinstance(value, float | Decimal):
        number = Decimal(str(value)).normalize()
        return f"{number:f}"
    return str(value)


def _json_number(value: int | Decimal) -> int | float | str:
    if isinstance(value, int):
        return value
    # JSON has no decimal type; a whole Decimal is stored as an integer.
    return int(value) if value == value.to_integral_value() else float(value)
