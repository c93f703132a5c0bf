"""The one protocol every store implements, and what flows through it.

A store reads an image's metadata without touching layer bytes (``get``,
``list_images``), hands out layer blobs as verified streams
(``open_blob``/``layer_inputs``), and writes an image from existing and new
blobs (``write``), reusing what it already has. Operations never know which
transport they talk to.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator, Sequence, cast

from ..errors import RefError, StoreError
from ..model import (
    BASE_DIGEST_ANNOTATION, DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST, Config, Descriptor,
    Image, Layer, Manifest, dump_json, media_family, short,
)


@dataclass
class LayerInput:
    """One layer of an image being written: what it is and how to read its stored bytes."""

    layer: Layer
    open: Callable[[], BinaryIO] | None = None   # raw stored bytes, verified while read
    path: str | None = None                       # a local file holding exactly those bytes (verified)
    # A layer made while it is written (an uncompressed tar of ``layer.size`` bytes whose diff id is
    # not known in advance): only stores with ``streams_new_layers`` accept it.
    produce: Callable[[BinaryIO], None] | None = None

    def opener(self) -> BinaryIO:
        if self.open is None:
            raise StoreError(
                f"the bytes of layer {short(self.layer.diff_id)} are not available "
                + ("(a foreign layer: its blob lives at " + ", ".join(self.layer.urls) + ")"
                   if self.layer.foreign else "here"))
        return self.open()


@dataclass
class WriteRequest:
    config: Config
    layers: list[LayerInput]
    tag: str | None
    manifest: Manifest | None = None          # an existing manifest to keep byte for byte, if it fits
    annotations: dict[str, str] = field(default_factory=dict)
    compress: str | None = "auto"             # "auto" (the store's default), None, "gzip", "zstd"
    compress_level: int | None = None
    family: str | None = None                 # "oci" / "docker" for a new manifest (default: the source's)
    # With produced layers: the config, from the diff ids of every layer once they are known.
    config_for: Callable[[list[str]], Config] | None = None


@dataclass
class WriteResult:
    image: Image
    written_blobs: int = 0
    written_bytes: int = 0
    reused_blobs: int = 0
    previous: str | None = None    # image id the tag pointed at before, if any


class Store(ABC):
    transport: str = ""
    default_compression: str | None = None   # for layers that arrive uncompressed
    remote: bool = False                      # reading a layer means downloading it (a registry)

    def streams_new_layers(self) -> bool:
        """Can ``write`` take layers that are produced while they are sent (``LayerInput.produce``)?"""
        return False

    @abstractmethod
    def describe(self) -> str:
        """Where this store is, for messages: 'OCI layout ./out'."""

    @abstractmethod
    def list_images(self) -> list[tuple[str, Image]]:
        """Every tag in the store with its image, metadata only."""

    @abstractmethod
    def get(self, name: str | None) -> Image:
        """The image a tag, image id (full or short), or ``@digest`` names; None = the only one."""

    @abstractmethod
    def open_blob(self, image: Image, index: int) -> BinaryIO:
        """The stored bytes of layer ``index``; reading to the end verifies its digest."""

    @abstractmethod
    def write(self, req: WriteRequest) -> WriteResult:
        """Write an image (blobs the store lacks, then config, manifest, tag)."""

    def blob_path(self, image: Image, index: int) -> str | None:
        """A local file that holds exactly the stored bytes of layer ``index``, if there is one."""
        return None

    def needed_layers(self, layers: Sequence[Layer]) -> set[int]:
        """Which of these layers the store would need bytes for (default: all)."""
        return set(range(len(layers)))

    def raw_config(self, image: Image) -> bytes:
        return image.config.raw

    @contextlib.contextmanager
    def layer_inputs(self, image: Image, indices: Sequence[int] | None = None,
                     workdir: str | None = None) -> Iterator[list[LayerInput]]:
        """``LayerInput``s for the image's layers; only ``indices`` need readable bytes."""
        want = set(range(len(image.layers)) if indices is None else indices)
        out = []
        for i, layer in enumerate(image.layers):
            if i in want and not layer.foreign:
                out.append(LayerInput(layer, cast("Callable[[], BinaryIO]", lambda i=i: self.open_blob(image, i))))
            else:
                out.append(LayerInput(layer, None, None))
        yield out

    def normalize_tag(self, name: str) -> str:
        """The tag as the store spells it (the engine: ``app`` -> ``app:latest``)."""
        return name

    def delete_tag(self, name: str) -> None:
        raise StoreError(f"{self.describe()} cannot delete tags")

    def tag(self, image: Image, name: str) -> WriteResult:
        """Point ``name`` at an image this store already holds."""
        return self.write(WriteRequest(image.config, [LayerInput(l) for l in image.layers], name,
                                       manifest=image.manifest, compress=None))

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


