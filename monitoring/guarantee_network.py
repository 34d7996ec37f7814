"""Guarantee circles and chains between borrowers, found set-wise in SQL.

There is a directed edge G -> B when borrower G, as a guarantor, guarantees an
open loan of borrower B with a guarantee valid on the as-of date. The same SQL
runs on PostgreSQL and SQLite: temporary tables, recursive CTEs and a few
loops of statements whose number is bounded by constants, never by the number
of rows.

Every function works in one transaction (a savepoint inside an outer one), so
the temporary tables disappear with a rollback if a statement fails.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import TypedDict

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.expressions import RawSQL

from loans.models import Borrower, Guarantee, Loan, RiskClass

from .sql import analyze, as_of_param, disable_jit

logger = logging.getLogger(__name__)

# Rounds of pruning before the closure is computed. Each round removes every
# borrower that has no incoming or no outgoing edge left, so a tail of k
# borrowers hanging off a circle needs k rounds. Stopping early leaves more
# rows for the closure to cover but does not change the result.
PRUNE_MAX_ROUNDS = 40

# Maximum number of edges between a borrower and a non-performing member that
# the chain search follows. It bounds the number of search statements and the
# borrowers searched from each member.
MAX_CHAIN_EDGES = 20

# Search directions in the chain tables: towards the borrowers whose loans a
# borrower guarantees, and towards the borrowers that guarantee its loans.
DOWN = 1
UP = 2

CENTS = Decimal("0.01")


class OpenLoans(StrEnum):
    """Rule deciding whether a loan is open on the as-of date."""

    # Disbursed on or before the date, and closed_on empty or after it.
    CLOSED_ON = "closed_on"
    # The loan's LoanPosition is for the as-of date and has is_open set. Use it
    # only for the date of the last close-of-day run, the only one stored.
    POSITION = "position"


class ChainMembership(TypedDict):
    """A borrower on a guarantee chain that contains non-performing borrowers."""

    npl_members: list[int]
    chain_length: int


def open_loan_condition(alias: str, open_loans: OpenLoans = OpenLoans.CLOSED_ON) -> str:
    """Return a condition that loan `alias` is open on the named `as_of` parameter."""
    as_of = as_of_param()
    if OpenLoans(open_loans) is OpenLoans.POSITION:
        return f"""EXISTS (
            SELECT 1 FROM loans_loanposition pos
            WHERE pos.loan_id = {alias}.id AND pos.as_of = {as_of} AND pos.is_open
        )"""
    return (
        f"({alias}.disbursement_date <= {as_of}"
        f" AND ({alias}.closed_on IS NULL OR {alias}.closed_on > {as_of}))"
    )


def guarantee_edges_sql(open_loans: OpenLoans = OpenLoans.CLOSED_ON) -> str:
    """Return a SELECT of the distinct (guarantor_borrower_id, borrower_id) edges.

    The statement takes the named parameter `as_of`. A guarantee counts when
    valid_from <= as_of <= valid_to (valid_to empty means open-ended) and its
    loan is open; a borrower guaranteeing its own loan gives no edge.
    """
    as_of = as_of_param()
    return f"""
        SELECT DISTINCT gr.borrower_id AS guarantor_borrower_id, l.borrower_id AS borrower_id
        FROM loans_guarantee g
        JOIN loans_guarantor gr ON gr.id = g.guarantor_id
        JOIN loans_loan l ON l.id = g.loan_id
        WHERE gr.borrower_id IS NOT NULL
          AND gr.borrower_id <> l.borrower_id
          AND g.valid_from <= {as_of}
          AND (g.valid_to IS NULL OR g.valid_to >= {as_of})
          AND {open_loan_condition("l", open_loans)}
    """


def npl_borrowers_sql(open_loans: OpenLoans = OpenLoans.CLOSED_ON) -> str:
    """Return a SELECT of the borrowers with an open non-performing loan, as `borrower_id`."""
    classes = ", ".join(str(int(risk_class)) for risk_class in RiskClass.non_performing())
    return f"""
        SELECT DISTINCT l.borrower_id AS borrower_id FROM loans_loan l
        WHERE l.risk_class IN ({classes}) AND {open_loan_condition("l", open_loans)}
    """


class _TempTables:
    """Unique names for one call's temporary tables, dropped together at the end."""

    def __init__(self) -> None:
        self.suffix = uuid.uuid4().hex[:10]
        self.created: list[str] = []

    def name(self, kind: str) -> str:
        table = f"gn_{kind}_{self.suffix}"
        self.created.append(table)
        return table

    def drop_all(self, cursor) -> None:
        for table in reversed(self.created):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")


