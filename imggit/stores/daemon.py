"""The Docker engine, through its API (the ``docker`` SDK).

Metadata comes from ``inspect`` and ``history``, never from ``save``: when
the engine's data root is readable here (a local engine, root), the exact
config bytes are read from its image store and checked against the image
id; otherwise the config is rebuilt from inspect + history and marked as
such (``Image.exact_config``), and verbs that must write it fetch the exact
bytes from the ``save`` stream they need anyway.

Layer bytes stream from ``save``: the Docker 25+ shape names layers by
digest, so only the wanted ones are spooled; the legacy shape (Docker <= 24)
names them by v1 ids, so each layer is hashed while it is spooled and kept
only if wanted. Writing goes through ``load`` with a Docker 25 shaped
archive produced on the fly; on the graphdriver image store the archive
carries only layers the engine lacks (a *thin* load), on the containerd
image store every layer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import queue
import re
import threading
from typing import Any, BinaryIO, Callable, Iterator, Sequence, cast

from ..errors import DaemonError, FormatError, RefError, StoreError, UsageError
from ..layers import tarfmt
from ..layers.fetch import LayerFile, _index, spool_stream
from ..layers.index import index_verified
from ..layers.streams import Reader
from ..model import (
    DOCKER_LAYER, Config, Image, Layer, chain_ids, short,
)
from .archive import ArchiveWriter, docker_archive_members, short_docker_name, split_docker_name
from .base import LayerInput, Store, WriteRequest, WriteResult

_DEFAULT_SOCKET = "/var/run/docker.sock"
_engine_cache: dict[str, bool] = {}
_clients: dict[str, Any] = {}   # one API client per engine address, shared by the probe and the store


def _client(host: str, timeout: float = 600) -> Any:
    """An API client for ``host`` (DOCKER_TLS_* honoured); the API version is negotiated once."""
    client = _clients.get(host)
    if client is None:
        import docker
        from docker.utils import kwargs_from_env

        kwargs = kwargs_from_env()
        kwargs["base_url"] = host
        client = docker.APIClient(version="auto", timeout=timeout, **kwargs)
        client.timeout = 600
        _clients[host] = client
    return client


def engine_host() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{_DEFAULT_SOCKET}"


def engine_available(timeout: float = 3.0) -> bool:
    """Does a Docker engine answer (DOCKER_HOST, else the default socket)? Cached per process."""
    host = engine_host()
    if host in _engine_cache:
        return _engine_cache[host]
    ok = False
    if host.startswith("unix://") and not os.path.exists(host[len("unix://"):]):
        ok = False
    else:
        try:
            client = _client(host, timeout)
            ok = bool(client.ping())
        except Exception:
            _clients.pop(host, None)
            ok = False
    _engine_cache[host] = ok
    return ok


class _ChunkStream(Reader):
    """A file-like view of an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it = chunks
        self._buf = b""
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            rest = self._buf[self._pos:] + b"".join(self._it)
            self._buf, self._pos = b"", 0
            return rest
        while len(self._buf) - self._pos < n:
            try:
                chunk = next(self._it)
            except StopIteration:
                break
            if self._pos:
                self._buf = self._buf[self._pos:]
                self._pos = 0
            self._buf += chunk
        data = self._buf[self._pos:self._pos + n]
        self._pos += len(data)
        if self._pos > (1 << 22):
            self._buf = self._buf[self._pos:]
            self._pos = 0
        return data


class _MemberStream(Reader):
    """The data of the current member of a tar stream."""

    def __init__(self, reader: tarfmt.TarReader) -> None:
        self._r = reader

    def read(self, n: int = -1) -> bytes:
        return self._r.read_data(n if n is not None else -1)


