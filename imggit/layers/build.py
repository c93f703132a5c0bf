"""Build layers and images from specifications or directories, without an engine.

Used by ``make demo`` (an image built from files in the repository), by
``amend`` (files from disk into a layer) and by the tests, which need exact
tar corner cases: whiteouts, opaque directories, hardlinks, xattrs, devices,
long and non-ASCII names.
"""

from __future__ import annotations

import datetime as _dt
import io
import os
import stat
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Sequence, cast

from ..model import Config, Layer, chain_ids, sha256_digest, DOCKER_LAYER, OCI_LAYER
from . import tarfmt


@dataclass
class Entry:
    path: str
    type: str = tarfmt.REGULAR
    data: bytes = b""
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    mtime: int = 1700000000
    linkname: str = ""
    xattrs: dict[str, str] = field(default_factory=dict)
    devmajor: int = 0
    devminor: int = 0
    uname: str = ""
    gname: str = ""
    pax: dict[str, str] = field(default_factory=dict)

    def header(self) -> bytes:
        mode = self.mode
        if mode is None:
            mode = 0o755 if self.type == tarfmt.DIRECTORY else (0o777 if self.type == tarfmt.SYMLINK else 0o644)
        pax = dict(self.pax)
        for k, v in self.xattrs.items():
            pax["SCHILY.xattr." + k] = v
        name = self.path
        if self.type == tarfmt.DIRECTORY and not name.endswith("/"):
            name += "/"
        size = len(self.data) if self.type in (tarfmt.REGULAR, tarfmt.CONTIGUOUS) else 0
        return tarfmt.encode_header(name, self.type, mode=mode, uid=self.uid, gid=self.gid, size=size,
                                    mtime=self.mtime, linkname=self.linkname, uname=self.uname,
                                    gname=self.gname, devmajor=self.devmajor, devminor=self.devminor, pax=pax)


def file(path: str, data: bytes | str = b"", mode: int = 0o644, **kw: Any) -> Entry:
    if isinstance(data, str):
        data = data.encode()
    return Entry(path, tarfmt.REGULAR, data, mode, **kw)


def directory(path: str, mode: int = 0o755, **kw: Any) -> Entry:
    return Entry(path, tarfmt.DIRECTORY, b"", mode, **kw)


def symlink(path: str, target: str, **kw: Any) -> Entry:
    return Entry(path, tarfmt.SYMLINK, b"", kw.pop("mode", 0o777), linkname=target, **kw)


def hardlink(path: str, target: str, **kw: Any) -> Entry:
    return Entry(path, tarfmt.HARDLINK, b"", kw.pop("mode", 0o644), linkname=target, **kw)


def fifo(path: str, mode: int = 0o644, **kw: Any) -> Entry:
    return Entry(path, tarfmt.FIFO, b"", mode, **kw)


def chardev(path: str, major: int, minor: int, mode: int = 0o666, **kw: Any) -> Entry:
    return Entry(path, tarfmt.CHARDEV, b"", mode, devmajor=major, devminor=minor, **kw)


def whiteout(path: str, **kw: Any) -> Entry:
    """Delete ``path`` from lower layers (an empty ``.wh.<name>`` file)."""
    parent, _, name = path.rstrip("/").rpartition("/")
    wh = (parent + "/" if parent else "") + tarfmt.WHITEOUT_PREFIX + name
    return Entry(wh, tarfmt.REGULAR, b"", 0o644, **kw)


def opaque(dirpath: str, **kw: Any) -> Entry:
    """Hide every lower-layer child of ``dirpath``."""
    return Entry(dirpath.rstrip("/") + "/" + tarfmt.OPAQUE_MARKER, tarfmt.REGULAR, b"", 0o644, **kw)


def make_layer(entries: Iterable[Entry], *, end: bool = True) -> bytes:
    buf = io.BytesIO()
    write_layer(buf, entries, end=end)
    return buf.getvalue()


def write_layer(out: BinaryIO, entries: Iterable[Entry], *, end: bool = True) -> None:
    for e in entries:
        out.write(e.header())
        if e.type in (tarfmt.REGULAR, tarfmt.CONTIGUOUS) and e.data:
            out.write(e.data)
            out.write(tarfmt.padding(len(e.data)))
    if end:
        out.write(tarfmt.END_OF_ARCHIVE)


