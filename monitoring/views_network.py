"""The guarantee network around a borrower: tables of borrowers and guarantees, and a drawing.

The drawing is inline SVG laid out here, on the server: the borrower at the
centre, and the borrowers one, two or more guarantee steps away on rings
around it. Circle edges are drawn thick and red, chain edges dashed.

A credit officer opens the page only for a borrower of their branches (404
otherwise). Borrowers of the network that the officer may not see are shown
with their class and flags but without their name or a link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from loans.access import User, get_visible_borrower, role_required, sees_whole_book
from loans.access import visible_borrowers as visible_borrowers_of
from loans.models import Loan, RiskClass

from .guarantee_network import network_around
from .selectors import get_business_date

DEPTH_CHOICES = (1, 2, 3, 4)
DEFAULT_DEPTH = 2
# Above this many borrowers the page shows the tables only: a drawing with
# more nodes than this is too dense to read at page width.
MAX_DRAWN_NODES = 80

NODE_RADIUS = 14
CENTRE_RADIUS = 20
# Distance between neighbouring rings, and the arc length left for each node on a
# ring, in SVG user units (pixels at natural size): room for an 18-character label.
RING_GAP = 140
NODE_SPACING = 100
# Blank border around the drawing, and the estimated width of a label's character
# at the 11px font size set in postloan.css.
MARGIN = 12
LABEL_CHAR_WIDTH = 6.5
# Sideways bend of the two edges between borrowers that guarantee each other.
BEND = 22
LABEL_LENGTH = 18

# Fill and stroke of a node by the worst class of the borrower's open loans,
# the colours of the .rc-* badges in postloan.css.
CLASS_COLOURS = {
    RiskClass.NORMAL: ("#d1e7dd", "#479f76"),
    RiskClass.SPECIAL_MENTION: ("#fff3cd", "#cc9a06"),
    RiskClass.SUBSTANDARD: ("#ffe5d0", "#ca6510"),
    RiskClass.DOUBTFUL: ("#f8d7da", "#b02a37"),
    RiskClass.LOSS: ("#58151c", "#58151c"),
}
NO_LOAN_COLOURS = ("#e9ecef", "#6c757d")


@dataclass
class Node:
    id: int
    name: str
    visible: bool
    steps: int
    is_centre: bool
    worst_class: int | None
    is_npl: bool
    circle: int | None
    on_chain: bool
    npl_members: list[str] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    radius: int = NODE_RADIUS

    @property
    def short_name(self) -> str:
        if len(self.name) <= LABEL_LENGTH:
            return self.name
        return self.name[: LABEL_LENGTH - 1].rstrip() + "…"

    @property
    def class_slug(self) -> str:
        return RiskClass(self.worst_class).slug if self.worst_class else "none"

    @property
    def class_label(self) -> str:
        return str(RiskClass(self.worst_class).label) if self.worst_class else _("No open loan")

    @property
    def fill(self) -> str:
        return CLASS_COLOURS.get(self.worst_class, NO_LOAN_COLOURS)[0]

    @property
    def stroke(self) -> str:
        return CLASS_COLOURS.get(self.worst_class, NO_LOAN_COLOURS)[1]

    # Coordinates are formatted here, because a template would localise the decimal point.
    @property
    def cx(self) -> str:
        return f"{self.x:.1f}"

    @property
    def cy(self) -> str:
        return f"{self.y:.1f}"

    @property
    def label_y(self) -> str:
        return f"{self.y + self.radius + 13:.1f}"

    @property
    def halo_radius(self) -> int:
        return self.radius + 5

    @property
    def outline_radius(self) -> int:
        """Return the radius of the node's outermost ring, where edges start and end."""
        return self.halo_radius + 1 if self.circle else self.radius


@dataclass
class Edge:
    source: Node
    target: Node
    amount: object
    in_circle: bool
    on_chain: bool
    path: str = ""

    @property
    def kind(self) -> str:
        if self.in_circle:
            return "circle"
        return "chain" if self.on_chain else "plain"


@dataclass
class Circle:
    number: int
    members: list[Node]


@dataclass
class NetworkPage:
    centre: Node
    nodes: list[Node]
    edges: list[Edge]
    circles: list[Circle]
    chain_nodes: list[Node]
    as_of: date
    depth: int
    width: int = 0
    height: int = 0
    drawn: bool = False


# ---- Reading the network -----------------------------------------------------


