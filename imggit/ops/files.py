"""Looking inside: what steps change (show --stat, log --stat), diff, blame, waste.

Everything here works on layer file indexes (headers), cached by diff id:
the second run reads no layer bytes. Only ``diff -p`` reads file contents.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..layers import index as lindex
from ..layers.fsview import Change, Entry, FsView, Stat, diff_views
from ..layers.tarfmt import Member
from ..model import Image, Step
from ..session import Resolved, Session, range_start


def headers(r: Resolved, upto_layers: int | None = None) -> dict[int, list[Member]]:
    """Every layer's index, with content hashes (so a same-size, same-time edit still shows)."""
    n = r.nlayers if upto_layers is None else upto_layers
    return lindex.index_layers(r.store, r.image, range(n), digests=True)


def view_of(r: Resolved) -> dict[str, Entry]:
    idx = headers(r)
    v = FsView()
    for i in range(r.nlayers):
        v.apply(idx[i], i)
    return v.files()


# --- per-step changes -----------------------------------------------------------------------


@dataclass
class StepChanges:
    step: Step
    changes: list[Change]
    stat: Stat


def step_changes(session: Session, rev: str, *, layers: bool = False) -> tuple[Resolved, StepChanges]:
    r = session.resolve(rev, layers=layers)
    step = r.step
    if step is None:
        raise UsageError(f"{rev!r} has no step")
    if step.layer_index is None:
        return r, StepChanges(step, [], Stat())
    idx = headers(r, step.layer_index + 1)
    v = FsView()
    for i in range(step.layer_index):
        v.apply(idx[i], i)
    changes = v.apply(idx[step.layer_index], step.layer_index)
    return r, StepChanges(step, changes, Stat.of(changes))


def all_step_changes(r: Resolved) -> dict[int, StepChanges]:
    """Changes of every layer-bearing step of a revision, by step index."""
    idx = headers(r)
    v = FsView()
    out = {}
    for s in r.steps:
        if s.layer_index is None:
            continue
        ch = v.apply(idx[s.layer_index], s.layer_index)
        out[s.index] = StepChanges(s, ch, Stat.of(ch))
    return out


# --- diff ----------------------------------------------------------------------------------------


@dataclass
class DiffResult:
    a: Resolved
    b: Resolved
    changes: list[Change]
    stat: Stat


def diff(session: Session, a: str, b: str, paths: list[str] | None = None) -> DiffResult:
    ra, rb = session.resolve(a), session.resolve(b)
    changes = diff_views(view_of(ra), view_of(rb), paths=paths or [])
    return DiffResult(ra, rb, changes, Stat.of(changes, dirs=True))


def file_content(r: Resolved, layer: int, member: Member, limit: int) -> bytes | None:
    """The bytes of one file version (None when it is larger than ``limit``)."""
    if member.size > limit:
        return None
    from ..layers import fetch
    from ..stores.base import tmpdir

    wd = tmpdir()
    try:
        files = fetch.materialize(r.store, r.image, [layer], wd)
        lf = files[layer]
        want = [m for m in lf.members if m.path == member.path and m.is_file]
        if not want:
            return b""
        with open(lf.path, "rb") as f:
            f.seek(want[-1].data_offset)
            return f.read(want[-1].size)
    finally:
        fetch.rmtree(wd)


# --- blame -----------------------------------------------------------------------------------------


@dataclass
class BlameEvent:
    step: Step
    status: str           # A, M, T, D (D: deleted, by a whiteout, an opaque directory or a replaced parent)
    member: Member | None


@dataclass
class Blame:
    path: str
    events: list[BlameEvent] = field(default_factory=list)   # oldest first

    @property
    def last(self) -> BlameEvent | None:
        return self.events[-1] if self.events else None

    @property
    def exists(self) -> bool:
        return bool(self.events) and self.events[-1].status != "D"


