"""Turn stored layer blobs into verified, uncompressed, indexed tar files on disk.

The tar engine wants random access to each layer it merges or inspects: an
uncompressed tar file plus the list of its members. A blob already stored
uncompressed on local disk is used where it lies (hashed once to verify
it); anything else is decompressed once into a spool file while both the
stored digest and the diff id are checked. Headers are then read by
seeking, which costs one small read per member.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Iterable

from ..errors import DigestMismatch, FormatError, ImggitError
from ..model import Image, Layer, short
from . import tarfmt
from .compress import open_decompressed, sniff

if TYPE_CHECKING:
    from ..stores.base import Store


@dataclass
class LayerFile:
    index: int                      # layer index in the image
    layer: Layer
    path: str                       # an uncompressed tar file
    members: list[tarfmt.Member]
    temporary: bool = True


def index_file(path: str, what: str) -> list[tarfmt.Member]:
    with open(path, "rb", buffering=0) as f:
        return tarfmt.scan(f, what)  # type: ignore[arg-type]


def spool_stream(src: BinaryIO, dest: str, diff_id: str, what: str) -> None:
    """Copy an uncompressed layer stream to ``dest``, checking its diff id."""
    h = hashlib.sha256()
    with open(dest, "wb") as out:
        while True:
            b = src.read(1 << 20)
            if not b:
                break
            h.update(b)
            out.write(b)
    got = "sha256:" + h.hexdigest()
    if got != diff_id:
        with contextlib.suppress(OSError):
            os.unlink(dest)
        raise DigestMismatch(f"{what}: diff id mismatch: the config says {diff_id}, its content hashes to {got}")


def hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def _fetch_one(store: "Store", image: Image, i: int, workdir: str) -> LayerFile:
    layer = image.layers[i]
    what = f"layer {i} ({short(layer.diff_id)}) of {image.describe()}"
    local = store.blob_path(image, i)
    if local is not None:
        with open(local, "rb") as f:
            plain = sniff(f.read(8)) is None
        if plain:
            got = hash_file(local)
            if got != layer.digest:
                raise DigestMismatch(f"{what}: blob hashes to {got}, expected {layer.digest}")
            if got != layer.diff_id:
                raise DigestMismatch(f"{what}: diff id mismatch: expected {layer.diff_id}, got {got}")
            return LayerFile(i, layer, local, _index(local, what), temporary=False)
    dest = os.path.join(workdir, f"layer-{i}-{short(layer.diff_id)}.tar")
    raw = store.open_blob(image, i)
    try:
        stream, _codec = open_decompressed(raw, what)
        try:
            spool_stream(stream, dest, layer.diff_id, what)
        except ImggitError:
            raise
        except Exception as e:  # zlib, ISA-L, zstd and lzma each have their own error types
            raise FormatError(f"{what} could not be decompressed: {e}") from None
        if hasattr(raw, "drain"):
            raw.drain()  # the compressed stream's own digest is checked at its end
    finally:
        raw.close()
    return LayerFile(i, layer, dest, _index(dest, what))


def _index(path: str, what: str) -> list[tarfmt.Member]:
    try:
        return index_file(path, what)
    except FormatError as e:
        raise FormatError(f"{what} is not a valid layer tar: {e}") from None


def materialize(store: "Store", image: Image, indices: Iterable[int], workdir: str,
                jobs: int = 2, index_only: Iterable[int] = ()) -> dict[int, LayerFile]:
    """Verified, uncompressed, indexed copies (or the originals) of the given layers.

    Layers in ``index_only`` are only indexed (``path`` is empty): from the
    cache when it has them, else by reading them once.
    """
    from .index import index_layers, load_cached, save_cached

    wanted = sorted(set(indices))
    headers = sorted(set(index_only) - set(wanted))
    cached = {}
    for i in headers:
        members = load_cached(image.layers[i].diff_id)
        if members is not None:
            cached[i] = LayerFile(i, image.layers[i], "", members, temporary=False)
    headers = [i for i in headers if i not in cached]
    spool = getattr(store, "spool_layers", None)
    if spool is not None:
        out = spool(image, wanted, workdir, index_only=headers)
    else:
        if len(wanted) <= 1 or jobs <= 1:
            out = {i: _fetch_one(store, image, i, workdir) for i in wanted}
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = {i: pool.submit(_fetch_one, store, image, i, workdir) for i in wanted}
                out = {i: f.result() for i, f in futures.items()}
        for i, members in index_layers(store, image, headers).items():
            out[i] = LayerFile(i, image.layers[i], "", members, temporary=False)
    for i, lf in out.items():
        if lf.path and load_cached(lf.layer.diff_id) is None:
            with contextlib.suppress(OSError):
                save_cached(lf.layer.diff_id, lf.members)
    out.update(cached)
    return out


def cleanup(files: dict[int, LayerFile]) -> None:
    for lf in files.values():
        if lf.temporary and lf.path:
            with contextlib.suppress(OSError):
                os.unlink(lf.path)


def rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
