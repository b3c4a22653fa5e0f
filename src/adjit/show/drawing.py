"""Pictures without Graphviz: the DOT text adjit writes, drawn with networkx + matplotlib.

When Graphviz's ``dot`` program is missing, :func:`adjit.show.render` and Jupyter's
``Graph._repr_svg_`` draw the picture here instead.  It reads back the DOT text of
:mod:`adjit.show.dot` (so labels, colors and fused clusters are the same ones), lays
the nodes out in rows by topological generation (networkx; a value sits just above its
first use, inputs and parameters on top), lays each fused region out on its own and
places it as one block, bends an edge once per row it crosses, orders each row by a few
barycenter sweeps to shorten edges, and draws with matplotlib's object API (no pyplot,
so no global state is touched).  Graphviz's layout is nicer; this one needs nothing
beyond the ``plot`` extra.
"""
from __future__ import annotations

import io
import re
import textwrap
from dataclasses import dataclass, field

import networkx as nx

from .equations import width

_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,;\]\s]+)')
_NODE = re.compile(r"^(\w+) \[(.*)\];$")
_EDGE = re.compile(r"^(\w+) -> (\w+)(?: \[(.*)\])?;$")
_CLUSTER = re.compile(r"^subgraph (cluster_\w+) \{$")
_CHAR_IN, _LINE_IN, _FONT = 0.068, 0.17, 8          # inches a character / a line take at 8 pt
_ROW_GAP, _COL_GAP, _MARGIN = 0.45, 0.22, 0.3
_PAD, _CLUSTER_TITLE = 0.1, 0.18                    # around a cluster; its label


class NotAdjitDot(ValueError):
    """The text is not DOT that :mod:`adjit.show.dot` wrote (only Graphviz can draw it)."""


@dataclass
class Picture:
    """One ``digraph``: node attributes, edges, fused clusters and the title."""

    title: str = ""
    nodes: dict[str, dict] = field(default_factory=dict)
    edges: list[tuple[str, str, dict]] = field(default_factory=list)
    clusters: dict[str, tuple[dict, list[str]]] = field(default_factory=dict)


def _unquote(value: str) -> str:
    if not value.startswith('"'):
        return value
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value[1:-1])


def attrs(text: str) -> dict:
    return {k: _unquote(v) for k, v in _ATTR.findall(text or "")}


def parse(dot_text: str) -> list[Picture]:
    """The pictures in DOT text written by :func:`adjit.show.dot.graph_dot`."""
    pictures: list[Picture] = []
    pic, cluster = None, None
    for raw in dot_text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("node [", "edge [")):
            continue
        if line == "digraph adjit {":
            pic = Picture()
            pictures.append(pic)
        elif pic is None:
            raise NotAdjitDot(f"expected 'digraph adjit {{', got {line[:60]!r}")
        elif line.startswith("graph ["):
            pic.title = attrs(line).get("label", "")
        elif m := _CLUSTER.match(line):
            cluster = m[1]
            pic.clusters[cluster] = ({}, [])
        elif cluster and line.startswith("label="):
            pic.clusters[cluster][0].update(attrs(line))
        elif line == "}":
            cluster, pic = (None, pic) if cluster else (None, None)
        elif m := _EDGE.match(line):
            pic.edges.append((m[1], m[2], attrs(m[3])))
        elif m := _NODE.match(line):
            pic.nodes[m[1]] = attrs(m[2])
            if cluster:
                pic.clusters[cluster][1].append(m[1])
        else:
            raise NotAdjitDot(f"cannot draw this DOT line without Graphviz: {line[:60]!r}")
    if not pictures:
        raise NotAdjitDot("no 'digraph adjit' in the text")
    return pictures


# --- layout -----------------------------------------------------------------------------------
def _size(a: dict) -> tuple[float, float]:
    lines = a.get("label", "").split("\n")
    w = max(width(s) for s in lines) * _CHAR_IN + 0.16
    h = len(lines) * _LINE_IN + 0.1
    if a.get("shape") == "ellipse":
        w, h = w * 1.3, h * 1.3
    return w, h


@dataclass
class Layout:
    pos: dict[str, tuple[float, float]]
    size: dict[str, tuple[float, float]]
    extent: tuple[float, float, float, float]         # xmin, xmax, ymin, ymax
    routes: dict[tuple[str, str], list]               # the bends of each edge