def blame(session: Session, rev: str, paths: list[str]) -> tuple[Resolved, list[Blame]]:
    """One entry per path; a glob gives one entry per path it matches (in any step)."""
    r = session.resolve(rev)
    wanted = [p.strip("/") or "." for p in paths]
    globs = [p for p in wanted if any(ch in p for ch in "*?[")]
    out: dict[str, Blame] = {p: Blame("/" + p) for p in wanted if p not in globs}
    idx = headers(r)
    v = FsView()
    for s in r.steps:
        if s.layer_index is None:
            continue
        for c in v.apply(idx[s.layer_index], s.layer_index):
            hit = c.path in out or any(fnmatch.fnmatchcase(c.path, g) for g in globs)
            if hit:
                out.setdefault(c.path, Blame("/" + c.path)).events.append(
                    BlameEvent(s, c.status, c.new or c.old))
    ordered = [out[p] for p in wanted if p in out]
    ordered += sorted((b for p, b in out.items() if p not in wanted), key=lambda b: b.path)
    for g in globs:
        if not any(fnmatch.fnmatchcase(p, g) for p in out):
            ordered.append(Blame("/" + g))
    return r, ordered


# --- waste ----------------------------------------------------------------------------------------


@dataclass
class Wasted:
    path: str
    layer: int            # the layer that carries the invisible version
    step: Step
    size: int
    fate: str             # "overwritten" | "deleted"
    by: Step | None       # the step that overwrote or deleted it


@dataclass
class WasteResult:
    resolved: Resolved
    wasted: list[Wasted]
    per_step: dict[int, int]                 # step index -> invisible bytes it carries
    total_file_bytes: int
    squash_savings: list[tuple[int, int]]    # (first step index of a range up to the tip, bytes saved)

    @property
    def total(self) -> int:
        return sum(w.size for w in self.wasted)

    @property
    def deleted(self) -> list[Wasted]:
        return [w for w in self.wasted if w.fate == "deleted"]


def waste(session: Session, rev: str) -> WasteResult:
    """Bytes shipped in lower layers but invisible in the final filesystem, each version counted once.

    What is invisible is what squashing every layer drops (the tar engine's own answer: hardlinked
    content that another name still shows is visible); the filesystem view says what hid it.
    """
    from ..layers import merge

    r = session.resolve(rev)
    idx = headers(r)
    step_of_layer = {s.layer_index: s for s in r.steps if s.layer_index is not None}
    layers = [idx[i] for i in range(r.nlayers)]
    dropped = merge.plan_merge(layers, merge.EMPTY_BASE).dropped if layers else []
    invisible = {(li, path) for path, li, _ in dropped}
    fate: dict[tuple[int, str], tuple[str, int]] = {}
    live: dict[str, int] = {}
    v = FsView()
    total = 0
    for li in range(r.nlayers):
        for c in v.apply(idx[li], li):
            if c.old is not None and c.path in live:
                fate.setdefault((live.pop(c.path), c.path), ("deleted" if c.status == "D" else "overwritten", li))
            if c.new is not None and c.new.is_file:
                live[c.path] = li
        total += sum(m.size for m in idx[li] if m.is_file and not m.is_whiteout and not m.is_opaque)
    wasted = []
    for path, li, size in dropped:
        how, by = fate.get((li, path), ("overwritten", li))
        wasted.append(Wasted(path, li, step_of_layer[li], size, how, step_of_layer.get(by)))
    del invisible
    per_step: dict[int, int] = {}
    for w in wasted:
        per_step[w.step.index] = per_step.get(w.step.index, 0) + w.size
    # squashing steps k..tip drops exactly the invisible versions those layers carry
    savings = []
    for s in r.steps:
        if s.layer_index is None or s.layer_index >= r.nlayers - 1:
            continue
        savings.append((s.index, sum(w.size for w in wasted if w.layer >= s.layer_index)))
    return WasteResult(r, wasted, per_step, total, savings)


__all__ = ["step_changes", "all_step_changes", "diff", "blame", "waste", "file_content", "Image", "Any",
           "range_start"]