class _Graph:
    """The temporary tables holding one as-of date's edges.

    `edges` has one row per edge, where src guarantees a loan of dst. `steps`
    has every edge twice, once per direction, so that a search can follow
    edges either way through one index.
    """

    def __init__(self, tables: _TempTables) -> None:
        self.tables = tables
        self.edges = tables.name("edges")
        self.steps = tables.name("steps")


def _create_graph(cursor, graph: _Graph, params: dict, open_loans: OpenLoans) -> None:
    edges, steps = graph.edges, graph.steps
    cursor.execute(
        f"CREATE TEMPORARY TABLE {edges} AS SELECT guarantor_borrower_id AS src, "
        f"borrower_id AS dst FROM ({guarantee_edges_sql(open_loans)}) e",
        params,
    )
    cursor.execute(f"CREATE INDEX {edges}_src ON {edges} (src, dst)")
    cursor.execute(f"CREATE INDEX {edges}_dst ON {edges} (dst, src)")
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {steps} AS
        SELECT src AS from_id, dst AS to_id, {DOWN} AS direction FROM {edges}
        UNION ALL
        SELECT dst, src, {UP} FROM {edges}
        """
    )
    cursor.execute(f"CREATE INDEX {steps}_from ON {steps} (direction, from_id)")
    cursor.execute(f"CREATE INDEX {steps}_to ON {steps} (direction, to_id)")
    analyze(cursor, edges)
    analyze(cursor, steps)


def _run(work, as_of: date, open_loans: OpenLoans):
    """Build the as-of date's graph, call `work(cursor, graph)`, drop the tables."""
    tables = _TempTables()
    graph = _Graph(tables)
    with transaction.atomic(), connection.cursor() as cursor:
        disable_jit(cursor)
        _create_graph(cursor, graph, {"as_of": as_of}, OpenLoans(open_loans))
        result = work(cursor, graph)
        tables.drop_all(cursor)
    return result


# Circles ---------------------------------------------------------------------


def circle_members(as_of: date, open_loans: OpenLoans = OpenLoans.CLOSED_ON) -> dict[int, int]:
    """Map every borrower inside a guarantee circle to its circle id.

    A circle is a directed cycle of two or more borrowers. Borrowers x and y
    are in the same circle when each reaches the other (their strongly
    connected component), and the circle id is the component's smallest
    borrower id. See `_find_circles` for the method and its cost.

    NOTE: one large circle makes this slow: with 2,900 borrowers in one
    circle the closure had 8.4 million pairs and took about 35 s on
    PostgreSQL 15 (two shared cores), so call it from batch jobs.
    """
    started = time.perf_counter()
    circles = _run(_find_circles, as_of, open_loans)
    logger.info(
        "guarantee circles as_of=%s members=%d circles=%d seconds=%.2f",
        as_of,
        len(circles),
        len(set(circles.values())),
        time.perf_counter() - started,
    )
    return circles


def _find_circles(cursor, graph: _Graph) -> dict[int, int]:
    """Prune the borrowers that cannot be on a cycle, then close the rest transitively.

    The recursive CTE `reach(src, dst)` contains every pair where dst can be
    reached from src. It is combined with UNION, not UNION ALL, so each round
    adds only pairs not produced before. There are at most n * n pairs for n
    borrowers, so a round eventually adds nothing and the recursion stops,
    although the circles would let a walk go round for ever. The cost is
    the size of the transitive closure of the pruned core: a set of k
    borrowers that all reach each other alone gives k * k pairs, and each
    round joins its new pairs with the core's edges. Pruning removes trees
    and tails, which otherwise add every pair from them into the circles.

    x is in a circle exactly when (x, x) is in reach; y shares x's circle when
    reach holds (x, y) and (y, x), and the circle id is the least such y.
    """
    core = _build_core(cursor, graph)
    reach = graph.tables.name("reach")
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {reach} AS
        WITH RECURSIVE reach(src, dst) AS (
            SELECT src, dst FROM {core}
            UNION
            SELECT r.src, c.dst FROM reach r JOIN {core} c ON c.src = r.dst
        )
        SELECT src, dst FROM reach
        """
    )
    cursor.execute(f"CREATE INDEX {reach}_pair ON {reach} (src, dst)")
    analyze(cursor, reach)

    cursor.execute(
        f"""
        SELECT a.src, MIN(a.dst) FROM {reach} a
        JOIN {reach} b ON b.src = a.dst AND b.dst = a.src
        GROUP BY a.src
        """
    )
    return {borrower_id: circle_id for borrower_id, circle_id in cursor.fetchall()}


def _build_core(cursor, graph: _Graph) -> str:
    """Copy the edges into a new table and prune it; return the table's name."""
    core = graph.tables.name("core")
    cursor.execute(f"CREATE TEMPORARY TABLE {core} AS SELECT src, dst FROM {graph.edges}")
    cursor.execute(f"CREATE INDEX {core}_src ON {core} (src, dst)")
    cursor.execute(f"CREATE INDEX {core}_dst ON {core} (dst, src)")
    _prune_to_core(cursor, core)
    return core


