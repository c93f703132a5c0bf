"""Writing layer entries into a directory, never outside it.

Two guards, one behind the other:

- ``screen`` (pure) looks at each member of a layer before anything is
  planned: names that are absolute or climb with ``..``, hardlinks whose
  target is absolute or climbs, device nodes that were not asked for, and
  entry types a filesystem cannot hold are refused (reported, not written);
- ``write_plan`` writes the entries of a merge plan through directory file
  descriptors (``openat``-style): every parent is opened component by
  component with ``O_NOFOLLOW`` from the target, so a symlink among the
  parents, whoever made it, is refused instead of followed; files are
  created with ``O_EXCL | O_NOFOLLOW`` after whatever was at their name is
  removed; hardlinks must name something already inside the target.

Modes, times, symlinks, hardlinks, fifos and ``user.*`` xattrs are restored;
owners, devices and the other xattrs only as root. Directories get their
metadata last (deepest first), so a read-only directory still receives its
children.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..errors import ImggitError
from . import tarfmt
from .merge import MergePlan, OutEntry
from .tarfmt import Member

_FATAL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_DEVICES = (tarfmt.CHARDEV, tarfmt.BLOCKDEV)


class Refused(Exception):
    """An entry that is not written; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Missing(Refused):
    """A parent directory that does not exist (and may not be created)."""


@dataclass(frozen=True)
class Refusal:
    name: str          # the name as the layer stores it
    reason: str


# --- pure checks ------------------------------------------------------------------------


def check_name(name: str) -> str:
    """The relative path a member name stands for; refuses absolute names, ``..`` and NUL."""
    if "\0" in name:
        raise Refused("NUL byte in the name")
    if name.startswith("/"):
        raise Refused("absolute name")
    if ".." in name.split("/"):
        raise Refused("'..' in the name")
    return tarfmt.normalize(name)


def check_link_target(linkname: str) -> str:
    """The relative path a hardlink names; refuses targets outside the tree (absolute or climbing)."""
    if not linkname or linkname.strip("/.") == "":
        raise Refused("hardlink without a target")
    if "\0" in linkname:
        raise Refused("NUL byte in the hardlink target")
    if linkname.startswith("/"):
        raise Refused(f"hardlink to an absolute path ({linkname})")
    if ".." in linkname.split("/"):
        raise Refused(f"hardlink target climbs out with '..' ({linkname})")
    return tarfmt.normalize(linkname)


def screen(members: Iterable[Member], *, devices: bool, why_no_devices: str = "device node (use --devices, as root)",
           seen: set[str] | None = None) -> tuple[list[Member], list[Refusal]]:
    """Split a layer's members into those that may be planned and those refused (pure).

    With ``seen`` (the paths of regular files in the layers screened so far, updated here) a
    hardlink must name one of them: a target reached through a symlink, or one that no layer
    holds, is refused rather than guessed at.
    """
    kept: list[Member] = []
    refused: list[Refusal] = []
    here: dict[str, str] = {}     # path -> type of what this layer holds so far
    for m in members:
        try:
            path = check_name(m.name)
            if m.type == tarfmt.HARDLINK:
                target = check_link_target(m.linkname)
                if target == path:
                    raise Refused("hardlink to itself")
                t = here.get(target)
                if t is not None and t not in (tarfmt.REGULAR, tarfmt.CONTIGUOUS, tarfmt.HARDLINK):
                    raise Refused(f"hardlink to a {tarfmt.TYPE_NAMES[t]} (/{target})")
                if seen is not None and target not in seen:
                    raise Refused(f"hardlink target /{target} is not a file of the layers")
            elif m.type in _DEVICES and not devices:
                kind = "char" if m.type == tarfmt.CHARDEV else "block"
                raise Refused(f"{why_no_devices}: {kind} {m.devmajor}:{m.devminor}")
            elif m.type not in tarfmt.TYPE_NAMES:
                raise Refused(f"unsupported entry type {m.type!r}")
            if m.type == tarfmt.SYMLINK and "\0" in m.linkname:
                raise Refused("NUL byte in the symlink target")
        except Refused as e:
            refused.append(Refusal(m.name, e.reason))
            continue
        kept.append(m)
        if not (m.is_whiteout or m.is_opaque or m.is_meta):
            here[path] = m.type
            if seen is not None and (m.is_file or m.is_link):
                seen.add(path)
    return kept, refused


