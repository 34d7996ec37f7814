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
from ..sql import as_of_param, binary_text, max_character
from . import ChunkTable, Rule, register

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


# The open signals of the chunk's loans, one row per loan and kind: the
# earliest observed signal of that kind (the lowest id among those observed
# the same day) and how many of that kind are open. Every signal rule joins
# it, so the chunk's loans are matched to signals once instead of once per
# kind, and each rule reads a table of a few rows per chunk.
OPEN_SIGNALS = ChunkTable(
    name="cod_open_signals",
    select=f"""
        SELECT loan_id, kind, signal_id, observed_on, description, open_signals
        FROM (
            SELECT l.id AS loan_id, s.kind, s.id AS signal_id, s.observed_on,
                   SUBSTR(s.description, 1, {DESCRIPTION_EVIDENCE_LENGTH}) AS description,
                   ROW_NUMBER() OVER (
                       PARTITION BY l.id, s.kind ORDER BY s.observed_on, s.id
                   ) AS position,
                   COUNT(*) OVER (PARTITION BY l.id, s.kind) AS open_signals
            FROM monitoring_externalsignal s
            JOIN loans_loan l ON l.borrower_id = s.borrower_id
            WHERE l.id BETWEEN %(low)s AND %(high)s AND {_signal_open("s")}
        ) ranked
        WHERE position = 1
    """,
)


def _signal_rule(kind: SignalKind, severity: str, description) -> Rule:
    """Return the rule for one signal kind.

    A borrower may have several open signals of one kind. The evidence names
    the earliest observed of them and counts them all, so each loan gives
    one hit.
    """
    return Rule(
        code=f"EXT_{kind.value.upper()}",
        family=FAMILY,
        severity=severity,
        description=description,
        joins="JOIN cod_open_signals s ON s.loan_id = p.loan_id",
        chunk_tables=(OPEN_SIGNALS,),
        condition=f"s.kind = '{kind.value}'",
        evidence={
            "kind": f"'{kind.value}'",
            "signal_id": "s.signal_id",
            "observed_on": "CAST(s.observed_on AS TEXT)",
            "description": "s.description",
            "open_signals": "s.open_signals",
        },
        closes_itself=False,
    )


SIGNAL_RULES = {
    kind: register(_signal_rule(kind, severity, description))
    for kind, (severity, description) in _SIGNAL_RULES.items()
}
if set(SIGNAL_RULES) != set(SignalKind):
    raise ValueError("Every signal kind needs an early-warning rule in monitoring.rules.external.")


def _starts_with(column: str, prefix: str) -> str:
    """Return the condition that `column` starts with `prefix`, compared byte by byte.

    A comparison of the code's first characters rather than LIKE, so an
    underscore or percent sign typed into a prefix is not a wildcard. The
    range before it lets PostgreSQL read the matching codes from the index
    `borrower_industry_code_idx` (collation "C", see loans migration 0008);
    the range contains every code that starts with the prefix, because no
    character sorts after the largest code point.
    """
    code = binary_text(column)
    return (
        f"{code} >= {binary_text(prefix)} AND {code} < {binary_text(prefix)} || {max_character()}"
        f" AND SUBSTR({column}, 1, LENGTH({prefix})) = {prefix}"
    )


# Every borrower of the book in a watched industry, with the longest active
# prefix its code matches (of "44" and "4452", the evidence names "4452").
# It is read from the industry-code index and covers the whole book, a few
# milliseconds per chunk. Starting from the chunk's loans instead cost one
# borrower lookup per loan, and the planner, which cannot estimate how many
# codes a prefix matches, joined the watched borrowers to the loans one by one.
WATCHED_BORROWERS = ChunkTable(
    name="cod_watched_borrowers",
    key="borrower_id",
    select=f"""
        SELECT borrower_id, industry_code, code_prefix, reason
        FROM (
            SELECT b.id AS borrower_id, b.industry_code, w.code_prefix, w.reason,
                   ROW_NUMBER() OVER (
                       PARTITION BY b.id ORDER BY LENGTH(w.code_prefix) DESC, w.code_prefix
                   ) AS position
            FROM monitoring_watchedindustry w
            JOIN loans_borrower b ON {_starts_with("b.industry_code", "w.code_prefix")}
            WHERE w.active AND w.code_prefix <> ''
        ) ranked
        WHERE position = 1
    """,
)

WATCHED_INDUSTRY = register(
    Rule(
        code="EXT_WATCHED_INDUSTRY",
        family=FAMILY,
        severity="yellow",
        description=_("The borrower's industry is on the watch list."),
        joins="JOIN cod_watched_borrowers wb ON wb.borrower_id = l.borrower_id",
        chunk_tables=(WATCHED_BORROWERS,),
        condition="true",
        evidence={
            "industry_code": "wb.industry_code",
            "code_prefix": "wb.code_prefix",
            "reason": "wb.reason",
        },
    )
)