def _find_circles_of(cursor, graph: _Graph, borrowers: str) -> dict[int, int]:
    """Return the circle ids of the borrowers listed in table `borrowers` (column borrower_id).

    The same ids as `_find_circles`, from the pairs reachable from and to
    these borrowers only, so the cost grows with their number times the size
    of the pruned core instead of with the core's whole transitive closure.
    """
    core = _build_core(cursor, graph)
    forward, backward = graph.tables.name("forward"), graph.tables.name("backward")
    for table, start, step in ((forward, "src", "dst"), (backward, "dst", "src")):
        cursor.execute(
            f"""
            CREATE TEMPORARY TABLE {table} AS
            WITH RECURSIVE walk(origin, borrower_id) AS (
                SELECT c.{start}, c.{step} FROM {core} c
                WHERE c.{start} IN (SELECT borrower_id FROM {borrowers})
                UNION
                SELECT w.origin, c.{step} FROM walk w JOIN {core} c ON c.{start} = w.borrower_id
            )
            SELECT origin, borrower_id FROM walk
            """
        )
        cursor.execute(f"CREATE INDEX {table}_pair ON {table} (origin, borrower_id)")
        analyze(cursor, table)
    cursor.execute(
        f"""
        SELECT f.origin, MIN(f.borrower_id) FROM {forward} f
        JOIN {backward} b ON b.origin = f.origin AND b.borrower_id = f.borrower_id
        GROUP BY f.origin
        """
    )
    return {borrower_id: circle_id for borrower_id, circle_id in cursor.fetchall()}


def _prune_to_core(cursor, core: str) -> None:
    """Delete, round by round, the edges of borrowers with no incoming or no outgoing edge.

    Deleting the edges (u, v) where u has no incoming edge or v has no
    outgoing one removes exactly those borrowers with all their edges.
    """
    analyze(cursor, core)
    for _round in range(PRUNE_MAX_ROUNDS):
        cursor.execute(
            f"""
            DELETE FROM {core}
            WHERE NOT EXISTS (SELECT 1 FROM {core} i WHERE i.dst = {core}.src)
               OR NOT EXISTS (SELECT 1 FROM {core} o WHERE o.src = {core}.dst)
            """
        )
        if cursor.rowcount == 0:
            break
    analyze(cursor, core)


# Chains ----------------------------------------------------------------------


def chain_members(
    as_of: date,
    open_loans: OpenLoans = OpenLoans.CLOSED_ON,
    npl_sql: str | None = None,
) -> dict[int, ChainMembership]:
    """Map every borrower on a guarantee chain with a non-performing member.

    A chain is a directed path of three or more distinct borrowers (two or
    more edges). Borrower x is flagged when some chain contains both x and a
    non-performing borrower n (n may be x itself), and the part of that chain
    between x and n has at most MAX_CHAIN_EDGES edges. Circles do not count
    as longer chains, because a chain never repeats a borrower.

    `npl_sql` is a SELECT of the non-performing borrowers as a `borrower_id`
    column, and may use the `as_of` parameter. By default it selects the
    borrowers with an open loan in a non-performing risk class.

    Each flagged borrower maps to `npl_members`, the non-performing borrowers
    it shares a chain with, and `chain_length`, the number of borrowers on the
    longest such chain the search found, which may be less than the longest
    that exists. See `_find_chains`.

    NOTE: the search keeps a row per non-performing borrower and borrower
    within MAX_CHAIN_EDGES edges of it, in each direction. Where most
    borrowers are joined into one network that is about a million rows (45 s
    on PostgreSQL 15, two shared cores, for 20,000 borrowers and 25,000
    random edges), so call it from batch jobs.
    """
    started = time.perf_counter()
    seeds_sql = npl_sql or npl_borrowers_sql(open_loans)
    members = _run(
        lambda cursor, graph: _find_chains(cursor, graph, seeds_sql, {"as_of": as_of}),
        as_of,
        open_loans,
    )
    logger.info(
        "guarantee chains as_of=%s flagged=%d seconds=%.2f",
        as_of,
        len(members),
        time.perf_counter() - started,
    )
    return members


def circles_and_chains(
    as_of: date, open_loans: OpenLoans = OpenLoans.CLOSED_ON, npl_sql: str | None = None
) -> tuple[dict[int, int], dict[int, ChainMembership]]:
    """Return what `circle_members` and `chain_members` return, building the graph once.

    The close-of-day run needs both; building the edge tables twice cost
    about a second at 500,000 guarantees.
    """
    started = time.perf_counter()
    seeds_sql = npl_sql or npl_borrowers_sql(open_loans)

    def work(cursor, graph: _Graph):
        circles = _find_circles(cursor, graph)
        chains = _find_chains(cursor, graph, seeds_sql, {"as_of": as_of})
        return circles, chains

    circles, chains = _run(work, as_of, open_loans)
    logger.info(
        "guarantee circles and chains as_of=%s circle_members=%d chain_members=%d seconds=%.2f",
        as_of,
        len(circles),
        len(chains),
        time.perf_counter() - started,
    )
    return circles, chains


