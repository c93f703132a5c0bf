"""File indexes of layers (every member's header fields), cached by diff id.

A diff id names the exact uncompressed bytes of a layer, so an index saved
under it never goes stale. Indexes are kept as gzip'd JSON under
``$IMGGIT_HOME/cache/index/``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tempfile
from typing import TYPE_CHECKING, Iterable

from ..config import cache_path
from ..errors import FormatError, ImggitError
from ..model import Image, short
from . import tarfmt
from .compress import open_decompressed
from .tarfmt import Member

if TYPE_CHECKING:
    from ..stores.base import Store

_VERSION = 2
_FIELDS = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname", "uname", "gname",
           "devmajor", "devminor", "pax", "header_offset", "data_offset", "raw_ok")


_SHARED = [_FIELDS.index(f) for f in ("type", "mode", "uid", "gid", "mtime", "uname", "gname")]
_PAX = _FIELDS.index("pax")


def _path(diff_id: str) -> str:
    return cache_path("index", diff_id.replace(":", "-") + ".json.gz")


def is_cached(diff_id: str) -> bool:
    """Is the index of this layer in the cache (without reading it)?"""
    return os.path.exists(_path(diff_id))


def load_cached(diff_id: str) -> list[Member] | None:
    try:
        with gzip.open(_path(diff_id), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(data, dict) or data.get("v") != _VERSION:
        return None
    out = []
    n = len(_FIELDS)
    same = tarfmt._Interner()
    rows = data.pop("members")
    for k, row in enumerate(rows):
        rows[k] = None           # the rows go as the members come
        for col in _SHARED:
            row[col] = same[row[col]]
        if not row[_PAX]:
            row[_PAX] = tarfmt.NO_PAX
        m = Member(*row[:n])
        m.path = tarfmt.normalize(m.name)
        if len(row) > n:
            m.digest = row[n]
        out.append(m)
    return out


def has_digests(members: Iterable[Member]) -> bool:
    return all(m.digest or not m.is_file or m.size == 0 for m in members)


def save_cached(diff_id: str, members: Iterable[Member]) -> None:
    rows = [[getattr(m, f) for f in _FIELDS] + [m.digest] for m in members]
    path = _path(diff_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=3) as f:
            f.write(json.dumps({"v": _VERSION, "members": rows}, separators=(",", ":")).encode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def index_stream(stream, what: str) -> list[Member]:  # type: ignore[no-untyped-def]
    """Members of an uncompressed tar stream, reading through it once (file contents hashed on the way)."""
    r = tarfmt.TarReader(stream, what=what)
    members = []
    for m in r:
        if m.is_file and m.size:
            h = hashlib.sha256()
            for chunk in r.data_chunks():
                h.update(chunk)
            m.digest = h.hexdigest()
        members.append(m)
    r.drain()
    return members


def index_verified(src, diff_id: str, what: str) -> list[Member]:  # type: ignore[no-untyped-def]
    """:func:`index_stream` of ``src`` read to its end, checking that its bytes hash to ``diff_id``."""
    from ..errors import DigestMismatch

    h = hashlib.sha256()

    class _Tap:
        def read(self, n: int = -1) -> bytes:
            b = src.read(n)
            h.update(b)
            return b

    members = index_stream(_Tap(), what)
    while _Tap().read(1 << 20):
        pass
    if "sha256:" + h.hexdigest() != diff_id:
        raise DigestMismatch(f"{what}: diff id mismatch: content hashes to sha256:{h.hexdigest()}")
    return members


def index_layers(store: "Store", image: Image, indices: Iterable[int], *,
                 digests: bool = False) -> dict[int, list[Member]]:
    """Headers of the given layers (with ``digests``: and each file's content hash): from the
    cache, else read once (and cached)."""
    out: dict[int, list[Member]] = {}
    missing = []
    for i in sorted(set(indices)):
        cached = load_cached(image.layers[i].diff_id)
        if cached is not None and (not digests or has_digests(cached)):
            out[i] = cached
        else:
            missing.append(i)
    if not missing:
        return out
    spool = getattr(store, "index_layers", None)
    if spool is not None:
        found = spool(image, missing)
    else:
        found = {}
        for i in missing:
            layer = image.layers[i]
            what = f"layer {i} ({short(layer.diff_id)}) of {image.describe()}"
            raw = store.open_blob(image, i)
            try:
                stream, _ = open_decompressed(raw, what)
                try:
                    members = index_verified(stream, layer.diff_id, what)
                except ImggitError:
                    raise
                except Exception as e:  # zlib, ISA-L, zstd and lzma each have their own error types
                    raise FormatError(f"{what} could not be decompressed: {e}") from None
                if hasattr(raw, "drain"):
                    raw.drain()
            finally:
                raw.close()
            found[i] = members
    for i, members in found.items():
        with contextlib.suppress(OSError):
            save_cached(image.layers[i].diff_id, members)
        out[i] = members
    return out
