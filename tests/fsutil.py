"""Compare filesystems: every header field that matters, from a tar stream or a directory."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
from typing import BinaryIO, Iterator

from imggit.layers import tarfmt

IGNORE = {".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab", "dev", "proc", "sys"}


@contextlib.contextmanager
def _tar_stream(data: bytes | str | os.PathLike[str] | BinaryIO) -> Iterator[BinaryIO]:
    """A tar given as bytes, as a path to a file, or as an open binary file."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        yield io.BytesIO(data)
    elif isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as f:
            yield f
    else:
        yield data


def listing_from_tar(data, *, ignore=IGNORE) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, mtime, link target, content hash, xattrs, dev)

    Hardlinks are reported as the file they share an inode with (type 'file',
    same content) plus a group id, so both ends of a link compare equal.
    ``data``: the tar's bytes, a path to it, or an open binary file (big
    exports are streamed: file contents are hashed in chunks).
    """
    with _tar_stream(data) as f:
        return _listing_from_tar(f, ignore)


def _listing_from_tar(f: BinaryIO, ignore) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    r = tarfmt.TarReader(f)
    content: dict[str, str] = {}
    groups: dict[str, str] = {}
    for m in r:
        p = m.path
        if p == "." or _ignored(p, ignore):
            continue
        if m.is_link:
            target = tarfmt.normalize(m.linkname)
            base = out.get(target)
            if base is None:
                continue
            root = groups.get(target, target)
            groups[p] = root
            groups.setdefault(target, root)
            out[p] = base
            continue
        h = ""
        if m.is_file:
            hh = hashlib.sha256()
            for chunk in r.data_chunks():
                hh.update(chunk)
            h = hh.hexdigest()
            content[p] = h
        kind = "file" if m.is_file else tarfmt.TYPE_NAMES.get(m.type, m.type)
        dev = (m.devmajor, m.devminor) if m.type in (tarfmt.CHARDEV, tarfmt.BLOCKDEV) else None
        out[p] = (kind, m.mode & 0o7777, m.uid, m.gid, m.mtime if kind != "directory" else None,
                  m.linkname if m.is_symlink else "", h, tuple(sorted(m.xattrs.items())), dev)
    return out


def hardlink_groups_from_tar(data, ignore=IGNORE) -> set[frozenset[str]]:
    """The sets of names that share an inode (a link to a link joins its target's group)."""
    groups: dict[str, set[str]] = {}
    root: dict[str, str] = {}
    with _tar_stream(data) as f:
        for m in tarfmt.TarReader(f):
            if m.is_link and not _ignored(m.path, ignore):
                t = tarfmt.normalize(m.linkname)
                r = root.get(t, t)
                root[m.path] = r
                groups.setdefault(r, {r}).add(m.path)
    return {frozenset(g) for g in groups.values()}


def hardlink_groups_from_dir(root: str, *, ignore=IGNORE) -> set[frozenset[str]]:
    """The sets of names (regular files) that share an inode under ``root``."""
    by_inode: dict[tuple[int, int], set[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            p = os.path.relpath(full, root)
            if _ignored(p, ignore):
                continue
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                by_inode.setdefault((st.st_dev, st.st_ino), set()).add(p)
    return {frozenset(g) for g in by_inode.values() if len(g) > 1}


def tar_members(data) -> list[tarfmt.Member]:
    """Every member of a tar (headers only), in stream order."""
    with _tar_stream(data) as f:
        return list(tarfmt.TarReader(f))


def listing_from_dir(root: str, *, ignore=IGNORE, xattrs: bool = True) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            p = os.path.relpath(full, root)
            if _ignored(p, ignore):
                continue
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                kind = "directory"
            elif stat.S_ISLNK(st.st_mode):
                kind = "symlink"
            elif stat.S_ISREG(st.st_mode):
                kind = "file"
            elif stat.S_ISFIFO(st.st_mode):
                kind = "fifo"
            elif stat.S_ISCHR(st.st_mode):
                kind = "char device"
            elif stat.S_ISBLK(st.st_mode):
                kind = "block device"
            else:
                kind = "other"
            h = ""
            if kind == "file":
                hh = hashlib.sha256()
                with open(full, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        hh.update(chunk)
                h = hh.hexdigest()
            xs: tuple = ()
            if xattrs and kind != "symlink":
                try:
                    xs = tuple(sorted((k, os.getxattr(full, k, follow_symlinks=False).decode("utf-8", "surrogateescape"))
                                      for k in os.listxattr(full, follow_symlinks=False)))
                except OSError:
                    xs = ()
            dev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char device", "block device") else None
            out[p] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                      int(st.st_mtime) if kind != "directory" else None,
                      os.readlink(full) if kind == "symlink" else "", h, xs, dev)
    return out


def _ignored(p: str, ignore) -> bool:
    return any(p == i or p.startswith(i + "/") for i in ignore)


def diff_listings(a: dict, b: dict, limit: int | None = None) -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            out.append(f"{k}: {a.get(k)} != {b.get(k)}")
            if limit is not None and len(out) >= limit:
                out.append("...")
                break
    return out


def spy_opens(monkeypatch, paths) -> list[str]:
    """Record every ``open`` of one of ``paths`` (from now on, within ``monkeypatch``'s scope)."""
    import builtins

    watched = {os.path.abspath(p) for p in paths}
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *a, **k):
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)) in watched:
            opened.append(os.fspath(file))
        return real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", spy)
    return opened
