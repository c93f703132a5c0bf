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
    member: Member | None = None    # None on PUT: a directory the engine creates on its own (mode 0600)
    opaque: bool = False            # directories: hide the base's children
    inode: object = None            # regular files and hardlinks: identity of the content
    fresh: bool = False             # directories: a new directory where the base's was deleted or replaced
    xattrs: dict[str, str] | None = None   # directories: xattrs of lower entries the engine would keep


class BaseView:
    """What the filesystem below the merged layers holds (``None`` = unknown: assume anything).

    ``paths`` maps a path to its member (None: a directory the engine made), so symlinked
    directories can be followed. ``content`` maps a regular file to where its bytes are: (base
    layer index, the member that carries them).
    """

    def __init__(self, paths: dict[str, Member | None] | None,
                 content: dict[str, tuple[int, Member]] | None = None) -> None:
        self.paths = paths
        self.content = content or {}
        self._names: dict[tuple[int, int], list[str]] | None = None
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

    def get(self, path: str) -> Member | None:
        return None if self.paths is None else self.paths.get(path)

    def names_of(self, src: tuple[int, Member]) -> list[str]:
        """Every name of the base file whose bytes are ``src`` (its hardlinks), in path order."""
        if self._names is None:
            self._names = {}
            for q, (layer, m) in self.content.items():
                self._names.setdefault((layer, m.header_offset), []).append(q)
        return self._names.get((src[0], src[1].header_offset), [])

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
    link: str = ""                    # for a hardlink: the name that carries the content