class _ChainTables:
    def __init__(self, tables: _TempTables) -> None:
        self.seeds = tables.name("seeds")
        self.reached = tables.name("reached")
        self.summary = tables.name("summary")
        self.npl = tables.name("npl")
        self.longest = tables.name("longest")


def _find_chains(
    cursor, graph: _Graph, seeds_sql: str, params: dict, npl_sql: str | None = None
) -> dict[int, ChainMembership]:
    """Search outwards from every non-performing borrower, then flag and measure.

    With `npl_sql` the search starts instead from the borrowers of
    `seeds_sql`, and each of them maps to the non-performing borrowers of
    `npl_sql` it shares a chain with. The rules below are symmetric in n and
    x, so this finds the same flags and members from the other end.

    The search (see `_search_reached`) finds, for each non-performing
    borrower n and each direction, the borrowers within MAX_CHAIN_EDGES edges
    and one shortest path to each. A pair (n, x) with x != n is flagged
    exactly when one of these holds (for x below n; above is the mirror):

    - the shortest path from n to x has two edges or more;
    - n -> x is an edge and n has a guarantor p != x (p -> n -> x), or x
      guarantees some y != n (n -> x -> y);
    - n -> x is an edge and x has a guarantor w != n, fewer than
      MAX_CHAIN_EDGES edges from n, whose shortest path from n does not pass
      through x (n -> ... -> w -> x).

    The last rule finds every longer chain from n to x: take such a chain's
    borrower w just before x. If w's shortest path from n passed through x, x
    would guarantee a borrower other than n and the second rule would hold.
    n itself is flagged when it is the first, middle or last of some three
    distinct borrowers joined by two edges.

    `chain_length` is the number of borrowers on the longest chain that the
    shortest paths give (see `_measure_reached`), and at least 3. It is never
    more than the true longest chain but may be less, because a longer path
    to a borrower is not kept when a shorter one exists.
    """
    chain = _ChainTables(graph.tables)
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {chain.seeds} AS
        SELECT DISTINCT n.borrower_id FROM ({seeds_sql}) n
        WHERE n.borrower_id IN (SELECT src FROM {graph.edges})
           OR n.borrower_id IN (SELECT dst FROM {graph.edges})
        """,
        params,
    )
    if npl_sql is not None:
        cursor.execute(f"CREATE TEMPORARY TABLE {chain.npl} AS {npl_sql}", params)
        cursor.execute(f"CREATE INDEX {chain.npl}_id ON {chain.npl} (borrower_id)")
    deepest = _search_reached(cursor, graph, chain)
    _collect_longest(cursor, chain)
    _measure_reached(cursor, chain, deepest)
    _summarise_seeds(cursor, chain)
    npl_table = chain.npl if npl_sql is not None else None
    cursor.execute(_flagged_pairs_sql(graph, chain, npl_table), {"max_depth": MAX_CHAIN_EDGES})
    rows = cursor.fetchall()
    if npl_table is not None:
        rows = [(seed_id, borrower_id, *lengths) for borrower_id, seed_id, *lengths in rows]
    return _group_pairs(rows)


def _search_reached(cursor, graph: _Graph, chain: _ChainTables) -> int:
    """Fill the reached table breadth first; return the deepest level reached.

    A row (seed_id, direction, borrower_id) says that the borrower is
    `depth` edges from the seed, following edges forwards (DOWN) or
    backwards (UP), and that no shorter path exists. `parent_id` is the
    previous borrower on one such path, the least one, and `branch_id` the
    path's first borrower after the seed. A borrower is added once per seed
    and direction, so the table has at most one row per seed, direction and
    borrower. A recursive CTE cannot do this, because its recursive step reads
    only the rows of the previous level and not every row found so far.
    """
    reached = chain.reached
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {reached} (
            seed_id BIGINT NOT NULL,
            direction INTEGER NOT NULL,
            depth INTEGER NOT NULL,
            borrower_id BIGINT NOT NULL,
            parent_id BIGINT,
            branch_id BIGINT,
            reach_depth INTEGER NOT NULL,
            joined_depth INTEGER
        )
        """
    )
    cursor.execute(
        f"CREATE UNIQUE INDEX {reached}_node ON {reached} (seed_id, direction, borrower_id)"
    )
    cursor.execute(f"CREATE INDEX {reached}_parent ON {reached} (seed_id, direction, parent_id)")
    cursor.execute(f"CREATE INDEX {reached}_depth ON {reached} (depth)")
    cursor.execute(
        f"""
        INSERT INTO {reached} (seed_id, direction, depth, borrower_id, reach_depth, joined_depth)
        SELECT n.borrower_id, d.direction, 0, n.borrower_id, 0, 0
        FROM {chain.seeds} n
        CROSS JOIN (SELECT {DOWN} AS direction UNION ALL SELECT {UP}) d
        """
    )
    analyze(cursor, reached)

    deepest = 0
    for depth in range(1, MAX_CHAIN_EDGES + 1):
        cursor.execute(_extend_reached_sql(graph, reached), {"depth": depth})
        if cursor.rowcount == 0:
            break
        deepest = depth
        # Without fresh statistics PostgreSQL 15 takes the new level for
        # empty and joins it row by row: 1.2 s instead of 20 ms for a level
        # of 3,000 rows.
        analyze(cursor, reached)
    return deepest


