"""Read-only verbs: log, show, ls. They return data; the CLI renders it.

None of these reads a layer byte: the engine's inspect/history, OCI and
archive manifests and configs are enough.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..model import Image, Step, describe_command
from ..revisions import parse_store
from ..session import Resolved, Session, range_start

if TYPE_CHECKING:  # networkx costs a quarter second to import: only graph drawing pays for it
    import networkx as nx

    from .. import dag


@dataclass
class LogEntry:
    step: Step
    rev: str                 # how to name this step: "app:1~2"
    tags: list[str] = field(default_factory=list)


@dataclass
class LogResult:
    resolved: Resolved
    entries: list[LogEntry]
    warnings: list[str]


def step_name(name: str, total: int, index: int) -> str:
    """How to name step ``index`` of an image of ``total`` steps: NAME~back, counted from the tip."""
    back = total - 1 - index
    return name if back == 0 else f"{name}~{back}"


def is_range(text: str) -> bool:
    from ..revisions import parse_range

    try:
        return parse_range(text).left is not None
    except Exception:
        return False


def log(session: Session, rev: str, *, layers_only: bool = False, limit: int | None = None) -> LogResult:
    """Steps of a revision, newest first; ``A..B`` gives only the steps of B above A."""
    left, r = session.resolve_range(rev, layers=layers_only)
    start = range_start(left, r)
    name = r.ref.text if r.ref is not None else r.text
    total = len(r.image.steps)
    layer_total = len(r.image.layers)
    entries = []
    for s in reversed(r.steps[start:]):
        if layers_only and s.layer is None:
            continue
        if layers_only:   # REF~N counts layer-bearing steps here, so the names do too
            entries.append(LogEntry(s, step_name(name, layer_total, s.layer_index or 0)))
        else:
            entries.append(LogEntry(s, step_name(name, total, s.index)))
        if limit is not None and len(entries) >= limit:
            break
    if entries:
        # the revision's own name goes on the newest step shown (its tip may be an empty step --layers hides)
        entries[0].tags = [r.text]
    return LogResult(r, entries, list(r.image.warnings))


def truncated(r: Resolved) -> Image:
    """The image as far as the revision goes (for drawing; config untouched)."""
    img = r.image
    if r.is_tip:
        return img
    return Image(img.config, img.manifest, img.layers[: r.nlayers], img.steps[: r.upto], img.warnings,
                 r.text, img.source, img.extra)


@dataclass
class GraphResult:
    graph: "nx.DiGraph"
    lines: "list[dag.GraphLine]"
    images: list[tuple[str, Image]]


def log_graph(session: Session, revs: list[str], *, all_images: bool = False,
              layers_only: bool = False, limit: int | None = None) -> GraphResult:
    from .. import dag

    images: list[tuple[str, Image]] = []
    seen: set[str] = set()
    for text in revs:
        r = session.resolve(text)
        images.append((r.text, truncated(r)))
        seen.add(r.text)
    if all_images:
        for tag, img in session.default_store().list_images():
            if tag not in seen:
                images.append((tag, img))
    if not images:
        raise UsageError("nothing to draw: name images or use --all")
    g = dag.build(images)
    if layers_only:
        g = _only_layers(g)
    lines = dag.render(g)
    if limit is not None:
        kept, count = [], 0
        for ln in lines:
            if ln.node is not None:
                if count >= limit:
                    break
                count += 1
            kept.append(ln)
        lines = kept
    return GraphResult(g, lines, images)


def _only_layers(g: "nx.DiGraph") -> "nx.DiGraph":
    """Contract empty steps into the nearest layer-bearing step below them (tags move down)."""
    import networkx as nx

    from .. import dag

    h = nx.DiGraph()
    keep = {n for n in g.nodes if g.nodes[n]["step"].layer is not None}

    def anchor(n: str | None) -> str | None:
        while n is not None and n not in keep:
            n = dag.parent(g, n)
        return n

    for n in keep:
        h.add_node(n, **{**g.nodes[n], "tags": list(g.nodes[n]["tags"])})
    for n in g.nodes:
        if n in keep:
            p = anchor(dag.parent(g, n))
            if p is not None:
                h.add_edge(p, n)
        elif g.nodes[n]["tags"]:
            a = anchor(n)
            if a is not None:
                h.nodes[a]["tags"].extend(t for t in g.nodes[n]["tags"] if t not in h.nodes[a]["tags"])
    return h


@dataclass
class ShowResult:
    resolved: Resolved
    step: Step | None
    runtime: dict[str, Any] | None      # for the tip: the runtime config
    platform: str
    warnings: list[str]


def show(session: Session, rev: str, *, layers: bool = False) -> ShowResult:
    r = session.resolve(rev, layers=layers)
    runtime = dict(r.image.config.runtime) if r.is_tip else None
    return ShowResult(r, r.step, runtime, r.image.config.platform, list(r.image.warnings))


def show_raw(session: Session, rev: str, what: str) -> bytes:
    """The exact bytes of the config or manifest of an image."""
    r = session.resolve(rev)
    if not r.is_tip:
        raise UsageError(f"{rev!r} is a past step; only a whole image has a {what}",
                         hint=f"make it an image first: imggit tag {rev} NAME")
    if what == "config":
        return r.store.raw_config(r.image)
    if r.image.manifest is None:
        raise UsageError(f"{r.store.describe()} keeps no manifest for {r.text} (the engine stores none)",
                         hint=f"copy it to a layout first: imggit cp {r.text} oci:DIR")
    return r.image.manifest.raw


@dataclass
class LsRow:
    tag: str
    image: Image


def ls(session: Session, store_text: str | None) -> tuple[str, list[LsRow]]:
    spec = parse_store(store_text)
    store = session.store_of(spec)
    rows = [LsRow(t, img) for t, img in store.list_images()]
    rows.sort(key=lambda r: r.tag)
    return store.describe(), rows


def oneline(step: Step) -> str:
    text = describe_command(step.created_by)
    if not text:
        text = step.comment or ("(no command)" if not step.synthetic else step.created_by)
    return text