def _worst_classes(ids: list[int], as_of: date) -> dict[int, int]:
    """Return the worst risk class of each borrower's loans open on `as_of`, in one query."""
    open_on = Q(disbursement_date__lte=as_of) & (Q(closed_on__isnull=True) | Q(closed_on__gt=as_of))
    rows = (
        Loan.objects.filter(open_on, borrower_id__in=ids)
        .values("borrower_id")
        .annotate(worst=Max("risk_class"))
        .values_list("borrower_id", "worst")
    )
    return dict(rows)


def _visible_ids(user: User, ids: list[int]) -> set[int]:
    if sees_whole_book(user):
        return set(ids)
    return set(visible_borrowers_of(user).filter(pk__in=ids).values_list("pk", flat=True))


def _nodes(network: dict, user: User) -> list[Node]:
    ids = [node["id"] for node in network["nodes"]]
    classes = _worst_classes(ids, network["as_of"])
    visible = _visible_ids(user, ids)
    circle_numbers: dict[int, int] = {}
    nodes = []
    hidden_count = 0
    for raw in network["nodes"]:
        if raw["circle_id"] is not None:
            circle_numbers.setdefault(raw["circle_id"], len(circle_numbers) + 1)
        if raw["id"] in visible:
            name = raw["name"]
        else:
            hidden_count += 1
            name = _("Other branch's borrower %(number)s") % {"number": hidden_count}
        nodes.append(
            Node(
                id=raw["id"],
                name=name,
                visible=raw["id"] in visible,
                steps=raw["steps"],
                is_centre=raw["id"] == network["borrower_id"],
                worst_class=classes.get(raw["id"]),
                is_npl=raw["is_npl"],
                circle=circle_numbers.get(raw["circle_id"]),
                on_chain=raw["on_chain"],
            )
        )
    by_id = {node.id: node for node in nodes}
    for raw, node in zip(network["nodes"], nodes, strict=True):
        node.npl_members = _npl_member_names(raw["npl_members"], node.id, by_id)
    return nodes


def _npl_member_names(member_ids: list[int], own_id: int, by_id: dict[int, Node]) -> list[str]:
    """Return the names of the other non-performing borrowers on a borrower's chains.

    Members farther away than the page's steps are not loaded, so they are counted.
    """
    names = [by_id[pk].name for pk in member_ids if pk != own_id and pk in by_id]
    beyond = sum(1 for pk in member_ids if pk not in by_id)
    if beyond:
        names.append(
            ngettext(
                "%(count)s borrower beyond these steps",
                "%(count)s borrowers beyond these steps",
                beyond,
            )
            % {"count": beyond}
        )
    return names


def build_network_page(network: dict, user: User) -> NetworkPage:
    """Return the network of `network_around` with names, classes, circles and a layout."""
    nodes = _nodes(network, user)
    by_id = {node.id: node for node in nodes}
    edges = [
        Edge(by_id[raw["from"]], by_id[raw["to"]], raw["amount"], raw["in_circle"], raw["on_chain"])
        for raw in network["edges"]
    ]
    circles: dict[int, list[Node]] = {}
    for node in nodes:
        if node.circle is not None:
            circles.setdefault(node.circle, []).append(node)
    page = NetworkPage(
        centre=by_id[network["borrower_id"]],
        nodes=nodes,
        edges=edges,
        circles=[Circle(number, members) for number, members in sorted(circles.items())],
        chain_nodes=[node for node in nodes if node.on_chain],
        as_of=network["as_of"],
        depth=network["depth"],
    )
    if len(nodes) <= MAX_DRAWN_NODES:
        _lay_out(page)
    return page


# ---- Layout ------------------------------------------------------------------


def _mean_angle(angles: list[float]) -> float | None:
    if not angles:
        return None
    return math.atan2(sum(map(math.sin, angles)), sum(map(math.cos, angles)))


def _ring_radii(rings: dict[int, list[Node]]) -> dict[int, float]:
    """Return each ring's radius: a gap beyond the last ring, and room for its nodes."""
    radii: dict[int, float] = {0: 0.0}
    for steps in sorted(rings):
        if steps == 0:
            continue
        previous = radii.get(steps - 1, 0.0)
        room = len(rings[steps]) * NODE_SPACING / (2 * math.pi)
        radii[steps] = max(previous + RING_GAP, room)
    return radii