@dataclass
class MergePlan:
    entries: list[OutEntry]
    nlayers: int
    input_file_bytes: int = 0          # content bytes in all merged layers
    output_file_bytes: int = 0         # content bytes in the result
    base_file_bytes: int = 0           # of which copied from layers below (see base_sources)
    dropped: list[tuple[str, int, int]] = field(default_factory=list)  # (path, layer, bytes) not carried
    kept_whiteouts: int = 0
    dropped_whiteouts: int = 0
    base_known: bool = True
    # layers below the merged ones whose bytes the result needs (a hardlink into the base whose other
    # name the merged layers change or delete keeps the old bytes): entries name them as layer
    # ``nlayers + k`` for base_sources[k]; base_links are those paths
    base_sources: list[int] = field(default_factory=list)
    base_links: list[str] = field(default_factory=list)

    @property
    def dropped_bytes(self) -> int:
        return self.input_file_bytes - self.output_file_bytes + self.base_file_bytes

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
    """path -> Node, plus a tree of paths (``kids``) so a subtree can be dropped at once.

    Every ancestor of a node is registered in ``kids`` (whether or not it is a node itself),
    so dropping ``d`` finds ``d/a/b`` even when ``d/a`` is only in the base.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.kids: dict[str, set[str]] = {}

    def _register(self, p: str) -> None:
        while p not in (".", ""):
            parent = _parent(p)
            s = self.kids.setdefault(parent, set())
            if p in s:
                return
            s.add(p)
            p = parent

    def set(self, p: str, node: Node) -> None:
        if p not in self.nodes and p != ".":
            self._register(p)
        self.nodes[p] = node

    def drop(self, p: str) -> None:
        self.nodes.pop(p, None)
        self.drop_children(p)

    def drop_children(self, p: str, keep_layer: int | None = None) -> None:
        """Drop everything under ``p``; with ``keep_layer``, keep what that layer wrote (and the
        directories leading to it)."""
        key = "" if p == "." else p
        if keep_layer is None:
            stack = list(self.kids.pop(key, ()))
            while stack:
                q = stack.pop()
                self.nodes.pop(q, None)
                stack.extend(self.kids.pop(q, ()))
            return
        self._prune(key, keep_layer)

    def _prune(self, key: str, layer: int) -> None:
        """What an opaque marker does in the engine: walk the directory, and remove every path that
        this layer did not write itself (a written directory is walked in turn, and the base's
        children under it are hidden too)."""
        for q in list(self.kids.get(key, ())):
            n = self.nodes.get(q)
            if n is not None and n.kind == PUT and n.layer == layer and n.member is not None:
                if n.member.is_dir:
                    if not n.fresh:
                        n.opaque = True
                    self._prune(q, layer)
                continue
            self.nodes.pop(q, None)
            stack = list(self.kids.pop(q, ()))
            while stack:
                r = stack.pop()
                self.nodes.pop(r, None)
                stack.extend(self.kids.pop(r, ()))
            s = self.kids.get(key)
            if s is not None:
                s.discard(q)


_MAX_HOPS = 40


class _Planner:
    """Applies layers to the changeset ``cs`` over ``base``, the way the engine applies them."""

    def __init__(self, base: BaseView) -> None:
        self.cs = _Changeset()
        self.base = base
        self.meta: dict[object, Member] = {}      # inode -> the member whose metadata it has last
        self.content: dict[int, Member] = {}      # inode of a file -> the member whose bytes it has

    # --- what is at a path now --------------------------------------------------------------

    def lookup(self, p: str) -> tuple[str, Member | None]:
        """('put'|'base'|'absent'|'unknown', member) for path ``p`` in the changeset over the base."""
        nodes = self.cs.nodes
        n = nodes.get(p)
        if n is not None:
            if n.kind == PUT:
                return "put", n.member
            if n.kind == DEL:
                return "absent", None
        if p != ".":
            for a in _ancestors(p):
                an = nodes.get(a)
                if an is None:
                    continue
                if an.kind == DEL or (an.kind == PUT and an.member is not None and not an.member.is_dir):
                    return "absent", None
                if an.kind == OPQ or (an.kind == PUT and (an.opaque or an.fresh)):
                    return "absent", None
        if not self.base.known:
            return "unknown", None
        if self.base.paths is not None and p in self.base.paths:
            return "base", self.base.get(p)
        return "absent", None

    def resolve(self, p: str) -> str:
        """``p`` with every symlinked directory among its parents followed (the last part is kept)."""
        if p == "." or "/" not in p:
            return p
        parts = p.split("/")
        done: list[str] = []
        hops = 0
        i = 0
        while i < len(parts) - 1:
            cur = "/".join(done + [parts[i]])
            state, m = self.lookup(cur)
            if state in ("put", "base") and m is not None and m.is_symlink and hops < _MAX_HOPS:
                hops += 1
                target = m.linkname
                base_dir = [] if target.startswith("/") else done
                resolved = _clamp("/".join(base_dir + [target.lstrip("/")]))
                parts = ([] if resolved == "." else resolved.split("/")) + parts[i + 1:]
                done = []
                i = 0
                continue
            done.append(parts[i])
            i += 1
        return p if not hops else "/".join(done + [parts[-1]])

    def ensure_parents(self, p: str, li: int) -> None:
        """The engine creates missing parents (mode 0600) and cannot put anything under a non-directory."""
        if p == ".":
            return
        nodes = self.cs.nodes
        for a in _ancestors(p):
            an = nodes.get(a)
            if an is not None and (an.kind == DEL or (an.kind == PUT and an.member is not None
                                                       and not an.member.is_dir)):
                self.cs.drop(a)
                self.cs.set(a, Node(PUT, li, None, opaque=True, fresh=True))
                continue
            if an is not None:
                continue
            state, m = self.lookup(a)
            if state == "absent":
                self.cs.set(a, Node(PUT, li, None))
            elif state == "base" and m is not None and not m.is_dir:
                self.cs.set(a, Node(PUT, li, None, opaque=True, fresh=True))

    # --- applying a layer ------------------------------------------------------------------------

    def apply(self, li: int, members: Sequence[Member]) -> None:
        """One layer, entry by entry in tar order, as the engine's UnpackLayer applies it: an opaque
        marker hides every lower child of its directory (what this layer wrote so far stays), a
        whiteout deletes its target from the lower layers."""
        cs, nodes = self.cs, self.cs.nodes
        for m in members:
            if m.is_meta:
                continue   # AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs)
            if m.is_opaque:
                d = self.resolve(m.parent + "/x").rsplit("/", 1)[0] if m.parent else "."
                if d != ".":
                    self.ensure_parents(d + "/x", li)
                if _gone(nodes, d):
                    continue   # what was below is gone already
                cs.drop_children(d, keep_layer=li)
                node = nodes.get(d)
                if node is not None and node.kind == PUT and (node.member is None or node.member.is_dir):
                    node.opaque = True
                else:
                    cs.set(d, Node(OPQ, li))
                continue
            if m.is_whiteout:
                p = self.resolve(m.whiteout_target)
                self.ensure_parents(p, li)
                if _gone(nodes, p, strict=True):
                    continue   # under a path that is deleted or not a directory: nothing to delete
                cs.drop(p)
                cs.set(p, Node(DEL, li))
                continue
            p = self.resolve(m.path)   # a path given twice in one layer: the last one wins
            self.ensure_parents(p, li)
            old = nodes.get(p)
            if m.is_dir:
                self._put_dir(p, li, m, old)
                continue
            cs.drop_children(p)   # a non-directory replaces whatever was at p, children included
            if m.is_link:
                inode = self._link_inode(p, li, m)
                self.meta[inode] = m
                cs.set(p, Node(PUT, li, m, inode=inode))
            elif m.is_file:
                inode = _file_inode(li, m)
                self.meta[inode] = self.content[inode] = m
                cs.set(p, Node(PUT, li, m, inode=inode))
            else:
                cs.set(p, Node(PUT, li, m))

    def _put_dir(self, p: str, li: int, m: Member, old: Node | None) -> None:
        if old is None:
            state, bm = self.lookup(p)
            fresh = state == "base" and bm is not None and not bm.is_dir
            self.cs.set(p, Node(PUT, li, m, opaque=fresh, fresh=fresh))
        elif old.kind == PUT and (old.member is None or old.member.is_dir):
            # a directory over a directory: new metadata, the children stay; the engine adds
            # the new xattrs to the old ones
            xattrs = dict(old.xattrs or {})
            if old.member is not None:
                xattrs.update(old.member.xattrs)
            self.cs.set(p, Node(PUT, li, m, opaque=old.opaque, fresh=old.fresh, xattrs=xattrs or None))
        elif old.kind == OPQ:
            self.cs.set(p, Node(PUT, li, m, opaque=True))
        else:   # deleted below, or a non-directory: a brand new directory
            self.cs.set(p, Node(PUT, li, m, opaque=True, fresh=True))

    def _link_inode(self, p: str, li: int, m: Member) -> object:
        t = self.resolve(tarfmt.normalize(m.linkname))
        state, tm = self.lookup(t)
        if state == "put":
            tn = self.cs.nodes.get(t)
            if tn is not None and tn.inode is not None:
                return tn.inode
            raise FormatError(f"layer {li} of the range: hardlink {p!r} names {t!r}, "
                              "which is not a regular file at that point")
        if state == "absent":
            raise FormatError(f"layer {li} of the range: hardlink {p!r} names {t!r}, which does not exist")
        if tm is not None and not (tm.is_file or tm.is_link):
            raise FormatError(f"layer {li} of the range: hardlink {p!r} names {t!r}, which is not a regular file")
        return ("base", t)


def _clamp(p: str) -> str:
    """Resolve ``..`` in a path, never above the root."""
    out: list[str] = []
    for part in p.split("/"):
        if part == "..":
            if out:
                out.pop()
        elif part and part != ".":
            out.append(part)
    return "/".join(out) or "."


_LAYER_SHIFT = 48     # a file's inode: its layer and header offset in one int (a tuple costs more)


def _file_inode(li: int, m: Member) -> int:
    return (li << _LAYER_SHIFT) | m.header_offset


def plan_merge(layers: Sequence[Sequence[Member]], base: BaseView = EMPTY_BASE) -> MergePlan:
    planner = _Planner(base)
    for li, members in enumerate(layers):
        planner.apply(li, members)
    input_bytes = sum(m.size for m in planner.content.values())
    return _emit(planner, len(layers), input_bytes)


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


def _emit(planner: _Planner, nlayers: int, input_bytes: int) -> MergePlan:
    cs, base = planner.cs, planner.base
    nodes = cs.nodes
    order = sorted(nodes, key=_sort_key)
    content = planner.content
    plan = MergePlan([], nlayers, input_bytes, base_known=base.known)
    primary_of: dict[object, str] = {}
    out = plan.entries
    for p in order:
        n = nodes[p]
        if n.kind == DEL:
            if base.has(p) and not _hidden(nodes, p):
                out.append(_whiteout(p))
                plan.kept_whiteouts += 1
            else:
                plan.dropped_whiteouts += 1
            continue
        if n.kind == OPQ:
            if base.has_children(p) and not _hidden(nodes, p):
                out.append(_opaque(p))
            continue
        m = n.member
        if (m is None or m.is_dir) and n.fresh and base.has(p) and not _hidden(nodes, p):
            # a new directory where the base has something: the old one goes first, xattrs and all
            out.append(_whiteout(p))
            plan.kept_whiteouts += 1
        if m is None:  # a directory the engine would have created on its own
            out.append(OutEntry(p, "header", header=tarfmt.encode_header(p + "/", tarfmt.DIRECTORY, mode=0o600)))
            if n.opaque and not n.fresh and base.has_children(p) and not _hidden(nodes, p):
                out.append(_opaque(p))
            continue
        if n.inode is None:  # directories, symlinks, devices, fifos
            if m.is_dir and n.xattrs and any(k not in m.xattrs for k in n.xattrs):
                pax = dict(m.pax)
                for k, v in n.xattrs.items():
                    if k not in m.xattrs:
                        pax["SCHILY.xattr." + k] = v
                out.append(OutEntry(p, "header", n.layer, m, None, header=tarfmt.encode_header(
                    p + "/", tarfmt.DIRECTORY, mode=m.mode, uid=m.uid, gid=m.gid, mtime=m.mtime,
                    uname=m.uname, gname=m.gname, pax=pax)))
            else:
                out.append(_entry(p, n.layer, m))
            if m.is_dir and n.opaque and not n.fresh and base.has_children(p) and not _hidden(nodes, p):
                out.append(_opaque(p))
            continue
        ino = n.inode
        meta = planner.meta.get(ino, m)   # the engine gives the inode the metadata of the last entry applied
        if ino in primary_of:
            # another name of a file already written: a hardlink to its first name
            out.append(OutEntry(p, "header", n.layer, m, header=tarfmt.member_header(
                meta, name=p, type=tarfmt.HARDLINK, linkname=primary_of[ino], size=0), link=primary_of[ino]))
            continue
        if isinstance(ino, tuple) and ino[0] == "base":
            target = ino[1]
            if target in nodes or _hidden(nodes, target) or _gone(nodes, target):
                # the base's name now shows other bytes (or none). Another name of that base file that
                # the range left alone still has them: link to it. Else this name keeps the old bytes,
                # which only the base's layer has; the first such name carries them, others link to it
                src = base.content.get(target)
                alive = next((q for q in base.names_of(src) if q not in nodes and not _hidden(nodes, q)
                              and not _gone(nodes, q)), None) if src is not None else None
                if alive is not None:
                    primary_of[ino] = alive
                    out.append(OutEntry(p, "header", n.layer, m, header=tarfmt.member_header(
                        meta, name=p, type=tarfmt.HARDLINK, linkname=alive, size=0), link=alive))
                    continue
                if src is None:
                    from ..errors import ImggitError

                    raise ImggitError(
                        f"cannot squash this range: hardlink /{p} shares its content with /{target} of the "
                        "base, which the range then changes or deletes, and the base's file list does not "
                        "say where those bytes are", hint="squash from a lower base, one that includes the "
                        "layer that wrote /" + target)
                bl, bm = src
                if bl not in plan.base_sources:
                    plan.base_sources.append(bl)
                plan.base_links.append(p)
                primary_of[ino] = p
                plan.output_file_bytes += bm.size
                plan.base_file_bytes += bm.size
                out.append(OutEntry(p, "header", nlayers + plan.base_sources.index(bl), m, bm, size=bm.size,
                                    header=tarfmt.member_header(meta, name=p, type=tarfmt.REGULAR, linkname="",
                                                                size=bm.size)))
                continue
            primary_of[ino] = target
            out.append(OutEntry(p, "header", n.layer, m, header=tarfmt.member_header(
                meta, name=p, type=tarfmt.HARDLINK, linkname=target, size=0), link=target))
            continue
        cm = content[ino]  # type: ignore[index]
        cl = ino >> _LAYER_SHIFT  # type: ignore[operator]
        primary_of[ino] = p
        plan.output_file_bytes += cm.size
        if m is cm and meta is cm and _is_raw_ok(m, p):
            out.append(OutEntry(p, "raw", cl, m, cm, size=cm.size))
        else:
            # the first name of the group carries the content, with the inode's final metadata
            out.append(OutEntry(p, "header", cl, cm, cm, size=cm.size,
                                header=tarfmt.member_header(meta, name=p, type=tarfmt.REGULAR, linkname="",
                                                            size=cm.size)))
    # what the merge drops: file contents that no final path carries
    for ino, m in content.items():
        if ino not in primary_of and m.size:
            plan.dropped.append((m.path, ino >> _LAYER_SHIFT, m.size))
    return plan


def _hidden(nodes: dict[str, Node], p: str) -> bool:
    """Is the base's ``p`` already out of sight (under an opaque, new or deleted directory)?"""
    for a in _ancestors(p) if p != "." else []:
        n = nodes.get(a)
        if n is not None and (n.kind in (OPQ, DEL) or (n.kind == PUT and (n.opaque or n.fresh))):
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
    paths: dict[str, Member | None] = {}
    content: dict[str, tuple[int, Member]] = {}
    for e in plan.entries:
        if e.kind in ("raw", "header"):
            paths[e.path] = e.member
            if e.kind == "raw" and e.member is not None:
                content[e.path] = (e.layer, e.member)
            elif e.data is not None:
                content[e.path] = (e.layer, e.data)
            elif e.link and e.link in content:
                content[e.path] = content[e.link]
    return BaseView(paths, content)


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