def entries_from_dir(root: str, dest: str = "", *, mtime: int | None = None, uid: int | None = None,
                     gid: int | None = None, chmod: int | None = None) -> list[Entry]:
    """Entries for a directory tree (or one file), sorted, hardlinks kept, under ``dest``.

    ``mtime``/``uid``/``gid``/``chmod`` override what the files say (for
    reproducible layers). Device nodes and sockets are refused.
    """
    out: list[Entry] = []
    seen_inodes: dict[tuple[int, int], str] = {}
    dest = dest.strip("/")

    def add(full: str, rel: str) -> None:
        st = os.lstat(full)
        name = "/".join(p for p in (dest, rel) if p)
        kw = dict(uid=st.st_uid if uid is None else uid, gid=st.st_gid if gid is None else gid,
                  mtime=int(st.st_mtime) if mtime is None else mtime)
        perm = stat.S_IMODE(st.st_mode) if chmod is None else chmod
        if stat.S_ISDIR(st.st_mode):
            if name:
                out.append(directory(name, perm if chmod is None else (perm | 0o111), **kw))
        elif stat.S_ISLNK(st.st_mode):
            out.append(symlink(name, os.readlink(full), **kw))
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in seen_inodes:
                out.append(hardlink(name, seen_inodes[key], mode=perm, **kw))
                return
            seen_inodes[key] = name
            with open(full, "rb") as f:
                out.append(file(name, f.read(), perm, **kw))
        elif stat.S_ISFIFO(st.st_mode):
            out.append(fifo(name, perm, **kw))
        else:
            raise ValueError(f"{full}: device nodes and sockets cannot be added")

    if os.path.isdir(root) and not os.path.islink(root):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            add(dirpath, rel_dir)
            for fn in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
                full = os.path.join(dirpath, fn)
                rel = f"{rel_dir}/{fn}" if rel_dir else fn
                if os.path.isdir(full) and not os.path.islink(full):
                    continue
                add(full, rel)
    else:
        add(root, "")
    return out


@dataclass
class StepSpec:
    created_by: str
    layer: bytes | None = None         # an uncompressed layer tar, or None for an empty step
    created: str | None = None
    comment: str | None = None


def image_config(steps: Sequence[StepSpec], runtime: dict[str, Any] | None = None, *,
                 architecture: str = "amd64", os_name: str = "linux", created: str | None = None,
                 extra: dict[str, Any] | None = None) -> Config:
    diff_ids = [sha256_digest(s.layer) for s in steps if s.layer is not None]
    history = []
    for i, s in enumerate(steps):
        h: dict[str, Any] = {"created": s.created or _ts(i), "created_by": s.created_by}
        if s.comment:
            h["comment"] = s.comment
        if s.layer is None:
            h["empty_layer"] = True
        history.append(h)
    data: dict[str, Any] = {
        "architecture": architecture,
        "config": runtime or {},
        "created": created or (history[-1]["created"] if history else _ts(0)),
        "history": history,
        "os": os_name,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    if extra:
        data.update(extra)
    return Config.from_data(data)


def _ts(i: int) -> str:
    t = _dt.datetime(2024, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(minutes=i)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_image(store: Any, tag: str | None, steps: Sequence[StepSpec], runtime: dict[str, Any] | None = None,
                *, compress: str | None = "auto", config: Config | None = None, family: str = "oci",
                **kw: Any) -> Any:
    """Write an image made of these steps into ``store`` (any Store)."""
    from ..stores.base import LayerInput, WriteRequest

    config = config or image_config(steps, runtime, **kw)
    layers = [s.layer for s in steps if s.layer is not None]
    diff_ids = config.diff_ids
    mt = DOCKER_LAYER if family == "docker" else OCI_LAYER
    inputs = []
    for data, d, c in zip(layers, diff_ids, chain_ids(diff_ids)):
        inputs.append(LayerInput(Layer(d, c, d, mt, len(data)),
                                 cast("Callable[[], BinaryIO]", lambda data=data: io.BytesIO(data))))
    return store.write(WriteRequest(config, inputs, tag, compress=compress, family=family))