# --- helpers shared by the stores -------------------------------------------------


def pick_one(images: list[tuple[str, Image]], where: str) -> Image:
    if not images:
        raise RefError(f"{where} holds no image")
    ids = {img.id for _, img in images}
    if len(ids) > 1:
        tags = ", ".join(sorted(t for t, _ in images))
        raise RefError(f"{where} holds several images; name one of: {tags}")
    return images[0][1]


def match_id(images: list[tuple[str, Image]], wanted: str, where: str) -> Image | None:
    """Find an image by full or short image id (config digest) or manifest digest."""
    w = wanted.lower()
    if w.startswith("sha256:"):
        w = w[7:]
    if not w or any(c not in "0123456789abcdef" for c in w):
        return None
    found: dict[str, Image] = {}
    for _, img in images:
        if img.id[7:].startswith(w) or (img.digest and img.digest[7:].startswith(w)):
            found.setdefault(img.id, img)   # the first tag that names it
    if len(found) > 1:
        cands = ", ".join(sorted(short(i) for i in found))
        raise RefError(f"short id {wanted!r} is ambiguous in {where}: it matches {cands}",
                       hint="give more hex digits")
    return next(iter(found.values()), None)


def config_media_type(family: str) -> str:
    return DOCKER_CONFIG if family == "docker" else OCI_CONFIG


def build_manifest(config: Config, layers: Sequence[Descriptor], family: str,
                   annotations: dict[str, str] | None = None,
                   config_media: str | None = None) -> bytes:
    data: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if family == "docker" else OCI_MANIFEST,
        "config": {
            "mediaType": config_media or config_media_type(family),
            "digest": config.digest,
            "size": len(config.raw),
        },
        "layers": [d.to_dict() for d in layers],
    }
    if annotations and family != "docker":
        data["annotations"] = dict(annotations)
    return dump_json(data)


def manifest_fits(manifest: Manifest | None, config: Config, layers: Sequence[Descriptor],
                  annotations: dict[str, str] | None = None) -> bool:
    """Can an existing manifest be kept byte for byte for this config and these layers?"""
    if manifest is None:
        return False
    if manifest.config.digest != config.digest:
        return False
    if len(manifest.layers) != len(layers):
        return False
    for a, b in zip(manifest.layers, layers):
        if a.digest != b.digest or a.media_type != b.media_type:
            return False
    if annotations:
        for k, v in annotations.items():
            if manifest.annotations.get(k) != v:
                return False
    return True


def tmp_root() -> str:
    """Where spooled layers and temporary files go: $IMGGIT_TMPDIR, else $IMGGIT_HOME/tmp (on disk)."""
    root = os.environ.get("IMGGIT_TMPDIR")
    if not root:
        from ..config import home

        root = os.path.join(home(), "tmp")
    os.makedirs(root, exist_ok=True)
    return root


def tmpdir() -> str:
    """A fresh directory under ``tmp_root()``."""
    return tempfile.mkdtemp(prefix="imggit-", dir=tmp_root())


__all__ = [
    "LayerInput", "WriteRequest", "WriteResult", "Store", "pick_one", "match_id", "build_manifest",
    "manifest_fits", "tmpdir", "media_family", "BASE_DIGEST_ANNOTATION",
]