def layout(pic: Picture, sweeps: int = 6) -> Layout:
    """Each fused cluster is laid out on its own, then placed as one block in the rows of
    the whole graph, so no other node lands inside a cluster's box."""
    size = {n: _size(a) for n, a in pic.nodes.items()}
    owner = {m: c for c, (_, ms) in pic.clusters.items() for m in ms}
    block = {n: owner.get(n, n) for n in pic.nodes}
    inner = {}
    for c, (_, ms) in pic.clusters.items():
        edges = [(a, b) for a, b, _ in pic.edges if owner.get(a) == c == owner.get(b)]
        pos, (x0, x1, y0, y1), _ = _rows(ms, edges, size, pinned=set(), sweeps=sweeps)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        inner[c] = {m: (x - cx, y - cy) for m, (x, y) in pos.items()}
        size[c] = (x1 - x0 + 2 * _PAD, y1 - y0 + 2 * _PAD + _CLUSTER_TITLE)
    blocks = list(dict.fromkeys(block.values()))
    edges = list(dict.fromkeys((block[a], block[b]) for a, b, _ in pic.edges
                               if block[a] != block[b]))
    pinned = {n for n in blocks if n in pic.nodes and pic.nodes[n].get("shape") == "box"
              and "rounded" in pic.nodes[n].get("style", "")}        # inputs, params on top
    pos, extent, bends = _rows(blocks, edges, size, pinned, sweeps)
    for c, offsets in inner.items():
        cx, cy = pos.pop(c)
        cy -= _CLUSTER_TITLE / 2
        pos.update({m: (cx + dx, cy + dy) for m, (dx, dy) in offsets.items()})
    routes = {(a, b): bends.get((block[a], block[b]), []) for a, b, _ in pic.edges}
    return Layout(pos, size, extent, routes)


def _rows(nodes, edges, size, pinned: set, sweeps: int):
    """Layered layout: rows by topological generation, every node not pinned pulled down
    to just above its first consumer, rows ordered by barycenter sweeps."""
    size = dict(size)                                  # bends get sizes of their own
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    layer = {n: k for k, r in enumerate(nx.topological_generations(g)) for n in r}
    for n in reversed(list(nx.topological_sort(g))):
        if n not in pinned and g.out_degree(n):
            layer[n] = min(layer[s] for s in g.successors(n)) - 1
    chains = {}
    for a, b in edges:                                 # an edge across rows: a chain of
        span = range(layer[a] + 1, layer[b])           # bends, one per row it crosses
        chains[a, b] = [f"{a}->{b}#{k}" for k in span]
        for d, k in zip(chains[a, b], span):
            layer[d], size[d] = k, (0.02, 0.0)
        if chains[a, b]:
            g.remove_edge(a, b)
            g.add_edges_from(zip([a] + chains[a, b], chains[a, b] + [b]))
    top = min(layer.values(), default=0)
    rows = [[] for _ in range(max(layer.values(), default=0) - top + 1)]
    for n in list(nodes) + [d for ds in chains.values() for d in ds]:
        rows[layer[n] - top].append(n)                 # nodes in the DOT (topological) order
    rows = [r for r in rows if r]
    x = {}
    for r in rows:
        _place(r, {n: 0.0 for n in r}, size, x)
    for s in range(sweeps):
        down = s % 2 == 0
        for r in (rows[1:] if down else rows[-2::-1]):
            nbrs = g.predecessors if down else g.successors
            want = {n: _mean([x[m] for m in nbrs(n)], x[n]) for n in r}
            r.sort(key=want.__getitem__)
            _place(r, want, size, x)
    pos, y = {}, 0.0
    for r in rows:
        h = max(size[n][1] for n in r)
        y -= h / 2
        pos.update({n: (x[n], y) for n in r})
        y -= h / 2 + _ROW_GAP
    xs = [pos[n][0] + s * size[n][0] / 2 for n in pos for s in (-1, 1)] or [0.0]
    bends = {e: [pos.pop(d) for d in ds] for e, ds in chains.items()}
    return pos, (min(xs), max(xs), y + _ROW_GAP, 0.0), bends


def _mean(values, default):
    return sum(values) / len(values) if values else default


def _place(row: list[str], want: dict, size: dict, x: dict) -> None:
    """Left to right without overlaps, then shifted so the row sits where it wants to."""
    right, placed = None, {}
    for n in row:
        half = size[n][0] / 2
        at = want[n] if right is None else max(want[n], right + _COL_GAP + half)
        placed[n], right = at, at + half
    shift = _mean([want[n] - placed[n] for n in row], 0.0)
    x.update({n: placed[n] + shift for n in row})


