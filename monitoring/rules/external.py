"""External and manual family: signals that staff record about a borrower, and watched industries.

Each kind of `ExternalSignal` has its own rule, so that administrators can set
the severity of each kind, and a borrower with litigation and tax arrears
gets two warnings on each open loan. A signal counts on a run date when it was
observed on or before that date and has not ended on or before it.

A signal warning does not close itself (`closes_itself=False`). When the last
open signal of its kind ends, the run marks the warning as cleared, and a
person resolves it. The end of a lawsuit or an enforcement is a fact that
someone should read before the loan counts as safe again.

The watched-industry rule does close itself. An administrator who removes
or deactivates a prefix has already decided for the whole book, so there is
nothing left for a person to check on each loan.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from ..models import SignalKind
from ..sql import as_of_param
from . import Rule, register

FAMILY = "external"

# Characters of a signal's description stored in the warning's evidence.
DESCRIPTION_EVIDENCE_LENGTH = 200

# Default severity and description of the rule for each signal kind.
_SIGNAL_RULES = {
    SignalKind.LITIGATION: ("orange", _("Litigation against the borrower is recorded and open.")),
    SignalKind.ENFORCEMENT: ("red", _("Enforcement against the borrower is recorded and open.")),
    SignalKind.TAX_ARREARS: ("orange", _("Tax arrears of the borrower are recorded and open.")),
    SignalKind.KEY_PERSON_LEAVING: (
        "yellow",
        _("A key person of the borrower is leaving or has left."),
    ),
    SignalKind.NEGATIVE_NEWS: ("yellow", _("Negative news about the borrower is recorded.")),
    SignalKind.PRODUCTION_HALT: (
        "red",
        _("The borrower's production has halted and not restarted."),
    ),
}


def _signal_open(alias: str) -> str:
    """Return the condition that signal `alias` applies on the run date."""
    as_of = as_of_param()
    return (
        f"{alias}.observed_on <= {as_of}"
        f" AND ({alias}.ended_on IS NULL OR {alias}.ended_on > {as_of})"
    )


def _signal_rule(kind: SignalKind, severity: str, description) -> Rule:
    """Return the rule for one signal kind.

    A borrower may have several open signals of one kind. The evidence names
    the earliest observed of them (the lowest id among those observed the
    same day), so each loan gives one hit, and counts them all.
    """
    earliest = f"""NOT EXISTS (
        SELECT 1 FROM monitoring_externalsignal earlier
        WHERE earlier.borrower_id = s.borrower_id AND earlier.kind = s.kind
          AND {_signal_open("earlier")}
          AND (earlier.observed_on < s.observed_on
               OR (earlier.observed_on = s.observed_on AND earlier.id < s.id))
    )"""
    open_count = f"""(
        SELECT COUNT(*) FROM monitoring_externalsignal same
        WHERE same.borrower_id = s.borrower_id AND same.kind = s.kind AND {_signal_open("same")}
    )"""
    return Rule(
        code=f"EXT_{kind.value.upper()}",
        family=FAMILY,
        severity=severity,
        description=description,
        joins="JOIN monitoring_externalsignal s ON s.borrower_id = l.borrower_id",
        condition=f"s.kind = '{kind.value}' AND {_signal_open('s')} AND {earliest}",
        evidence={
            "kind": f"'{kind.value}'",
            "signal_id": "s.id",
            "observed_on": "CAST(s.observed_on AS TEXT)",
            "description": f"SUBSTR(s.description, 1, {DESCRIPTION_EVIDENCE_LENGTH})",
            "open_signals": open_count,
        },
        closes_itself=False,
    )


SIGNAL_RULES = {
    kind: register(_signal_rule(kind, severity, description))
    for kind, (severity, description) in _SIGNAL_RULES.items()
}
if set(SIGNAL_RULES) != set(SignalKind):
    raise ValueError("Every signal kind needs an early-warning rule in monitoring.rules.external.")


def _prefix_matches(prefix: str) -> str:
    """Return the condition that the borrower's industry code starts with `prefix`.

    A comparison of the code's first characters rather than LIKE, so an
    underscore or percent sign typed into a prefix is not a wildcard.
    """
    return f"SUBSTR(b.industry_code, 1, LENGTH({prefix})) = {prefix}"


# The evidence names the longest of several matching active prefixes (such as
# "44" and "4452"). The prefix is looked up per borrower of the chunk in
# subqueries rather than joined. Joined, PostgreSQL read the borrowers again
# for every prefix on the watch list, or every borrower of the book.
_LONGEST_PREFIX = f"""(
    SELECT w.{{column}} FROM monitoring_watchedindustry w
    WHERE w.active AND w.code_prefix <> '' AND {_prefix_matches("w.code_prefix")}
    ORDER BY LENGTH(w.code_prefix) DESC, w.code_prefix
    LIMIT 1
)"""

WATCHED_INDUSTRY = register(
    Rule(
        code="EXT_WATCHED_INDUSTRY",
        family=FAMILY,
        severity="yellow",
        description=_("The borrower's industry is on the watch list."),
        joins="JOIN loans_borrower b ON b.id = l.borrower_id",
        # A scalar subquery, which the planner cannot turn into a join: as an
        # EXISTS it was joined first to every borrower of the book.
        condition=f"{_LONGEST_PREFIX.replace('{column}', 'code_prefix')} IS NOT NULL",
        evidence={
            "industry_code": "b.industry_code",
            "code_prefix": _LONGEST_PREFIX.replace("{column}", "code_prefix"),
            "reason": _LONGEST_PREFIX.replace("{column}", "reason"),
        },
    )
)
