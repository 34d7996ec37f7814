"""Names of the industries the report groups borrowers by: two-digit NAICS 2017 sectors.

Both importers store NAICS codes in `Borrower.industry_code`. A two-digit
prefix outside this list is shown as the code alone.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

NAICS_SECTORS = {
    "11": _("Agriculture, forestry, fishing and hunting"),
    "21": _("Mining, quarrying, and oil and gas extraction"),
    "22": _("Utilities"),
    "23": _("Construction"),
    "31": _("Manufacturing"),
    "32": _("Manufacturing"),
    "33": _("Manufacturing"),
    "42": _("Wholesale trade"),
    "44": _("Retail trade"),
    "45": _("Retail trade"),
    "48": _("Transportation and warehousing"),
    "49": _("Transportation and warehousing"),
    "51": _("Information"),
    "52": _("Finance and insurance"),
    "53": _("Real estate and rental and leasing"),
    "54": _("Professional, scientific, and technical services"),
    "55": _("Management of companies and enterprises"),
    "56": _("Administrative and support and waste management and remediation services"),
    "61": _("Educational services"),
    "62": _("Health care and social assistance"),
    "71": _("Arts, entertainment, and recreation"),
    "72": _("Accommodation and food services"),
    "81": _("Other services (except public administration)"),
    "92": _("Public administration"),
}


def industry_label(code: str) -> str:
    """Return "31 Manufacturing" for a two-digit code, or a label for a missing code."""
    if not code:
        return str(_("No industry code"))
    name = NAICS_SECTORS.get(code)
    return f"{code} {name}" if name else code
