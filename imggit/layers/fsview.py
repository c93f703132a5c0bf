"""Filesystem views from layer headers, and what each layer changes (pure, no bytes).

``FsView`` applies layers' member lists one after the other (whiteouts,
opaque directories, replacement, directory merge) to a flat path map, and
``apply`` returns the changes the layer made: added, modified, deleted and
type-changed paths with their sizes. This feeds ``show --stat``, ``log
--stat``, ``diff``, ``blame`` and ``waste``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .tarfmt import Member


@dataclass(slots=True)
class Change:
    status: str                  # A added, M modified, D deleted, T type changed
    path: str
    old: Member | None           # what the lower layers had
    new: Member | None           # what this layer (or the other side) has
    layer: int = -1              # the layer that made the change

    @property
    def size(self) -> int:
        m = self.new if self.new is not None else self.old
        return m.size if m is not None and m.is_file else 0


def _parent(p: str) -> str:
    i = p.rfind("/")
    return p[:i] if i >= 0 else ""


@dataclass
class Entry:
    member: Member
    layer: int                   # the layer this version came from


class FsView:
    """path -> (member, layer) of the filesystem the applied layers make."""

    def __init__(self) -> None:
        self.paths: dict[str, Entry] = {}
        self.kids: dict[str, set[str]] = {}

    def _set(self, p: str, e: Entry) -> None:
        if p not in self.paths and p != ".":
            self.kids.setdefault(_parent(p), set()).add(p)
        self.paths[p] = e

    def _subtree(self, p: str) -> list[str]:
        out = []
        stack = list(self.kids.get("" if p == "." else p, ()))
        while stack:
            q = stack.pop()
            out.append(q)
            stack.extend(self.kids.get(q, ()))
        return out

    def _remove(self, p: str, include_self: bool = True) -> list[tuple[str, Entry]]:
        gone: list[tuple[str, Entry]] = []
        for q in self._subtree(p):
            e = self.paths.pop(q, None)
            if e is not None:
                gone.append((q, e))
            self.kids.pop(q, None)
        self.kids.pop("" if p == "." else p, None)
        if include_self and p in self.paths:
            gone.append((p, self.paths.pop(p)))
            s = self.kids.get(_parent(p))
            if s is not None:
                s.discard(p)
        return gone

    def apply(self, members: Sequence[Member], layer: int) -> list[Change]:
        """Apply one layer; return what it changed against the layers below."""
        changes: dict[str, Change] = {}

        def removed(pairs: Iterable[tuple[str, Entry]]) -> None:
            for q, e in pairs:
                prev = changes.get(q)
                if prev is None:
                    changes[q] = Change("D", q, e.member, None, layer)

        opaque = [m.parent or "." for m in members if m.is_opaque]
        for d in opaque:
            removed(self._remove(d, include_self=False))
        for m in members:
            if m.is_whiteout:
                removed(self._remove(m.whiteout_target))
        for m in members:
            if m.is_opaque or m.is_whiteout or m.is_meta:
                continue
            p = m.path
            # the engine replaces a non-directory parent with a directory
            anc = _parent(p)
            while anc:
                e = self.paths.get(anc)
                if e is not None and not e.member.is_dir:
                    removed([(anc, self.paths.pop(anc))])
                anc = _parent(anc)
            if m.is_link:
                # a hardlink is the file it names (content, metadata): diff sees no change when only
                # the first name of a link group differs
                from .tarfmt import normalize

                t = self.paths.get(normalize(m.linkname))
                link_layer = layer
                if t is not None and t.member.is_file:
                    m, link_layer = t.member, t.layer   # its bytes live where the target's do
            else:
                link_layer = layer
            old = self.paths.get(p)
            prev = changes.get(p)
            before = prev.old if prev is not None else (old.member if old is not None else None)
            if old is not None and not (old.member.is_dir and m.is_dir):
                if old.member.is_dir:
                    removed(self._remove(p, include_self=False))
            self._set(p, Entry(m, link_layer))
            if before is None:
                status = "A"
            elif before.type != m.type and not (before.is_file and m.is_file):
                status = "T"
            else:
                status = "M"
            changes[p] = Change(status, p, before, m, layer)
        return sorted(changes.values(), key=lambda c: c.path.split("/"))

    def files(self) -> dict[str, Entry]:
        return self.paths


def diff_views(a: dict[str, Entry], b: dict[str, Entry], *, paths: Sequence[str] = ()) -> list[Change]:
    """What changes from filesystem ``a`` to ``b`` (headers: type, size, mode, owner, mtime, target, xattrs)."""
    out = []
    keys = set(a) | set(b)
    if paths:
        norm = [p.strip("/") for p in paths]
        keys = {k for k in keys if any(k == p or k.startswith(p + "/") or not p for p in norm)}
    for k in sorted(keys, key=lambda p: p.split("/")):
        x, y = a.get(k), b.get(k)
        if x is None:
            out.append(Change("A", k, None, y.member, y.layer))  # type: ignore[union-attr]
        elif y is None:
            out.append(Change("D", k, x.member, None, x.layer))
        elif not same(x.member, y.member):
            kind = "T" if x.member.type != y.member.type and not (x.member.is_file and y.member.is_file) else "M"
            out.append(Change(kind, k, x.member, y.member, y.layer))
    return out


def signature(m: Member) -> tuple:
    return (m.type if not m.is_file else "0", m.size, m.mode & 0o7777, m.uid, m.gid,
            m.mtime if not m.is_dir else None, m.linkname if not m.is_file else "",
            tuple(sorted(m.xattrs.items())), m.devmajor, m.devminor)


def same(a: Member, b: Member) -> bool:
    """Same header, and the same content when both indexes know it."""
    if signature(a) != signature(b):
        return False
    return not (a.is_file and a.digest and b.digest and a.digest != b.digest)


@dataclass
class Stat:
    added: int = 0
    modified: int = 0
    deleted: int = 0
    typechanged: int = 0
    bytes_added: int = 0
    bytes_deleted: int = 0
    files: list[Change] = field(default_factory=list)

    @classmethod
    def of(cls, changes: Iterable[Change], dirs: bool = False) -> "Stat":
        s = cls()
        for c in changes:
            if not dirs and all(x is None or x.is_dir for x in (c.old, c.new)):
                continue   # directories only (a file that became a directory, or back, counts)
            s.files.append(c)
            if c.status == "A":
                s.added += 1
            elif c.status == "M":
                s.modified += 1
            elif c.status == "D":
                s.deleted += 1
            else:
                s.typechanged += 1
            if c.new is not None and c.new.is_file:
                s.bytes_added += c.new.size
            if c.status == "D" and c.old is not None and c.old.is_file:
                s.bytes_deleted += c.old.size
        return s
