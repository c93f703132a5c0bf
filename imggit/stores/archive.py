"""``docker save`` archives (docker-archive:) and OCI layouts in a tar (oci-archive:).

Reading indexes the archive's members by scanning headers only (seeking
over data), then serves every blob as a verified window of the file; a
gzip-compressed archive is inflated once to a temporary file first. Both
``docker save`` shapes are read: the legacy one (``<id>/layer.tar``,
``<config>.json``, symlinks for repeated layers) and the Docker 25+ one
(an OCI layout whose ``manifest.json`` points into ``blobs/``).

Writing produces the Docker 25 shape for docker-archive (``oci-layout``,
``index.json``, ``blobs/``, and a ``manifest.json`` pointing into
``blobs/``), which both engine image stores load, and a plain OCI layout
for oci-archive. Files are written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable

from .. import platforms
from ..errors import FormatError, RefError, StoreError, UsageError
from ..layers import tarfmt
from ..layers.compress import compressor, open_decompressed, sniff
from ..layers.streams import DigestReader, HashingWriter, SliceReader
from ..model import (
    CONTAINERD_NAME_ANNOTATION, INDEX_TYPES, OCI_INDEX, REF_NAME_ANNOTATION,
    Config, Descriptor, Image, Index, Layer, Manifest, chain_ids, dump_json, layer_media_type,
    sha256_digest,
)
from .base import (
    LayerInput, Store, WriteRequest, tmp_root, WriteResult, build_manifest, config_media_type, manifest_fits,
    match_id, pick_one,
)
from .ocilayout import convert_media_type


# --- reading a tar file by member name -----------------------------------------------


@dataclass
class _Entry:
    name: str
    type: str
    offset: int
    size: int
    linkname: str


class TarFile:
    """Random access to the members of a tar archive on disk."""

    def __init__(self, path: str, what: str) -> None:
        self.what = what
        self._tmp: str | None = None
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise RefError(f"{what} does not exist") from None
        except IsADirectoryError:
            raise RefError(f"{what} is a directory, not an archive file") from None
        with f:
            head = f.read(8)
            codec = sniff(head)
            if codec is not None:
                f.seek(0)
                stream, _ = open_decompressed(f, what)


                fd, self._tmp = tempfile.mkstemp(prefix="imggit-archive-", dir=tmp_root())
                with os.fdopen(fd, "wb") as out:
                    try:
                        shutil.copyfileobj(stream, out, 1 << 20)
                    except Exception as e:  # each codec has its own error type
                        raise FormatError(f"{what} is compressed but could not be decompressed: {e}") from None
                path = self._tmp
        self.path = path
        self.entries: dict[str, _Entry] = {}
        with open(path, "rb") as f:
            try:
                for m in tarfmt.TarReader(f, seekable=True, what=what):
                    self.entries[m.path] = _Entry(m.path, m.type, m.data_offset, m.size, m.linkname)
            except FormatError as e:
                detail = str(e).replace(what, "it").replace("it is ", "")
                raise FormatError(f"{what} is not a valid tar archive: {detail}") from None

    def close(self) -> None:
        if self._tmp:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def __del__(self) -> None:
        self.close()

    def resolve(self, name: str, depth: int = 0) -> _Entry:
        key = tarfmt.normalize(name)
        e = self.entries.get(key)
        if e is None:
            raise FormatError(f"{self.what} has no member {name!r}")
        if e.type == tarfmt.SYMLINK and depth < 16:
            target = e.linkname
            if not target.startswith("/"):
                target = posixpath.join(posixpath.dirname(key), target)
            return self.resolve(posixpath.normpath(target).lstrip("/"), depth + 1)
        if e.type == tarfmt.HARDLINK and depth < 16:
            return self.resolve(e.linkname, depth + 1)
        return e

    def has(self, name: str) -> bool:
        return tarfmt.normalize(name) in self.entries

    def read(self, name: str) -> bytes:
        e = self.resolve(name)
        with open(self.path, "rb") as f:
            f.seek(e.offset)
            data = f.read(e.size)
        if len(data) != e.size:
            raise FormatError(f"{self.what} is truncated (member {name!r})")
        return data

    def open(self, name: str) -> BinaryIO:
        e = self.resolve(name)
        return SliceReader(open(self.path, "rb"), e.offset, e.size)  # type: ignore[return-value]

    def head(self, name: str, n: int = 8) -> bytes:
        e = self.resolve(name)
        with open(self.path, "rb") as f:
            f.seek(e.offset)
            return f.read(min(n, e.size))

    def size(self, name: str) -> int:
        return self.resolve(name).size


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except ValueError as e:
        raise FormatError(f"{what} is not valid JSON: {e}") from None


# --- docker names ------------------------------------------------------------------

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def split_docker_name(name: str) -> tuple[str, str]:
    """'app' -> ('app', 'latest'); 'reg:5000/a/b:1' -> ('reg:5000/a/b', '1'); validated."""
    if "@" in name:
        raise UsageError(f"{name!r} is a digest reference; a tag is needed here")
    repo, tag = name, "latest"
    i = name.rfind(":")
    if i > name.rfind("/"):
        repo, tag = name[:i], name[i + 1:]
    if not _TAG_RE.match(tag):
        raise UsageError(f"invalid tag {tag!r} in {name!r}",
                         hint="a tag is up to 128 letters, digits, '_', '.' or '-'")
    parts = repo.split("/")
    start = 1 if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost") else 0
    if not repo or not all(_COMPONENT_RE.match(p) for p in parts[start:]):
        raise UsageError(f"invalid image name {repo!r}",
                         hint="use lowercase letters, digits and separators (. _ -), e.g. app:1")
    return repo, tag


def full_docker_name(name: str) -> str:
    repo, tag = split_docker_name(name)
    parts = repo.split("/")
    if len(parts) == 1:
        repo = "docker.io/library/" + repo
    elif not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        repo = "docker.io/" + repo
    return f"{repo}:{tag}"


def short_docker_name(name: str) -> str:
    repo, tag = split_docker_name(name)
    for prefix in ("docker.io/library/", "docker.io/"):
        if repo.startswith(prefix):
            repo = repo[len(prefix):]
            break
    return f"{repo}:{tag}"


# --- docker-archive -------------------------------------------------------------------


class DockerArchive(Store):
    transport = "docker-archive"
    default_compression = None

    def __init__(self, path: str, *, platform: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.platform = platform
        self._tar: TarFile | None = None

    def describe(self) -> str:
        return f"docker archive {self.path}"

    @property
    def tar(self) -> TarFile:
        if self._tar is None:
            self._tar = TarFile(self.path, self.describe())
        return self._tar

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def _items(self) -> list[dict[str, Any]]:
        tar = self.tar
        if not tar.has("manifest.json"):
            if tar.has("index.json"):
                raise FormatError(f"{self.describe()} has no manifest.json (it looks like an OCI archive)",
                                  hint=f"read it as oci-archive:{self.path}")
            raise FormatError(f"{self.describe()} is not a docker save archive (no manifest.json)")
        items = _json(tar.read("manifest.json"), f"manifest.json of {self.describe()}")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise FormatError(f"manifest.json of {self.describe()} is not a list of images")
        return items

    def _oci_manifests(self) -> dict[str, Manifest]:
        """Docker 25+ archives: the OCI manifests in index.json, by config digest."""
        out: dict[str, Manifest] = {}
        tar = self.tar
        if not tar.has("index.json"):
            return out
        try:
            idx = Index.parse(tar.read("index.json"), f"index.json of {self.describe()}")
            for d in idx.manifests:
                name = "blobs/" + d.digest.replace(":", "/")
                if not tar.has(name):
                    continue
                raw = tar.read(name)
                if d.media_type in INDEX_TYPES:
                    continue
                if sha256_digest(raw) != d.digest:
                    continue
                m = Manifest.parse(raw, d.media_type)
                out[m.config.digest] = m
        except FormatError:
            return {}
        return out

    def _load(self, item: dict[str, Any], tag: str | None, manifests: dict[str, Manifest]) -> Image:
        tar = self.tar
        cfg_name = item.get("Config")
        if not isinstance(cfg_name, str):
            raise FormatError(f"manifest.json of {self.describe()}: an entry has no Config")
        raw = tar.read(cfg_name)
        config = Config.parse(raw, f"config {cfg_name}")
        base = posixpath.basename(cfg_name).removesuffix(".json")
        if len(base) == 64 and "sha256:" + base != config.digest:
            from ..errors import DigestMismatch

            raise DigestMismatch(f"config {cfg_name} in {self.describe()} does not match its name "
                                 f"(hashes to {config.digest})")
        paths = item.get("Layers") or []
        diff_ids = config.diff_ids
        if len(paths) != len(diff_ids):
            raise FormatError(f"{self.describe()}: manifest.json lists {len(paths)} layer file(s) but the config "
                              f"has {len(diff_ids)} diff id(s)")
        sources = item.get("LayerSources") or {}
        manifest = manifests.get(config.digest)
        layers = []
        chains = chain_ids(diff_ids)
        for i, (p, d, c) in enumerate(zip(paths, diff_ids, chains)):
            foreign = sources.get(d)
            if not tar.has(p) and foreign:
                desc = Descriptor.from_dict(foreign, "LayerSources entry")
                layers.append(Layer(d, c, desc.digest, desc.media_type, desc.size, desc.urls, desc.annotations))
                continue
            size = tar.size(p)
            codec = sniff(tar.head(p))
            name = posixpath.basename(p)
            if codec is None:
                digest = d
            elif len(name) == 64 and posixpath.dirname(p) == "blobs/sha256":
                digest = "sha256:" + name
            else:  # a compressed layer.tar from some other tool: its digest needs one pass
                h = HashingWriter()
                with tar.open(p) as f:
                    shutil.copyfileobj(f, h, 1 << 20)
                digest = h.digest
            mt = layer_media_type("docker", codec) if manifest is None else manifest.layers[i].media_type
            layers.append(Layer(d, c, digest, mt, size))
        tags = item.get("RepoTags") or []
        return Image.assemble(config, manifest, layers, name=tag or (tags[0] if tags else None),
                              source=self.describe(), extra={"paths": list(paths), "tags": list(tags)})

    def list_images(self) -> list[tuple[str, Image]]:
        out = []
        manifests = self._oci_manifests()
        for item in self._items():
            for t in item.get("RepoTags") or []:
                out.append((t, self._load(item, t, manifests)))
        return out

    def get(self, name: str | None) -> Image:
        items = self._items()
        manifests = self._oci_manifests()
        if name is None:
            if len(items) == 1:
                return self._load(items[0], None, manifests)
            return pick_one([(",".join(i.get("RepoTags") or []) or str(n), self._load(i, None, manifests))
                             for n, i in enumerate(items)], self.describe())
        if name.startswith("@") and name[1:].isdigit():
            n = int(name[1:])
            if n >= len(items):
                raise RefError(f"{self.describe()} has {len(items)} image(s); there is no @{n}")
            return self._load(items[n], None, manifests)
        if "@" in name:  # NAME@DIGEST or @DIGEST: a manifest digest or an image id
            digest = name.partition("@")[2]
            for i in items:
                img = self._load(i, None, manifests)
                if digest in (img.id, img.digest):
                    return img
            raise RefError(f"no image with digest {digest} in {self.describe()}")
        wanted = {name}
        with contextlib.suppress(UsageError):
            wanted.add(short_docker_name(name))
        for item in items:
            for t in item.get("RepoTags") or []:
                with contextlib.suppress(UsageError):
                    if t in wanted or short_docker_name(t) in wanted:
                        return self._load(item, t, manifests)
        images = [(",".join(i.get("RepoTags") or []), self._load(i, None, manifests)) for i in items]
        found = match_id(images, name, self.describe())
        if found is not None:
            return found
        raise RefError(f"no image {name!r} in {self.describe()}")

    def open_blob(self, image: Image, index: int) -> BinaryIO:
        layer = image.layers[index]
        paths = image.extra.get("paths") or []
        if index >= len(paths) or not self.tar.has(paths[index]):
            raise StoreError(f"{self.describe()} does not contain layer {index} ({layer.digest[:19]})"
                             + (" (a foreign layer)" if layer.foreign else ""))
        return DigestReader(self.tar.open(paths[index]), layer.digest, layer.size,  # type: ignore[return-value]
                            f"layer {index} ({layer.digest[:19]}) in {self.describe()}")

    def normalize_tag(self, name: str) -> str:
        return short_docker_name(name)

    def write(self, req: WriteRequest) -> WriteResult:
        tag = short_docker_name(req.tag) if req.tag else None
        return write_docker_archive(self.path, req, tag)


def _layer_blobs(req: WriteRequest, codec: str | None, family: str,
                 add: Callable[[str, Callable[[Any], None], int | None], None],
                 skip: set[int] | frozenset[int] = frozenset()) -> list[Descriptor]:
    """Describe, and stream through ``add``, every layer blob of a request.

    Layers in ``skip`` are described (as their source stores them) but not
    added: a thin archive for an engine that already has them.
    """
    from ..layers.compress import _Peekable

    descs = []
    for i, li in enumerate(req.layers):
        layer = li.layer
        if i in skip or (li.open is None and layer.foreign):
            descs.append(Descriptor(convert_media_type(layer.media_type, family), layer.digest,
                                    layer.size or 0, layer.urls, layer.annotations))
            continue
        src = li.opener()
        head = src.read(8)
        stored = sniff(head)
        stream = _Peekable(head, src)
        if stored is None and codec:
            # compress into a temporary file first: the blob's name is its digest


            fd, tmp = tempfile.mkstemp(prefix="imggit-layer-", dir=tmp_root())
            try:
                with os.fdopen(fd, "wb") as f:
                    hw = HashingWriter(f)  # type: ignore[arg-type]
                    w = compressor(hw, codec, req.compress_level)  # type: ignore[arg-type]
                    shutil.copyfileobj(stream, w, 1 << 20)  # type: ignore[misc]
                    w.close()
                src.close()

                def from_tmp(out: Any, tmp: str = tmp) -> None:
                    with open(tmp, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)

                add("blobs/" + hw.digest.replace(":", "/"), from_tmp, hw.size)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            descs.append(Descriptor(layer_media_type(family, codec), hw.digest, hw.size))
            continue

        def copy(out: Any, stream: Any = stream, src: Any = src) -> None:
            try:
                shutil.copyfileobj(stream, out, 1 << 20)
                if hasattr(src, "drain"):
                    src.drain()
            finally:
                src.close()

        mt = convert_media_type(layer.media_type, family) if stored else layer_media_type(family, None)
        add("blobs/" + layer.digest.replace(":", "/"), copy, layer.size)
        descs.append(Descriptor(mt, layer.digest, layer.size if layer.size is not None else -1,
                                layer.urls, layer.annotations))
    return descs


class ArchiveWriter:
    """Writes a tar archive member by member to a temporary file, renamed into place on success."""

    def __init__(self, dest: str | None, stream: BinaryIO | None = None) -> None:
        self.dest = dest
        self.names: set[str] = set()
        if stream is not None:
            self._f = stream
            self._tmp = None
        else:
            assert dest is not None
            d = os.path.dirname(os.path.abspath(dest)) or "."
            if not os.path.isdir(d):
                raise UsageError(f"directory {d} does not exist")
            fd, self._tmp = tempfile.mkstemp(prefix=".imggit-", dir=d)
            self._f = os.fdopen(fd, "wb")
        self.bytes = 0
        self.layer_bytes = 0     # bytes of layer blobs (what a copy reports)
        self.layer_count = 0
        self.config: Config | None = None

    def add_bytes(self, name: str, data: bytes) -> None:
        if name in self.names:
            return
        self.names.add(name)
        self._f.write(tarfmt.encode_header(name, tarfmt.REGULAR, size=len(data)))
        self._f.write(data)
        self._f.write(tarfmt.padding(len(data)))
        self.bytes += len(data)

    def add_dir(self, name: str) -> None:
        if name in self.names:
            return
        self.names.add(name)
        self._f.write(tarfmt.encode_header(name.rstrip("/") + "/", tarfmt.DIRECTORY, mode=0o755))

    def add_stream(self, name: str, writer: Callable[[Any], None], size: int | None) -> int:
        """Add a member whose bytes ``writer`` produces; the size is checked (or found by spooling)."""
        if name in self.names:
            # same blob twice (a repeated layer): still consume the stream so it is verified
            h = HashingWriter()
            writer(h)
            return h.size
        self.names.add(name)
        if size is None or size < 0:
            with tempfile.TemporaryFile() as spool:
                writer(spool)
                size = spool.tell()
                spool.seek(0)
                self._f.write(tarfmt.encode_header(name, tarfmt.REGULAR, size=size))
                shutil.copyfileobj(spool, self._f, 1 << 20)
                self._f.write(tarfmt.padding(size))
                self.bytes += size
                return size
        header = tarfmt.encode_header(name, tarfmt.REGULAR, size=size)
        self._f.write(header)
        counter = HashingWriter(self._f)  # type: ignore[arg-type]
        writer(counter)
        if counter.size != size:
            raise FormatError(f"{name}: wrote {counter.size} bytes, expected {size}")
        self._f.write(tarfmt.padding(size))
        self.bytes += size
        return size

    def add_produced(self, name: str, produce: Callable[[Any], None], size: int) -> str:
        """Add a member of a known size whose bytes ``produce`` writes; returns their sha256 digest."""
        self.names.add(name)
        self._f.write(tarfmt.encode_header(name, tarfmt.REGULAR, size=size))
        counter = HashingWriter(self._f)  # type: ignore[arg-type]
        produce(counter)
        if counter.size != size:
            raise FormatError(f"{name}: produced {counter.size} bytes, expected {size}")
        self._f.write(tarfmt.padding(size))
        self.bytes += size
        return counter.digest

    def finish(self) -> None:
        self._f.write(tarfmt.END_OF_ARCHIVE)
        if self._tmp is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            os.replace(self._tmp, self.dest)  # type: ignore[arg-type]
            self._tmp = None

    def abort(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None


def docker_archive_members(req: WriteRequest, tag: str | None, out: ArchiveWriter,
                           skip_layers: Iterable[int] = (), codec: str | None = None) -> Manifest | None:
    """Write the Docker 25 shape into ``out``; layers in ``skip_layers`` are listed but not included.

    Layers with ``produce`` are written as they are made, under a name that is not their digest
    (not known yet), and the config comes from ``req.config_for`` afterwards: such an archive has
    only ``manifest.json`` (what the engine's graphdriver image store reads), no OCI index. The
    config actually written is left in ``out.config``.
    """
    produced = {i for i, li in enumerate(req.layers) if li.produce is not None}
    family = req.family or (req.manifest.family if req.manifest else "oci")
    if codec == "zstd":
        family = "oci"
    out.add_dir("blobs")
    out.add_dir("blobs/sha256")
    sizes: dict[str, int] = {}
    new_ids: dict[int, str] = {}

    def add(name: str, writer: Callable[[Any], None], size: int | None) -> None:
        sizes[name] = out.add_stream(name, writer, size)
        out.layer_bytes += sizes[name]
        out.layer_count += 1

    if produced:
        for i in sorted(produced):
            li = req.layers[i]
            name = f"imggit/new-layer-{i}.tar"
            if "imggit" not in out.names:
                out.add_dir("imggit")
            new_ids[i] = out.add_produced(name, li.produce, li.layer.size)  # type: ignore[arg-type]
            out.layer_bytes += li.layer.size or 0
            out.layer_count += 1
    rest = WriteRequest(req.config, [LayerInput(li.layer) if i in produced else li
                                     for i, li in enumerate(req.layers)], req.tag, req.manifest, req.annotations,
                        req.compress, req.compress_level, req.family)
    descs = _layer_blobs(rest, codec, family, add, frozenset(skip_layers) | produced)
    # a layer whose size its source did not know (the engine's) is measured on the way
    descs = [d if d.size >= 0 else d.with_(size=sizes["blobs/" + d.digest.replace(":", "/")]) for d in descs]
    config = req.config
    if produced:
        assert req.config_for is not None
        diff_ids = [new_ids.get(i, li.layer.diff_id) for i, li in enumerate(req.layers)]
        config = req.config_for(diff_ids)
    out.config = config
    out.add_bytes("blobs/" + config.digest.replace(":", "/"), config.raw)
    paths = [f"imggit/new-layer-{i}.tar" if i in produced else "blobs/" + d.digest.replace(":", "/")
             for i, d in enumerate(descs)]
    manifest = None
    if not produced:
        if manifest_fits(req.manifest, config, descs, req.annotations):
            manifest_raw = req.manifest.raw  # type: ignore[union-attr]
        else:
            manifest_raw = build_manifest(config, descs, family, req.annotations, config_media_type(family))
        manifest = Manifest.parse(manifest_raw)
        out.add_bytes("blobs/" + manifest.digest.replace(":", "/"), manifest_raw)
        entry: dict[str, Any] = {"mediaType": manifest.media_type, "digest": manifest.digest,
                                 "size": len(manifest_raw)}
        if tag:
            entry["annotations"] = {CONTAINERD_NAME_ANNOTATION: full_docker_name(tag),
                                    REF_NAME_ANNOTATION: split_docker_name(tag)[1]}
        out.add_bytes("index.json", dump_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]}))
    item: dict[str, Any] = {
        "Config": "blobs/" + config.digest.replace(":", "/"),
        "RepoTags": [tag] if tag else None,
        "Layers": paths,
    }
    foreign = {li.layer.diff_id: descs[i].to_dict() for i, li in enumerate(req.layers) if li.layer.foreign}
    if foreign:
        item["LayerSources"] = foreign
    out.add_bytes("manifest.json", dump_json([item]))
    if not produced:
        out.add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    return manifest


def write_docker_archive(path: str, req: WriteRequest, tag: str | None) -> WriteResult:
    codec = None if req.compress in ("auto", None) else req.compress
    out = ArchiveWriter(path)
    try:
        manifest = docker_archive_members(req, tag, out, codec=codec)
        assert manifest is not None
        out.finish()
    except BaseException:
        out.abort()
        raise
    img = Image.assemble(req.config, manifest, name=tag, source=f"docker archive {path}")
    return WriteResult(img, out.layer_count, out.layer_bytes, len(req.layers) - out.layer_count)


# --- oci-archive ------------------------------------------------------------------------


class OCIArchive(Store):
    transport = "oci-archive"
    default_compression = "gzip"

    def __init__(self, path: str, *, platform: str | None = None) -> None:
        self.path = os.path.abspath(path)
        self.platform = platform
        self._tar: TarFile | None = None

    def describe(self) -> str:
        return f"OCI archive {self.path}"

    @property
    def tar(self) -> TarFile:
        if self._tar is None:
            self._tar = TarFile(self.path, self.describe())
            if not self._tar.has("index.json"):
                if self._tar.has("manifest.json"):
                    raise FormatError(f"{self.describe()} has no index.json (it looks like a docker save archive)",
                                      hint=f"read it as docker-archive:{self.path}")
                raise FormatError(f"{self.describe()} is not an OCI archive (no index.json)")
        return self._tar

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def _blob(self, digest: str, size: int | None, what: str) -> bytes:
        name = "blobs/" + digest.replace(":", "/")
        if not self.tar.has(name):
            raise StoreError(f"{self.describe()} lacks blob {digest} ({what})")
        data = self.tar.read(name)
        if (size is not None and len(data) != size) or sha256_digest(data) != digest:
            from ..errors import DigestMismatch

            raise DigestMismatch(f"{what} in {self.describe()}: blob {digest} does not match its digest")
        return data

    def _entries(self) -> list[Descriptor]:
        return list(Index.parse(self.tar.read("index.json"), f"index.json of {self.describe()}").manifests)

    def _load(self, desc: Descriptor, tag: str | None) -> Image:
        raw = self._blob(desc.digest, desc.size, "manifest")
        extra: dict[str, Any] = {}
        if desc.media_type in INDEX_TYPES:
            idx = Index.parse(raw)
            desc = platforms.select(idx.manifests, self.platform, f"{tag or desc.digest} in {self.describe()}")
            extra["platform"] = platforms.describe(desc.platform)
            raw = self._blob(desc.digest, desc.size, "manifest")
        manifest = Manifest.parse(raw, desc.media_type)
        config = Config.parse(self._blob(manifest.config.digest, manifest.config.size, "config"))
        return Image.assemble(config, manifest, name=tag, source=self.describe(), extra=extra)

    def list_images(self) -> list[tuple[str, Image]]:
        return [(d.annotations[REF_NAME_ANNOTATION], self._load(d, d.annotations[REF_NAME_ANNOTATION]))
                for d in self._entries() if d.annotations.get(REF_NAME_ANNOTATION)]

    def get(self, name: str | None) -> Image:
        entries = self._entries()
        if name is None:
            if len(entries) == 1:
                return self._load(entries[0], entries[0].annotations.get(REF_NAME_ANNOTATION))
            return pick_one([(d.annotations.get(REF_NAME_ANNOTATION) or d.digest, self._load(d, None))
                             for d in entries], self.describe())
        digest = name.partition("@")[2] if "@" in name else None
        for d in entries:
            if d.annotations.get(REF_NAME_ANNOTATION) == name or d.digest == digest:
                return self._load(d, d.annotations.get(REF_NAME_ANNOTATION))
        if digest:
            for d in entries:
                img = self._load(d, d.annotations.get(REF_NAME_ANNOTATION))
                if img.id == digest:
                    return img
            raise RefError(f"no image with digest {digest} in {self.describe()}")
        found = match_id([("", self._load(d, None)) for d in entries], name, self.describe())
        if found is not None:
            return found
        raise RefError(f"no image {name!r} in {self.describe()}")

    def open_blob(self, image: Image, index: int) -> BinaryIO:
        layer = image.layers[index]
        name = "blobs/" + layer.digest.replace(":", "/")
        if not self.tar.has(name):
            raise StoreError(f"{self.describe()} lacks the blob of layer {index} ({layer.digest[:19]})")
        return DigestReader(self.tar.open(name), layer.digest, layer.size,  # type: ignore[return-value]
                            f"layer {index} ({layer.digest[:19]}) in {self.describe()}")

    def write(self, req: WriteRequest) -> WriteResult:
        from .ocilayout import OCILayout

        tmp = tempfile.mkdtemp(prefix="imggit-ociarchive-", dir=tmp_root())
        try:
            layout = OCILayout(tmp, create=True)
            if os.path.exists(self.path):  # keep the archive's other tags
                old = self
                for t, img in old.list_images():
                    if t == req.tag:
                        continue
                    with old.layer_inputs(img) as inputs:
                        layout.write(WriteRequest(img.config, inputs, t, img.manifest, compress=None))
                old.close()
            result = layout.write(req)
            out = ArchiveWriter(self.path)
            try:
                for root, dirs, files in os.walk(tmp):
                    dirs[:] = sorted(d for d in dirs if not d.startswith(".imggit"))
                    rel = os.path.relpath(root, tmp)
                    if rel != ".":
                        out.add_dir(rel)
                    for fn in sorted(files):
                        if fn.startswith(".imggit"):
                            continue
                        full = os.path.join(root, fn)
                        name = fn if rel == "." else f"{rel}/{fn}"

                        def writer(o: Any, full: str = full) -> None:
                            with open(full, "rb") as f:
                                shutil.copyfileobj(f, o, 1 << 20)

                        out.add_stream(name, writer, os.path.getsize(full))
                out.finish()
            except BaseException:
                out.abort()
                raise
            img = Image.assemble(result.image.config, result.image.manifest, name=req.tag, source=self.describe())
            return WriteResult(img, result.written_blobs + result.reused_blobs, result.written_bytes, 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
