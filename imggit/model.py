"""The image model: descriptors, manifests, configs, layers and steps.

Pure data, no I/O. Every parsed JSON document keeps its exact bytes next to
the parsed form (``raw``); nothing is re-serialized unless a caller asks for
a changed copy (``Config.replace``), so digests of untouched documents never
move.

An image is a chain of *steps* (its config's ``history`` entries); a step
may carry a *layer*. ``align`` walks history and layers side by side and
copes with the shapes found in the wild (no history, too many or too few
non-empty entries), reporting what it could not align instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .errors import FormatError

# --- media types ------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"
BASE_NAME_ANNOTATION = "org.opencontainers.image.base.name"
BASE_DIGEST_ANNOTATION = "org.opencontainers.image.base.digest"


def media_family(media_type: str) -> str:
    """'docker' or 'oci' (unknown types count as OCI)."""
    return "docker" if media_type.startswith("application/vnd.docker.") else "oci"


def declared_compression(media_type: str) -> str | None:
    """The compression a layer media type claims: 'gzip', 'zstd' or None.

    Only a claim: readers sniff the magic bytes (``layers.compress``).
    """
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip"):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    return None


def is_foreign(media_type: str) -> bool:
    return "foreign" in media_type or "nondistributable" in media_type


def layer_media_type(family: str, compression: str | None) -> str:
    if family == "docker" and compression != "zstd":
        return DOCKER_LAYER_GZIP if compression == "gzip" else DOCKER_LAYER
    if compression == "gzip":
        return OCI_LAYER_GZIP
    if compression == "zstd":
        return OCI_LAYER_ZSTD
    return OCI_LAYER


# --- digests ----------------------------------------------------------------

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_ANY_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.match(value))


def check_digest(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ANY_DIGEST_RE.match(value):
        raise FormatError(f"{what}: {value!r} is not a digest")
    if value.startswith("sha256:") and not _DIGEST_RE.match(value):
        raise FormatError(f"{what}: {value!r} is not a valid sha256 digest")
    if not value.startswith("sha256:"):
        raise FormatError(f"{what}: digest algorithm of {value!r} is not supported (only sha256)")
    return value


def short(digest: str | None, n: int = 12) -> str:
    if not digest:
        return "-" * n
    return digest.split(":", 1)[-1][:n]


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(n))."""
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append(sha256_digest((out[-1] + " " + d).encode()))
    return out


def _load_json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise FormatError(f"{what} is not a JSON object")
    return data


