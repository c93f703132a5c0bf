"""``cp SRC DST``: copy an image between any two stores.

Only layers the destination lacks travel (by digest, by diff id, or by
chain id for the engine); the config and, when it still fits, the manifest
keep their exact bytes and digests.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..model import Image
from ..revisions import Ref, parse_rev
from ..session import Resolved, Session
from ..stores.base import Store, WriteRequest, WriteResult


@dataclass
class CopyResult:
    source: Resolved
    dest: Store
    tag: str | None
    result: WriteResult
    layers_sent: int


def default_tag(src: Resolved) -> str | None:
    name = src.image.name
    if name and not name.startswith("sha256:"):
        return name
    return None


def dest_tag(dst: Ref, src: Resolved) -> str | None:
    if dst.name:
        return dst.name
    name = default_tag(src)
    if name and dst.transport == "docker":
        # a registry destination names its repository: the source's tag comes along, not its name
        i, j = name.rfind(":"), name.rfind("/")
        if i > j:
            return name[i + 1:]
        return "latest" if j >= 0 else name   # a bare OCI tag is a tag
    return name


def write_image(session: Session, src_store: Store, image: Image, dst_store: Store, tag: str | None,
                *, compress: str | None = "auto", level: int | None = None,
                annotations: dict[str, str] | None = None) -> tuple[WriteResult, int]:
    """Write ``image`` (already in ``src_store``) to ``dst_store`` under ``tag``."""
    exact = getattr(src_store, "exact", None)
    if exact is not None and not image.exact_config:
        image = exact(image)
    needed = sorted(dst_store.needed_layers(image.layers))
    with src_store.layer_inputs(image, needed) as inputs:
        req = WriteRequest(image.config, inputs, tag, manifest=image.manifest, compress=compress,
                           compress_level=level, annotations=annotations or {})
        from .publish import publish

        result = publish(dst_store, req)
    return result, len(needed)


def copy(session: Session, src: str, dst: str, *, compress: str | None = "auto",
         level: int | None = None) -> CopyResult:
    s = session.resolve(src)
    if not s.is_tip:
        raise UsageError(f"{src!r} is a past step, not an image",
                         hint=f"make it an image first with: imggit tag {src} NAME")
    d = parse_rev(dst)
    if d.ops:
        raise UsageError(f"the destination {dst!r} cannot have a revision suffix")
    dst_store = session.store(d.ref.transport, d.ref.location, for_write=True)
    tag = dest_tag(d.ref, s)
    result, sent = write_image(session, s.store, s.image, dst_store, tag, compress=compress, level=level)
    return CopyResult(s, dst_store, tag, result, sent)
