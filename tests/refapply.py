"""A reference applier: layers onto an in-memory directory tree, entry by entry, like the engine.

Deliberately written as a tree walk (not the flat changeset of
``imggit.layers.merge``) so that the two can check each other. It follows
moby's ``UnpackLayer``: every entry first gets its missing parents created
(mode 0600), following symlinked directories; a whiteout removes its target
when read; an opaque marker removes every child its layer has not written;
an entry replaces what is at its path unless both are directories (then the
metadata changes and xattrs are added); a hardlink shares the inode of what
is at its target when it is applied, and its own header's metadata is then
applied to that inode.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

from imggit.layers import tarfmt


@dataclass(eq=False)
class Inode:
    kind: str
    meta: tuple
    content: bytes = b""
    target: str = ""


@dataclass(eq=False)
class Node:
    inode: Inode
    children: dict[str, "Node"] = field(default_factory=dict)


def _meta(m: tarfmt.Member) -> tuple:
    return (m.mode & 0o7777, m.uid, m.gid, m.mtime if not m.is_dir else None, tuple(sorted(m.xattrs.items())),
            (m.devmajor, m.devminor) if m.type in (tarfmt.CHARDEV, tarfmt.BLOCKDEV) else None)


IMPLIED = (0o600, 0, 0, None, (), None)


class Tree:
    def __init__(self) -> None:
        self.root = Node(Inode("dir", (0o755, 0, 0, None, (), None)))

    def _resolve(self, parts: list[str], create: bool) -> Node | None:
        """Walk to the directory ``parts`` names, following symlinks; create missing ones (0600)."""
        node = self.root
        todo = list(parts)
        trail: list[str] = []
        hops = 0
        while todo:
            p = todo.pop(0)
            if p in ("", "."):
                continue
            if p == "..":
                if trail:
                    trail.pop()
                node = self._walk_plain(trail)
                continue
            nxt = node.children.get(p)
            if nxt is not None and nxt.inode.kind == "symlink" and hops < 40:
                hops += 1
                t = nxt.inode.target
                todo = t.split("/") + todo
                if t.startswith("/"):
                    trail = []
                    node = self.root
                continue
            if nxt is None or nxt.inode.kind != "dir":
                if not create:
                    return None
                nxt = Node(Inode("dir", IMPLIED))
                node.children[p] = nxt
            node = nxt
            trail.append(p)
        return node

    def _walk_plain(self, trail: list[str]) -> Node:
        node = self.root
        for p in trail:
            node = node.children[p]
        return node

    def lookup(self, path: str) -> Node | None:
        if path == ".":
            return self.root
        parts = path.split("/")
        parent = self._resolve(parts[:-1], create=False)
        return None if parent is None else parent.children.get(parts[-1])

    def apply(self, data: bytes) -> None:
        r = tarfmt.TarReader(io.BytesIO(data))
        written: set[int] = set()
        for m in r:
            p = m.path
            parts = [] if p == "." else p.split("/")
            if m.is_meta:
                continue
            parent = self._resolve(parts[:-1], create=True) if parts else None
            if m.is_opaque:
                assert parent is not None

                def prune(node: Node) -> None:   # filepath.Walk, removing what this layer did not write
                    for name in list(node.children):
                        child = node.children[name]
                        if id(child) not in written:
                            del node.children[name]
                        elif child.inode.kind == "dir":
                            prune(child)

                prune(parent)
                continue
            if m.is_whiteout:
                assert parent is not None
                parent.children.pop(parts[-1][len(".wh."):], None)
                continue
            if p == ".":
                self.root.inode.meta = _meta(m)
                continue
            assert parent is not None
            old = parent.children.get(parts[-1])
            if m.is_dir:
                if old is not None and old.inode.kind == "dir":
                    meta = _meta(m)
                    xattrs = dict(old.inode.meta[4])
                    xattrs.update(dict(meta[4]))
                    old.inode.meta = meta[:4] + (tuple(sorted(xattrs.items())),) + meta[5:]
                    written.add(id(old))
                else:
                    node = Node(Inode("dir", _meta(m)))
                    parent.children[parts[-1]] = node
                    written.add(id(node))
                continue
            if m.is_link:
                t = self.lookup(tarfmt.normalize(m.linkname))
                assert t is not None and t.inode.kind == "file", f"dangling hardlink {p} -> {m.linkname}"
                t.inode.meta = _meta(m)
                node = Node(t.inode)
                parent.children[parts[-1]] = node
                written.add(id(node))
                continue
            kind = {"0": "file", "7": "file", "2": "symlink", "3": "chardev", "4": "blockdev", "6": "fifo"}[m.type]
            content = r.read_data() if m.is_file else b""
            node = Node(Inode(kind, _meta(m), content, m.linkname if m.is_symlink else ""))
            parent.children[parts[-1]] = node
            written.add(id(node))

    def listing(self) -> tuple[dict[str, tuple], set[frozenset[str]]]:
        out: dict[str, tuple] = {}
        inodes: dict[int, list[str]] = {}

        def rec(node: Node, prefix: str) -> None:
            for name, child in node.children.items():
                p = prefix + name
                i = child.inode
                out[p] = (i.kind, i.meta, hashlib.sha256(i.content).hexdigest() if i.kind == "file" else "", i.target)
                if i.kind == "file":
                    inodes.setdefault(id(i), []).append(p)
                if i.kind == "dir":
                    rec(child, p + "/")

        rec(self.root, "")
        groups = {frozenset(v) for v in inodes.values() if len(v) > 1}
        return out, groups


def apply_all(layers: list[bytes]) -> Tree:
    t = Tree()
    for data in layers:
        t.apply(data)
    return t