def _extend_reached_sql(graph: _Graph, reached: str) -> str:
    """Return the INSERT adding the borrowers first reached at `depth` edges."""
    return f"""
        INSERT INTO {reached} (
            seed_id, direction, depth, borrower_id, parent_id, branch_id,
            reach_depth, joined_depth
        )
        SELECT c.seed_id, c.direction, %(depth)s, c.borrower_id, c.parent_id,
               COALESCE(p.branch_id, c.borrower_id), %(depth)s, %(depth)s
        FROM (
            SELECT p.seed_id, p.direction, s.to_id AS borrower_id, MIN(p.borrower_id) AS parent_id
            FROM {reached} p
            JOIN {graph.steps} s ON s.direction = p.direction AND s.from_id = p.borrower_id
            WHERE p.depth = %(depth)s - 1
              AND NOT EXISTS (
                  SELECT 1 FROM {reached} r
                  WHERE r.seed_id = p.seed_id AND r.direction = p.direction
                    AND r.borrower_id = s.to_id
              )
            GROUP BY p.seed_id, p.direction, s.to_id
        ) c
        JOIN {reached} p ON p.seed_id = c.seed_id AND p.direction = c.direction
            AND p.borrower_id = c.parent_id
    """


def _collect_longest(cursor, chain: _ChainTables) -> None:
    """Store the borrowers on the longest found path of each seed and direction.

    Among paths of equal length the one ending at the least borrower id is
    taken. Its borrowers are found by following parent ids back to the seed.
    """
    reached = chain.reached
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {chain.longest} AS
        WITH RECURSIVE longest(seed_id, direction, depth, borrower_id, parent_id) AS (
            SELECT r.seed_id, r.direction, r.depth, r.borrower_id, r.parent_id
            FROM {reached} r
            JOIN (
                SELECT e.seed_id, e.direction, MIN(e.borrower_id) AS borrower_id
                FROM {reached} e
                JOIN (
                    SELECT seed_id, direction, MAX(depth) AS depth FROM {reached}
                    GROUP BY seed_id, direction
                ) deepest ON deepest.seed_id = e.seed_id AND deepest.direction = e.direction
                    AND deepest.depth = e.depth
                WHERE e.depth > 0
                GROUP BY e.seed_id, e.direction
            ) ends ON ends.seed_id = r.seed_id AND ends.direction = r.direction
                AND ends.borrower_id = r.borrower_id
            UNION
            SELECT r.seed_id, r.direction, r.depth, r.borrower_id, r.parent_id
            FROM longest l
            JOIN {reached} r ON r.seed_id = l.seed_id AND r.direction = l.direction
                AND r.borrower_id = l.parent_id
        )
        SELECT seed_id, direction, depth, borrower_id FROM longest
        """
    )
    cursor.execute(f"CREATE INDEX {chain.longest}_member ON {chain.longest} (seed_id, borrower_id)")
    analyze(cursor, chain.longest)


def _measure_reached(cursor, chain: _ChainTables, deepest: int) -> None:
    """Set the depths each found path can be extended to, in edges from the seed.

    reach_depth is the depth of the deepest found path through the row.
    joined_depth is the same over the paths that share no borrower but the
    seed with the longest found path on the other side, so that the two join
    into one chain. It is NULL where the row's own path shares one. Levels
    are updated from the deepest up, so each row takes the maximum over its
    children, which are already final. A child is always deeper than its
    parent, so the children's maximum, when there are children, is the
    row's value.
    """
    reached, longest = chain.reached, chain.longest
    # Clear joined_depth on the rows whose path meets the other side's
    # longest path, level by level from the top: a row at one of its
    # borrowers, or below a row already cleared.
    for depth in range(1, deepest + 1):
        cursor.execute(
            f"""
            UPDATE {reached} SET joined_depth = NULL
            WHERE depth = %(depth)s AND (
                EXISTS (
                    SELECT 1 FROM {longest} m
                    WHERE m.seed_id = {reached}.seed_id AND m.borrower_id = {reached}.borrower_id
                      AND m.direction <> {reached}.direction AND m.depth > 0
                ) OR EXISTS (
                    SELECT 1 FROM {reached} p
                    WHERE p.seed_id = {reached}.seed_id AND p.direction = {reached}.direction
                      AND p.borrower_id = {reached}.parent_id AND p.joined_depth IS NULL
                )
            )
            """,
            {"depth": depth},
        )
    for depth in range(deepest - 1, -1, -1):
        cursor.execute(
            f"""
            UPDATE {reached} SET
                reach_depth = c.reach_depth,
                joined_depth = CASE WHEN {reached}.joined_depth IS NULL THEN NULL
                    ELSE COALESCE(c.joined_depth, {reached}.joined_depth) END
            FROM (
                SELECT seed_id, direction, parent_id, MAX(reach_depth) AS reach_depth,
                       MAX(joined_depth) AS joined_depth
                FROM {reached} WHERE depth = %(depth)s + 1
                GROUP BY seed_id, direction, parent_id
            ) c
            WHERE {reached}.seed_id = c.seed_id AND {reached}.direction = c.direction
              AND {reached}.borrower_id = c.parent_id
            """,
            {"depth": depth},
        )


def _summarise_seeds(cursor, chain: _ChainTables) -> None:
    """Store per seed the depths of its longest paths above and below, and their joined depths.

    A table with statistics, not a CTE: PostgreSQL 15 guesses a CTE's size
    and joined it row by row with 500,000 flagged pairs, for 90 s.
    """
    longest, reached = chain.longest, chain.reached
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {chain.summary} AS
        SELECT n.borrower_id AS seed_id,
               (SELECT MAX(m.depth) FROM {longest} m
                WHERE m.seed_id = n.borrower_id AND m.direction = {UP}) AS up_depth,
               (SELECT MAX(m.depth) FROM {longest} m
                WHERE m.seed_id = n.borrower_id AND m.direction = {DOWN}) AS down_depth,
               (SELECT q.joined_depth FROM {reached} q WHERE q.seed_id = n.borrower_id
                AND q.direction = {UP} AND q.borrower_id = n.borrower_id) AS up_joined,
               (SELECT q.joined_depth FROM {reached} q WHERE q.seed_id = n.borrower_id
                AND q.direction = {DOWN} AND q.borrower_id = n.borrower_id) AS down_joined
        FROM {chain.seeds} n
        """
    )
    cursor.execute(f"CREATE UNIQUE INDEX {chain.summary}_seed ON {chain.summary} (seed_id)")
    analyze(cursor, chain.summary)


