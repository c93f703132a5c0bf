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
    n = r.nlayers if upto_layers is None else upto_layers
    return lindex.index_layers(r.store, r.image, range(n))


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
    r = session.resolve(rev)
    wanted = [p.strip("/") or "." for p in paths]
    out = {p: Blame("/" + p) for p in wanted}
    idx = headers(r)
    v = FsView()
    for s in r.steps:
        if s.layer_index is None:
            continue
        for c in v.apply(idx[s.layer_index], s.layer_index):
            for p in wanted:
                if c.path == p or fnmatch.fnmatchcase(c.path, p):
                    out.setdefault(p, Blame("/" + p)).events.append(BlameEvent(s, c.status, c.new or c.old))
    return r, [out[p] for p in wanted]


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
    """Bytes shipped in lower layers but invisible in the final filesystem, each version counted once."""
    r = session.resolve(rev)
    idx = headers(r)
    step_of_layer = {s.layer_index: s for s in r.steps if s.layer_index is not None}
    v = FsView()
    live: dict[str, tuple[int, Member]] = {}   # path -> (layer, member) of the visible version
    wasted: list[Wasted] = []
    total = 0
    for li in range(r.nlayers):
        for c in v.apply(idx[li], li):
            if c.old is not None and c.old.is_file and c.path in live:
                ol, om = live.pop(c.path)
                if om.size:
                    wasted.append(Wasted(c.path, ol, step_of_layer[ol], om.size,
                                         "deleted" if c.status == "D" else "overwritten", step_of_layer[li]))
            if c.new is not None and c.new.is_file:
                live[c.path] = (li, c.new)
        for m in idx[li]:
            if m.is_file and not m.is_whiteout and not m.is_opaque:
                total += m.size
    # versions replaced inside one layer (a path given twice) are invisible too
    per_step: dict[int, int] = {}
    for w in wasted:
        per_step[w.step.index] = per_step.get(w.step.index, 0) + w.size
    # squashing steps k..tip drops exactly the invisible versions those layers carry: whatever hides
    # them comes later, so inside the range (hardlinked content still visible elsewhere aside)
    savings = []
    for s in r.steps:
        if s.layer_index is None or s.layer_index >= r.nlayers - 1:
            continue
        savings.append((s.index, sum(w.size for w in wasted if w.layer >= s.layer_index)))
    return WasteResult(r, wasted, per_step, total, savings)


__all__ = ["step_changes", "all_step_changes", "diff", "blame", "waste", "file_content", "Image", "Any",
           "range_start"]
