"""The DAG of steps across the images in view (networkx).

Nodes are step ids (``Step.step_id``: a merkle chain over history entries
and diff ids, so two images share a node exactly when they share that step
and everything below it); each node also carries its chain id. Edges point
from parent to child. Shared bases, merge-bases, "every image built on X"
and ``log --graph`` come from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import networkx as nx

from .model import Image


def build(images: Iterable[tuple[str, Image]]) -> nx.DiGraph:
    g = nx.DiGraph()
    for tag, img in images:
        prev = None
        for s in img.steps:
            if s.step_id not in g:
                g.add_node(s.step_id, step=s, tags=[], images=[])
            g.nodes[s.step_id]["images"].append(tag)
            if prev is not None:
                g.add_edge(prev, s.step_id)
            prev = s.step_id
        if prev is not None and tag not in g.nodes[prev]["tags"]:
            g.nodes[prev]["tags"].append(tag)
    return g


def parent(g: nx.DiGraph, node: str) -> str | None:
    preds = list(g.predecessors(node))
    return preds[0] if preds else None


def root_of(g: nx.DiGraph, node: str) -> str:
    while True:
        p = parent(g, node)
        if p is None:
            return node
        node = p


def images_built_on(g: nx.DiGraph, node: str) -> list[str]:
    """Tags of every image whose chain goes through ``node`` (including one tagged at it)."""
    tags: list[str] = []
    for n in [node, *nx.descendants(g, node)]:
        tags.extend(g.nodes[n]["tags"])
    return sorted(set(tags))


def topo_order(g: nx.DiGraph) -> list[str]:
    """Children before parents, one line of history at a time (git's --topo-order)."""
    remaining = {n: g.out_degree(n) for n in g.nodes}

    def created(n: str) -> str:
        return str(g.nodes[n]["step"].created or "")

    tips = [n for n in g.nodes if g.out_degree(n) == 0]
    roots: dict[str, list[str]] = {}
    for t in tips:
        roots.setdefault(root_of(g, t), []).append(t)
    # trees with the newest tips first; in each tree, newest tip first
    trees = sorted(roots.values(), key=lambda ts: max(created(t) for t in ts), reverse=True)
    ready: list[str] = []
    for ts in trees:
        ready.extend(sorted(ts, key=created, reverse=True))
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        p = parent(g, n)
        if p is not None:
            remaining[p] -= 1
            if remaining[p] == 0:
                ready.insert(0, p)
    return order


@dataclass
class GraphLine:
    prefix: str               # "* | " drawing for the node's own line
    node: str | None          # None for a connector line ("|/")
    cont: str = ""            # drawing for continuation lines of the same entry
    tags: list[str] = field(default_factory=list)


def render(g: nx.DiGraph, order: list[str] | None = None) -> list[GraphLine]:
    """Column drawing like ``git log --graph`` for a forest of single-parent chains."""
    order = order or topo_order(g)
    cols: list[str | None] = []
    out: list[GraphLine] = []

    def draw(marker_col: int | None = None) -> str:
        parts = []
        for k, c in enumerate(cols):
            if k == marker_col:
                parts.append("*")
            elif c is None:
                parts.append(" ")
            else:
                parts.append("|")
        return " ".join(parts).rstrip() + " "

    for n in order:
        if n not in cols and not any(c is not None for c in cols) and out:
            out.append(GraphLine("", None))   # an unrelated image: a gap, not a line that looks like "built on"
        if n not in cols:
            if None in cols:
                cols[cols.index(None)] = n
            else:
                cols.append(n)
        i = cols.index(n)
        # columns waiting for the same node converge into the leftmost one first
        while True:
            dups = [j for j, c in enumerate(cols) if c == n and j != i]
            if not dups:
                break
            j = dups[-1]
            out.append(GraphLine(_collapse_line(cols, j), None))
            del cols[j]
        line = draw(i)
        p = parent(g, n)
        cols[i] = p
        while cols and cols[-1] is None:
            cols.pop()
        cont = draw(None) if cols else ""
        out.append(GraphLine(line, n, cont, list(g.nodes[n]["tags"])))
    return out


def _collapse_line(cols: list[str | None], j: int) -> str:
    """The connector drawn when column ``j`` merges into the column on its left."""
    parts = []
    for k, c in enumerate(cols):
        if k < j - 1:
            parts.append("|" if c is not None else " ")
        elif k == j - 1:
            parts.append("|/")
        elif k > j:
            parts.append("/" if c is not None else " ")
    return " ".join(parts).rstrip() + " "