def _flagged_pairs_sql(graph: _Graph, chain: _ChainTables, npl_table: str | None) -> str:
    """Return a SELECT of (borrower_id, seed_id, length, length, length) per flagged pair.

    The three lengths are in borrowers, NULL when there is no such chain:

    - the deepest found path through the borrower;
    - its joined path (joined_depth) followed by the longest found path on
      the seed's other side;
    - for a borrower on one of the seed's two longest paths, that path
      followed by the deepest joined path on the other side.

    The
    statement takes the named parameter `max_depth`. With `npl_table`, only
    pairs whose reached borrower is listed in it are returned.
    """
    edges, steps, reached, longest = graph.edges, graph.steps, chain.reached, chain.longest
    # For a depth-1 row the edge runs upper -> lower.
    upper = f"CASE WHEN r.direction = {DOWN} THEN r.seed_id ELSE r.borrower_id END"
    lower = f"CASE WHEN r.direction = {DOWN} THEN r.borrower_id ELSE r.seed_id END"
    direct_edge_extends = f"""(r.depth = 1 AND (
        EXISTS (SELECT 1 FROM {edges} e WHERE e.dst = {upper} AND e.src <> {lower})
        OR EXISTS (SELECT 1 FROM {edges} e WHERE e.src = {lower} AND e.dst <> {upper})
        OR EXISTS (
            SELECT 1 FROM {steps} s
            JOIN {reached} w ON w.seed_id = r.seed_id AND w.direction = r.direction
                AND w.borrower_id = s.from_id
            WHERE s.direction = r.direction AND s.to_id = r.borrower_id
              AND w.depth > 0 AND w.depth < %(max_depth)s AND w.branch_id <> r.borrower_id
        )
    ))"""
    seed = "r.seed_id"
    seed_in_three = f"""(
        EXISTS (SELECT 1 FROM {edges} a JOIN {edges} b ON b.src = a.dst
                WHERE a.src = {seed} AND b.dst <> {seed})
        OR EXISTS (SELECT 1 FROM {edges} a JOIN {edges} b ON b.dst = a.src
                   WHERE a.dst = {seed} AND b.src <> {seed})
        OR EXISTS (SELECT 1 FROM {edges} a JOIN {edges} b ON b.src = a.dst
                   WHERE a.dst = {seed} AND b.dst <> a.src)
    )"""
    opposite_longest = f"CASE WHEN r.direction = {DOWN} THEN s.up_depth ELSE s.down_depth END"
    lengths = f"MAX(r.reach_depth) + 1, MAX(r.joined_depth + {opposite_longest}) + 1"
    npl_only = f"AND r.borrower_id IN (SELECT borrower_id FROM {npl_table})" if npl_table else ""
    return f"""
        WITH flagged(seed_id, borrower_id, found_length, joined_length) AS (
            SELECT r.seed_id, r.borrower_id, {lengths}
            FROM {reached} r JOIN {chain.summary} s ON s.seed_id = r.seed_id
            WHERE r.depth > 0 {npl_only}
            GROUP BY r.seed_id, r.borrower_id
            HAVING MAX(r.depth) >= 2
                OR MAX(CASE WHEN {direct_edge_extends} THEN 1 ELSE 0 END) = 1
            UNION ALL
            SELECT r.seed_id, r.borrower_id, {lengths}
            FROM {reached} r JOIN {chain.summary} s ON s.seed_id = r.seed_id
            WHERE r.depth = 0 {npl_only} AND {seed_in_three}
            GROUP BY r.seed_id, r.borrower_id
        )
        SELECT f.borrower_id, f.seed_id, f.found_length, f.joined_length, (
            SELECT MAX(CASE WHEN m.direction = {UP} THEN s.up_depth + s.down_joined
                       ELSE s.down_depth + s.up_joined END) + 1
            FROM {longest} m
            WHERE m.seed_id = f.seed_id AND m.borrower_id = f.borrower_id
        )
        FROM flagged f
        JOIN {chain.summary} s ON s.seed_id = f.seed_id
    """