def _place_rings(page: NetworkPage) -> None:
    """Place each ring's nodes in the order of the mean angle of their inner neighbours.

    Ordering by the neighbours' angle keeps most edges short and uncrossed,
    and members of one circle end up next to each other.
    """
    rings: dict[int, list[Node]] = {}
    for node in page.nodes:
        rings.setdefault(node.steps, []).append(node)
    radii = _ring_radii(rings)
    neighbours: dict[int, list[Node]] = {node.id: [] for node in page.nodes}
    for edge in page.edges:
        neighbours[edge.source.id].append(edge.target)
        neighbours[edge.target.id].append(edge.source)
    angles: dict[int, float] = {}
    for steps in sorted(rings):
        ring = rings[steps]
        inner = {
            node.id: [angles[other.id] for other in neighbours[node.id] if other.id in angles]
            for node in ring
        }
        ring.sort(key=lambda node: (_mean_angle(inner[node.id]) or 0.0, node.circle or 0, node.id))
        start = _mean_angle(inner[ring[0].id]) or -math.pi / 2
        for index, node in enumerate(ring):
            angle = start + 2 * math.pi * index / len(ring)
            angles[node.id] = angle
            node.x = radii[steps] * math.cos(angle)
            node.y = radii[steps] * math.sin(angle)


def _fit_to_drawing(page: NetworkPage) -> None:
    """Move the nodes so the drawing starts at MARGIN, and size it to its nodes and labels."""
    left = min(
        node.x - max(node.halo_radius, len(node.short_name) * LABEL_CHAR_WIDTH / 2)
        for node in page.nodes
    )
    right = max(
        node.x + max(node.halo_radius, len(node.short_name) * LABEL_CHAR_WIDTH / 2)
        for node in page.nodes
    )
    top = min(node.y - node.halo_radius for node in page.nodes)
    bottom = max(node.y + node.radius + 22 for node in page.nodes)
    for node in page.nodes:
        node.x += MARGIN - left
        node.y += MARGIN - top
    page.width = math.ceil(right - left + 2 * MARGIN)
    page.height = math.ceil(bottom - top + 2 * MARGIN)


def _unit(dx: float, dy: float) -> tuple[float, float]:
    length = math.hypot(dx, dy) or 1.0
    return dx / length, dy / length


def _edge_path(edge: Edge, bent: bool) -> str:
    """Return a quadratic path from the source's outline to just before the target's outline.

    The two edges of a mutual guarantee bend to opposite sides, because
    each bends to the right of its own direction.
    """
    source, target = edge.source, edge.target
    ux, uy = _unit(target.x - source.x, target.y - source.y)
    bend = BEND if bent else 0.0
    cx = (source.x + target.x) / 2 - uy * bend
    cy = (source.y + target.y) / 2 + ux * bend
    sx, sy = _unit(cx - source.x, cy - source.y)
    tx, ty = _unit(cx - target.x, cy - target.y)
    start_gap = source.outline_radius
    end_gap = target.outline_radius + 2
    start = (source.x + sx * start_gap, source.y + sy * start_gap)
    end = (target.x + tx * end_gap, target.y + ty * end_gap)
    return f"M {start[0]:.1f} {start[1]:.1f} Q {cx:.1f} {cy:.1f} {end[0]:.1f} {end[1]:.1f}"


def _lay_out(page: NetworkPage) -> None:
    page.centre.radius = CENTRE_RADIUS
    _place_rings(page)
    _fit_to_drawing(page)
    pairs = {(edge.source.id, edge.target.id) for edge in page.edges}
    for edge in page.edges:
        edge.path = _edge_path(edge, (edge.target.id, edge.source.id) in pairs)
    page.drawn = True


# ---- Page --------------------------------------------------------------------


def _depth(value: str | None) -> int:
    try:
        depth = int(value or DEFAULT_DEPTH)
    except ValueError:
        return DEFAULT_DEPTH
    return depth if depth in DEPTH_CHOICES else DEFAULT_DEPTH


@role_required
def borrower_network(request: HttpRequest, pk: int) -> HttpResponse:
    """Show the guarantee network within a few steps of a borrower the user may see."""
    borrower = get_visible_borrower(request.user, pk)
    as_of = get_business_date() or timezone.localdate()
    depth = _depth(request.GET.get("depth"))
    network = network_around(borrower.pk, as_of, depth=depth)
    page = build_network_page(network, request.user)
    return render(
        request,
        "monitoring/network.html",
        {
            "borrower": borrower,
            "network": page,
            "depth_choices": DEPTH_CHOICES,
            "max_drawn_nodes": MAX_DRAWN_NODES,
        },
    )