def mtime_ns(m: Member, key: str = "mtime") -> int:
    """A pax time (``1700000000.5``) or the header's seconds, in nanoseconds."""
    text = m.pax.get(key) or m.pax.get("mtime") or str(m.mtime)
    sec, _, frac = text.partition(".")
    try:
        neg = sec.startswith("-")
        ns = abs(int(sec or "0")) * 1_000_000_000 + int((frac + "000000000")[:9] or "0")
        return -ns if neg else ns
    except ValueError:
        return m.mtime * 1_000_000_000


# --- the writer --------------------------------------------------------------------------


@dataclass
class Stats:
    counts: Counter[str] = field(default_factory=Counter)   # files, dirs, symlinks, hardlinks, fifos, devices
    bytes: int = 0
    refused: list[Refusal] = field(default_factory=list)
    whiteouts: list[tuple[str, str]] = field(default_factory=list)   # ("deleted"|"opaque", "/path"): listed only
    not_restored: Counter[str] = field(default_factory=Counter)      # "owner", "xattr user.x"...


class SafeDir:
    """A target directory reached only through file descriptors; nothing outside it is touched."""

    def __init__(self, root: str) -> None:
        self.root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._fds: dict[str, int] = {}

    def close(self) -> None:
        self.forget("")
        os.close(self.root)

    def forget(self, path: str) -> None:
        """Drop cached descriptors of ``path`` and below (it is being removed or replaced)."""
        for k in [k for k in self._fds if not path or k == path or k.startswith(path + "/")]:
            os.close(self._fds.pop(k))

    def trim(self, limit: int = 256) -> None:
        """Close cached descriptors when there are many (call between entries, never while one is in use)."""
        if len(self._fds) > limit:
            self.forget("")

    def parent(self, path: str, *, create: bool = True, implicit_mode: int = 0o755) -> tuple[int, str]:
        """(descriptor of the parent directory, last name) of ``path``; parents must be real directories."""
        parts = path.split("/")
        fd = self.root
        for i, comp in enumerate(parts[:-1]):
            key = "/".join(parts[: i + 1])
            cached = self._fds.get(key)
            if cached is not None:
                fd = cached
                continue
            try:
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise Missing(f"/{key} does not exist") from None
                os.mkdir(comp, implicit_mode, dir_fd=fd)
                nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise Refused(f"its parent /{key} is {what}") from None
            self._fds[key] = nfd
            fd = nfd
        return fd, parts[-1]


def _rmtree_at(dirfd: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dirfd)
    try:
        with os.scandir(fd) as it:
            kids = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for kid, is_dir in kids:
            if is_dir:
                _rmtree_at(fd, kid)
            else:
                os.unlink(kid, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dirfd)


def _copy(src: int, offset: int, size: int, dst: int) -> None:
    """``size`` bytes of ``src`` from ``offset`` to the end of ``dst`` (in-kernel when possible)."""
    fast = hasattr(os, "copy_file_range")
    while size > 0:
        n = 0
        if fast:
            try:
                n = os.copy_file_range(src, dst, min(size, 1 << 30), offset)
            except OSError:
                fast = False
                continue
        else:
            b = os.pread(src, min(size, 1 << 20), offset)
            n = len(b)
            view = memoryview(b)
            while view:
                view = view[os.write(dst, view):]
        if n <= 0:
            raise ImggitError("a layer file ended inside an entry's data")
        offset += n
        size -= n


def member_of(e: OutEntry) -> Member:
    """The member a plan entry writes: the layer's own header, or the header the plan made."""
    if e.kind == "raw":
        assert e.member is not None
        return e.member
    m = tarfmt.TarReader(io.BytesIO(e.header), what="a planned header").next()
    assert m is not None
    return m