# --- drawing ----------------------------------------------------------------------------------
def draw(dot_text: str, fmt: str):
    """The picture as ``fmt`` ('svg' gives text, 'png'/'pdf' bytes).  Needs matplotlib."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    pictures = parse(dot_text)
    layouts = [layout(p) for p in pictures]
    widths = [max(lo.extent[1] - lo.extent[0], 3.0) for lo in layouts]
    heights = [lo.extent[3] - lo.extent[2] for lo in layouts]
    title_h = 0.55
    fig_w = sum(widths) + 2 * _MARGIN * len(widths)
    fig_h = max(heights) + title_h + 2 * _MARGIN
    fig = Figure(figsize=(fig_w, fig_h))
    left = 0.0
    for pic, lo, w in zip(pictures, layouts, widths):
        box = w + 2 * _MARGIN
        ax = fig.add_axes([left / fig_w, 0, box / fig_w, 1])
        left += box
        cx = (lo.extent[0] + lo.extent[1]) / 2
        ax.set_xlim(cx - box / 2, cx + box / 2)
        ax.set_ylim(-(fig_h - title_h - _MARGIN), title_h + _MARGIN)
        ax.axis("off")
        _draw_one(ax, pic, lo, box, FancyBboxPatch)
    out = io.BytesIO()
    with rc_context({"svg.hashsalt": "adjit"}):        # the same SVG text run after run
        fig.savefig(out, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    data = out.getvalue()
    return data.decode("utf-8") if fmt == "svg" else data


def _draw_one(ax, pic: Picture, lo: Layout, box_w: float, FancyBboxPatch) -> None:
    head, _, legend = pic.title.partition("\n")
    cx = sum(ax.get_xlim()) / 2
    ax.text(cx, 0.5, head, ha="center", va="center", fontsize=10, parse_math=False)
    chars = max(20, int(box_w / (_CHAR_IN * 0.85)))
    ax.text(cx, 0.2, "\n".join(textwrap.wrap(legend, chars)), ha="center", va="center",
            fontsize=6.5, color="#555555", parse_math=False)
    for c, (attrs_, members) in pic.clusters.items():
        ms = [m for m in members if m in lo.pos]
        x0 = min(lo.pos[m][0] - lo.size[m][0] / 2 for m in ms) - _PAD
        x1 = max(lo.pos[m][0] + lo.size[m][0] / 2 for m in ms) + _PAD
        y0 = min(lo.pos[m][1] - lo.size[m][1] / 2 for m in ms) - _PAD
        y1 = max(lo.pos[m][1] + lo.size[m][1] / 2 for m in ms) + _PAD + _CLUSTER_TITLE
        color = attrs_.get("color", "#4f8a4b")
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0.02",
                                    fc=attrs_.get("fillcolor", "#e6f4e4"), ec=color, lw=0.8,
                                    zorder=0))
        ax.text(x0 + 0.06, y1 - 0.04, attrs_.get("label", ""), ha="left", va="top",
                fontsize=6, color=color, parse_math=False)
    for a, b, ea in pic.edges:
        (xa, ya), (xb, yb) = lo.pos[a], lo.pos[b]
        points = [(xa, ya - lo.size[a][1] / 2)] + lo.routes[a, b] + [(xb, yb + lo.size[b][1] / 2)]
        if len(points) > 2:
            ax.plot(*zip(*points[:-1]), color="#555555", lw=0.7, zorder=1)
        start, end = points[-2:]
        ax.annotate("", xy=end, xytext=start, zorder=1, arrowprops=dict(
            arrowstyle="-|>", color="#555555", lw=0.7, mutation_scale=8, shrinkA=0, shrinkB=0))
        if "label" in ea:
            ax.text(end[0] + 0.25 * (start[0] - end[0]), end[1] + 0.25 * (start[1] - end[1]),
                    ea["label"], fontsize=6, color="#777777", ha="center", va="center",
                    parse_math=False, zorder=3,
                    bbox=dict(boxstyle="round,pad=0.05", fc="white", ec="none"))
    for n, na in pic.nodes.items():
        _node(ax, lo.pos[n], na)


def _node(ax, xy, a: dict) -> None:
    shape, style = a.get("shape", "ellipse"), a.get("style", "")
    small = a.get("fontsize") == "9"
    fill = a.get("fillcolor", "#ffffff") if "filled" in style else "#ffffff"
    edge = a.get("color", "#333333")
    kw = dict(ha="center", va="center", fontsize=6.5 if small else _FONT, zorder=2,
              color=a.get("fontcolor", "#000000"), parse_math=False)
    if shape != "plaintext":
        boxstyle = ("ellipse,pad=0.12" if shape == "ellipse"
                    else "round,pad=0.25" if "rounded" in style else "square,pad=0.2")
        kw["bbox"] = dict(boxstyle=boxstyle, fc=fill, ec=edge,
                          lw=2.0 if a.get("peripheries") == "2" else 0.8)
    ax.text(*xy, a.get("label", ""), **kw)
