"""Merging layers: the changeset that applying several layers in order makes.

``plan_merge`` is pure: it takes the member lists (headers only) of the
layers to merge, bottom first, and what is known of the filesystem below
them (``BaseView``), and returns the entries of one layer that has exactly
the same effect. ``write_merged`` then copies those entries out of the
layer files in one pass.

The planner applies the layers to an in-memory changeset the way the
engine applies them to a directory (OCI image-spec "Applying Changesets",
moby's ``UnpackLayer``):

- an opaque marker ``d/.wh..wh..opq`` hides every lower child of ``d``, as
  if it came first in its layer;
- a whiteout ``d/.wh.x`` deletes ``d/x`` from lower layers only (never from
  its own layer);
- an entry replaces whatever is at its path, except that a directory over a
  directory only changes metadata and keeps the children;
- a hardlink names a path already present when it is applied; it shares the
  inode of whatever is there then, so later changes to that path do not
  change the link.

The result keeps a deletion only where the base could hold the path, keeps
opacity only where the base could have children there, orders entries by
path (parents first, whiteouts before anything at their path), and writes
each hardlink group as one file plus links to it, the file first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO, Sequence

from ..errors import FormatError
from . import tarfmt
from .tarfmt import Member

PUT = 0      # an entry from a layer (or a synthesized directory)
DEL = 1      # deleted: the base's path must go
OPQ = 2      # a base directory whose lower children are hidden


@dataclass(slots=True)
class Node:
    kind: int
    layer: int = -1                 # index in the merged range (0 = lowest), -1 = synthesized
    member: Member | None = None
    opaque: bool = False            # directories: hide the base's children
    inode: object = None            # regular files and hardlinks: identity of the content


class BaseView:
    """What the filesystem below the merged layers holds (``None`` = unknown: assume anything)."""

    def __init__(self, paths: dict[str, bool] | None) -> None:
        self.paths = paths                      # path -> is a directory
        self._parents: set[str] | None = None
        if paths is not None:
            self._parents = set()
            for p in paths:
                if "/" in p:
                    self._parents.add(p.rsplit("/", 1)[0])
                elif p != ".":
                    self._parents.add("")

    @property
    def known(self) -> bool:
        return self.paths is not None

    def has(self, path: str) -> bool:
        return True if self.paths is None else path in self.paths

    def has_children(self, path: str) -> bool:
        if self._parents is None:
            return True
        return (path if path != "." else "") in self._parents


EMPTY_BASE = BaseView({})


@dataclass(slots=True)
class OutEntry:
    path: str
    kind: str                         # "raw" | "header" | "whiteout" | "opaque"
    layer: int = -1                   # layer to copy from
    member: Member | None = None      # header source
    data: Member | None = None        # where the content comes from (may differ for hardlinks)
    header: bytes = b""               # for "header" entries: the encoded header
    size: int = 0                     # content bytes


@dataclass
class MergePlan:
    entries: list[OutEntry]
    nlayers: int
    input_file_bytes: int = 0          # content bytes in all merged layers
    output_file_bytes: int = 0         # content bytes in the result
    dropped: list[tuple[str, int, int]] = field(default_factory=list)  # (path, layer, bytes) not carried
    kept_whiteouts: int = 0
    dropped_whiteouts: int = 0
    base_known: bool = True

    @property
    def dropped_bytes(self) -> int:
        return self.input_file_bytes - self.output_file_bytes

    def output_size(self) -> int:
        """Exact size of the tar ``write_merged`` produces."""
        n = 0
        for e in self.entries:
            if e.kind == "raw":
                assert e.member is not None
                n += e.member.data_offset - e.member.header_offset
            else:
                n += len(e.header)
            n += (e.size + 511) // 512 * 512
        return n + len(tarfmt.END_OF_ARCHIVE)


def _parent(p: str) -> str:
    i = p.rfind("/")
    return p[:i] if i >= 0 else ""


def _ancestors(p: str) -> list[str]:
    out = []
    i = p.find("/")
    while i >= 0:
        out.append(p[:i])
        i = p.find("/", i + 1)
    return out


class _Changeset:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.kids: dict[str, set[str]] = {}

    def set(self, p: str, node: Node) -> None:
        if p not in self.nodes and p != ".":
            self.kids.setdefault(_parent(p), set()).add(p)
        self.nodes[p] = node

    def drop(self, p: str) -> None:
        if p in self.nodes:
            del self.nodes[p]
            if p != ".":
                s = self.kids.get(_parent(p))
                if s is not None:
                    s.discard(p)
        self.drop_children(p)

    def drop_children(self, p: str) -> None:
        key = "" if p == "." else p
        stack = list(self.kids.pop(key, ()))
        while stack:
            q = stack.pop()
            self.nodes.pop(q, None)
            stack.extend(self.kids.pop(q, ()))


def plan_merge(layers: Sequence[Sequence[Member]], base: BaseView = EMPTY_BASE) -> MergePlan:
    cs = _Changeset()
    nodes = cs.nodes
    input_bytes = 0
    file_members: list[tuple[int, Member]] = []

    for li, members in enumerate(layers):
        opaque_dirs = []
        whiteouts = []
        regular = []
        for m in members:
            if m.is_opaque:
                opaque_dirs.append(m.parent or ".")
            elif m.is_whiteout:
                whiteouts.append(m)
            elif m.is_meta:
                continue   # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs)
            else:
                regular.append(m)
                if m.is_file:
                    input_bytes += m.size
                    file_members.append((li, m))
        # 1. opaque directories hide the lower children (as if first in the layer)
        for d in opaque_dirs:
            if _gone(nodes, d):
                continue   # what was below is gone already; the layer's own entries recreate it
            cs.drop_children(d)
            node = nodes.get(d)
            if node is not None and node.kind == PUT and node.member is not None and node.member.is_dir:
                node.opaque = True
            elif node is not None and node.kind == PUT and node.member is None:
                node.opaque = True            # a synthesized directory
            else:
                cs.set(d, Node(OPQ, li))
        # 2. whiteouts delete lower paths (and everything under them)
        for m in whiteouts:
            p = m.whiteout_target
            if _gone(nodes, p, strict=True):
                continue   # under a path that is deleted or not a directory: nothing to delete
            cs.drop(p)
            cs.set(p, Node(DEL, li))
        # 3. entries, in tar order
        for m in regular:
            p = m.path   # a path given twice in one layer: the last one wins, as when the engine applies it
            if p != ".":
                for a in _ancestors(p):
                    an = nodes.get(a)
                    if an is None or an.kind == OPQ:
                        continue
                    if an.kind == DEL or (an.kind == PUT and an.member is not None and not an.member.is_dir):
                        # the engine creates a missing parent; what was there below is gone
                        cs.drop(a)
                        cs.set(a, Node(PUT, li, None, opaque=True))
            old = nodes.get(p)
            if m.is_dir:
                if old is None:
                    opaque = False
                elif old.kind == PUT and (old.member is None or old.member.is_dir):
                    opaque = old.opaque
                else:
                    opaque = True   # deleted, replaced by a non-directory, or marked opaque below
                cs.set(p, Node(PUT, li, m, opaque=opaque))
                continue
            cs.drop_children(p)   # a non-directory replaces whatever was at p, children included
            if m.is_link:
                t = tarfmt.normalize(m.linkname)
                tn = nodes.get(t)
                if tn is None:
                    if not base.has(t):
                        raise FormatError(f"layer {li} of the range: hardlink {p!r} names {t!r}, which does not exist")
                    inode: object = ("base", t)
                elif tn.kind == PUT and tn.inode is not None:
                    inode = tn.inode
                else:
                    raise FormatError(f"layer {li} of the range: hardlink {p!r} names {t!r}, "
                                      "which is not a regular file at that point")
                cs.set(p, Node(PUT, li, m, inode=inode))
            elif m.is_file:
                cs.set(p, Node(PUT, li, m, inode=(li, m.header_offset)))
            else:
                cs.set(p, Node(PUT, li, m))
    return _emit(cs, base, len(layers), input_bytes, file_members)


def _gone(nodes: dict[str, Node], p: str, strict: bool = False) -> bool:
    """Is ``p`` (or, with ``strict``, only an ancestor of it) deleted or replaced by a non-directory?"""
    check = _ancestors(p) if p != "." else []
    if not strict and p != ".":
        check.append(p)
    for a in check:
        n = nodes.get(a)
        if n is not None and (n.kind == DEL or (n.kind == PUT and n.member is not None and not n.member.is_dir)):
            return True
    return False


def _sort_key(p: str) -> tuple[str, ...]:
    return () if p == "." else tuple(p.split("/"))


def _emit(cs: _Changeset, base: BaseView, nlayers: int, input_bytes: int,
          file_members: list[tuple[int, Member]]) -> MergePlan:
    nodes = cs.nodes
    order = sorted(nodes, key=_sort_key)
    content = {(li, m.header_offset): (li, m) for li, m in file_members}
    plan = MergePlan([], nlayers, input_bytes, base_known=base.known)
    primary_of: dict[object, str] = {}
    out = plan.entries
    for p in order:
        n = nodes[p]
        if n.kind == DEL:
            if base.has(p) and not _hidden_by_opaque(nodes, p):
                out.append(_whiteout(p))
                plan.kept_whiteouts += 1
            else:
                plan.dropped_whiteouts += 1
            continue
        if n.kind == OPQ:
            if base.has_children(p):
                out.append(_opaque(p))
            continue
        m = n.member
        if m is None:  # a directory the engine would have created on its own
            out.append(OutEntry(p, "header", header=tarfmt.encode_header(p + "/", tarfmt.DIRECTORY, mode=0o755)))
            if n.opaque and base.has_children(p):
                out.append(_opaque(p))
            continue
        if n.inode is None:  # directories, symlinks, devices, fifos
            out.append(_entry(p, n.layer, m))
            if m.is_dir and n.opaque and base.has_children(p):
                out.append(_opaque(p))
            continue
        ino = n.inode
        if ino in primary_of:
            # another name of a file already written: a hardlink to its first name
            out.append(OutEntry(p, "header", n.layer, m, header=tarfmt.member_header(
                m, name=p, type=tarfmt.HARDLINK, linkname=primary_of[ino], size=0)))
            continue
        if isinstance(ino, tuple) and ino[0] == "base":
            target = ino[1]
            if target in nodes:
                raise FormatError(
                    f"hardlink {p!r} shares its content with {target!r} of the base, which the range "
                    "changes; squash from a lower base (include the layer that wrote it)")
            primary_of[ino] = target
            out.append(OutEntry(p, "header", n.layer, m, header=tarfmt.member_header(
                m, name=p, type=tarfmt.HARDLINK, linkname=target, size=0)))
            continue
        cl, cm = content[ino]  # type: ignore[index]
        primary_of[ino] = p
        plan.output_file_bytes += cm.size
        if m is cm and _is_raw_ok(m, p):
            out.append(OutEntry(p, "raw", cl, m, cm, size=cm.size))
        else:
            # the first name of the group carries the content, with the metadata of the file written
            out.append(OutEntry(p, "header", cl, cm, cm, size=cm.size,
                                header=tarfmt.member_header(cm, name=p, type=tarfmt.REGULAR, linkname="",
                                                            size=cm.size)))
    # what the merge drops: file contents that no final path carries
    carried = {ino for ino in primary_of if not (isinstance(ino, tuple) and ino[0] == "base")}
    for li, m in file_members:
        if (li, m.header_offset) not in carried and m.size:
            plan.dropped.append((m.path, li, m.size))
    return plan


def _hidden_by_opaque(nodes: dict[str, Node], p: str) -> bool:
    for a in _ancestors(p):
        n = nodes.get(a)
        if n is not None and (n.kind == OPQ or (n.kind == PUT and n.opaque)):
            return True
    return False


def _is_raw_ok(m: Member, p: str) -> bool:
    if not m.raw_ok:
        return False
    name = m.name[:-1] if m.is_dir and m.name.endswith("/") else m.name
    return name == p


def _entry(p: str, layer: int, m: Member) -> OutEntry:
    """A non-file entry: its header re-encoded (normalized name, every field and pax record kept)."""
    return OutEntry(p, "header", layer, m, None, header=tarfmt.member_header(m, name=p if p != "." else "./", size=0))


def _whiteout(p: str) -> OutEntry:
    parent, _, name = p.rpartition("/")
    wh = (parent + "/" if parent else "") + tarfmt.WHITEOUT_PREFIX + name
    return OutEntry(wh, "whiteout", header=tarfmt.encode_header(wh, tarfmt.REGULAR, mode=0o644))


def _opaque(d: str) -> OutEntry:
    name = (d + "/" if d not in ("", ".") else "") + tarfmt.OPAQUE_MARKER
    return OutEntry(name, "opaque", header=tarfmt.encode_header(name, tarfmt.REGULAR, mode=0o644))


def base_view(layers: Sequence[Sequence[Member]]) -> BaseView:
    """The filesystem that applying these layers (the base) to nothing gives: path -> is a directory."""
    plan = plan_merge(layers, EMPTY_BASE)
    paths: dict[str, bool] = {}
    for e in plan.entries:
        if e.kind in ("raw", "header"):
            paths[e.path] = e.member is None or e.member.is_dir
    return BaseView(paths)


def write_merged(plan: MergePlan, files: Sequence[str], out: BinaryIO, chunk: int = 1 << 20) -> int:
    """Write the merged layer: each entry's header, then its bytes copied from the layer files."""
    fds = [os.open(f, os.O_RDONLY) if f else -1 for f in files]

    def copy(layer: int, pos: int, end: int) -> None:
        fd = fds[layer]
        while pos < end:
            b = os.pread(fd, min(chunk, end - pos), pos)
            if not b:
                raise FormatError(f"layer file {files[layer]} ended early")
            out.write(b)
            pos += len(b)

    written = 0
    try:
        for e in plan.entries:
            if e.kind == "raw":  # a regular file copied whole: its header blocks, data and padding
                m = e.member
                assert m is not None
                start, end = m.header_offset, m.data_offset + (m.size + 511) // 512 * 512
                copy(e.layer, start, end)
                written += end - start
                continue
            out.write(e.header)
            written += len(e.header)
            if e.size:
                d = e.data
                assert d is not None
                copy(e.layer, d.data_offset, d.data_offset + d.size)
                pad = tarfmt.padding(d.size)
                out.write(pad)
                written += d.size + len(pad)
        out.write(tarfmt.END_OF_ARCHIVE)
        written += len(tarfmt.END_OF_ARCHIVE)
    finally:
        for fd in fds:
            if fd >= 0:
                os.close(fd)
    return written