def _group_pairs(rows) -> dict[int, ChainMembership]:
    """Group (borrower_id, npl_id, length, ...) rows per borrower, keeping the longest."""
    members: dict[int, set[int]] = {}
    lengths: dict[int, int] = {}
    for borrower_id, seed_id, *candidate_lengths in rows:
        members.setdefault(borrower_id, set()).add(seed_id)
        length = max([3, *(value for value in candidate_lengths if value is not None)])
        lengths[borrower_id] = max(lengths.get(borrower_id, 0), length)
    return {
        borrower_id: ChainMembership(npl_members=sorted(seeds), chain_length=lengths[borrower_id])
        for borrower_id, seeds in sorted(members.items())
    }


# A borrower's network ---------------------------------------------------------


def network_around(
    borrower_id: int,
    as_of: date,
    depth: int = 3,
    open_loans: OpenLoans = OpenLoans.CLOSED_ON,
) -> dict:
    """Return the borrowers and edges within `depth` steps of a borrower, for a network page.

    A step follows an edge either way, so the network shows the borrower's
    guarantors, the borrowers it guarantees, and their other partners.
    Circle ids, flags and npl_members match `circle_members` and
    `chain_members`, but are computed for these borrowers only: the chain
    search starts from them rather than from every non-performing borrower.

    Nodes carry id, name, steps (distance from the borrower), is_npl,
    in_circle, circle_id, on_chain and npl_members. Edges carry from, to,
    amount, in_circle (both ends in one circle) and on_chain (both ends
    flagged with a common non-performing member). The amount is the sum of
    the guarantees' amounts, taking a percentage of the loan's principal,
    rounded half up to cents. Raises Borrower.DoesNotExist when the id is
    unknown.
    """
    if depth < 0:
        raise ValueError(f"Invalid network depth {depth}: expected 0 or more steps.")
    open_loans = OpenLoans(open_loans)
    tables = _TempTables()
    graph = _Graph(tables)
    params = {"as_of": as_of}
    with transaction.atomic(), connection.cursor() as cursor:
        disable_jit(cursor)
        _create_graph(cursor, graph, params, open_loans)
        nearby = tables.name("nearby")
        steps = _nearby_borrowers(cursor, graph, nearby, borrower_id, depth)
        circles = _find_circles_of(cursor, graph, nearby)
        nearby_sql = f"SELECT borrower_id FROM {nearby}"
        chains = _find_chains(cursor, graph, nearby_sql, params, npl_borrowers_sql(open_loans))
        nodes = _network_nodes(nearby, steps, circles, chains, as_of, open_loans)
        edges = _network_edges(nearby, circles, chains, as_of, open_loans)
        tables.drop_all(cursor)
    if not nodes:
        raise Borrower.DoesNotExist(f"Borrower {borrower_id} not found.")
    return {
        "borrower_id": borrower_id,
        "as_of": as_of,
        "depth": depth,
        "nodes": nodes,
        "edges": edges,
    }