class Writer:
    def __init__(self, dest: str, files: Sequence[str], *, root: bool | None = None,
                 implicit_dirs: int | None = None) -> None:
        self.dir = SafeDir(dest)
        self.files = files
        self.fds: dict[int, int] = {}
        self.root = os.geteuid() == 0 if root is None else root
        self.implicit_dirs = implicit_dirs     # mode for directories the plan made up (None: as planned)
        self.stats = Stats()
        self._dirs: list[tuple[str, Member]] = []

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.dir.close()

    # --- one entry --------------------------------------------------------------------

    def write(self, e: OutEntry) -> None:
        if e.kind in ("whiteout", "opaque"):
            self._list(e)
            return
        m = member_of(e)
        self.dir.trim()
        if e.path in (".", ""):
            return   # the target itself: its owner and mode stay the user's
        try:
            check_name(e.path)
            self._put(e, m)
        except Refused as r:
            self.stats.refused.append(Refusal(e.path, r.reason))
        except OSError as x:
            if x.errno in _FATAL:
                raise ImggitError(f"writing /{e.path}: {x.strerror}") from None
            self.stats.refused.append(Refusal(e.path, f"could not be written: {x.strerror or x}"))

    def _list(self, e: OutEntry) -> None:
        parent, _, name = e.path.rpartition("/")
        if e.kind == "opaque":
            self.stats.whiteouts.append(("opaque", f"/{parent}/" if parent else "/"))
        else:
            target = name[len(tarfmt.WHITEOUT_PREFIX):]
            self.stats.whiteouts.append(("deleted", f"/{parent}/{target}" if parent else f"/{target}"))

    def _put(self, e: OutEntry, m: Member) -> None:
        pfd, name = self.dir.parent(e.path)
        link: tuple[int, str] | None = None
        if m.type == tarfmt.HARDLINK:
            link = self._link_target(e.path, m.linkname)
        try:
            old = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            old = None
        if old is not None and not (m.is_dir and stat.S_ISDIR(old.st_mode)):
            if stat.S_ISDIR(old.st_mode):
                self.dir.forget(e.path)
                _rmtree_at(pfd, name)
            else:
                os.unlink(name, dir_fd=pfd)
            old = None
        if m.is_dir:
            if old is None:
                os.mkdir(name, 0o700, dir_fd=pfd)
            self._dirs.append((e.path, m if e.member is not None or self.implicit_dirs is None
                               else _with_mode(m, self.implicit_dirs)))
            self.stats.counts["directories"] += 1
        elif m.is_file:
            self._file(e, m, pfd, name)
        elif link is not None:
            os.link(link[1], name, src_dir_fd=link[0], dst_dir_fd=pfd, follow_symlinks=False)
            self.stats.counts["hardlinks"] += 1
        elif m.is_symlink:
            os.symlink(m.linkname, name, dir_fd=pfd)
            self._meta_at(pfd, name, m, symlink=True)
            self.stats.counts["symlinks"] += 1
        elif m.type == tarfmt.FIFO:
            os.mkfifo(name, 0o600, dir_fd=pfd)
            self._meta_at(pfd, name, m)
            self.stats.counts["fifos"] += 1
        elif m.type in _DEVICES:
            if not self.root:
                raise Refused("device nodes need root")
            kind = stat.S_IFCHR if m.type == tarfmt.CHARDEV else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
            self._meta_at(pfd, name, m)
            self.stats.counts["devices"] += 1
        else:
            raise Refused(f"unsupported entry type {m.type!r}")

    def _file(self, e: OutEntry, m: Member, pfd: int, name: str) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)
        try:
            if e.size:
                src = e.data if e.kind != "raw" else e.member
                assert src is not None
                _copy(self._layer_fd(e.layer), src.data_offset, e.size, fd)
                self.stats.bytes += e.size
            self._meta_fd(fd, m)
        finally:
            os.close(fd)
        self.stats.counts["files"] += 1

    def _link_target(self, path: str, linkname: str) -> tuple[int, str]:
        """Where a hardlink's target is: an existing non-directory inside the target tree."""
        target = check_link_target(linkname)
        if target == path or target.startswith(path + "/"):
            raise Refused(f"hardlink to itself or to something below it ({linkname})")
        try:
            tfd, tname = self.dir.parent(target, create=False)
            st = os.stat(tname, dir_fd=tfd, follow_symlinks=False)
        except (FileNotFoundError, Missing):
            raise Refused(f"hardlink target /{target} does not exist") from None
        except Refused as r:
            raise Refused(f"hardlink target /{target}: {r.reason}") from None
        if stat.S_ISDIR(st.st_mode):
            raise Refused(f"hardlink to a directory (/{target})")
        return tfd, tname

    def _layer_fd(self, layer: int) -> int:
        fd = self.fds.get(layer)
        if fd is None:
            fd = self.fds[layer] = os.open(self.files[layer], os.O_RDONLY | os.O_CLOEXEC)
        return fd

    # --- metadata ---------------------------------------------------------------------

    def _owner_differs(self, m: Member) -> bool:
        return (m.uid, m.gid) != (os.geteuid(), os.getegid())

    def _xattrs(self, fd: int, m: Member) -> None:
        for k, v in m.xattrs.items():
            if not (k.startswith("user.") or self.root):
                self.stats.not_restored[f"xattr {k.split('.')[0]}.*"] += 1
                continue
            try:
                os.setxattr(fd, k, v.encode("utf-8", "surrogateescape"))
            except OSError:
                self.stats.not_restored[f"xattr {k.split('.')[0]}.*"] += 1

    def _times(self, m: Member) -> tuple[int, int]:
        mt = mtime_ns(m)
        return (mtime_ns(m, "atime") if "atime" in m.pax else mt), mt

    def _meta_fd(self, fd: int, m: Member) -> None:
        if self.root:
            os.fchown(fd, m.uid, m.gid)       # before the mode: chown clears setuid bits
        elif self._owner_differs(m):
            self.stats.not_restored["owner"] += 1
        os.fchmod(fd, m.mode & 0o7777)
        self._xattrs(fd, m)
        os.utime(fd, ns=self._times(m))

    def _meta_at(self, pfd: int, name: str, m: Member, symlink: bool = False) -> None:
        """Metadata of a node that must not be opened (symlink, fifo, device)."""
        if self.root:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        elif self._owner_differs(m):
            self.stats.not_restored["owner"] += 1
        if not symlink:
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
        if m.xattrs:
            self.stats.not_restored["xattr of a symlink, fifo or device"] += len(m.xattrs)
        os.utime(name, ns=self._times(m), dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> Stats:
        """Directory metadata, deepest first (their children are all written by now)."""
        for path, m in sorted(self._dirs, key=lambda x: -x[0].count("/")):
            self.dir.trim()
            try:
                pfd, name = self.dir.parent(path, create=False)
                fd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            except (Refused, OSError):
                continue   # replaced by a later entry
            try:
                self._meta_fd(fd, m)
            except OSError as x:
                self.stats.refused.append(Refusal(path, f"metadata not restored: {x.strerror or x}"))
            finally:
                os.close(fd)
        return self.stats


def _with_mode(m: Member, mode: int) -> Member:
    return Member(m.name, m.type, mode, m.uid, m.gid, m.size, m.mtime, m.linkname, m.uname, m.gname,
                  m.devmajor, m.devminor, dict(m.pax), path=m.path)


def write_plan(plan: MergePlan, files: Sequence[str], dest: str, *, root: bool | None = None,
               implicit_dirs: int | None = None) -> Stats:
    """Write every entry of ``plan`` (reading data from the layer ``files``) under ``dest``."""
    w = Writer(dest, files, root=root, implicit_dirs=implicit_dirs)
    try:
        for e in plan.entries:
            w.write(e)
        return w.finish()
    finally:
        w.close()


__all__ = ["Refused", "Refusal", "Stats", "SafeDir", "Writer", "check_name", "check_link_target", "screen",
           "write_plan", "mtime_ns"]
