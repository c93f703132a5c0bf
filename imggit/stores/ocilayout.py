"""An OCI image layout directory (and the embedded store, which is one).

Tags are ``org.opencontainers.image.ref.name`` annotations on the entries of
``index.json``; many tags live in one layout. Blobs are written to a
temporary file, verified, then renamed into ``blobs/sha256/``; ``index.json``
is replaced atomically, under an exclusive lock (``.imggit-lock``), so two
imggit processes never lose each other's tags. Every blob read is checked
against its digest.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Any, BinaryIO, Iterator, Sequence

from .. import platforms
from ..config import lock_timeout
from ..errors import FormatError, LockTimeout, RefError, StoreError, UsageError
from ..layers.compress import compressor, sniff
from ..layers.streams import DigestReader, HashingWriter
from ..model import (
    CONTAINERD_NAME_ANNOTATION, INDEX_TYPES, OCI_INDEX, REF_NAME_ANNOTATION, Config, Descriptor, Image,
    Index, Layer, Manifest, dump_json, layer_media_type, media_family, declared_compression, is_foreign,
    sha256_digest,
)
from .base import (
    Store, WriteRequest, WriteResult, build_manifest, config_media_type, manifest_fits,
    match_id, pick_one,
)

LAYOUT_FILE = "oci-layout"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
LOCK_FILE = ".imggit-lock"
TMP_DIR = ".imggit-tmp"


def convert_media_type(mt: str, family: str) -> str:
    """The same kind of layer in the other media-type family."""
    if is_foreign(mt) or media_family(mt) == family:
        return mt
    return layer_media_type(family, declared_compression(mt))


class OCILayout(Store):
    transport = "oci"
    default_compression = "gzip"

    def __init__(self, path: str, *, label: str | None = None, create: bool = False,
                 platform: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.label = label
        self.platform = platform
        self._diffs: dict[str, Descriptor] | None = None
        if create:
            if os.path.exists(self.path) and not os.path.isdir(self.path):
                raise UsageError(f"{self.path} is a file, not an OCI layout directory",
                                 hint="write a file with docker-archive:FILE or oci-archive:FILE")
            if os.path.isdir(self.path) and not os.path.exists(os.path.join(self.path, LAYOUT_FILE)) \
                    and any(not n.startswith(".") for n in os.listdir(self.path)):
                raise UsageError(f"{self.path} is a directory with other files in it, not an OCI layout",
                                 hint="name a new or empty directory")
            self._init()
        elif not os.path.exists(os.path.join(self.path, LAYOUT_FILE)):
            if not os.path.exists(self.path):
                raise RefError(f"{self.describe()} does not exist")
            raise RefError(f"{self.describe()} is not an OCI image layout (no {LAYOUT_FILE} file)")

    # --- basics -------------------------------------------------------------------

    def describe(self) -> str:
        return self.label or f"OCI layout {self.path}"

    def _init(self) -> None:
        os.makedirs(os.path.join(self.path, "blobs", "sha256"), exist_ok=True)
        layout = os.path.join(self.path, LAYOUT_FILE)
        if not os.path.exists(layout):
            self._atomic_write(layout, LAYOUT_VERSION)
        index = os.path.join(self.path, "index.json")
        if not os.path.exists(index):
            self._atomic_write(index, dump_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}))

    def _atomic_write(self, dest: str, data: bytes) -> None:
        d = os.path.dirname(dest)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def blob_file(self, digest: str) -> str:
        alg, _, hexd = digest.partition(":")
        return os.path.join(self.path, "blobs", alg, hexd)

    def has_blob(self, digest: str) -> bool:
        return os.path.exists(self.blob_file(digest))

    def read_blob(self, digest: str, size: int | None, what: str) -> bytes:
        path = self.blob_file(digest)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise StoreError(f"{self.describe()} lacks blob {digest} ({what})") from None
        if size is not None and len(data) != size:
            raise FormatError(f"{what} in {self.describe()}: expected {size} bytes, found {len(data)}")
        got = sha256_digest(data)
        if got != digest:
            from ..errors import DigestMismatch

            raise DigestMismatch(f"{what} in {self.describe()}: digest mismatch: blob {digest} hashes to {got}")
        return data

    def _read_index(self) -> Index:
        path = os.path.join(self.path, "index.json")
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise FormatError(f"{self.describe()} has no index.json") from None
        return Index.parse(raw, f"index.json of {self.describe()}")

    # --- reading ----------------------------------------------------------------------

    def _entries(self) -> list[Descriptor]:
        return list(self._read_index().manifests)

    def _load(self, desc: Descriptor, tag: str | None) -> Image:
        what = f"manifest {desc.digest[:19]}"
        raw = self.read_blob(desc.digest, desc.size, what)
        extra: dict[str, Any] = {"descriptor": desc}
        mt = desc.media_type
        if mt in INDEX_TYPES or _looks_like_index(raw):
            idx = Index.parse(raw, what)
            chosen = platforms.select(idx.manifests, self.platform, f"{tag or desc.digest} in {self.describe()}")
            extra["index"] = idx
            extra["platform"] = platforms.describe(chosen.platform)
            desc = chosen
            raw = self.read_blob(desc.digest, desc.size, f"manifest {desc.digest[:19]}")
        manifest = Manifest.parse(raw, desc.media_type, f"manifest {desc.digest[:19]}")
        craw = self.read_blob(manifest.config.digest, manifest.config.size, "config")
        config = Config.parse(craw, f"config {manifest.config.digest[:19]}")
        return Image.assemble(config, manifest, name=tag, source=self.describe(), extra=extra)

    def list_images(self) -> list[tuple[str, Image]]:
        out = []
        for desc in self._entries():
            tag = desc.annotations.get(REF_NAME_ANNOTATION)
            if tag:
                out.append((tag, self._load(desc, tag)))
        return out

    def get(self, name: str | None) -> Image:
        entries = self._entries()
        if name is None:
            if not entries:
                raise RefError(f"{self.describe()} holds no image")
            if len(entries) == 1:
                d = entries[0]
                return self._load(d, d.annotations.get(REF_NAME_ANNOTATION))
            return pick_one([(d.annotations.get(REF_NAME_ANNOTATION) or d.digest, self._load(d, None))
                             for d in entries], self.describe())
        if "@" in name:
            # NAME@DIGEST or @DIGEST: a manifest digest (as registries and the engine mean it), or an image id
            digest = name.partition("@")[2]
            for d in entries:
                if d.digest == digest:
                    return self._load(d, d.annotations.get(REF_NAME_ANNOTATION))
            for d in entries:
                img = self._load(d, d.annotations.get(REF_NAME_ANNOTATION))
                if img.id == digest:
                    return img
            if self.has_blob(digest):
                try:
                    return self._load(Descriptor("", digest, os.path.getsize(self.blob_file(digest))), None)
                except FormatError:
                    pass
            raise RefError(f"no image with digest {digest} in {self.describe()}")
        for d in entries:
            if d.annotations.get(REF_NAME_ANNOTATION) == name:
                return self._load(d, name)
        images = [(d.annotations.get(REF_NAME_ANNOTATION) or "", self._load(d, d.annotations.get(REF_NAME_ANNOTATION)))
                  for d in entries]
        found = match_id(images, name, self.describe())
        if found is not None:
            return found
        raise RefError(f"no image {name!r} in {self.describe()}")

    def blob_path(self, image: Image, index: int) -> str | None:
        p = self.blob_file(image.layers[index].digest)
        return p if os.path.exists(p) else None

    def open_blob(self, image: Image, index: int) -> BinaryIO:
        layer = image.layers[index]
        path = self.blob_file(layer.digest)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            if layer.foreign:
                raise StoreError(f"layer {index} is a foreign layer whose blob is not in {self.describe()}"
                                 + (f" (it lives at {', '.join(layer.urls)})" if layer.urls else "")) from None
            raise StoreError(f"{self.describe()} lacks the blob of layer {index} ({layer.digest})") from None
        return DigestReader(f, layer.digest, layer.size, f"layer {index} ({layer.digest[:19]}) in {self.describe()}")  # type: ignore[return-value]

    def diff_map(self) -> dict[str, Descriptor]:
        """diff id -> a layer blob already here with that content (any compression)."""
        if self._diffs is None:
            found: dict[str, Descriptor] = {}
            for desc in self._entries():
                try:
                    img = self._load(desc, None)
                except Exception:
                    continue
                for layer in img.layers:
                    if not layer.foreign and layer.diff_id not in found and self.has_blob(layer.digest):
                        found[layer.diff_id] = layer.descriptor()
            self._diffs = found
        return self._diffs

    def needed_layers(self, layers: Sequence[Layer]) -> set[int]:
        diffs = self.diff_map()
        return {i for i, l in enumerate(layers)
                if not l.foreign and not self.has_blob(l.digest)
                and not (l.diff_id in diffs and declared_compression(l.media_type) is None and l.digest == l.diff_id)}

    # --- writing ---------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Exclusive lock on the layout; waits up to ``timeout`` s, then names the holder."""
        timeout = lock_timeout() if timeout is None else timeout
        os.makedirs(self.path, exist_ok=True)
        lock_path = os.path.join(self.path, LOCK_FILE)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = _read_holder(lock_path)
                        raise LockTimeout(
                            f"{self.describe()} is locked by another process{holder}; gave up after {timeout:g}s",
                            hint="wait for it to finish, or raise IMGGIT_LOCK_TIMEOUT") from None
                    time.sleep(0.05)
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "command": " ".join(sys.argv)[:300], "since": time.time()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _tmp(self) -> str:
        d = os.path.join(self.path, TMP_DIR)
        os.makedirs(d, exist_ok=True)
        return d

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        dest = self.blob_file(digest)
        if not os.path.exists(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._tmp())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        return digest

    def put_stream(self, src: BinaryIO, codec: str | None = None, level: int | None = None) -> tuple[str, int]:
        """Copy a stream into a new blob (compressing it with ``codec``); returns digest and size."""
        fd, tmp = tempfile.mkstemp(dir=self._tmp())
        try:
            with os.fdopen(fd, "wb") as f:
                hw = HashingWriter(f)  # type: ignore[arg-type]
                w = compressor(hw, codec, level)  # type: ignore[arg-type]
                while True:
                    b = src.read(1 << 20)
                    if not b:
                        break
                    w.write(b)
                w.close()
                f.flush()
            digest = hw.digest
            dest = self.blob_file(digest)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.exists(dest):
                os.unlink(tmp)
            else:
                os.replace(tmp, dest)
            return digest, hw.size
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def put_file(self, path: str, digest: str) -> None:
        """Adopt a verified local file as a blob (hard link when possible, else copy)."""
        dest = self.blob_file(digest)
        if os.path.exists(dest):
            return
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = os.path.join(self._tmp(), os.path.basename(dest) + f".{os.getpid()}")
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
        os.replace(tmp, dest)

    def write_layers(self, req: WriteRequest) -> tuple[list[Descriptor], int, int, int]:
        """Store every layer blob the layout lacks; returns final descriptors and counts."""
        family = req.family or (req.manifest.family if req.manifest else "oci")
        codec = self.default_compression if req.compress == "auto" else req.compress
        if codec == "zstd":
            family = "oci"
        descs: list[Descriptor] = []
        written = reused = nbytes = 0
        for i, li in enumerate(req.layers):
            layer = li.layer
            mt = convert_media_type(layer.media_type, family)
            if self.has_blob(layer.digest) or layer.foreign and li.open is None:
                descs.append(Descriptor(mt, layer.digest, layer.size if layer.size is not None
                                        else os.path.getsize(self.blob_file(layer.digest)),
                                        layer.urls, layer.annotations))
                reused += 1
                continue
            same = self.diff_map().get(layer.diff_id)
            plain_source = declared_compression(layer.media_type) is None and layer.digest == layer.diff_id
            if same is not None and plain_source and (li.open is None or codec):
                # the same content is here already, compressed: no need to compress it again
                descs.append(same.with_(media_type=convert_media_type(same.media_type, family)))
                reused += 1
                continue
            if li.path is not None and not layer.foreign:
                # a verified local file with exactly the stored bytes (a registry's blob cache):
                # adopted as it is (hard link when possible) unless it must be compressed here
                with open(li.path, "rb") as f:
                    stored = sniff(f.read(8))
                if stored is not None or not codec:
                    self.put_file(li.path, layer.digest)
                    if stored is None:
                        mt = layer_media_type(family, None)
                    elif stored != declared_compression(mt):
                        mt = layer_media_type(family, stored)
                    size = os.path.getsize(li.path)
                    written += 1
                    nbytes += size
                    descs.append(Descriptor(mt, layer.digest, size, layer.urls, layer.annotations))
                    if self._diffs is not None:
                        self._diffs.setdefault(layer.diff_id, descs[-1])
                    continue
            src = li.opener()
            try:
                head = src.read(8)
                stored = sniff(head)
                from ..layers.compress import _Peekable

                stream = _Peekable(head, src)
                if stored is None and codec:
                    digest, size = self.put_stream(stream, codec, req.compress_level)  # type: ignore[arg-type]
                    mt = layer_media_type(family, codec)
                else:
                    digest, size = self.put_stream(stream)  # type: ignore[arg-type]
                    if stored is None:
                        mt = layer_media_type(family, None) if not layer.foreign else mt
                    elif stored != declared_compression(mt) and not layer.foreign:
                        mt = layer_media_type(family, stored)
                if codec is None and stored is None and digest != layer.digest:
                    raise FormatError(f"layer {i}: copied bytes hash to {digest}, expected {layer.digest}")
            finally:
                src.close()
            written += 1
            nbytes += size
            descs.append(Descriptor(mt, digest, size, layer.urls, layer.annotations))
            if self._diffs is not None:
                self._diffs.setdefault(layer.diff_id, descs[-1])
        return descs, written, reused, nbytes

    def write(self, req: WriteRequest) -> WriteResult:
        descs, written, reused, nbytes = self.write_layers(req)
        config_digest = self.put_bytes(req.config.raw)
        assert config_digest == req.config.digest
        if manifest_fits(req.manifest, req.config, descs, req.annotations):
            manifest_raw = req.manifest.raw  # type: ignore[union-attr]
            manifest = req.manifest
        else:
            # a new manifest in a layout is always an OCI one (what umoci and skopeo expect there)
            descs = [d.with_(media_type=convert_media_type(d.media_type, "oci")) for d in descs]
            manifest_raw = build_manifest(req.config, descs, "oci", req.annotations, config_media_type("oci"))
            manifest = Manifest.parse(manifest_raw)
        digest = self.put_bytes(manifest_raw)
        entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": digest, "size": len(manifest_raw)}  # type: ignore[union-attr]
        previous = None
        with self.lock():
            index = self._read_index()
            data = dict(index.data)
            items = list(data.get("manifests") or [])
            if req.tag:
                kept = []
                for it in items:
                    if (it.get("annotations") or {}).get(REF_NAME_ANNOTATION) == req.tag:
                        previous = it.get("digest")
                        if previous != digest:
                            # the image the tag left stays in the layout, untagged (like a dangling
                            # image of the engine), reachable by id until imggit gc removes it
                            old = {k: v for k, v in it.items() if k != "annotations"}
                            if not any(x.get("digest") == previous and not (x.get("annotations") or {})
                                       .get(REF_NAME_ANNOTATION) for x in items):
                                kept.append(old)
                    else:
                        kept.append(it)
                items = [it for it in kept if not (it.get("digest") == digest and not
                                                   (it.get("annotations") or {}).get(REF_NAME_ANNOTATION))]
                entry["annotations"] = {REF_NAME_ANNOTATION: req.tag}
                if self.label:  # the embedded store keeps full names like containerd does
                    entry["annotations"][CONTAINERD_NAME_ANNOTATION] = req.tag
            elif any(it.get("digest") == digest for it in items):
                entry = {}
            if entry:
                items.append(entry)
            data["manifests"] = items
            data.setdefault("schemaVersion", 2)
            self._atomic_write(os.path.join(self.path, "index.json"), dump_json(data))
        prev_id = None
        if previous:
            with contextlib.suppress(Exception):
                prev_id = self._load(Descriptor("", previous, os.path.getsize(self.blob_file(previous))), None).id
        img = Image.assemble(req.config, manifest, name=req.tag, source=self.describe())  # type: ignore[arg-type]
        return WriteResult(img, written, nbytes, reused, prev_id)

    def delete_tag(self, name: str) -> None:
        with self.lock():
            index = self._read_index()
            data = dict(index.data)
            items = [it for it in (data.get("manifests") or [])
                     if (it.get("annotations") or {}).get(REF_NAME_ANNOTATION) != name]
            if len(items) == len(data.get("manifests") or []):
                raise RefError(f"no tag {name!r} in {self.describe()}")
            data["manifests"] = items
            self._atomic_write(os.path.join(self.path, "index.json"), dump_json(data))


def _looks_like_index(raw: bytes) -> bool:
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    return isinstance(data, dict) and "manifests" in data and "layers" not in data


def _read_holder(lock_path: str) -> str:
    try:
        with open(lock_path, "rb") as f:
            info = json.loads(f.read() or b"{}")
    except (OSError, ValueError):
        return ""
    if not info:
        return ""
    since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
    return f" (pid {info.get('pid')} on {info.get('host')}, since {since}: {info.get('command', '')})"
