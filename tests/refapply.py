"""A reference applier: layers onto an in-memory directory tree, entry by entry, like the engine.

Deliberately written as a tree walk (not the flat changeset of
``imggit.layers.merge``) so that the two can check each other. It follows
moby's ``UnpackLayer``: a whiteout removes its target when read; an opaque
marker removes every child its layer has not written; an entry replaces what
is at its path unless both are directories (then only metadata changes);
missing parents are created (0755); a hardlink shares the inode of what is
at its target when it is applied.
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


class Tree:
    def __init__(self) -> None:
        self.root = Node(Inode("dir", (0o755, 0, 0, None, (), None)))

    def _walk(self, parts: list[str], create: bool) -> Node | None:
        node = self.root
        for p in parts:
            nxt = node.children.get(p)
            if nxt is None or nxt.inode.kind != "dir":
                if not create:
                    return None
                nxt = Node(Inode("dir", (0o755, 0, 0, None, (), None)))
                node.children[p] = nxt
            node = nxt
        return node

    def lookup(self, path: str) -> Node | None:
        if path == ".":
            return self.root
        parts = path.split("/")
        parent = self._walk(parts[:-1], create=False)
        return None if parent is None else parent.children.get(parts[-1])

    def apply(self, data: bytes) -> None:
        r = tarfmt.TarReader(io.BytesIO(data))
        written: set[str] = set()
        for m in r:
            p = m.path
            parts = [] if p == "." else p.split("/")
            if m.is_meta:
                continue
            if m.is_opaque:
                d = m.parent
                node = self._walk(d.split("/") if d else [], create=True)
                assert node is not None
                prefix = (d + "/") if d else ""
                for name in list(node.children):
                    if prefix + name not in written:
                        del node.children[name]
                continue
            if m.is_whiteout:
                t = m.whiteout_target.split("/")
                parent = self._walk(t[:-1], create=False)
                if parent is not None:
                    parent.children.pop(t[-1], None)
                continue
            written.add(p)
            if p == ".":
                self.root.inode.meta = _meta(m)
                continue
            parent = self._walk(parts[:-1], create=True)
            assert parent is not None
            old = parent.children.get(parts[-1])
            if m.is_dir:
                if old is not None and old.inode.kind == "dir":
                    old.inode.meta = _meta(m)
                else:
                    parent.children[parts[-1]] = Node(Inode("dir", _meta(m)))
                continue
            if m.is_link:
                t = self.lookup(tarfmt.normalize(m.linkname))
                assert t is not None and t.inode.kind == "file", f"dangling hardlink {p} -> {m.linkname}"
                parent.children[parts[-1]] = Node(t.inode)
                continue
            kind = {"0": "file", "7": "file", "2": "symlink", "3": "chardev", "4": "blockdev", "6": "fifo"}[m.type]
            content = r.read_data() if m.is_file else b""
            parent.children[parts[-1]] = Node(Inode(kind, _meta(m), content, m.linkname if m.is_symlink else ""))

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
