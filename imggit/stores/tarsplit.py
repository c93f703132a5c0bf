"""Layer tars from the engine's data root, put back together from tar-split, without ``docker save``.

The graphdriver image store of the Docker engine keeps, for every layer, the
bytes of its tar that are not file contents (headers, padding, the end
blocks) as tar-split metadata, and the file contents in the storage driver's
directory of that layer::

    <root>/image/<driver>/layerdb/sha256/<chain id>/tar-split.json.gz
    <root>/image/<driver>/layerdb/sha256/<chain id>/cache-id     the driver's name of the layer
    <root>/vfs/dir/<cache id>/...                                (vfs)
    <root>/overlay2/<cache id>/diff/...                          (overlay2)

``tar-split.json.gz`` is one JSON object per line: ``{"type": 2, "payload":
base64}`` is raw tar bytes, ``{"type": 1, "name": ..., "size": n}`` is the
content of a file of the layer (``name_raw``, base64, when the name is not
UTF-8). Concatenated in order they are exactly the bytes the engine's
``save`` would send for that layer: it builds them the same way (moby
``layer/layer_store.go``, ``assembleTarTo``).

Only where this process can read the data root (root on the engine's host).
The caller checks the diff id while the bytes stream, and falls back to
``docker save`` for anything that fails.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from typing import Iterator

from ..errors import StoreError
from ..layers.streams import Reader

_CHUNK = 1 << 20


class Unavailable(StoreError):
    """This layer cannot be read from the data root (another driver, a file missing...)."""


def layer_dir(root: str, driver: str, cache_id: str) -> str:
    if driver == "vfs":
        return os.path.join(root, "vfs", "dir", cache_id)
    if driver == "overlay2":
        return os.path.join(root, "overlay2", cache_id, "diff")
    raise Unavailable(f"layers of the {driver} storage driver are read through docker save")


def _inside(top: str, name: str) -> str:
    """``name`` under ``top``, as Go's filepath.Join cleans it, never above ``top``."""
    from ..layers.merge import _clamp

    clean = _clamp(name)
    return top if clean == "." else os.path.join(top, clean)


def chunks(root: str, driver: str, layerdb: str) -> Iterator[bytes]:
    """The layer's tar bytes, in chunks of at most 1 MiB."""
    try:
        with open(os.path.join(layerdb, "cache-id"), encoding="ascii") as f:
            cache_id = f.read().strip()
        meta = gzip.open(os.path.join(layerdb, "tar-split.json.gz"), "rb")
    except OSError as err:
        raise Unavailable(f"no tar-split metadata in {layerdb}: {err.strerror}") from None
    top = layer_dir(root, driver, cache_id)
    if not os.path.isdir(top):
        raise Unavailable(f"the layer's directory {top} is not there")
    with meta:
        for line in meta:
            if not line.strip():
                continue
            e = json.loads(line)
            kind = e.get("type")
            if kind == 2:
                payload = e.get("payload")
                if payload:
                    yield base64.b64decode(payload)
            elif kind == 1:
                size = int(e.get("size") or 0)
                if not size:
                    continue
                name = e.get("name")
                if not name and e.get("name_raw"):
                    name = base64.b64decode(e["name_raw"]).decode("utf-8", "surrogateescape")
                path = _inside(top, name or "")
                try:
                    data = open(path, "rb", buffering=0)
                except OSError as err:
                    raise Unavailable(f"{path}: {err.strerror}") from None
                with data:
                    left = size
                    while left:
                        b = data.read(min(_CHUNK, left))
                        if not b:
                            raise Unavailable(f"{path} is shorter than the layer says ({size} bytes)")
                        left -= len(b)
                        yield b
            else:
                raise Unavailable(f"unknown tar-split entry type {kind!r} in {layerdb}")


class TarSplitStream(Reader):
    """A file-like view of :func:`chunks` (reads return at most what one chunk has left)."""

    def __init__(self, it: Iterator[bytes]) -> None:
        self._it = it
        self._cur = memoryview(b"")

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            rest, self._cur = bytes(self._cur) + b"".join(self._it), memoryview(b"")
            return rest
        while not self._cur:
            try:
                self._cur = memoryview(next(self._it))
            except StopIteration:
                return b""
        if n >= len(self._cur):
            out, self._cur = self._cur, memoryview(b"")
        else:
            out, self._cur = self._cur[:n], self._cur[n:]
        return bytes(out)
