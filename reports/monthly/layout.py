"""The report's sections as titled tables, built from the frozen figures.

The browser page, the PDF and the Excel file all render these, so the three
show the same rows in the same order. Each cell keeps its value (an int, a
Decimal or text) for Excel and its formatted text for the pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import formats
from django.utils.translation import gettext as _

from loans.models import (
    CollateralKind,
    GuarantorKind,
    Ifrs9Stage,
    Product,
    RiskClass,
)
from loans.selectors import dpd_bucket_label
from monitoring.models import InspectionKind, Severity, WarningFamily

from .industries import industry_label
from .migration import NEW, OTHER, PAID_OFF, WRITTEN_OFF
from .recoveries import NON_PERFORMING

TEXT = "text"
COUNT = "count"
MONEY = "money"
PERCENT = "percent"
DAYS = "days"


@dataclass(frozen=True)
class Column:
    label: str
    kind: str = TEXT

    @property
    def is_number(self) -> bool:
        return self.kind != TEXT


@dataclass(frozen=True)
class Cell:
    value: object
    text: str
    kind: str
    style: str = ""

    @property
    def is_number(self) -> bool:
        return self.kind != TEXT


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    total: list[Cell] | None = None
    heat: bool = False

    def add(self, *values: object, style: list[str] | None = None) -> None:
        self.rows.append(self._cells(values, style))

    def set_total(self, *values: object) -> None:
        self.total = self._cells(values, None)

    def _cells(self, values: tuple, styles: list[str] | None) -> list[Cell]:
        if len(values) != len(self.columns):
            raise ValueError(
                f"Table {self.key}: {len(values)} values for {len(self.columns)} columns."
            )
        return [
            cell(value, column.kind, styles[index] if styles else "")
            for index, (value, column) in enumerate(zip(values, self.columns, strict=True))
        ]


@dataclass
class Fact:
    label: str
    cell: Cell


@dataclass
class Section:
    key: str
    title: str
    facts: list[Fact] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fact(self, label: str, value: object, kind: str) -> None:
        self.facts.append(Fact(label, cell(value, kind)))


def _number(value: object, kind: str) -> object:
    """Return the figure as a number: stored money and ratios are text."""
    if value is None or kind == TEXT:
        return value
    if kind == COUNT:
        return int(value)
    return Decimal(str(value))


def cell(value: object, kind: str, style: str = "") -> Cell:
    number = _number(value, kind)
    if number is None:
        text = "—"
    elif kind == COUNT:
        text = formats.number_format(number, force_grouping=True)
    elif kind in (MONEY, PERCENT, DAYS):
        text = formats.number_format(number, decimal_pos=2, force_grouping=True)
    else:
        text = str(number)
    return Cell(number, text, kind, style)


def class_label(code: object) -> str:
    return str(RiskClass(int(code)).label)


def _choice_label(choices, code: str) -> str:
    return str(choices(code).label) if code in choices.values else code


# ---- Sections ------------------------------------------------------------------


def _share_table(key: str, title: str, heading: str, rows: list[dict], label) -> Table:

    table = Table(
        key,
        title,
        [
            Column(heading),
            Column(_("Loans"), COUNT),
            Column(_("Outstanding balance"), MONEY),
            Column(_("Share of balance (%)"), PERCENT),
        ],
    )
    for row in rows:
        table.add(label(row), row["loans"], row["balance"], row["share"])
    return table


def _with_total(table: Table, loans: int, balance: str) -> Table:

    table.set_total(_("Total"), loans, balance, "100.00" if Decimal(balance) else None)
    return table


def portfolio(figures: dict) -> Section:
    data = figures["portfolio"]
    section = Section("portfolio", _("Portfolio"))
    section.fact(_("Open loans"), data["loans"], COUNT)
    section.fact(_("Outstanding balance"), data["balance"], MONEY)
    tables = [
        ("by_product", _("By product"), _("Product"), lambda r: _choice_label(Product, r["code"])),
        ("by_currency", _("By currency"), _("Currency"), lambda r: r["code"]),
        ("by_branch", _("By branch"), _("Branch"), lambda r: f"{r['branch_code']} {r['name']}"),
        ("by_industry", _("By industry"), _("Industry"), lambda r: industry_label(r["code"])),
    ]
    for key, title, heading, label in tables:
        table = _share_table(key, title, heading, data[key], label)
        section.tables.append(_with_total(table, data["loans"], data["balance"]))

    section.notes.append(
        _("Balances of loans in different currencies are added without conversion.")
    )
    return section


def classification(figures: dict) -> Section:
    data = figures["classification"]
    loans, balance = figures["portfolio"]["loans"], figures["portfolio"]["balance"]
    section = Section("classification", _("Classification"))
    by_class = _share_table(
        "by_class",
        _("By risk class"),
        _("Risk class"),
        data["by_class"],
        lambda r: class_label(r["code"]),
    )
    by_stage = _share_table(
        "by_stage",
        _("By IFRS 9 stage"),
        _("Stage"),
        data["by_stage"],
        lambda r: str(Ifrs9Stage(int(r["code"])).label),
    )

    section.tables += [_with_total(by_class, loans, balance), _with_total(by_stage, loans, balance)]
    return section


def _matrix_row_label(code: str) -> str:
    return _("New in the month") if code == NEW else class_label(code)


def _matrix_column_label(code: str) -> str:
    labels = {PAID_OFF: _("Paid off"), WRITTEN_OFF: _("Written off"), OTHER: _("Left, other")}
    return labels.get(code) or class_label(code)


def heat_style(part: int, whole: int) -> str:
    """Return the inline style that shades a matrix cell by its share of the row."""
    if not part or not whole:
        return ""
    share = part / whole
    alpha = round(0.12 + 0.78 * share, 2)
    colour = "#fff" if alpha > 0.5 else "#1c2f4a"
    return f"background-color: rgba(28, 47, 74, {alpha}); color: {colour};"


def migration(figures: dict) -> Section:
    data = figures["migration"]
    section = Section("migration", _("Migration matrix"))
    columns = [Column(_("From (start of month)"))]
    columns += [Column(_matrix_column_label(code), COUNT) for code in data["columns"]]
    columns.append(Column(_("Total"), COUNT))
    measures = [
        ("loans", _("Loans"), COUNT),
        ("balance_start", _("Balance at the start of the month"), MONEY),
        ("balance_end", _("Balance at the end of the month"), MONEY),
    ]
    for key, title, kind in measures:
        table = Table(
            f"migration_{key}",
            title,
            [columns[0], *(Column(column.label, kind) for column in columns[1:])],
            heat=key == "loans",
        )
        for row in data["rows"]:
            values = [cell_figures[key] for cell_figures in row["cells"]]
            styles = None
            if key == "loans":
                styles = ["", *(heat_style(value, row["loans"]) for value in values), ""]
            table.add(_matrix_row_label(row["from"]), *values, row[key], style=styles)
        column_totals = [total[key] for total in data["totals"]]
        grand_total = sum(Decimal(str(value)) for value in column_totals)
        table.set_total(_("Total"), *column_totals, grand_total)
        section.tables.append(table)
    snapshots = figures["snapshot_rows"]
    if not snapshots["previous_month_end"]:
        section.notes.append(
            _("No snapshot exists for %(date)s, so every loan counts as new.")
            % {"date": figures["previous_month_end"]}
        )

    section.notes.append(
        _(
            "Rows are the classes on %(start)s, columns the classes on %(end)s or how the loan "
            "left. Each row adds up to the class at the start of the month, each class column "
            "to the class at the end."
        )
        % {"start": figures["previous_month_end"], "end": figures["month_end"]}
    )
    return section


def asset_quality(figures: dict) -> Section:
    data = figures["asset_quality"]
    section = Section("asset_quality", _("Asset quality"))
    section.fact(_("Non-performing loans"), data["npl_loans"], COUNT)
    section.fact(_("Non-performing balance"), data["npl_balance"], MONEY)
    section.fact(_("NPL ratio (%)"), data["npl_ratio"], PERCENT)
    section.fact(_("Special mention balance"), data["special_mention_balance"], MONEY)
    section.fact(_("Special-mention ratio (%)"), data["special_mention_ratio"], PERCENT)
    section.fact(_("Loans past due"), data["overdue_loans"], COUNT)
    section.fact(_("Overdue principal"), data["overdue_principal"], MONEY)
    section.fact(_("Overdue interest"), data["overdue_interest"], MONEY)

    table = Table(
        "by_bucket",
        _("By days past due"),
        [
            Column(_("DPD bucket")),
            Column(_("Loans"), COUNT),
            Column(_("Outstanding balance"), MONEY),
            Column(_("Overdue principal"), MONEY),
            Column(_("Overdue interest"), MONEY),
            Column(_("Share of balance (%)"), PERCENT),
        ],
    )

    for row in data["by_bucket"]:
        table.add(
            str(dpd_bucket_label(row["code"])),
            row["loans"],
            row["balance"],
            row["overdue_principal"],
            row["overdue_interest"],
            row["share"],
        )

    table.set_total(
        _("Total"),
        data["loans"],
        data["balance"],
        data["overdue_principal"],
        data["overdue_interest"],
        "100.00" if Decimal(data["balance"]) else None,
    )

    section.tables.append(table)

    section.notes.append(
        _(
            "NPL ratio: balance of substandard, doubtful and loss loans over all open loans. "
            "Special-mention ratio: balance of special mention loans over all open loans."
        )
    )
    return section


def _held_source_text(source: str) -> str:
    texts = {
        "recorded": _("recorded by the bank"),
        "required": _("none recorded, so the required provisions are shown as held"),
        "mixed": _("recorded for some branches; the others show their required provisions"),
    }
    return texts.get(source, source)


def provisions(figures: dict) -> Section:
    data = figures["provisions"]
    section = Section("provisions", _("Provisions"))
    section.fact(_("Specific provisions required"), data["specific_required"], MONEY)
    section.fact(_("General provisions required"), data["general_required"], MONEY)
    section.fact(_("Provisions required"), data["required"], MONEY)
    section.fact(_("Provisions held"), data["held"], MONEY)
    section.fact(_("Held less required"), data["surplus"], MONEY)
    section.fact(_("Provision coverage: held / NPL balance (%)"), data["coverage_ratio"], PERCENT)
    section.fact(
        _("Loan provision ratio: held / total loans (%)"), data["loan_provision_ratio"], PERCENT
    )
    section.fact(_("Required / NPL balance (%)"), data["required_coverage_ratio"], PERCENT)

    table = Table(
        "provisions_by_branch",
        _("By branch"),
        [
            Column(_("Branch")),
            Column(_("Specific required"), MONEY),
            Column(_("General required"), MONEY),
            Column(_("Required"), MONEY),
            Column(_("Held"), MONEY),
            Column(_("Held figure")),
        ],
    )

    for row in data["by_branch"]:
        table.add(
            f"{row['branch_code']} {row['name']}",
            row["specific_required"],
            row["general_required"],
            row["required"],
            row["held"],
            _("recorded") if row["held_source"] == "recorded" else _("required"),
        )

    table.set_total(
        _("Total"),
        data["specific_required"],
        data["general_required"],
        data["required"],
        data["held"],
        "",
    )

    section.tables.append(table)

    section.notes.append(
        _("Provisions held: %(source)s.") % {"source": _held_source_text(data["held_source"])}
    )
    return section


def warnings(figures: dict) -> Section:
    data = figures["warnings"]
    section = Section("warnings", _("Early warnings"))

    table = Table(
        "warnings",
        _("By family and severity"),
        [
            Column(_("Family")),
            Column(_("Severity")),
            Column(_("New"), COUNT),
            Column(_("Open at month end"), COUNT),
            Column(_("Closed in the month"), COUNT),
            Column(_("Median days to close"), DAYS),
            Column(_("Mean days to close"), DAYS),
        ],
    )

    for row in data["rows"]:
        table.add(
            _choice_label(WarningFamily, row["family"]),
            _choice_label(Severity, row["severity"]),
            row["new"],
            row["open"],
            row["closed"],
            row["median_days"],
            row["mean_days"],
        )
    total = data["total"]

    table.set_total(
        _("Total"),
        "",
        total["new"],
        total["open"],
        total["closed"],
        total["median_days"],
        total["mean_days"],
    )

    section.tables.append(table)

    section.notes.append(
        _(
            "New: first seen in the month. Open: first seen by the month end and not closed by "
            "then. Days to close: from first seen to resolved or dismissed, or to the run date "
            "on which the condition cleared when that came first."
        )
    )
    return section


def inspections(figures: dict) -> Section:
    data = figures["inspections"]
    section = Section("inspections", _("Inspections"))

    table = Table(
        "inspections",
        _("Inspections due in the month"),
        [
            Column(_("Kind")),
            Column(_("Due"), COUNT),
            Column(_("Done on time"), COUNT),
            Column(_("Done late"), COUNT),
            Column(_("Missed"), COUNT),
            Column(_("On time (%)"), PERCENT),
        ],
    )

    for row in data["rows"]:
        table.add(
            _choice_label(InspectionKind, row["kind"]),
            row["due"],
            row["on_time"],
            row["late"],
            row["missed"],
            row["on_time_rate"],
        )
    total = data["total"]

    table.set_total(
        _("Total"),
        total["due"],
        total["on_time"],
        total["late"],
        total["missed"],
        total["on_time_rate"],
    )

    section.tables.append(table)

    section.notes.append(
        _(
            "Done: submitted or approved, with an inspection date by the month end. Late: "
            "done after the due date. Missed: not done by the month end."
        )
    )
    return section


def collateral(figures: dict) -> Section:
    data = figures["collateral"]
    section = Section("collateral", _("Collateral coverage"))
    section.fact(_("Pledged value"), data["pledged_value"], MONEY)
    section.fact(_("Secured loans"), data["secured_loans"], COUNT)
    section.fact(_("Balance of secured loans"), data["secured_balance"], MONEY)
    section.fact(_("Balance of unsecured loans"), data["unsecured_balance"], MONEY)
    section.fact(_("Pledged value / secured balance (%)"), data["secured_coverage"], PERCENT)
    section.fact(_("Pledged value / total loans (%)"), data["coverage"], PERCENT)

    table = Table(
        "collateral",
        _("By collateral type"),
        [
            Column(_("Type")),
            Column(_("Pledges"), COUNT),
            Column(_("Pledges without valuation"), COUNT),
            Column(_("Loans secured"), COUNT),
            Column(_("Pledged value"), MONEY),
            Column(_("Balance of the loans"), MONEY),
            Column(_("Coverage (%)"), PERCENT),
        ],
    )

    for row in data["rows"]:
        table.add(
            _choice_label(CollateralKind, row["kind"]),
            row["pledges"],
            row["unvalued_pledges"],
            row["loans"],
            row["pledged_value"],
            row["balance"],
            row["coverage"],
        )

    section.tables.append(table)

    section.notes.append(
        _(
            "Pledged value: each item's latest valuation by the month end times the share "
            "pledged to the loan. A loan secured by several types counts in each of their rows."
        )
    )
    return section


def guarantees(figures: dict) -> Section:
    data = figures["guarantees"]
    section = Section("guarantees", _("Guarantee exposure"))
    section.fact(_("Guarantees"), data["guarantees"], COUNT)
    section.fact(_("Guaranteed amount"), data["amount"], MONEY)

    table = Table(
        "guarantees",
        _("By guarantor kind"),
        [
            Column(_("Guarantor kind")),
            Column(_("Guarantees"), COUNT),
            Column(_("Loans guaranteed"), COUNT),
            Column(_("Guaranteed amount"), MONEY),
            Column(_("Balance of the loans"), MONEY),
            Column(_("Coverage (%)"), PERCENT),
        ],
    )

    for row in data["rows"]:
        table.add(
            _choice_label(GuarantorKind, row["kind"]),
            row["guarantees"],
            row["loans"],
            row["amount"],
            row["balance"],
            row["coverage"],
        )

    table.set_total(_("Total"), data["guarantees"], None, data["amount"], None, None)

    section.tables.append(table)

    section.notes.append(
        _(
            "Guarantees valid on the month end on loans open then. A guarantee of a percentage "
            "counts that share of the loan's balance; one with an amount and a percentage, the "
            "lesser of the two."
        )
    )
    return section


def _borrower_table(key: str, title: str, rows: list[dict]) -> Table:

    table = Table(
        key,
        title,
        [
            Column(_("Rank"), COUNT),
            Column(_("Borrower")),
            Column(_("Registration number")),
            Column(_("Loans"), COUNT),
            Column(_("Outstanding balance"), MONEY),
            Column(_("Share of balance (%)"), PERCENT),
            Column(_("Worst class")),
            Column(_("Maximum days past due"), COUNT),
        ],
    )
    for row in rows:
        table.add(
            row["rank"],
            row["name"],
            row["registration_number"],
            row["loans"],
            row["balance"],
            row["share"],
            class_label(row["worst_class"]),
            row["max_days_past_due"],
        )
    return table


def borrowers(figures: dict) -> Section:
    data = figures["borrowers"]
    section = Section("borrowers", _("Largest and riskiest borrowers"))

    section.tables.append(_borrower_table("largest", _("10 largest borrowers"), data["largest"]))

    section.tables.append(_borrower_table("riskiest", _("10 riskiest borrowers"), data["riskiest"]))

    section.notes.append(
        _(
            "A borrower's loans open at the month end within the report's scope. Riskiest: "
            "worst class, then most days past due, then largest balance."
        )
    )
    return section


def recoveries(figures: dict) -> Section:
    data = figures["recoveries"]
    section = Section("recoveries", _("Recoveries and write-offs"))
    section.fact(_("Recovered"), data["recovered_amount"], MONEY)
    section.fact(_("Loans written off"), data["written_off_loans"], COUNT)
    section.fact(_("Principal written off"), data["written_off_principal"], MONEY)
    section.fact(_("Interest written off"), data["written_off_interest"], MONEY)

    recovered = Table(
        "recoveries",
        _("Recoveries"),
        [
            Column(_("Loan")),
            Column(_("Repayments"), COUNT),
            Column(_("Loans"), COUNT),
            Column(_("Amount"), MONEY),
        ],
    )

    categories = {NON_PERFORMING: _("Non-performing"), WRITTEN_OFF: _("Written off")}

    for row in data["recoveries"]:
        recovered.add(categories[row["category"]], row["repayments"], row["loans"], row["amount"])

    recovered.set_total(_("Total"), data["recovery_repayments"], None, data["recovered_amount"])

    written_off = Table(
        "write_offs",
        _("Write-offs by product"),
        [
            Column(_("Product")),
            Column(_("Loans"), COUNT),
            Column(_("Principal"), MONEY),
            Column(_("Interest"), MONEY),
            Column(_("Total"), MONEY),
        ],
    )

    for row in data["write_offs"]:
        written_off.add(
            _choice_label(Product, row["product"]),
            row["loans"],
            row["principal"],
            row["interest"],
            row["total"],
        )

    written_off.set_total(
        _("Total"),
        data["written_off_loans"],
        data["written_off_principal"],
        data["written_off_interest"],
        Decimal(data["written_off_principal"]) + Decimal(data["written_off_interest"]),
    )

    section.tables += [recovered, written_off]

    section.notes.append(
        _(
            "Recoveries: repayments dated in the month on loans non-performing at the start or "
            "the end of the month, or written off by the repayment date."
        )
    )
    return section


BUILDERS = (
    portfolio,
    classification,
    migration,
    asset_quality,
    provisions,
    warnings,
    inspections,
    collateral,
    guarantees,
    borrowers,
    recoveries,
)


def report_sections(figures: dict) -> list[Section]:
    return [build(figures) for build in BUILDERS]