def dump_json(data: Any) -> bytes:
    """Serialize a document imggit created or changed (compact, key order kept)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


# --- descriptors, manifests, indexes ------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Any, what: str = "descriptor") -> "Descriptor":
        if not isinstance(d, dict):
            raise FormatError(f"{what} is not a JSON object")
        for key in ("mediaType", "digest", "size"):
            if key not in d:
                raise FormatError(f"{what} has no {key!r}")
        size = d["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise FormatError(f"{what} has an invalid size {size!r}")
        known = {"mediaType", "digest", "size", "urls", "annotations", "platform"}
        return cls(
            media_type=str(d["mediaType"]),
            digest=check_digest(d["digest"], what),
            size=size,
            urls=tuple(d.get("urls") or ()),
            annotations=dict(d.get("annotations") or {}),
            platform=d.get("platform"),
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        out.update(self.extra)
        return out

    def with_(self, **changes: Any) -> "Descriptor":
        values: dict[str, Any] = {
            "media_type": self.media_type, "digest": self.digest, "size": self.size,
            "urls": self.urls, "annotations": self.annotations, "platform": self.platform,
            "extra": self.extra,
        }
        values.update(changes)
        return Descriptor(**values)


@dataclass(frozen=True, eq=False)
class Manifest:
    raw: bytes
    data: Mapping[str, Any]
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None, what: str = "manifest") -> "Manifest":
        data = _load_json_object(raw, what)
        mt = data.get("mediaType") or media_type or OCI_MANIFEST
        if mt in INDEX_TYPES or ("manifests" in data and "layers" not in data):
            raise FormatError(f"{what} is an image index, not an image manifest")
        if data.get("schemaVersion") == 1:
            raise FormatError(f"{what} is a schema 1 manifest, which imggit does not read")
        if "config" not in data:
            raise FormatError(f"{what} has no config descriptor")
        layers = data.get("layers") or []
        if not isinstance(layers, list):
            raise FormatError(f"{what}: 'layers' is not a list")
        return cls(
            raw=raw,
            data=data,
            media_type=str(mt),
            config=Descriptor.from_dict(data["config"], f"{what} config"),
            layers=tuple(Descriptor.from_dict(l, f"{what} layer {i}") for i, l in enumerate(layers)),
        )

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.data.get("annotations") or {}

    @property
    def family(self) -> str:
        return media_family(self.media_type)


@dataclass(frozen=True, eq=False)
class Index:
    raw: bytes
    data: Mapping[str, Any]
    manifests: tuple[Descriptor, ...]

    @classmethod
    def parse(cls, raw: bytes, what: str = "index") -> "Index":
        data = _load_json_object(raw, what)
        items = data.get("manifests")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise FormatError(f"{what}: 'manifests' is not a list")
        return cls(raw, data, tuple(Descriptor.from_dict(m, f"{what} entry {i}") for i, m in enumerate(items)))

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)


# --- config -----------------------------------------------------------------

RUNTIME_FIELDS = (
    "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
    "StopSignal", "ArgsEscaped", "Healthcheck", "OnBuild", "Shell",
)


@dataclass(frozen=True, eq=False)
class Config:
    raw: bytes
    data: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: bytes, what: str = "config") -> "Config":
        data = _load_json_object(raw, what)
        rootfs = data.get("rootfs")
        if rootfs is not None:
            if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids", []), list):
                raise FormatError(f"{what}: 'rootfs' is malformed")
            for i, d in enumerate(rootfs.get("diff_ids") or []):
                check_digest(d, f"{what} diff_ids[{i}]")
        history = data.get("history")
        if history is not None and not isinstance(history, list):
            raise FormatError(f"{what}: 'history' is not a list")
        return cls(raw, data)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Config":
        return cls(dump_json(data), data)

    @property
    def digest(self) -> str:
        return sha256_digest(self.raw)

    @property
    def diff_ids(self) -> list[str]:
        rootfs = self.data.get("rootfs") or {}
        return list(rootfs.get("diff_ids") or [])

    @property
    def history(self) -> list[dict[str, Any]]:
        return [h if isinstance(h, dict) else {} for h in (self.data.get("history") or [])]

    @property
    def runtime(self) -> Mapping[str, Any]:
        return self.data.get("config") or {}

    @property
    def os(self) -> str:
        return str(self.data.get("os") or "")

    @property
    def architecture(self) -> str:
        return str(self.data.get("architecture") or "")

    @property
    def variant(self) -> str | None:
        return self.data.get("variant")

    @property
    def platform(self) -> str:
        p = f"{self.os}/{self.architecture}"
        return p + (f"/{self.variant}" if self.variant else "")

    @property
    def created(self) -> str | None:
        return self.data.get("created")

    def replace(self, **changes: Any) -> "Config":
        """A changed copy; the new bytes are the old document with those keys replaced."""
        data = dict(self.data)
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return Config.from_data(data)


# --- layers, steps, images -----------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One layer of an image, as its store knows it."""

    diff_id: str
    chain_id: str
    digest: str            # digest of the blob as stored (== diff_id when stored uncompressed)
    media_type: str
    size: int | None       # stored size, when known
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    uncompressed_size: int | None = None  # the engine's unpacked size, when known

    @property
    def foreign(self) -> bool:
        return is_foreign(self.media_type)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size or 0, self.urls, self.annotations)


@dataclass(frozen=True)
class Step:
    index: int                     # position in history, 0 = the first step
    history: Mapping[str, Any]
    layer: Layer | None
    layer_index: int | None
    chain_id: str | None           # chain id of every layer up to and including this step
    step_id: str                   # identity of the step and all below it (a merkle chain)
    synthetic: bool = False        # history entry made up: the image had none for this layer
    missing_layer: bool = False    # history claims a layer the image does not have

    @property
    def empty(self) -> bool:
        return self.layer is None

    @property
    def created_by(self) -> str:
        return str(self.history.get("created_by") or "")

    @property
    def created(self) -> str | None:
        return self.history.get("created")

    @property
    def comment(self) -> str:
        return str(self.history.get("comment") or "")

    @property
    def author(self) -> str:
        return str(self.history.get("author") or "")


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def next_step_id(parent: str, history: Mapping[str, Any], diff_id: str | None) -> str:
    h = hashlib.sha256()
    h.update(parent.encode() + b"\n" + _canonical(dict(history)) + b"\n" + (diff_id or "").encode())
    return "sha256:" + h.hexdigest()


