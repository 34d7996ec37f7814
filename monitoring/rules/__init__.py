"""Early-warning rules, one family per module, registered by code.

A rule is a SQL condition over a loan's close-of-day position (alias `p`)
and its loan row (alias `l`), with the evidence to store when it fires.
The close-of-day run evaluates every enabled rule for a chunk of loans in a
few statements, whatever the number of loans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils.functional import Promise

REGISTRY: dict[str, Rule] = {}


@dataclass(frozen=True)
class Rule:
    code: str
    family: str
    severity: str
    description: str | Promise
    condition: str
    evidence: dict[str, str]
    thresholds: dict[str, int | str] = field(default_factory=dict)
    closes_itself: bool = True


def register(rule: Rule) -> Rule:
    if rule.code in REGISTRY:
        raise ValueError(f"Warning rule {rule.code} is registered twice.")
    REGISTRY[rule.code] = rule
    return rule


def all_rules() -> list[Rule]:
    from . import repayment  # noqa: F401  (registers the repayment family)

    return list(REGISTRY.values())