def _iso(ts: int | float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_EMPTY_INSTR = re.compile(
    r"^(?:/bin/(?:ba)?sh -c #\(nop\)\s*(?!(?:ADD|COPY)\b)|(?:ENV|CMD|ENTRYPOINT|LABEL|EXPOSE|VOLUME|USER|"
    r"WORKDIR|STOPSIGNAL|HEALTHCHECK|SHELL|ONBUILD|ARG|MAINTAINER)\b)")


def reconstruct_config(inspect: dict[str, Any], history: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """An image config rebuilt from the engine's inspect and history answers.

    The engine's history API does not say which entries are empty; a size of
    zero usually means empty, but a step that changed nothing still carries
    a (zero-size) layer. Entries are matched to the known number of layers,
    preferring metadata-only instructions as the empty ones.
    """
    warnings: list[str] = []
    diff_ids = list((inspect.get("RootFS") or {}).get("Layers") or [])
    entries = list(reversed(history))  # the API answers newest first
    n = len(diff_ids)
    nonempty = [e.get("Size", 0) > 0 for e in entries]
    need = n - sum(nonempty)
    if need > 0:
        zero = [i for i, ne in enumerate(nonempty) if not ne]
        likely = [i for i in zero if not _EMPTY_INSTR.match((entries[i].get("CreatedBy") or "").strip())]
        pick = likely[:need] if len(likely) >= need else likely + [i for i in zero if i not in likely][: need - len(likely)]
        for i in pick:
            nonempty[i] = True
        if len(likely) != need:
            warnings.append("the engine's history does not say which steps are empty; the layer of some "
                            "steps is a guess (read the image from an archive or layout to be exact)")
    elif need < 0:
        warnings.append("the engine reports more non-empty history entries than layers")
    hist = []
    for e, ne in zip(entries, nonempty):
        h: dict[str, Any] = {"created": _iso(e.get("Created") or 0)}
        if e.get("CreatedBy"):
            h["created_by"] = e["CreatedBy"]
        if e.get("Comment"):
            h["comment"] = e["Comment"]
        if not ne:
            h["empty_layer"] = True
        hist.append(h)
    data: dict[str, Any] = {"architecture": inspect.get("Architecture") or ""}
    if inspect.get("Author"):
        data["author"] = inspect["Author"]
    data["config"] = inspect.get("Config") or {}
    data["created"] = inspect.get("Created")
    if inspect.get("DockerVersion"):
        data["docker_version"] = inspect["DockerVersion"]
    data["history"] = hist
    data["os"] = inspect.get("Os") or "linux"
    data["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    if inspect.get("Variant"):
        data["variant"] = inspect["Variant"]
    return data, warnings


class DockerDaemon(Store):
    transport = "docker-daemon"
    default_compression = None

    def __init__(self, host: str | None = None, *, platform: str | None = None) -> None:
        self.host = host or engine_host()
        self.platform = platform
        self._api: Any = None
        self._info: dict[str, Any] | None = None
        self._exact: dict[str, bytes] = {}
        self._chains: set[str] = set()
        self.save_calls = 0       # how many times ``docker save`` was asked (tests read it)
        self.direct_reads = 0     # layers read from the data root instead (tarsplit.py)
        self.direct_failures: list[str] = []   # and why some could not be (they went through save)
        self.load_calls = 0

    @property
    def api(self) -> Any:
        if self._api is None:
            try:
                self._api = _client(self.host, timeout=10)
                if not _engine_cache.get(self.host):
                    self._api.ping()
            except Exception as e:  # the SDK raises many kinds for "nobody there"
                self._api = None
                _clients.pop(self.host, None)
                why = _why(self.host, e)
                raise DaemonError(f"no Docker engine answers at {self.host} ({why})",
                                  hint="start the engine or point DOCKER_HOST at it") from None
        return self._api

    def describe(self) -> str:
        return f"the Docker engine at {self.host}"

    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self.api.info()
        return self._info

    @property
    def containerd_store(self) -> bool:
        info = self.info()
        status = dict((tuple(x) for x in (info.get("DriverStatus") or []) if len(x) == 2))
        return "containerd" in str(status.get("driver-type", "")) or info.get("Driver") == "overlayfs"

    def _imagedb(self) -> str | None:
        info = self.info()
        root, driver = info.get("DockerRootDir"), info.get("Driver")
        if not root or not driver or self.containerd_store:
            return None
        path = os.path.join(root, "image", driver)
        return path if os.access(path, os.R_OK) else None

    # --- reading -------------------------------------------------------------------

    def _inspect(self, name: str) -> dict[str, Any]:
        import docker

        try:
            return self.api.inspect_image(name)  # type: ignore[no-any-return]
        except docker.errors.ImageNotFound:
            raise RefError(f"no image {name!r} in {self.describe()}") from None
        except docker.errors.APIError as e:
            raise RefError(f"{self.describe()} cannot resolve {name!r}: {_brief(e)}") from None

    def get(self, name: str | None) -> Image:
        if name is None:
            raise RefError("name an image of the Docker engine, e.g. docker-daemon:app:1")
        if re.fullmatch(r"(sha256:)?[0-9a-f]{4,63}", name):
            ids = [(t, i) for t, i in self._all_ids()]
            matches = {i for _, i in ids if i[7:].startswith(name.removeprefix("sha256:"))}
            if len(matches) > 1:
                cands = ", ".join(sorted(short(m) for m in matches))
                raise RefError(f"short id {name!r} is ambiguous in {self.describe()}: it matches {cands}",
                               hint="give more hex digits")
        data = self._inspect(name)
        tag = None
        if not re.fullmatch(r"(sha256:)?[0-9a-f]{4,64}", name) and "@" not in name:
            with contextlib.suppress(UsageError):
                tag = short_docker_name(name)
        return self._image(data, tag)

    def _all_ids(self) -> list[tuple[str, str]]:
        return [(",".join(i.get("RepoTags") or []), i["Id"]) for i in self.api.images(all=True)]

    def _image(self, data: dict[str, Any], tag: str | None) -> Image:
        image_id = data["Id"]
        history = self.api.history(image_id)
        raw = self._exact.get(image_id) or self._read_exact(image_id)
        warnings: list[str] = []
        extra: dict[str, Any] = {"repo_tags": data.get("RepoTags") or [], "repo_digests": data.get("RepoDigests") or [],
                                 "engine_size": data.get("Size"),
                                 # the engine's own image for each step (classic builds keep them), oldest first
                                 "step_images": [e.get("Id") if str(e.get("Id", "")).startswith("sha256:") else None
                                                 for e in reversed(history)]}
        if raw is not None:
            config = Config.parse(raw, f"config of {short(image_id)}")
        else:
            cdata, warnings = reconstruct_config(data, history)
            config = Config.from_data(cdata)
            extra["id"] = image_id
            extra["reconstructed"] = True
        diff_ids = config.diff_ids
        chains = chain_ids(diff_ids)
        self._chains.update(chains)
        # per-layer sizes: the history API answers the unpacked size of each layer step
        sizes = [e.get("Size", 0) for e in reversed(history)]
        layer_sizes: list[int | None] = []
        for h, s in zip(config.history, sizes):
            if not h.get("empty_layer"):
                layer_sizes.append(s)
        layer_sizes += [None] * (len(diff_ids) - len(layer_sizes))
        layers = [Layer(d, c, d, DOCKER_LAYER, None, uncompressed_size=s)
                  for d, c, s in zip(diff_ids, chains, layer_sizes)]
        name = tag
        if name is None and extra["repo_tags"]:
            name = extra["repo_tags"][0]
        return Image.assemble(config, None, layers, name=name, source=self.describe(), extra=extra,
                              warnings=warnings)

    def _read_exact(self, image_id: str) -> bytes | None:
        db = self._imagedb()
        if db is None:
            return None
        path = os.path.join(db, "imagedb", "content", "sha256", image_id.removeprefix("sha256:"))
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError:
            return None
        if "sha256:" + hashlib.sha256(raw).hexdigest() != image_id:
            return None
        self._exact[image_id] = raw
        return raw

    def list_images(self) -> list[tuple[str, Image]]:
        out = []
        for summary in self.api.images():
            tags = [t for t in summary.get("RepoTags") or [] if t != "<none>:<none>"]
            if not tags:
                continue
            data = self._inspect(summary["Id"])
            img = None
            for t in tags:
                img = self._image(data, t) if img is None else _renamed(img, t)
                out.append((t, img))
        return out

    def raw_config(self, image: Image) -> bytes:
        if image.exact_config:
            return image.config.raw
        if image.id not in self._exact:
            self._save_pass(image, {}, None, want_config=True)
        return self._exact[image.id]

    def exact(self, image: Image) -> Image:
        """The same image with its exact config (reads the save stream if it must)."""
        if image.exact_config:
            return image
        raw = self.raw_config(image)
        return Image.assemble(Config.parse(raw), None, image.layers, name=image.name, source=image.source,
                              extra={k: v for k, v in image.extra.items() if k not in ("id", "reconstructed")})

    def open_blob(self, image: Image, index: int) -> BinaryIO:
        raise StoreError("layers of the Docker engine are read through spool_layers")

    def spool_layers(self, image: Image, indices: Sequence[int], workdir: str,
                     index_only: Sequence[int] = ()) -> dict[int, LayerFile]:
        """One save pass: spool the ``indices`` layers, read only the headers of ``index_only``."""
        wanted = {image.layers[i].diff_id: i for i in indices}
        headers = {image.layers[i].diff_id: i for i in index_only if image.layers[i].diff_id not in wanted}
        if not wanted and not headers:
            return {}
        paths, indexed = self._save_pass(image, wanted, workdir, want_config=not image.exact_config,
                                         index_only=headers)
        out = {}
        for diff_id, i in wanted.items():
            path = paths[diff_id]
            out[i] = LayerFile(i, image.layers[i], path, _index(path, f"layer {i} of {image.describe()}"))
        for diff_id, i in headers.items():
            out[i] = LayerFile(i, image.layers[i], "", indexed[diff_id], temporary=False)
        return out

    def index_layers(self, image: Image, indices: Sequence[int]) -> dict[int, list[tarfmt.Member]]:
        import tempfile

        with tempfile.TemporaryDirectory() as wd:
            files = self.spool_layers(image, [], wd, index_only=indices)
        return {i: lf.members for i, lf in files.items()}

    def _save_stream(self, image_id: str) -> Any:
        """The body of ``GET /images/{id}/get`` as a file (read straight from the socket)."""
        api = self.api
        if not hasattr(api, "_get"):  # a stand-in API (tests): only the public generator
            return _ChunkStream(iter(api.get_image(image_id, chunk_size=1 << 20)))
        res = api._get(api._url("/images/{0}/get", image_id), stream=True)
        api._raise_for_status(res)
        with contextlib.suppress(Exception):
            api._disable_socket_timeout(api._get_raw_response_socket(res))
        raw = res.raw
        raw.decode_content = False
        return raw

    def _save_pass(self, image: Image, wanted: dict[str, int], workdir: str | None,
                   want_config: bool, index_only: dict[str, int] | None = None
                   ) -> tuple[dict[str, str], dict[str, list[tarfmt.Member]]]:
        """One ``docker save`` stream: spool the wanted layers, index others, capture the config."""
        import docker

        from ..layers.index import index_stream

        index_only = index_only or {}
        hexid = image.id.removeprefix("sha256:")
        legacy_ids = legacy_v1_ids(image.config.diff_ids)
        found: dict[str, str] = {}
        indexed: dict[str, list[tarfmt.Member]] = {}

        def done() -> bool:
            return (len(found) == len(wanted) and len(indexed) == len(index_only)
                    and (not want_config or image.id in self._exact))

        self._direct_pass(image, wanted if workdir is not None else {}, workdir, index_only, found, indexed)
        if want_config and image.id not in self._exact:
            self._read_exact(image.id)
        if done():
            return found, indexed
        self.save_calls += 1
        stream = None
        try:
            stream = self._save_stream(image.id)
            reader = tarfmt.TarReader(stream, what="the engine's save stream")  # type: ignore[arg-type]
            for m in reader:
                if not m.is_file:
                    continue
                name = m.path
                if name.startswith("blobs/sha256/"):
                    digest = "sha256:" + name.rsplit("/", 1)[1]
                    what = f"layer of {image.describe()} ({short(digest)})"
                    if digest in wanted and digest not in found and workdir is not None:
                        dest = os.path.join(workdir, f"layer-{wanted[digest]}-{short(digest)}.tar")
                        spool_stream(_MemberStream(reader), dest, digest, what)  # type: ignore[arg-type]
                        found[digest] = dest
                    elif digest in index_only and digest not in indexed:
                        indexed[digest] = index_verified(_MemberStream(reader), digest, what)
                    elif digest == image.id and want_config:
                        self._exact[image.id] = reader.read_data()
                elif name.endswith("/layer.tar") and workdir is not None and (
                        len(found) < len(wanted) or len(indexed) < len(index_only)):
                    known = legacy_ids.get(name.split("/", 1)[0])
                    if known is not None:
                        # a layer below the top, recognised by its legacy v1 id: no need to hash it to
                        # know what it is; only what is wanted is read
                        what = f"layer {known} of {image.describe()}"
                        if known in wanted.values():
                            d = image.layers[known].diff_id
                            dest = os.path.join(workdir, f"layer-{known}-{short(d)}.tar")
                            spool_stream(_MemberStream(reader), dest, d, what)  # type: ignore[arg-type]
                            found[d] = dest
                        elif known in index_only.values():
                            d = image.layers[known].diff_id
                            if d not in indexed:
                                indexed[d] = index_verified(_MemberStream(reader), d, what)
                        if done():
                            break
                        continue
                    dest = os.path.join(workdir, f"spool-{len(os.listdir(workdir))}.tar")
                    h = hashlib.sha256()
                    with open(dest, "wb") as out:
                        for chunk in reader.data_chunks():
                            h.update(chunk)
                            out.write(chunk)
                    digest = "sha256:" + h.hexdigest()
                    if digest in wanted and digest not in found:
                        final = os.path.join(workdir, f"layer-{wanted[digest]}-{short(digest)}.tar")
                        os.replace(dest, final)
                        found[digest] = final
                    else:
                        if digest in index_only and digest not in indexed:
                            with open(dest, "rb") as f:
                                indexed[digest] = index_stream(f, f"layer of {image.describe()} ({short(digest)})")
                        os.unlink(dest)
                elif name == f"{hexid}.json" and want_config:
                    self._exact[image.id] = reader.read_data()
                if done():
                    break
        except docker.errors.APIError as e:
            raise DaemonError(f"{self.describe()} could not save {image.describe()}: {_brief(e)}") from None
        finally:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()
        missing = [short(d) for d in list(wanted) + list(index_only) if d not in found and d not in indexed]
        if missing:
            raise DaemonError(f"the engine's save stream of {image.describe()} lacks layer(s) {', '.join(missing)}")
        if want_config:
            raw = self._exact.get(image.id)
            if raw is None or "sha256:" + hashlib.sha256(raw).hexdigest() != image.id:
                raise DaemonError(f"the engine's save stream of {image.describe()} has no valid config")
        return found, indexed

    def _direct_pass(self, image: Image, wanted: dict[str, int], workdir: str | None, index_only: dict[str, int],
                     found: dict[str, str], indexed: dict[str, list[tarfmt.Member]]) -> None:
        """Layers put back together from the engine's data root (tar-split), where this process can read
        it: no ``docker save`` for them. Each is checked against its diff id; what fails is left to save."""
        from . import tarsplit

        if os.environ.get("IMGGIT_ENGINE_DIRECT", "1").strip().lower() in ("0", "false", "no", "off"):
            return
        try:
            db = self._imagedb()
            info = self.info()
        except Exception:   # noqa: BLE001 - a stand-in API, an engine that went away: save will say
            return
        if db is None:
            return
        for diff_id, i in list(wanted.items()) + list(index_only.items()):
            if diff_id in found or diff_id in indexed:
                continue
            layer = image.layers[i]
            ldb = os.path.join(db, "layerdb", "sha256", layer.chain_id.removeprefix("sha256:"))
            what = f"layer {i} of {image.describe()} (from the engine's data root)"
            dest = os.path.join(workdir, f"layer-{i}-{short(diff_id)}.tar") if diff_id in wanted and workdir else ""
            try:
                stream = tarsplit.TarSplitStream(tarsplit.chunks(info["DockerRootDir"], info["Driver"], ldb))
                if dest:
                    spool_stream(stream, dest, diff_id, what)  # type: ignore[arg-type]
                    found[diff_id] = dest
                else:
                    indexed[diff_id] = index_verified(stream, diff_id, what)
                self.direct_reads += 1
            except (StoreError, FormatError, OSError, ValueError) as e:
                self.direct_failures.append(f"{what}: {e}")
                if dest:
                    with contextlib.suppress(OSError):
                        os.unlink(dest)   # what was spooled before it broke: save writes the layer again

    @contextlib.contextmanager
    def layer_inputs(self, image: Image, indices: Sequence[int] | None = None,
                     workdir: str | None = None) -> Iterator[list[LayerInput]]:
        from .base import tmpdir

        want = list(range(len(image.layers)) if indices is None else indices)
        own = workdir is None
        wd = tmpdir() if own else workdir
        assert wd is not None   # own: a new tmpdir, else the workdir given
        try:
            paths = self._save_pass(image, {image.layers[i].diff_id: i for i in want}, wd,
                                    want_config=False)[0] if want else {}
            out = []
            for i, layer in enumerate(image.layers):
                p = paths.get(layer.diff_id) if i in want else None
                size = os.path.getsize(p) if p else None
                lay = Layer(layer.diff_id, layer.chain_id, layer.digest, layer.media_type, size,
                            uncompressed_size=layer.uncompressed_size)
                out.append(LayerInput(lay, cast("Callable[[], BinaryIO]", lambda p=p: open(p, "rb")) if p else None, p))
            yield out
        finally:
            if own:
                import shutil

                shutil.rmtree(wd, ignore_errors=True)

    # --- writing ------------------------------------------------------------------------

    def known_chains(self) -> set[str]:
        """Chain ids of layers the engine has: its layer store when readable here (exact), else the
        chains of images read in this session (a guess: ``write`` falls back to a full archive)."""
        db = self._imagedb()
        if db is not None:
            with contextlib.suppress(OSError):
                return {"sha256:" + c for c in os.listdir(os.path.join(db, "layerdb", "sha256"))}
        return set(self._chains)

    def needed_layers(self, layers: Sequence[Layer]) -> set[int]:
        if self.containerd_store:
            return set(range(len(layers)))
        known = self.known_chains()
        return {i for i, l in enumerate(layers) if l.chain_id not in known}

    def normalize_tag(self, name: str) -> str:
        return short_docker_name(name)

    def streams_new_layers(self) -> bool:
        # the graphdriver image store reads manifest.json only, so a layer can be named before its
        # digest is known; the containerd store imports by digest
        return not self.containerd_store

    def write(self, req: WriteRequest) -> WriteResult:
        tag = short_docker_name(req.tag) if req.tag else None
        produced = {i for i, li in enumerate(req.layers) if li.produce is not None}
        skip = set() if self.containerd_store else (set(range(len(req.layers))) - produced - self.needed_layers(
            [li.layer for li in req.layers]))
        previous = None
        if tag:
            with contextlib.suppress(Exception):
                previous = self.api.inspect_image(tag)["Id"]
        if previous == req.config.digest and not produced:
            img = self._image(self._inspect(req.config.digest), tag)
            return WriteResult(img, 0, 0, len(req.layers), previous)
        codec = None if req.compress in ("auto", None) else req.compress
        try:
            sent, config = self._load(req, tag, skip, codec)
        except DaemonError as e:
            names = {"blobs/" + req.layers[i].layer.digest.replace(":", "/") for i in skip}
            if not skip or produced or not any(n in str(e) for n in names):
                raise   # not a layer the engine was thought to have: the archive itself is wrong
            # the engine lacked a layer it was thought to have: send every layer
            skip = set()
            sent, config = self._load(req, tag, skip, codec)
        img = self._image(self._inspect(config.digest), tag)
        if img.id != config.digest:
            raise DaemonError(f"the engine loaded {short(img.id)}, expected {short(config.digest)}")
        self._chains.update(l.chain_id for l in img.layers)
        return WriteResult(img, len(req.layers) - len(skip), sent, len(skip), previous)

    def _load(self, req: WriteRequest, tag: str | None, skip: set[int], codec: str | None) -> tuple[int, Config]:
        """Stream a Docker 25 shaped archive (layers in ``skip`` left out) into ``docker load``."""
        import docker

        q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
        counter: dict[str, Any] = {"bytes": 0, "config": req.config}

        class _QueueWriter(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b) -> int:  # type: ignore[no-untyped-def]
                data = bytes(b)
                if data:
                    q.put(data)
                return len(data)

        def produce() -> None:
            try:
                out = ArchiveWriter(None, stream=_QueueWriter())  # type: ignore[arg-type]
                docker_archive_members(req, tag, out, skip_layers=skip, codec=codec)
                out.finish()
                counter["bytes"] = out.layer_bytes
                counter["config"] = out.config
                q.put(None)
            except BaseException as e:  # handed to the consumer
                q.put(e)

        def body() -> Iterator[bytes]:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        self.load_calls += 1
        try:
            messages = list(self.api.load_image(body()))
        except docker.errors.APIError as e:
            raise DaemonError(f"{self.describe()} refused the image: {_brief(e)}") from None
        finally:
            worker.join(timeout=5)
        for m in messages:
            if isinstance(m, dict) and (m.get("error") or m.get("errorDetail")):
                detail = m.get("error") or (m.get("errorDetail") or {}).get("message")
                raise DaemonError(f"{self.describe()} refused the image: {detail}")
        return counter["bytes"], counter["config"]

    def tag(self, image: Image, name: str) -> WriteResult:
        repo, t = split_docker_name(name)
        previous = None
        with contextlib.suppress(Exception):
            previous = self.api.inspect_image(short_docker_name(name))["Id"]
        try:
            self.api.inspect_image(image.id)
        except Exception:
            return super().tag(image, name)
        self.api.tag(image.id, repo, t, force=True)
        return WriteResult(self._image(self._inspect(image.id), short_docker_name(name)), 0, 0,
                           len(image.layers), previous)

    def delete_tag(self, name: str) -> None:
        import docker

        try:
            self.api.remove_image(short_docker_name(name), noprune=True)
        except docker.errors.ImageNotFound:
            raise RefError(f"no tag {name!r} in {self.describe()}") from None
        except docker.errors.APIError as e:
            raise DaemonError(f"{self.describe()} could not remove {name!r}: {_brief(e)}") from None

    def close(self) -> None:
        self._api = None   # the client is shared per address (see _client)


# The zero container config as the legacy engines (<= 24) marshal it inside a layer's v1 metadata.
_ZERO_CONTAINER_CONFIG = ('{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,'
                          '"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,'
                          '"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,'
                          '"Labels":null}')


def legacy_v1_ids(diff_ids: Sequence[str]) -> dict[str, int]:
    """The directory names a legacy ``docker save`` gives the layers below the top one.

    moby's v1.CreateID hashes the layer's (empty) v1 image JSON with ``layer_id`` (the chain id)
    and ``parent`` (the previous v1 id). Knowing them lets the save stream be read without
    hashing, or writing, the layers that are not wanted. A prediction that does not match (another
    engine version) simply finds nothing, and every layer is then identified by its hash.
    """
    out: dict[str, int] = {}
    parent = None
    chains = chain_ids(diff_ids)
    for i, c in enumerate(chains[:-1]):
        parts = {"container_config": _ZERO_CONTAINER_CONFIG, "created": '"1970-01-01T00:00:00Z"',
                 "layer_id": json.dumps(c)}
        if parent:
            parts["parent"] = json.dumps(parent)
        text = "{" + ",".join(json.dumps(k) + ":" + v for k, v in sorted(parts.items())) + "}"
        v1 = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        out[v1[7:]] = i
        parent = v1
    return out


def _renamed(img: Image, name: str) -> Image:
    return Image(img.config, img.manifest, img.layers, img.steps, img.warnings, name, img.source, img.extra)


def _why(host: str, e: BaseException) -> str:
    if host.startswith("unix://") and not os.path.exists(host[len("unix://"):]):
        return "no such socket"
    text = str(e)
    for key, why in (("Permission denied", "permission denied"), ("Connection refused", "connection refused"),
                     ("timed out", "timed out"), ("Name or service not known", "unknown host")):
        if key in text:
            return why
    return _brief(e)


def _brief(e: BaseException) -> str:
    text = getattr(e, "explanation", None) or str(e)
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = str(text).strip().splitlines()[0] if str(text).strip() else type(e).__name__
    return text[:300]