def align(history: Sequence[Mapping[str, Any]], layers: Sequence[Layer]) -> tuple[list[Step], list[str]]:
    """Walk history and layers side by side; return steps and what did not align."""
    steps: list[Step] = []
    warnings: list[str] = []
    parent = ""
    chain: str | None = None
    li = 0

    def add(h: Mapping[str, Any], layer: Layer | None, synthetic: bool = False, missing: bool = False) -> None:
        nonlocal parent, chain, li
        layer_index = None
        if layer is not None:
            chain = layer.chain_id
            layer_index = li
            li += 1
        sid = next_step_id(parent, h, layer.diff_id if layer else None)
        steps.append(Step(len(steps), h, layer, layer_index, chain, sid, synthetic, missing))
        parent = sid

    if not history:
        if layers:
            warnings.append("the image has no history: one step per layer is shown")
        for layer in layers:
            add({"created_by": "(no history)"}, layer, synthetic=True)
        return steps, warnings

    for h in history:
        empty = bool(h.get("empty_layer"))
        if empty:
            add(h, None)
        elif li < len(layers):
            add(h, layers[li])
        else:
            add(h, None, missing=True)
    missing = sum(1 for s in steps if s.missing_layer)
    if missing:
        warnings.append(
            f"history has {missing} more non-empty step(s) than the image has layers; "
            "they are shown as steps without a layer"
        )
    if li < len(layers):
        extra = len(layers) - li
        warnings.append(
            f"the image has {extra} layer(s) that no history entry describes; they are shown as extra steps"
        )
        for layer in layers[li:]:
            add({"created_by": "(layer without history)"}, layer, synthetic=True)
    return steps, warnings


@dataclass(frozen=True, eq=False)
class Image:
    """An image as read from a store: metadata only, never layer bytes."""

    config: Config
    manifest: Manifest | None
    layers: tuple[Layer, ...]
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()
    name: str | None = None          # the tag it was found under, if any
    source: str = ""                 # where it lives, for messages ("OCI layout ./x")
    extra: Mapping[str, Any] = field(default_factory=dict)  # store-specific facts

    @classmethod
    def assemble(
        cls,
        config: Config,
        manifest: Manifest | None = None,
        layers: Sequence[Layer] | None = None,
        *,
        name: str | None = None,
        source: str = "",
        extra: Mapping[str, Any] | None = None,
        warnings: Iterable[str] = (),
    ) -> "Image":
        warns = list(warnings)
        if layers is None:
            layers = layers_from(config, manifest)
        steps, w = align(config.history, layers)
        warns.extend(w)
        return cls(config, manifest, tuple(layers), tuple(steps), tuple(warns), name, source, dict(extra or {}))

    @property
    def id(self) -> str:
        """The image id: the digest of the exact config bytes (or the engine's id for a config
        that had to be rebuilt from the engine's inspect output)."""
        return self.extra.get("id") or self.config.digest

    @property
    def exact_config(self) -> bool:
        return not self.extra.get("reconstructed")

    @property
    def digest(self) -> str | None:
        return self.manifest.digest if self.manifest else None

    @property
    def chain_id(self) -> str | None:
        return self.layers[-1].chain_id if self.layers else None

    @property
    def tip(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def size(self) -> int | None:
        sizes = [l.size for l in self.layers]
        if any(s is None for s in sizes):
            usizes = [l.uncompressed_size for l in self.layers]
            if any(s is None for s in usizes):
                return None
            return sum(s or 0 for s in usizes)
        return sum(s or 0 for s in sizes)

    def describe(self) -> str:
        return self.name or short(self.id)


def layers_from(config: Config, manifest: Manifest | None) -> list[Layer]:
    """Pair a manifest's layer descriptors with the config's diff ids."""
    diff_ids = config.diff_ids
    chains = chain_ids(diff_ids)
    if manifest is None:
        return [Layer(d, c, d, DOCKER_LAYER, None) for d, c in zip(diff_ids, chains)]
    if len(manifest.layers) != len(diff_ids):
        raise FormatError(
            f"the manifest lists {len(manifest.layers)} layer(s) but the config has "
            f"{len(diff_ids)} diff id(s); the image is malformed"
        )
    return [
        Layer(d, c, desc.digest, desc.media_type, desc.size, desc.urls, desc.annotations)
        for d, c, desc in zip(diff_ids, chains, manifest.layers)
    ]


# --- presentation helpers (pure) --------------------------------------------------

_NOP = re.compile(r"^/bin/(?:ba)?sh -c #\(nop\)\s*")
_SHELL = re.compile(r"^/bin/(?:ba)?sh -c ")
_BUILDKIT_SUFFIX = re.compile(r" # buildkit$")


def describe_command(created_by: str) -> str:
    """A Dockerfile-like one-line form of ``created_by`` for legacy and BuildKit histories."""
    text = created_by.strip()
    if not text:
        return ""
    text = _BUILDKIT_SUFFIX.sub("", text)
    m = _NOP.match(text)
    if m:
        return text[m.end():].strip()
    if _SHELL.match(text):
        return "RUN " + _SHELL.sub("", text, count=1)
    if text.startswith("RUN /bin/sh -c "):
        return "RUN " + text[len("RUN /bin/sh -c "):]
    if text.startswith("|"):  # legacy build args: "|2 A=1 B=2 /bin/sh -c ..."
        parts = text.split(" ", 1)
        if len(parts) == 2:
            try:
                n = int(parts[0][1:])
            except ValueError:
                return text
            rest = parts[1].split(" ", n)
            if len(rest) > n:
                return describe_command(rest[n])
    return text


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"