def _nearby_borrowers(
    cursor, graph: _Graph, nearby: str, borrower_id: int, depth: int
) -> dict[int, int]:
    """Store the borrowers within `depth` steps in table `nearby`; return their distances."""
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE {nearby} AS
        -- The direction test lets the (direction, from_id) index serve the join.
        WITH RECURSIVE near(borrower_id, steps) AS (
            SELECT CAST(%(borrower_id)s AS BIGINT), 0
            UNION
            SELECT s.to_id, n.steps + 1 FROM near n
            JOIN {graph.steps} s ON s.direction IN ({DOWN}, {UP}) AND s.from_id = n.borrower_id
            WHERE n.steps < %(depth)s
        )
        SELECT borrower_id, MIN(steps) AS steps FROM near GROUP BY borrower_id
        """,
        {"borrower_id": borrower_id, "depth": depth},
    )
    cursor.execute(f"SELECT borrower_id, steps FROM {nearby}")
    return dict(cursor.fetchall())


def _network_nodes(
    nearby: str,
    steps: dict[int, int],
    circles: dict[int, int],
    chains: dict[int, ChainMembership],
    as_of: date,
    open_loans: OpenLoans,
) -> list[dict]:
    in_nearby = RawSQL(f"SELECT borrower_id FROM {nearby}", ())
    npl_ids = set(
        Loan.objects.filter(
            _open_loan_q("", as_of, open_loans),
            borrower_id__in=in_nearby,
            risk_class__in=RiskClass.non_performing(),
        ).values_list("borrower_id", flat=True)
    )
    names = dict(Borrower.objects.filter(pk__in=in_nearby).values_list("pk", "legal_name"))
    nodes = []
    for node_id in sorted(names, key=lambda pk: (steps[pk], pk)):
        chain = chains.get(node_id)
        nodes.append(
            {
                "id": node_id,
                "name": names[node_id],
                "steps": steps[node_id],
                "is_npl": node_id in npl_ids,
                "in_circle": node_id in circles,
                "circle_id": circles.get(node_id),
                "on_chain": chain is not None,
                "npl_members": chain["npl_members"] if chain else [],
            }
        )
    return nodes


def _open_loan_q(prefix: str, as_of: date, open_loans: OpenLoans) -> Q:
    """Return the ORM form of `open_loan_condition` for the loan at `prefix`."""
    if open_loans is OpenLoans.POSITION:
        return Q(**{f"{prefix}position__as_of": as_of, f"{prefix}position__is_open": True})
    return Q(**{f"{prefix}disbursement_date__lte": as_of}) & (
        Q(**{f"{prefix}closed_on__isnull": True}) | Q(**{f"{prefix}closed_on__gt": as_of})
    )


def _network_edges(
    nearby: str,
    circles: dict[int, int],
    chains: dict[int, ChainMembership],
    as_of: date,
    open_loans: OpenLoans,
) -> list[dict]:
    amounts: dict[tuple[int, int], Decimal] = {}
    for src, dst, amount in _edge_guarantees(nearby, as_of, open_loans):
        amounts[(src, dst)] = amounts.get((src, dst), Decimal("0")) + amount
    edges = []
    for (src, dst), amount in sorted(amounts.items()):
        src_npl = set(chains[src]["npl_members"]) if src in chains else set()
        dst_npl = set(chains[dst]["npl_members"]) if dst in chains else set()
        edges.append(
            {
                "from": src,
                "to": dst,
                "amount": amount.quantize(CENTS, rounding=ROUND_HALF_UP),
                "in_circle": src in circles and circles.get(src) == circles.get(dst),
                "on_chain": bool(src_npl & dst_npl),
            }
        )
    return edges


def _edge_guarantees(
    nearby: str, as_of: date, open_loans: OpenLoans
) -> Iterator[tuple[int, int, Decimal]]:
    """Yield (guarantor borrower, borrower, amount) per guarantee between nearby borrowers.

    Read through the ORM so that amounts arrive as Decimal on SQLite too.
    """
    in_nearby = RawSQL(f"SELECT borrower_id FROM {nearby}", ())
    valid = Q(valid_from__lte=as_of) & (Q(valid_to__isnull=True) | Q(valid_to__gte=as_of))
    rows = (
        Guarantee.objects.filter(valid, _open_loan_q("loan__", as_of, open_loans))
        .filter(guarantor__borrower_id__in=in_nearby, loan__borrower_id__in=in_nearby)
        .exclude(guarantor__borrower_id=F("loan__borrower_id"))
        .values_list(
            "guarantor__borrower_id", "loan__borrower_id", "amount", "percentage", "loan__principal"
        )
    )
    for src, dst, amount, percentage, principal in rows:
        yield src, dst, amount if amount is not None else principal * percentage / 100
