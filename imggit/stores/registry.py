"""A repository in a registry (``docker://HOST/REPO``), through the store protocol.

Reading takes the manifest (an index picks this platform, skipping
attestations) and the config: no layer bytes. Layers are served as
verified streams (``open_blob``), or, for copies, downloaded in parallel
into the blob cache first (``layer_inputs``), resumable. Writing pushes
only the blobs the registry lacks (mounting them from another repository
of the registry when one is known to hold them), then the config, then
the manifest, which keeps its exact bytes when the image was not
rewritten. Names given to the store may be a tag (``1``), a full name
(``host/repo:1``, whose repository must be this one), ``@sha256:…``, or
an image id.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Callable, Iterator, Sequence

from .. import platforms
from ..errors import FormatError, RefError, RegistryNotFound, StoreError, UsageError
from ..layers.streams import DigestReader
from ..model import (
    INDEX_TYPES, MANIFEST_TYPES, Config, Descriptor, Image, Index, Layer, Manifest, declared_compression,
    layer_media_type, media_family, short,
)
from ..registry import progress as P
from ..registry.client import Client
from ..registry.creds import Credentials, find as find_creds
from ..registry.download import Fetcher, RemoteBlob, Want
from ..registry.knowledge import Knowledge
from ..registry.names import check_tag, parse_repo, repo_matches, split_name
from ..registry.transport import Transport
from ..registry.upload import Pusher
from .base import LayerInput, Store, WriteRequest, WriteResult, build_manifest, config_media_type, manifest_fits
from .base import match_id
from .ocilayout import convert_media_type


def _env_tls_verify() -> bool:
    return os.environ.get("IMGGIT_TLS_VERIFY", "true").strip().lower() not in ("0", "false", "no", "off")


class Registry(Store):
    transport = "docker"
    default_compression = "gzip"
    remote = True

    def __init__(self, location: str, *, platform: str | None = None, creds: str | Credentials | None = None,
                 tls_verify: bool | None = None, jobs: int = 4, progress: P.ProgressFn | None = None) -> None:
        self.name = parse_repo(location)
        self.platform = platform
        self.jobs = max(1, jobs)
        self.progress = progress or P.silent
        self._creds_arg = creds
        self._tls_verify = _env_tls_verify() if tls_verify is None else tls_verify
        self._client: Client | None = None
        self._configs: dict[str, bytes] = {}
        self.knowledge = Knowledge()
        self._pusher: Pusher | None = None
        self._located: dict[str, Descriptor] = {}
        self.bytes_fetched = 0

    # --- plumbing --------------------------------------------------------------------

    def describe(self) -> str:
        return f"registry {self.name}"

    @property
    def client(self) -> Client:
        if self._client is None:
            creds = find_creds(self.name.host, self._creds_arg)
            t = Transport(self.name.api_host, creds=creds, tls_verify=self._tls_verify, label=self.name.host)
            self._client = Client(self.name, t)
        return self._client

    @property
    def pusher(self) -> Pusher:
        if self._pusher is None:
            self._pusher = Pusher(self.client, self.knowledge, self.progress)
        return self._pusher

    def full_name(self, tag: str) -> str:
        return f"{self.name}:{tag}"

    # --- reading ------------------------------------------------------------------------

    def _repo_missing(self) -> bool:
        """Does the repository not exist at all? (Some registries say MANIFEST_UNKNOWN for both.)"""
        try:
            self.client.tags()
        except RegistryNotFound:
            return True
        except Exception:
            return False
        return False

    def _not_found(self, e: RegistryNotFound, what: str) -> RegistryNotFound:
        if e.code == "NAME_UNKNOWN" or (what and self._repo_missing()):
            return RegistryNotFound(f"registry {self.name.host} has no repository {self.name.repo!r}",
                                    hint="check the name; 'imggit ls docker://HOST/REPO' lists its tags",
                                    status=e.status, code=e.code)
        return RegistryNotFound(f"no image {what!r} in {self.describe()}", status=e.status, code=e.code)

    def get(self, name: str | None) -> Image:
        n = split_name(name) if name else split_name("latest")
        if n.repo and not repo_matches(n.repo, self.name):
            raise RefError(f"no image {name!r} in {self.describe()} (it names another repository)")
        if n.digest:
            return self._load(n.digest, None)
        if n.tag is not None:
            try:
                check_tag(n.tag)
            except UsageError:
                raise RefError(f"invalid tag {n.tag!r} in {name!r}",
                               hint="a tag is up to 128 letters, digits, '_', '.' or '-'") from None
            try:
                return self._load(n.tag, n.tag)
            except RegistryNotFound as e:
                if n.id_prefix is None or e.code == "NAME_UNKNOWN":
                    raise self._not_found(e, name or "latest") from None
        assert n.id_prefix is not None
        found = match_id(self.list_images(), n.id_prefix, self.describe())
        if found is None:
            raise RefError(f"no image {name!r} in {self.describe()}")
        return found

    def _load(self, ref: str, tag: str | None) -> Image:
        c = self.client
        f = c.get_manifest(ref)
        desc = Descriptor(f.media_type or "", f.digest or "", len(f.raw))
        extra: dict[str, Any] = {"repo": str(self.name), "tag": tag, "descriptor": desc}
        raw, ctype = f.raw, f.media_type
        declared = _declared_type(raw)
        if declared and ctype in (*INDEX_TYPES, *MANIFEST_TYPES) and declared != ctype:
            raise FormatError(f"{ref} in {self.describe()}: served as {ctype} but its mediaType is {declared}")
        if (declared or ctype) in INDEX_TYPES or _looks_like_index(raw):
            idx = Index.parse(raw, f"index {ref}")
            chosen = platforms.select(idx.manifests, self.platform, f"{tag or ref} in {self.describe()}")
            extra["index"] = idx
            extra["platform"] = platforms.describe(chosen.platform)
            f = c.get_manifest(chosen.digest)
            raw, ctype = f.raw, chosen.media_type or f.media_type
        manifest = Manifest.parse(raw, declared if declared in MANIFEST_TYPES else ctype,
                                  f"manifest {short(f.digest)} of {self.name}")
        config = Config.parse(self._config(manifest.config), f"config {manifest.config.digest[:19]}")
        self.knowledge.saw(self.name.host, self.name.repo,
                           [d.digest for d in manifest.layers] + [manifest.config.digest])
        return Image.assemble(config, manifest, name=self.full_name(tag) if tag else None,
                              source=self.describe(), extra=extra)

    def _config(self, d: Descriptor) -> bytes:
        if d.digest not in self._configs:
            self._configs[d.digest] = self.client.read_blob(d.digest, d.size, f"config {d.digest[:19]}")
        return self._configs[d.digest]

    def list_images(self) -> list[tuple[str, Image]]:
        out = []
        try:
            tags = self.client.tags()
        except RegistryNotFound as e:
            raise self._not_found(e, "") from None
        for tag in tags:
            try:
                out.append((self.full_name(tag), self._load(tag, tag)))
            except RefError:
                continue   # deleted meanwhile, or no image for this platform
        return out

    def open_blob(self, image: Image, index: int) -> BinaryIO:
        layer = image.layers[index]
        if layer.foreign:
            raise StoreError(f"layer {index} is a foreign layer; its blob lives at {', '.join(layer.urls) or '?'}")
        what = f"layer {index} ({layer.digest[:19]}) in {self.describe()}"
        remote = RemoteBlob(self.client, layer.digest, layer.size, what)
        return DigestReader(remote, layer.digest, layer.size, what)  # type: ignore[arg-type,return-value]

    def fetch(self, image: Image, indices: Sequence[int]) -> dict[int, str]:
        """Download these layers into the blob cache (parallel, resumable, verified): index -> file."""
        wants = [Want(image.layers[i].digest, image.layers[i].size, f"layer {i}")
                 for i in indices if not image.layers[i].foreign]
        fetcher = Fetcher(self.client, jobs=self.jobs, progress=self.progress)
        try:
            paths = fetcher.fetch(wants)
        finally:
            self.bytes_fetched += fetcher.bytes_fetched
        for i in indices:
            layer = image.layers[i]
            if layer.digest in paths:
                self.knowledge.same_content(layer.diff_id, layer.digest, layer.media_type, layer.size or 0)
        return {i: paths[image.layers[i].digest] for i in indices if image.layers[i].digest in paths}

    @contextlib.contextmanager
    def layer_inputs(self, image: Image, indices: Sequence[int] | None = None,
                     workdir: str | None = None) -> Iterator[list[LayerInput]]:
        want = sorted(set(range(len(image.layers)) if indices is None else indices))
        paths = self.fetch(image, want)
        out = []
        for i, layer in enumerate(image.layers):
            p = paths.get(i)
            if p is None:
                out.append(LayerInput(layer))
                continue
            what = f"layer {i} ({layer.digest[:19]}) of {image.describe()}"
            out.append(LayerInput(layer, _file_opener(p, layer, what), p))
        yield out

    # --- writing -----------------------------------------------------------------------------

    def _locate(self, layer: Layer, what: str) -> Descriptor | None:
        """A blob in this repository (now) with this layer's content, or None."""
        key = layer.digest
        if key in self._located:
            return self._located[key]
        p = self.pusher
        found = None
        size = p.has(layer.digest)
        if size is not None:
            found = Descriptor(layer.media_type, layer.digest, size if size >= 0 else (layer.size or 0),
                               layer.urls, layer.annotations)
            self.progress(P.Event(P.EXISTS, layer.digest, what, found.size, found.size))
        elif layer.digest == layer.diff_id:   # stored uncompressed: a compressed twin may be there
            for digest, mt, tsize in self.knowledge.blobs_for(layer.diff_id):
                if p.has(digest) is not None:
                    self.progress(P.Event(P.EXISTS, digest, what, tsize, tsize))
                elif not p.mount(digest, tsize, what):
                    continue
                found = Descriptor(mt, digest, tsize, layer.urls, layer.annotations)
                break
        if found is None and p.mount(layer.digest, layer.size, what):
            size = layer.size if layer.size is not None else p.has(layer.digest)
            found = Descriptor(layer.media_type, layer.digest, max(0, size or 0), layer.urls, layer.annotations)
        if found is not None:
            self._located[key] = found
        return found

    def needed_layers(self, layers: Sequence[Layer]) -> set[int]:
        """Layers whose bytes must be sent; those another repository holds are mounted on the way."""
        todo = [i for i, l in enumerate(layers) if not l.foreign]
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            found = list(pool.map(lambda i: self._locate(layers[i], f"layer {i}"), todo))
        return {i for i, d in zip(todo, found) if d is None}

    def _family(self, req: WriteRequest, codec: str | None) -> str:
        if codec == "zstd":
            return "oci"
        if req.family:
            return req.family
        if req.manifest is not None:
            return req.manifest.family
        fams = {media_family(li.layer.media_type) for li in req.layers}
        return "docker" if fams == {"docker"} else "oci"

    def _push_layer(self, i: int, li: LayerInput, family: str, codec: str | None,
                    level: int | None) -> tuple[Descriptor, bool]:
        layer = li.layer
        what = f"layer {i}"
        mt = convert_media_type(layer.media_type, family)
        if layer.foreign and li.open is None:
            return layer.descriptor().with_(media_type=mt), False
        found = self._locate(layer, what)
        if found is not None:
            return found.with_(media_type=convert_media_type(found.media_type, family)), False
        plain = layer.digest == layer.diff_id
        if plain and codec:
            digest, csize = self.pusher.upload_stream(li.opener, codec, level, what, layer.digest)
            mt = layer_media_type(family, codec)
            self.knowledge.same_content(layer.diff_id, digest, mt, csize)
            return Descriptor(mt, digest, csize, layer.urls, layer.annotations), True
        if plain and declared_compression(mt) is not None and not layer.foreign:
            mt = layer_media_type(family, None)
        size: int | None = layer.size
        if size is None and li.path is not None:
            size = os.path.getsize(li.path)
        if size is None:
            _, size = self.pusher.upload_stream(li.opener, None, None, what, layer.digest, layer.digest)
        else:
            path = li.path
            opener: Callable[[], BinaryIO] = (lambda: open(path, "rb")) if path is not None else li.opener
            self.pusher.upload(layer.digest, size, opener, what)
        if not plain:
            self.knowledge.same_content(layer.diff_id, layer.digest, mt, size)
        return Descriptor(mt, layer.digest, size, layer.urls, layer.annotations), True

    def write(self, req: WriteRequest) -> WriteResult:
        tag = self._own_tag(req.tag)
        codec = self.default_compression if req.compress == "auto" else req.compress
        family = self._family(req, codec)
        previous = self._previous(tag)
        total = sum(li.layer.size or 0 for li in req.layers)
        self.progress(P.Event(P.PLAN, n=total, total=len(req.layers)))
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="imggit-push") as pool:
            results = list(pool.map(lambda a: self._push_layer(a[0], a[1], family, codec, req.compress_level),
                                    enumerate(req.layers)))
        descs = [d for d, _ in results]
        if any(d.media_type.endswith("+zstd") for d in descs):
            family = "oci"
        written = sum(1 for _, w in results if w)
        nbytes = sum(d.size for d, w in results if w)
        p = self.pusher
        if not p.locate(req.config.digest, len(req.config.raw), "config"):
            p.upload_bytes(req.config.raw, req.config.digest, "config")
        if manifest_fits(req.manifest, req.config, descs, req.annotations):
            manifest = req.manifest
            assert manifest is not None
        else:
            cmt = req.manifest.config.media_type if req.manifest and req.manifest.family == family else None
            manifest = Manifest.parse(build_manifest(req.config, descs, family, req.annotations,
                                                     cmt or config_media_type(family)))
        self.client.put_manifest(tag or manifest.digest, manifest.raw, manifest.media_type)
        self.knowledge.saw(self.name.host, self.name.repo, [d.digest for d in descs] + [req.config.digest])
        img = Image.assemble(req.config, manifest, name=self.full_name(tag) if tag else None,
                             source=self.describe(), extra={"repo": str(self.name), "tag": tag})
        return WriteResult(img, written, nbytes, len(descs) - written, previous)

    def _previous(self, tag: str | None) -> str | None:
        """The image id a tag points at now (None if it does not exist or is an index)."""
        if not tag:
            return None
        try:
            f = self.client.get_manifest(tag)
        except RegistryNotFound:
            return None
        with contextlib.suppress(FormatError, ValueError, KeyError, TypeError):
            cfg = json.loads(f.raw).get("config")
            if isinstance(cfg, dict):
                return str(cfg["digest"])
        return None

    def normalize_tag(self, name: str) -> str:
        return self._own_tag(name) or name

    def _own_tag(self, name: str | None) -> str | None:
        """The tag part of a name written into this repository; a name of another repository is
        a mistake (it would silently land here under its tag)."""
        if name:
            n = split_name(name)
            if n.repo and not repo_matches(n.repo, self.name):
                raise UsageError(f"{name!r} names repository {n.repo}, but this writes to {self.name}",
                                 hint=f"write the destination in full: docker://{self.name.host}/{n.repo}:"
                                      f"{n.tag or 'TAG'}")
        return _tag_of(name)

    def delete_tag(self, name: str) -> None:
        raise StoreError(f"{self.describe()}: registries delete manifests, not tags",
                         hint="push another image to the tag instead")


def _file_opener(path: str, layer: Layer, what: str) -> Callable[[], BinaryIO]:
    def opener() -> BinaryIO:
        return DigestReader(open(path, "rb"), layer.digest, layer.size, what)  # type: ignore[return-value]
    return opener


def _tag_of(name: str | None) -> str | None:
    """The tag a write goes to: ``1``, ``app:1`` -> ``1``; ``app`` -> ``app``; None stays None."""
    if not name:
        return None
    n = split_name(name)
    if n.digest:
        raise UsageError(f"{name!r} is a digest reference; a tag is needed here")
    if n.tag is None:
        raise UsageError(f"{name!r} is an image id; a tag is needed here")
    return check_tag(n.tag)


def _declared_type(raw: bytes) -> str | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    mt = data.get("mediaType") if isinstance(data, dict) else None
    return mt if isinstance(mt, str) else None


def _looks_like_index(raw: bytes) -> bool:
    try:
        data = json.loads(raw)
    except ValueError:
        return False
    return isinstance(data, dict) and "manifests" in data and "layers" not in data
